import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.http import request

from ..lib import emergency as emergency_lib

SANDBOX_URL_PARAM = "db_backup_suite.sandbox_url_pattern"
ALERT_SIZE_PARAM = "db_backup_suite.alert_size_mb"
#: Download route of the emergency destinations file, and the key of its
#: single-use token in the browser's session (never in the database).
EMERGENCY_FILE_ROUTE = "/db_backup/emergency_destinations"
EMERGENCY_FILE_SESSION_KEY = "db_backup_suite.emergency_file_token"
#: Seconds the download link of the emergency destinations file works.
EMERGENCY_FILE_TOKEN_TTL = 120


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
        res = super().set_values()
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
        return res

    # -- key rotation ------------------------------------------------------------
    def action_open_key_rotation(self):
        """Button of the Settings screen: the Rotate key dialog, made on the
        server so that it opens with its report (Settings administrators)."""
        self.env["db.backup.run"]._check_admin_access()
        wizard = self.env["db.backup.key.rotation"].create({})
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Rotate key"),
            "res_model": wizard._name,
            "res_id": wizard.id,
            "view_mode": "form",
            "views": [(False, "form")],
            "target": "new",
        }

    # -- emergency destinations file ---------------------------------------
    @api.model
    def _emergency_destinations_document(self):
        """The emergency destinations file (text) of the active destinations,
        credentials included (``docs/emergency-restore.md``). Raises a
        :class:`UserError` naming a destination that cannot be used."""
        self.env["db.backup.run"]._check_admin_access()
        dests = self.env["db.backup.destination"].sudo().search([("active", "=", True)])
        if not dests:
            raise UserError(
                self.env._("There is no active backup destination to export.")
            )
        return emergency_lib.destinations_document(
            [(dest.name, dest._sink_config()) for dest in dests],
            database=self.env.cr.dbname,
            exported_by=self.env.user.login,
        )

    def action_export_emergency_destinations(self):
        """Button of the Settings screen: the dialog that asks the password
        (every time: no grace period) before the emergency destinations
        file downloads (``db.backup.emergency.export``). Settings
        administrators only."""
        self.env["db.backup.run"]._check_admin_access()
        # Fails here, before the password is asked, when a destination
        # cannot be exported (unconfirmed host key, unreadable credentials).
        self._emergency_destinations_document()
        return self.env["db.backup.emergency.export"].create({})._reopen()

    def _export_emergency_destinations(self):
        """The single-use download link of the file, in this session (the
        export dialog calls it once the password was checked)."""
        self.env["db.backup.run"]._check_admin_access()
        if not request:
            raise UserError(self.env._("This can only be done in a web browser."))
        token = secrets.token_urlsafe(32)
        request.session[EMERGENCY_FILE_SESSION_KEY] = {
            "digest": hashlib.sha256(token.encode()).hexdigest(),
            "uid": self.env.uid,
            "db": self.env.cr.dbname,
            "exp": time.time() + EMERGENCY_FILE_TOKEN_TTL,
        }
        return {
            "type": "ir.actions.act_url",
            "url": "%s?token=%s" % (EMERGENCY_FILE_ROUTE, token),
            "target": "download",
        }

    @api.model
    def _take_emergency_file_token(self, session, token):
        """Whether ``token`` is the session's pending download of the
        emergency destinations file for this user; used up either way."""
        pending = session.pop(EMERGENCY_FILE_SESSION_KEY, None)
        if not isinstance(pending, dict) or not isinstance(token, str):
            return False
        digest = hashlib.sha256(token.encode()).hexdigest()
        return (
            hmac.compare_digest(str(pending.get("digest")), digest)
            and pending.get("uid") == self.env.uid
            and pending.get("db") == self.env.cr.dbname
            and float(pending.get("exp") or 0) > time.time()
        )

    # -- emergency page attempts into the audit trail -------------------------
    @api.model
    def _cron_replay_emergency_log(self):
        """Cron: write the emergency restore page's logged attempts about
        this database into its audit trail (once each)."""
        from ..controllers.emergency import replay_emergency_log

        return replay_emergency_log(self.env)
