import math
import re
import secrets

from odoo import fields, models
from odoo.exceptions import UserError

MIN_LENGTH = 12
TOKEN_TTL_SECONDS = 300


def password_problems(password):
    """What makes ``password`` too weak (empty list: strong enough)."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append("at least %d characters" % MIN_LENGTH)
    classes = sum(
        bool(re.search(p, password))
        for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]")
    )
    if classes < 3:
        problems.append("three of: lower case, upper case, digits, symbols")
    if len(set(password)) < max(6, len(password) // 3):
        problems.append("fewer repeated characters")
    pool = sum(
        size
        for pattern, size in (
            (r"[a-z]", 26),
            (r"[A-Z]", 26),
            (r"[0-9]", 10),
            (r"[^A-Za-z0-9]", 33),
        )
        if re.search(pattern, password)
    )
    if password and len(password) * math.log2(max(pool, 2)) < 60:
        problems.append("more length or variety (about 60 bits of entropy)")
    return problems


class DbBackupDownloadWizard(models.TransientModel):
    _name = "db.backup.download.wizard"
    _description = "Download a Backup Re-encrypted with a Password"

    run_id = fields.Many2one("db.backup.run", required=True, readonly=True)
    password = fields.Char()
    password_confirm = fields.Char(string="Confirm password")
    token = fields.Char(readonly=True, copy=False)
    token_expires = fields.Datetime(readonly=True, copy=False)

    def action_download(self):
        self.ensure_one()
        self.env["db.backup.run"]._check_restore_access()
        password = self.password or ""
        if password != (self.password_confirm or ""):
            raise UserError(self.env._("The two passwords differ."))
        problems = password_problems(password)
        if problems:
            raise UserError(
                self.env._(
                    "The password is too weak; use %(p)s.", p="; ".join(problems)
                )
            )
        if self.run_id.state != "done":
            raise UserError(self.env._("Only a stored backup can be downloaded."))
        # The controller reads the password from this wizard once (by token),
        # then clears it; it never goes to a URL or a log.
        self.write(
            {
                "token": secrets.token_urlsafe(32),
                "token_expires": fields.Datetime.add(
                    fields.Datetime.now(), seconds=TOKEN_TTL_SECONDS
                ),
            }
        )
        return {
            "type": "ir.actions.act_url",
            "url": "/db_backup_suite/download/%s?token=%s" % (self.id, self.token),
            "target": "download",
        }
