from . import dsr_certificate_report
