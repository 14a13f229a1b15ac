from odoo import models


class DbBackupSettingsAuditMixin(models.AbstractModel):
    """Settings records whose changes go to the audit trail.

    :meth:`_log_settings` records one ``settings`` event per record (create,
    write, delete or what the model calls it) with the names of the fields
    changed, never their values (they may be secrets). A model names its
    records in the message through :meth:`_settings_audit_label`.
    """

    _name = "db.backup.settings.audit.mixin"
    _description = "Backup Suite: audited settings"

    def _settings_audit_label(self):
        """How the audit message names this record."""
        self.ensure_one()
        return self.display_name

    def _log_settings(self, operation, field_names=None):
        audit = self.env["audit.event"]
        for record in self:
            audit.log_event(
                "settings",
                record=record,
                details={"operation": operation, "fields": field_names or []},
                message="%s: %s" % (record._settings_audit_label(), operation),
            )
