"""Export emergency destinations file: the password, asked for EVERY export.

Odoo's identity check (``@check_identity``) trusts a password typed in the
last ten minutes; this file holds every destination's credentials in clear,
so a session left open (or stolen) must not get it without the password.
The dialog's password is checked where the web client saves it (``create``
or ``write``) and never reaches the database: the check leaves a mark in the
browser's session, bound to this dialog, user and database, that lives a
minute and is used up by the dialog's Download button, which only then
issues the single-use download link (``res.config.settings``).

Wrong passwords count in Odoo's own login cooldown (``_assert_can_auth``:
per address, the ``base.login_cooldown_*`` parameters) and each refusal is
recorded in the audit trail; the dialog says why and asks again.
"""

import hmac
import time

from odoo import api, fields, models
from odoo.exceptions import AccessDenied, UserError
from odoo.http import request

#: Key of the password check's mark in the browser's session.
VERIFIED_SESSION_KEY = "db_backup_suite.emergency_file_verified"
#: Seconds between the password check and the Download button.
VERIFIED_TTL = 60


class DbBackupEmergencyExport(models.TransientModel):
    _name = "db.backup.emergency.export"
    _description = "Export emergency destinations file"
    _transient_max_hours = 0.1

    # Never stored: create() and write() take it out of the values.
    password = fields.Char(string="Your password")
    refusal = fields.Char(readonly=True)

    @api.model_create_multi
    def create(self, vals_list):
        self.env["db.backup.run"]._check_admin_access()
        vals_list = [dict(vals) for vals in vals_list]
        passwords = [vals.pop("password", None) for vals in vals_list]
        for vals in vals_list:
            vals.pop("refusal", None)
        wizards = super().create(vals_list)
        for wizard, password in zip(wizards, passwords, strict=True):
            if password is not None:
                wizard._verify_password(password)
        return wizards

    def write(self, vals):
        self.env["db.backup.run"]._check_admin_access()
        vals = dict(vals)
        password = vals.pop("password", None)
        has_password = password is not None
        vals.pop("refusal", None)
        res = super().write(vals) if vals else True
        if has_password:
            for wizard in self:
                wizard._verify_password(password)
        return res

    # The dialog's own fields are written past write(), which takes the
    # password out of the values: super().write on purpose below.
    def _verify_password(self, password):
        """Check ``password`` as the user's (Odoo's credential check, in its
        login cooldown); on success mark this dialog verified in the
        session, else record why in the dialog and the audit trail."""
        self.ensure_one()
        if not request:
            raise UserError(self.env._("This can only be done in a web browser."))
        user = self.env.user
        request.session.pop(VERIFIED_SESSION_KEY, None)
        try:
            if not password:
                raise AccessDenied()
            with self.env["res.users"]._assert_can_auth(user=user.login):
                user._check_credentials(
                    {"login": user.login, "password": password, "type": "password"},
                    {"interactive": True},
                )
        except AccessDenied as exc:
            reason = str(exc)
            if reason == str(AccessDenied()):
                reason = self.env._("Incorrect password: type it again.")
            super().write({"refusal": reason})  # pylint: disable=super-method-mismatch
            self.env["audit.event"].log_event(
                "export",
                res_model="db.backup.destination",
                res_name="Emergency destinations file",
                result="failure",
                details={
                    "operation": "emergency_destinations_file",
                    "step": "password",
                },
                message="Emergency destinations file: password refused",
            )
            return False
        super().write({"refusal": False})  # pylint: disable=super-method-mismatch
        request.session[VERIFIED_SESSION_KEY] = {
            "wizard": self.id,
            "uid": self.env.uid,
            "db": self.env.cr.dbname,
            "exp": time.time() + VERIFIED_TTL,
        }
        return True

    def _take_verification(self):
        """Whether the password was checked for this dialog in this session
        a moment ago; the mark is used up either way."""
        self.ensure_one()
        mark = request.session.pop(VERIFIED_SESSION_KEY, None) if request else None
        return (
            isinstance(mark, dict)
            and hmac.compare_digest(str(mark.get("wizard")), str(self.id))
            and mark.get("uid") == self.env.uid
            and mark.get("db") == self.env.cr.dbname
            and float(mark.get("exp") or 0) > time.time()
        )

    def action_export(self):
        """Download button: the single-use download link of the file, once
        the password was checked for this very dialog; otherwise the dialog
        again, saying why. Settings administrators only."""
        self.ensure_one()
        self.env["db.backup.run"]._check_admin_access()
        if not self._take_verification():
            if not self.refusal:
                super().write({"refusal": self.env._("Type your password.")})  # pylint: disable=super-method-mismatch
            return self._reopen()
        return self.env["res.config.settings"]._export_emergency_destinations()

    def _reopen(self):
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Export emergency destinations file"),
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "views": [(False, "form")],
            "target": "new",
        }
