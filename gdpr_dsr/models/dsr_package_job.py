"""Background generation of a request's export package.

An officer's "Generate" queues a job; the cron (``_trigger()``) builds the
package as that officer (their rights, their records), tells their open
tabs where it stands through the bus (step, models and records done) and
ends with "Package ready" or the error. Only the server writes a job; an
officer reads their own jobs only (record rule), nobody else's.

The ZIP password, when one was typed, waits sealed with the server keyring
(bound to this database and to this purpose) while the job is queued, and
the seal is erased as soon as the job starts.
"""

import base64
import contextlib
import io
import logging
from datetime import timedelta

from odoo import api, fields, models, modules
from odoo.exceptions import AccessError, UserError
from odoo.tools import SQL

from odoo.addons.audit_export.tools.suite_errors import suite_error_message

from suite_core import keyring as suite_keyring
from suite_core import streamcrypt

_logger = logging.getLogger(__name__)

#: Bus notification type of a package job's progress and end (static/src).
BUS_PACKAGE = "gdpr_dsr/package_job"
#: What a queued job's password is sealed for (with this database's uuid).
PASSWORD_PURPOSE = "dsr-package-password"
#: A job still running this long after it started was killed with its worker.
STALE_AFTER = timedelta(hours=2)
ACTIVE_STATES = ("queued", "running")


