from . import audit_export_wizard, audit_verify_wizard
