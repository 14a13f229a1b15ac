import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError

from odoo.addons.audit_export.tools.suite_errors import suite_error_message

from suite_core import passwords

from ..lib import downloads
from ..service import backup_engine

TOKEN_TTL_SECONDS = 300
# A preparation whose status file was not touched for this long is dead.
STALLED = 300
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
    when the preparation that uses it starts.

    Download runs in two steps so that no web worker decrypts, re-encrypts
    or waits on a destination (``lib/downloads.py``): the first
    :meth:`action_download` starts a detached process that re-encrypts the
    archive into a private file (0600) of the data dir, block by block
    (constant memory); the dialog follows it (:meth:`download_status`);
    once it is ready, :meth:`action_download` gives a link carrying a
    one-time token: only its digest is stored, it expires after a few
    minutes, it is bound to the user, and the first request consumes it (an
    access-log replay finds nothing). The prepared file is removed once it
    was sent whole, or after a day.
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
    prepare_id = fields.Char(readonly=True, copy=False, groups="base.group_system")
    prepare_state = fields.Selection(
        [
            ("none", "Not prepared"),
            ("running", "Preparing"),
            ("done", "Ready"),
            ("failed", "Failed"),
        ],
        string="Preparation",
        compute="_compute_prepare",
    )
    prepare_progress = fields.Float(compute="_compute_prepare")
    prepare_error = fields.Char(compute="_compute_prepare")

    def _compute_prepare(self):
        for wizard in self:
            status = wizard._prepare_status()
            wizard.prepare_state = status["state"]
            wizard.prepare_progress = status["percent"]
            wizard.prepare_error = status["error"] or False

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
                self.env._(
                    "The server keyring is missing: %(r)s",
                    r=suite_error_message(self.env, exc.__cause__ or exc),
                )
            ) from exc
        previous = self.sudo().prepare_id
        if previous:
            # a file encrypted with the previous password is no use any more
            downloads.remove(backup_engine.jobs_dir(), previous)
        self.sudo().write(
            {
                "password_sealed": sealed,
                "token_digest": False,
                "token_expires": False,
                "prepare_id": False,
            }
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

    # -- the prepared file ---------------------------------------------------
    def _prepare_status(self):
        """``{"state", "done", "total", "percent", "error"}`` of this
        wizard's preparation (read from its status file)."""
        self.ensure_one()
        prepare_id = self.sudo().prepare_id
        status = {}
        if prepare_id:
            base = backup_engine.jobs_dir()
            status = downloads.read_status(base, prepare_id)
            if status.get("state") == "done" and not os.path.isfile(
                downloads.file_path(base, prepare_id)
            ):
                status = {}  # sent (and removed) or expired
        state = status.get("state") or "none"
        if state == "running" and time.time() - (status.get("at") or 0) > STALLED:
            # the process died (killed, server restarted) without a word
            state = "failed"
            status["error"] = self.env._("The preparation stopped; start it again.")
        total = status.get("total") or 0
        done = status.get("done") or 0
        percent = 100.0 if state == "done" else (100.0 * done / total if total else 0)
        return {
            "state": state,
            "done": done,
            "total": total,
            "percent": round(min(percent, 100.0), 1),
            "error": status.get("error") or "",
        }

    def download_status(self):
        """Where the preparation stands, for the dialog (its opener only)."""
        self.ensure_one()
        self.env["db.backup.run"]._check_restore_access()
        self._check_own()
        return self._prepare_status()

    def _prepare_job(self):
        """What the preparing process needs (the password inside)."""
        self.ensure_one()
        run = self.run_id.sudo()
        copy = run.copy_ids.filtered(lambda c: c.state == "done" and c.destination_id)[
            :1
        ]
        if not copy:
            raise UserError(self.env._("No stored copy of this backup is reachable."))
        sealed = self.sudo().password_sealed
        try:
            password = self._open_password(sealed)
        except ValueError as exc:
            raise UserError(self.env._("Type the password (twice) again.")) from exc
        return {
            "id": secrets.token_hex(16),
            "base": backup_engine.jobs_dir(),
            "sink": copy.destination_id._sink_config(),
            "name": copy.object_name,
            "tenant": self._this_uuid(),
            "password": password,
            "total": int(copy.size or 0),
        }

    def _start_prepare(self):
        """Start the detached preparation (its own session: it outlives
        this worker); the password leaves the wizard."""
        self.ensure_one()
        ok, reason = backup_engine.keyring_status()
        if not ok:
            raise UserError(
                self.env._("The server keyring is missing: %(r)s", r=reason)
            )
        job = self._prepare_job()
        base = job["base"]
        fd, path = tempfile.mkstemp(prefix="download-", suffix=".json", dir=base)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(job, handle)
        downloads.write_status(base, job["id"], state="running", done=0, total=0)
        log_fd = backup_engine.private_log(path + ".log")  # 0600, a day
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "db_backup_suite.lib.downloads"]
                + ["--job-file", path],
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                start_new_session=True,
                env=backup_engine.child_env(),
            )
        finally:
            os.close(log_fd)
        backup_engine.reap_when_done(proc)  # never left a zombie
        previous = self.sudo().prepare_id
        if previous:
            downloads.remove(base, previous)
        self.sudo().write(
            {
                "prepare_id": job["id"],
                "password_sealed": False,
                "token_digest": False,
                "token_expires": False,
            }
        )
        return job["id"]

    @api.model
    def _remove_stale_files(self):
        """Prepared downloads a day old (never fetched, or served by the
        proxy) are removed (daily cron), with the output logs of detached
        preparations and restores a day old."""
        backup_engine.remove_stale_logs()
        return downloads.remove_stale(backup_engine.jobs_dir())

    def _action_open(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "views": [(False, "form")],
            "target": "new",
            "name": self.env._("Download with a Password"),
        }

    # -- actions ---------------------------------------------------------------
    def action_download(self):
        """First the preparation (the dialog follows it), then, once the
        file is ready, the one-time link to it."""
        self.ensure_one()
        self.env["db.backup.run"]._check_restore_access()
        self._check_own()
        if self.run_id.sudo().state not in ("done", "partial"):
            raise UserError(self.env._("Only a stored backup can be downloaded."))
        state = self._prepare_status()["state"]
        if state == "running":
            return self._action_open()
        if state != "done":
            if not self.sudo().password_sealed:
                raise UserError(self.env._("Type the password (twice) first."))
            self._start_prepare()
            return self._action_open()
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
