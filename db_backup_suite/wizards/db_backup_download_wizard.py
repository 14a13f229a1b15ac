import hashlib
import secrets

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError

from odoo.addons.audit_export.lib import passwords

from ..models import backup_engine

TOKEN_TTL_SECONDS = 300
# The download password waits (sealed) between the form and the download.
PASSWORD_PURPOSE = "db-backup-download-password"


def password_problems(password, user_inputs=()):
    """Why ``password`` is refused (empty list: accepted): the suite's one
    password policy for protected files (``audit_export/lib/passwords``:
    12 characters and zxcvbn's top strength band)."""
    verdict = passwords.check_password(password or "", user_inputs)
    if verdict.ok:
        return []
    hint = verdict.params.get("hint")
    return [f"{verdict.code}: {hint}" if hint else verdict.code]


def token_digest(token):
    return hashlib.sha256((token or "").encode()).hexdigest()


class DbBackupDownloadWizard(models.TransientModel):
    """Download a backup re-encrypted with a password.

    The password is write-only: checked and sealed with the server keyring
    (purpose and tenant bound, and to this wizard and its user) in the
    request that receives it, never stored or returned in clear, and erased
    by the download that uses it. The download link carries a one-time
    token: only its digest is stored, it expires after a few minutes, it is
    bound to the user, and the first request consumes it (an access-log
    replay finds nothing).
    """

    _name = "db.backup.download.wizard"
    _inherit = ["db.backup.guarded.mixin"]
    _description = "Download a Backup Re-encrypted with a Password"
    _user_create_fields = ("run_id", "password", "password_confirm")
    _user_write_fields = ("password", "password_confirm")

    run_id = fields.Many2one(
        "db.backup.run", string="Backup", required=True, readonly=True
    )
    password = fields.Char(
        compute="_compute_password", inverse="_inverse_password", copy=False
    )
    password_confirm = fields.Char(
        string="Confirm password",
        compute="_compute_password",
        inverse="_inverse_password",
        copy=False,
    )
    password_set = fields.Boolean(compute="_compute_password")
    password_sealed = fields.Char(readonly=True, copy=False, groups="base.group_system")
    token_digest = fields.Char(readonly=True, copy=False, groups="base.group_system")
    token_expires = fields.Datetime(readonly=True, copy=False)

    def _compute_password(self):
        for wizard in self:
            # write-only: the value is never read back
            wizard.password = False
            wizard.password_confirm = False
            wizard.password_set = bool(wizard.sudo().password_sealed)

    def _inverse_password(self):
        """Handled in ``create`` / ``write``: the clear password never
        reaches the database."""

    @api.model_create_multi
    def create(self, vals_list):
        self.env["db.backup.run"]._check_restore_access()
        passwords = []
        for vals in vals_list:
            passwords.append(
                (vals.pop("password", None), vals.pop("password_confirm", None))
            )
            run = self.env["db.backup.run"].browse(vals.get("run_id")).exists()
            if not run:
                raise UserError(self.env._("Choose a backup to download."))
            run.check_access("read")
        wizards = super().create(vals_list)
        for wizard, (password, confirm) in zip(wizards, passwords, strict=True):
            if password or confirm:
                wizard._set_password(password, confirm)
        return wizards

    def write(self, vals):
        self.env["db.backup.run"]._check_restore_access()
        self._check_own()
        vals = dict(vals)
        has_password = "password" in vals or "password_confirm" in vals
        password = vals.pop("password", None)
        confirm = vals.pop("password_confirm", None)
        result = super().write(vals) if vals else True
        if has_password:
            for wizard in self:
                wizard._set_password(password, confirm)
        return result

    def _check_own(self):
        if not self.env.su and any(w.create_uid != self.env.user for w in self):
            raise AccessError(self.env._("This download was opened by someone else."))

    # -- the sealed password -------------------------------------------------
    def _this_uuid(self):
        return self.env["ir.config_parameter"].sudo().get_param("database.uuid", "")

    def _password_aad(self):
        self.ensure_one()
        return (
            "%s:%s:%s:%s"
            % (self._name, self.env.cr.dbname, self.id, self.create_uid.id)
        ).encode()

    def _set_password(self, password, confirm):
        """Check and seal the password (a new one voids an issued link)."""
        self.ensure_one()
        password = password or ""
        if password != (confirm or ""):
            raise UserError(self.env._("The two passwords differ."))
        # the suite's one policy for protected files (exports, DSR packages)
        self.env["audit.password.policy"]._check_new(password, confirm)
        try:
            sealed = backup_engine.seal(
                PASSWORD_PURPOSE, self._this_uuid(), password, self._password_aad()
            )
        except backup_engine.KeyringUnavailable as exc:
            raise UserError(
                self.env._("The server keyring is missing: %(r)s", r=exc)
            ) from exc
        self.sudo().write(
            {"password_sealed": sealed, "token_digest": False, "token_expires": False}
        )

    def _open_password(self, sealed):
        """The clear password of ``sealed`` (taken from this wizard's row by
        the download that consumed it)."""
        self.ensure_one()
        return backup_engine.unseal(
            PASSWORD_PURPOSE, self._this_uuid(), sealed, self._password_aad()
        )

    @api.model
    def password_strength(self, password):
        """What the strength meter shows while the password is typed (the
        policy's verdict; nothing is stored). Backup Restore users only."""
        self.env["db.backup.run"]._check_restore_access()
        return self.env["audit.password.policy"]._strength(password)

    # -- actions ---------------------------------------------------------------
    def action_download(self):
        self.ensure_one()
        self.env["db.backup.run"]._check_restore_access()
        self._check_own()
        if self.run_id.sudo().state not in ("done", "partial"):
            raise UserError(self.env._("Only a stored backup can be downloaded."))
        if not self.sudo().password_sealed:
            raise UserError(self.env._("Type the password (twice) first."))
        # One-time token: only its digest is kept; the controller consumes it.
        token = secrets.token_urlsafe(32)
        self.sudo().write(
            {
                "token_digest": token_digest(token),
                "token_expires": fields.Datetime.add(
                    fields.Datetime.now(), seconds=TOKEN_TTL_SECONDS
                ),
            }
        )
        return {
            "type": "ir.actions.act_url",
            "url": "/db_backup_suite/download/%s?token=%s" % (self.id, token),
            "target": "download",
        }
