from . import audit_export_wizard
