from . import dsr_erasure_wizard, dsr_package_wizard
