from urllib.parse import urlsplit

from odoo import api, fields, models
from odoo.exceptions import ValidationError

SANDBOX_URL_PARAM = "db_backup_suite.sandbox_url_pattern"
ALERT_SIZE_PARAM = "db_backup_suite.alert_size_mb"


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    db_backup_sandbox_url_pattern = fields.Char(
        string="Sandbox address",
        config_parameter=SANDBOX_URL_PARAM,
        help="Where sandboxes are served, {db} standing for the sandbox's "
        "database name, e.g. https://{db}.example.com (Odoo's dbfilter "
        "picks the database from the host name, see the module's "
        "CONFIGURE.md). Empty: sandboxes open on this server's address and "
        "the browser's session switches to them.",
    )
    db_backup_alert_size_mb = fields.Integer(
        string="Large manual backup (MB)",
        config_parameter=ALERT_SIZE_PARAM,
        default=500,
        help="Administrators are mailed when a manual backup is larger; each "
        "schedule has its own threshold.",
    )

    @api.constrains("db_backup_sandbox_url_pattern")
    def _check_db_backup_sandbox_url_pattern(self):
        for settings in self:
            pattern = (settings.db_backup_sandbox_url_pattern or "").strip()
            if not pattern:
                continue
            parts = urlsplit(pattern.replace("{db}", "db"))
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or "{db}" not in urlsplit(pattern).netloc
            ):
                raise ValidationError(
                    self.env._(
                        "The sandbox address is a web address whose host name "
                        "holds {db}, e.g. https://{db}.example.com."
                    )
                )

    @api.constrains("db_backup_alert_size_mb")
    def _check_db_backup_alert_size_mb(self):
        for settings in self:
            if settings.db_backup_alert_size_mb < 0:
                raise ValidationError(
                    self.env._("The large backup threshold cannot be negative.")
                )

    def set_values(self):
        params = self.env["ir.config_parameter"].sudo()
        before = {
            key: params.get_param(key) for key in (SANDBOX_URL_PARAM, ALERT_SIZE_PARAM)
        }
        super().set_values()
        changed = {
            key: {"old": old, "new": params.get_param(key)}
            for key, old in before.items()
            if params.get_param(key) != old
        }
        if changed:
            self.env["audit.event"].log_event(
                "settings",
                res_model="ir.config_parameter",
                res_name=", ".join(sorted(changed)),
                details={"fields": changed},
                message="Database Backups settings changed",
            )