class DsrPackageJob(models.Model):
    _name = "dsr.package.job"
    _description = "Data Subject Request: export package job"
    _order = "id desc"

    request_id = fields.Many2one(
        "dsr.request", required=True, readonly=True, ondelete="cascade", index=True
    )
    user_id = fields.Many2one(
        "res.users", string="Requested by", required=True, readonly=True, index=True
    )
    state = fields.Selection(
        [
            ("queued", "Queued"),
            ("running", "Running"),
            ("done", "Package ready"),
            ("failed", "Failed"),
        ],
        required=True,
        default="queued",
        readonly=True,
    )
    step = fields.Char(readonly=True)
    progress = fields.Float(readonly=True)
    models_done = fields.Integer(readonly=True)
    models_total = fields.Integer(readonly=True)
    records_done = fields.Integer(readonly=True)
    records_total = fields.Integer(readonly=True)
    error_message = fields.Text(readonly=True)
    started_at = fields.Datetime(readonly=True)
    done_at = fields.Datetime(readonly=True)
    password_protected = fields.Boolean(readonly=True)
    # the ZIP password sealed with the server keyring, while queued only
    password_sealed = fields.Binary(
        attachment=False, readonly=True, prefetch=False, groups="base.group_system"
    )

    def _compute_display_name(self):
        for job in self:
            job.display_name = self.env._(
                "Export package of %(ref)s", ref=job.sudo().request_id.name
            )

    # -- password seal -------------------------------------------------------------
    @api.model
    def _seal_password(self, password):
        """``password`` encrypted with the server keyring, bound to this
        database (tenant) and to queued package passwords (purpose)."""
        Request = self.env["dsr.request"]
        sealed = io.BytesIO()
        writer = streamcrypt.EncryptingWriter(
            sealed,
            keyring=Request._keyring(),
            tenant=Request._database_uuid(),
            purpose=PASSWORD_PURPOSE,
        )
        writer.write(password.encode("utf-8"))
        writer.close()
        return base64.b64encode(sealed.getvalue())

    def _take_password(self):
        """Open the sealed password and erase the seal (``None`` without one)."""
        self.ensure_one()
        job = self.sudo()
        if not job.password_protected:
            return None
        sealed = job.password_sealed
        job.write({"password_sealed": False})
        if not sealed:
            raise UserError(self.env._("The password of this package is lost."))
        Request = self.env["dsr.request"]
        try:
            reader = streamcrypt.DecryptingReader(
                io.BytesIO(base64.b64decode(sealed)),
                keyring=Request._keyring(),
                tenant=Request._database_uuid(),
                purpose=PASSWORD_PURPOSE,
            )
            return reader.read().decode("utf-8")
        except suite_keyring.StreamCryptError as exc:
            raise UserError(
                self.env._(
                    "The password of this package cannot be opened: %(error)s",
                    error=suite_error_message(self.env, exc),
                )
            ) from exc

    # -- queue ---------------------------------------------------------------------
    @api.model
    def _queue(self, request, password=None):
        """Queue a package job of ``request`` for the current officer (after
        the caller's checks); the cron runs it."""
        busy = self.sudo().search(
            [("request_id", "=", request.id), ("state", "in", ACTIVE_STATES)],
            limit=1,
        )
        if busy:
            raise UserError(
                self.env._(
                    "Request %(ref)s: an export package is already being generated.",
                    ref=request.name,
                )
            )
        vals = {"request_id": request.id, "user_id": self.env.uid, "state": "queued"}
        if password:
            vals.update(
                password_protected=True, password_sealed=self._seal_password(password)
            )
        vals["step"] = self.env._("Waiting for the server")
        job = self.sudo().create(vals)
        request._audit("package_queued", password_protected=bool(password))
        self.env.ref("gdpr_dsr.dsr_package_job_cron").sudo()._trigger()
        job._send_update()
        return job.sudo(False)

    # -- bus -----------------------------------------------------------------------
    def _payload(self, **values):
        job = self.sudo()
        payload = {
            "id": job.id,
            "request_id": job.request_id.id,
            "request_name": job.request_id.name,
            "state": job.state,
            "step": job.step or "",
            "progress": job.progress,
            "models_done": job.models_done,
            "models_total": job.models_total,
            "records_done": job.records_done,
            "records_total": job.records_total,
            "error": job.error_message or "",
            "final": job.state not in ACTIVE_STATES,
        }
        payload.update(values)
        return payload

    def _send_update(self, **values):
        """Tell the requesting officer's open tabs (their own bus channel)
        where the job stands; the message leaves with the commit."""
        self.sudo().user_id._bus_send(BUS_PACKAGE, self._payload(**values))

    def _report_progress(self, step, progress, **counts):
        """Record and send one step, through a short transaction of its own:
        the officer sees it while the package's transaction is still open."""
        self.ensure_one()
        values = {"step": step, "progress": round(progress, 1), **counts}
        payload = self._payload(**values)
        partner = self.sudo().user_id.partner_id
        assignments = SQL(", ").join(
            SQL("%s = %s", SQL.identifier(name), value)
            for name, value in values.items()
        )
        if self._in_test() and not self.env.registry.in_test_mode():
            # a test without the registry's test cursor: never commit from it
            cursor = contextlib.nullcontext(self.env.cr)
        else:
            cursor = self.env.registry.cursor()
        with cursor as cr:
            cr.execute(
                SQL("UPDATE dsr_package_job SET %s WHERE id = %s", assignments, self.id)
            )
            self.env(cr=cr, su=True)["bus.bus"]._sendone(partner, BUS_PACKAGE, payload)

    # -- run -------------------------------------------------------------------------
    @api.model
    def _in_test(self):
        return bool(modules.module.current_test)

    @api.model
    def _cron_run_queued_jobs(self):
        """Run the oldest queued job; the cron runs again while more wait."""
        self._reap_stale()
        self.flush_model(["state"])
        # SKIP LOCKED: two cron workers never take the same job
        self.env.cr.execute(
            SQL(
                "SELECT id FROM dsr_package_job WHERE state = 'queued' "
                "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
        )
        row = self.env.cr.fetchone()
        job = self.sudo().browse(row[0] if row else [])
        if not job:
            return
        job._run()
        if self.sudo().search_count([("state", "=", "queued")]):
            self.env.ref("gdpr_dsr.dsr_package_job_cron").sudo()._trigger()

    def _run(self):
        """Build the package as the officer who asked for it; record and
        tell the end. A failure leaves no package: everything the build
        wrote is rolled back, the previous package (if any) stays."""
        self.ensure_one()
        job = self.sudo()
        owner = job.user_id
        try:
            password = job._take_password()
        except UserError as exc:
            password, opening_error = None, exc
        else:
            opening_error = None
        # the steps are the officer's to read: in their language
        owner_env = job.with_user(owner).with_context(lang=owner.lang).env
        job.write(
            {
                "state": "running",
                "started_at": fields.Datetime.now(),
                "step": owner_env._("Starting"),
            }
        )
        job._send_update()
        # the job is "running" and its seal gone, whatever happens next
        self._commit()
        request = job.request_id.with_user(owner).with_context(
            lang=owner.lang, tz=owner.tz
        )
        try:
            if opening_error:
                raise opening_error
            with self.env.cr.savepoint():
                request._generate_package(
                    password=password, progress=job._report_progress
                )
        except Exception as exc:  # every failure is the end of the job
            job._fail(exc)
            return False
        finally:
            password = None
        if not self._in_test():
            # the package is committed; the job row, updated by the progress
            # transactions meanwhile, is written in a new transaction
            self.env.cr.commit()  # pylint: disable=invalid-commit
        job.invalidate_recordset()  # the progress rows were written aside
        job.write(
            {
                "state": "done",
                "progress": 100.0,
                "done_at": fields.Datetime.now(),
                "step": owner_env._("Package ready"),
                "error_message": False,
            }
        )
        job._notify_end()
        return True

    def _fail(self, exc):
        job = self.sudo()
        if isinstance(exc, UserError | AccessError):
            error = str(exc)
        else:
            _logger.exception("DSR package job %s failed", job.id)
            error = self.env._(
                "The package could not be generated: %(error)s",
                error=suite_error_message(self.env, exc),
            )
        if not self._in_test():
            # nothing of the build stays; the job row is written afresh
            self.env.cr.rollback()
        job.write(
            {
                "state": "failed",
                "done_at": fields.Datetime.now(),
                "error_message": error,
                "password_sealed": False,
                "step": False,
            }
        )
        job.request_id._audit("package_failed", result="failure", error=error[:300])
        job._notify_end()

    def _notify_end(self):
        """The final bus message, with the title and text of the officer's
        notification ("Package ready" with a Download button, or the error)."""
        job = self.sudo()
        owner_env = job.with_user(job.user_id).with_context(lang=job.user_id.lang).env
        if job.state == "done":
            title = owner_env._("Your package is ready")
            message = owner_env._(
                "The export package of %(ref)s is ready to download.",
                ref=job.request_id.name,
            )
        else:
            title = owner_env._("Export package failed")
            message = owner_env._(
                "The export package of %(ref)s could not be generated: %(error)s",
                ref=job.request_id.name,
                error=job.error_message,
            )
        job._send_update(final=True, title=title, message=message)

    @api.model
    def _commit(self):
        # a background job: its "running" state must be visible to the
        # officer's screens while it works (never inside tests)
        if not self._in_test():
            self.env.cr.commit()  # pylint: disable=invalid-commit

    @api.model
    def _reap_stale(self):
        """Jobs left running by a killed worker fail (their seal is gone)."""
        stale = self.sudo().search(
            [
                ("state", "=", "running"),
                ("started_at", "<", fields.Datetime.now() - STALE_AFTER),
            ]
        )
        for job in stale:
            job.write(
                {
                    "state": "failed",
                    "done_at": fields.Datetime.now(),
                    "error_message": self.env._(
                        "The server stopped while generating the package; generate "
                        "it again."
                    ),
                    "password_sealed": False,
                }
            )
            job._notify_end()
