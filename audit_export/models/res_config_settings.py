from odoo import api, fields, models
from odoo.exceptions import ValidationError

RETENTION_PARAM = "audit_export.retention_days"


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    audit_retention_days = fields.Integer(
        string="Audit Log Retention (days)",
        config_parameter=RETENTION_PARAM,
        default=730,
        groups="audit_export.audit_group_manager",
        help="Events older than this are purged daily (a checkpoint keeps the "
        "chain verifiable). 0 keeps every event.",
    )

    @api.constrains("audit_retention_days")
    def _check_audit_retention_days(self):
        for settings in self:
            if settings.audit_retention_days < 0:
                raise ValidationError(
                    self.env._("The audit log retention cannot be negative.")
                )

    def set_values(self):
        events = self.env["audit.event"]
        before = events._retention_days()
        res = super().set_values()
        after = events._retention_days()
        if before != after:
            events.log_event(
                "settings",
                res_model="ir.config_parameter",
                res_name=RETENTION_PARAM,
                details={"fields": {RETENTION_PARAM: {"old": before, "new": after}}},
                message=self.env._(
                    "Audit log retention changed from %(old)s to %(new)s days",
                    old=before,
                    new=after,
                ),
            )
        return res
