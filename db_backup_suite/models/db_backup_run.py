import json
import logging
import os
from datetime import UTC, timedelta

import psycopg2
from markupsafe import Markup

from odoo import SUPERUSER_ID, api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import SQL, format_datetime

from . import backup_engine

_logger = logging.getLogger(__name__)

ACTIVE_STATES = ("queued", "running")
#: runs whose archive is stored at one destination at least (``partial``:
#: some destinations failed, each copy says why)
STORED_STATES = ("done", "partial")
#: bus notification type of a run's progress (static/src/backend)
BUS_PROGRESS = "db_backup_suite/progress"
BACKUP_KINDS = ("scheduled", "manual", "pre_restore")
PRE_RESTORE_KEEP_DAYS = 7
STATUS_WINDOW = 30


def human_size(size):
    size = float(size or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (size, unit)
        size /= 1024
    return "%.1f TB" % size  # pragma: no cover


class DbBackupRun(models.Model):
    """One backup: its state, archive name, copies and manifest.

    Every field is the server's (the engine's result, the cron's progress):
    a run is created and written by server methods only, never from a
    user's values (``db.backup.guarded.mixin``); its state gates a restore
    and its name is what a restore and a retention delete act on.
    """

    _name = "db.backup.run"
    _inherit = ["db.backup.guarded.mixin"]
    _description = "Database Backup"
    _order = "date desc, id desc"
    _rec_name = "name"
    _user_create_fields = ()
    _user_write_fields = ()
    _server_creates_only = True

    name = fields.Char(string="File", readonly=True, copy=False)
    date = fields.Datetime(
        string="Date/Time", default=fields.Datetime.now, readonly=True, index=True
    )
    kind = fields.Selection(
        [
            ("scheduled", "Scheduled"),
            ("manual", "Manual"),
            ("pre_restore", "Pre-restore"),
            ("found", "Found at destination"),
            ("sandbox_refresh", "Daily sandbox refresh"),
            ("drill", "Restore drill"),
        ],
        required=True,
        default="manual",
        readonly=True,
    )
    label = fields.Char(string="Frequency", readonly=True)
    schedule_id = fields.Many2one(
        "db.backup.schedule", readonly=True, ondelete="set null"
    )
    state = fields.Selection(
        [
            ("queued", "Queued"),
            ("running", "Running"),
            ("done", "Done"),
            ("partial", "Partial"),
            ("failed", "Failed"),
            ("deleted", "Deleted"),
        ],
        default="queued",
        required=True,
        readonly=True,
        index=True,
    )
    size = fields.Float(
        string="Size (bytes)",
        readonly=True,
        digits=(20, 0),
        help="Archive size in bytes.",
    )
    size_display = fields.Char(string="Size", compute="_compute_size_display")
    # what the run cost at its destinations, beside what it holds: a full
    # archive costs its size at each destination, an incremental snapshot
    # only the data its destination did not hold yet (the engine's result)
    new_data = fields.Float(
        string="New data (bytes)",
        readonly=True,
        digits=(20, 0),
        help="Bytes this backup added at its destinations: a full archive's "
        "size at each destination, for an incremental snapshot only the data "
        "the destination did not hold yet.",
    )
    new_data_display = fields.Char(string="New data", compute="_compute_size_display")
    logical_size = fields.Float(
        string="Logical size (bytes)",
        readonly=True,
        digits=(20, 0),
        help="The database dump and the filestore before compression: what a "
        "restore of this backup brings back.",
    )
    logical_size_display = fields.Char(
        string="Logical size", compute="_compute_size_display"
    )
    storage = fields.Selection(
        [
            ("full", "Full archive"),
            ("incremental", "Incremental snapshot"),
            ("mixed", "Full archive and snapshots"),
        ],
        readonly=True,
        help="How the destinations of this backup store it.",
    )
    encryption = fields.Selection(
        [("encrypted", "Encrypted"), ("plaintext", "Plaintext (legacy)")],
        string="Encrypted",
        readonly=True,
    )
    key_id = fields.Char(readonly=True)
    archive_created_at = fields.Datetime(readonly=True)
    odoo_version = fields.Char(readonly=True)
    manifest_json = fields.Text(readonly=True)
    copy_ids = fields.One2many(
        "db.backup.copy", "run_id", string="Stored copies", readonly=True
    )
    copy_status = fields.Char(string="Copies", compute="_compute_copy_status")
    progress = fields.Float(readonly=True)
    progress_message = fields.Char(readonly=True)
    error = fields.Text(readonly=True)
    warning = fields.Text(readonly=True)
    summary = fields.Char(string="Error or warning", compute="_compute_summary")
    pid = fields.Integer(readonly=True, copy=False)
    started_at = fields.Datetime(readonly=True)
    finished_at = fields.Datetime(readonly=True)
    keep_until = fields.Datetime(
        readonly=True, help="Pre-restore copies are deleted after this date."
    )
    requested_by_id = fields.Many2one("res.users", readonly=True)
    database = fields.Char(readonly=True, default=lambda self: self.env.cr.dbname)

    def init(self):
        # One backup at a time per database, enforced by PostgreSQL itself: a
        # second "Backup Now" racing the first fails on this index instead of
        # starting a second run.
        self.env.cr.execute(
            SQL(
                "CREATE UNIQUE INDEX IF NOT EXISTS db_backup_run_one_active "
                "ON db_backup_run ((true)) "
                "WHERE state IN ('queued', 'running') "
                "AND kind IN ('scheduled', 'manual', 'pre_restore')"
            )
        )

    @api.depends("size", "new_data", "logical_size")
    def _compute_size_display(self):
        for run in self:
            run.size_display = human_size(run.size) if run.size else ""
            run.new_data_display = (
                human_size(run.new_data) if run.new_data or run.storage else ""
            )
            run.logical_size_display = (
                human_size(run.logical_size) if run.logical_size else ""
            )

    @api.depends("error", "warning")
    def _compute_summary(self):
        for run in self:
            text = (run.error or run.warning or "").strip()
            run.summary = text.splitlines()[0][:200] if text else False

    @api.depends("copy_ids.state", "copy_ids.destination_name")
    def _compute_copy_status(self):
        for run in self:
            run.copy_status = ", ".join(c._status_line() for c in run.copy_ids)

    @api.depends("label", "date")
    def _compute_display_name(self):
        for run in self:
            run.display_name = run.name or "%s %s" % (
                run.label or run.kind,
                format_datetime(self.env, run.date) if run.date else "",
            )

    # ------------------------------------------------------------------
    # Access helpers
    # ------------------------------------------------------------------
    @api.model
    def _check_group(self, xmlid):
        if not self.env.su and not self.env.user.has_group(xmlid):
            raise AccessError(
                self.env._(
                    "This action requires the group %(group)s.",
                    group=self.env.ref(xmlid).sudo().full_name,
                )
            )

    @api.model
    def _check_restore_access(self):
        self._check_group("db_backup_suite.backup_group_restore")

    @api.model
    def _check_operator_access(self):
        self._check_group("db_backup_suite.backup_group_operator")

    @api.model
    def _check_admin_access(self):
        """Settings administrators (``base.group_system``): destinations,
        schedules, deleting archives, rescanning the destinations."""
        if not self.env.su and not self.env.user.has_group("base.group_system"):
            raise AccessError(self.env._("Only administrators (Settings) may do this."))

    # ------------------------------------------------------------------
    # Backup Now
    # ------------------------------------------------------------------
    @api.model
    def action_backup_now(self, res_ids=None):
        """Queue a backup of this database (Backup Now).

        ``res_ids``: what a list's header button sends (the selected rows,
        often none); a backup is of the whole database, so they are ignored.
        """
        self._check_operator_access()
        self._check_destinations()
        run = self.sudo()._queue_backup(kind="manual", user=self.env.user)
        if not run:
            message = self.env._(
                "A backup is already queued or running; it was not started twice."
            )
            kind = "warning"
        else:
            message = self.env._(
                "Backup queued: it runs in the background and this page follows it."
            )
            kind = "success"
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "message": message,
                "type": kind,
                "next": {"type": "ir.actions.client", "tag": "soft_reload"},
            },
        }

    @api.model
    def backup_now_state(self):
        """Whether Backup Now can run here (the lists hide their button when
        it cannot): a keyring and an active destination. Booleans only."""
        self._check_operator_access()
        return {
            "keyring": backup_engine.keyring_status()[0],
            "destination": bool(
                self.env["db.backup.destination"]
                .sudo()
                .search_count([("active", "=", True)], limit=1)
            ),
        }

    @api.model
    def _check_destinations(self, schedule=None):
        """A backup needs somewhere to go: refused at once, with what to do,
        rather than failing in the background a moment later."""
        if schedule is not None:
            destinations = schedule.sudo().destination_ids.filtered("active")
        else:
            destinations = (
                self.env["db.backup.destination"].sudo().search([("active", "=", True)])
            )
        if destinations:
            return destinations
        if schedule is not None:
            message = self.env._(
                "The schedule %(name)s has no active destination: add one to the "
                "schedule (Database Backups → Configuration → Schedules) first.",
                name=schedule.display_name,
            )
        else:
            message = self.env._(
                "No backup destination is configured: an administrator adds one "
                "in Database Backups → Configuration → Destinations first."
            )
        raise UserError(message)

    @api.model
    def _queue_backup(self, schedule=None, kind="manual", user=None):
        """Create a queued run and wake the cron; an empty recordset when a
        backup of this database is already queued or running."""
        ok, reason = backup_engine.keyring_status()
        if not ok:
            raise UserError(
                self.env._(
                    "Backups cannot run: the server encryption keyring is missing. "
                    "%(reason)s",
                    reason=reason,
                )
            )
        if self.search_count(
            [("state", "in", ACTIVE_STATES), ("kind", "in", BACKUP_KINDS)]
        ):
            return self.browse()
        vals = {
            "kind": kind,
            "state": "queued",
            "label": schedule._label() if schedule else kind.replace("_", "-"),
            "schedule_id": schedule.id if schedule else False,
            "requested_by_id": (user or self.env.user).id,
        }
        if kind == "pre_restore":
            vals["keep_until"] = fields.Datetime.now() + timedelta(
                days=PRE_RESTORE_KEEP_DAYS
            )
        try:
            with self.env.cr.savepoint():
                run = self.create(vals)
        except psycopg2.errors.UniqueViolation:
            _logger.info("Backup not queued: another one is queued or running")
            return self.browse()
        self.env.ref("db_backup_suite.ir_cron_db_backup_process")._trigger()
        run._send_progress()
        return run

    # ------------------------------------------------------------------
    # Cron: due schedules, queued runs, late alerts
    # ------------------------------------------------------------------
    @api.model
    def _cron_process(self):
        self._reap_stale_runs()
        self._queue_due_schedules()
        if not self.env.registry.in_test_mode():
            # The runs are updated from separate cursors while the child
            # process works: they must be committed first.
            self.env.cr.commit()
        self._run_queued()
        self.env["db.backup.schedule"]._run_due_refreshes()
        self.env["db.backup.schedule"].search([("active", "=", True)])._check_late()

    @api.model
    def _queue_due_schedules(self, now=None):
        """Queue a run for every due schedule; returns the queued runs."""
        now = now or fields.Datetime.now()
        queued = self.browse()
        keyring_ok = backup_engine.keyring_status()[0]
        for schedule in self.env["db.backup.schedule"]._due(now):
            if schedule.kind == "sandbox_refresh":
                continue  # a restore, not a backup: _run_due_refreshes
            if keyring_ok:
                run = self._queue_backup(schedule=schedule, kind="scheduled")
                if not run:
                    continue  # another backup is busy: try at the next tick
                queued |= run
            else:
                self._record_refused(schedule)
            schedule.write({"last_run": now})
            schedule._reschedule(now)
        return queued

    @api.model
    def _run_queued(self):
        """Run the queued backups one after the other (in child processes)."""
        queued = self.search(
            [("state", "=", "queued"), ("kind", "in", BACKUP_KINDS)], order="id"
        )
        cron = self.env["ir.cron"]
        for done, run in enumerate(queued):
            cron._notify_progress(done=done, remaining=len(queued) - done)
            run._execute_backup()
        return queued

    def _record_refused(self, schedule):
        run = self.create(
            {
                "kind": "scheduled",
                "state": "failed",
                "label": schedule._label(),
                "schedule_id": schedule.id,
                "error": self.env._(
                    "Backups cannot run: the server keyring is missing."
                ),
                "finished_at": fields.Datetime.now(),
            }
        )
        run._send_alert("failed")
        return run

    def _reap_stale_runs(self):
        """A run whose child process vanished (server restart) is failed."""
        for run in self.search([("state", "=", "running")]):
            if run.pid and not _pid_alive(run.pid):
                run._write_detached(
                    {
                        "state": "failed",
                        "error": self.env._(
                            "The backup process (pid %(pid)s) stopped without a result "
                            "(server restart?). No archive was kept.",
                            pid=run.pid,
                        ),
                        "finished_at": fields.Datetime.now(),
                    }
                )

    def _write_detached(self, vals, then=None):
        """Write on this run in its own committed transaction, so progress is
        visible while the job runs and a later failure cannot roll it back.

        ``then(run)`` runs in that same transaction (the caller's snapshot
        does not see what the detached transaction wrote).
        """
        self.ensure_one()
        with self.env.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            run = env[self._name].browse(self.id)
            run.write(vals)
            if then:
                then(run)
            run._send_progress()
        self.invalidate_recordset()

    def _progress_payload(self):
        """What the backups pages show of this run while it works and when
        it ends (``static/src/backend``): no secret, only what an operator
        reads in the list anyway."""
        self.ensure_one()
        error = (self.error or "").strip()
        return {
            "model": self._name,
            "id": self.id,
            # no date: this is sent from the server's cursors (UTC), the
            # pages show dates in each user's time zone
            "name": self.env._("Backup %(label)s", label=self.label or self.kind),
            "state": self.state,
            "state_label": dict(
                self._fields["state"]._description_selection(self.env)
            ).get(self.state, self.state),
            "progress": self.progress or 0.0,
            "message": self.progress_message or "",
            "size": self.size_display or "",
            "error": error.splitlines()[0][:300] if error else "",
            "final": self.state not in ACTIVE_STATES,
            "requested_by_id": self.requested_by_id.id or False,
        }

    def _send_progress(self):
        """Tell every open backups page where these runs stand (bus): the
        channel of the Backup Operator group, which Backup Restore users
        hold too; the message leaves when the transaction commits."""
        group = self.env.ref("db_backup_suite.backup_group_operator").sudo()
        for run in self:
            group._bus_send(BUS_PROGRESS, run._progress_payload())

    def _expected_size(self):
        """Size of the last stored archive of the same kind (schedule or
        manual), to turn the bytes written so far into an estimated
        percentage; 0 when there is none."""
        self.ensure_one()
        domain = [("state", "in", ("done", "partial", "deleted")), ("size", ">", 0)]
        if self.schedule_id:
            domain.append(("schedule_id", "=", self.schedule_id.id))
        last = self.sudo().search(domain, limit=1)
        return last.size or 0.0

    def _backup_payload(self):
        self.ensure_one()
        destinations = self._backup_destinations()
        if not destinations:
            raise UserError(self.env._("No active backup destination is configured."))
        dbname = self.env.cr.dbname
        sinks = []
        # A destination whose settings cannot be used (host key not
        # confirmed, unreadable credentials) fails alone: the others still
        # get the archive and the run says why (``unusable``).
        unusable = []
        for dest in destinations:
            try:
                config = dest._sink_config()
            except Exception as exc:
                unusable.append(
                    {
                        "destination_id": dest.id,
                        "destination": dest.name,
                        "ok": False,
                        "name": None,
                        "size": 0,
                        "error": str(exc) or repr(exc),
                    }
                )
                continue
            sinks.append({"destination_id": dest.id, "config": config})
        if not sinks:
            raise UserError(
                "\n".join("%s: %s" % (u["destination"], u["error"]) for u in unusable)
            )
        icp = self.env["ir.config_parameter"].sudo()
        return {
            "action": "backup",
            "db": backup_engine.db_params(dbname),
            "filestore": backup_engine.filestore_dir(dbname),
            "label": self.label,
            "archive_label": self._archive_label(),
            "kind": self.kind,
            "tenant": icp.get_param("database.uuid", ""),
            "sinks": sinks,
            "unusable": unusable,
            "audit_head": backup_engine.audit_head(dbname),
        }

    def _archive_label(self):
        self.ensure_one()
        if self.schedule_id:
            return self.schedule_id._archive_label()
        return "pre-restore" if self.kind == "pre_restore" else "manual"

    def _backup_destinations(self):
        self.ensure_one()
        if self.schedule_id:
            return self.schedule_id.destination_ids.filtered("active")
        return self.env["db.backup.destination"].search([("active", "=", True)])

    def _execute_backup(self):
        """Run the engine for this queued run in a child process and record it."""
        self.ensure_one()
        try:
            payload = self._backup_payload()
            unusable = payload.pop("unusable", [])
        except UserError as exc:
            self._finish_failed(str(exc))
            return False
        self._write_detached(
            {
                "state": "running",
                "started_at": fields.Datetime.now(),
                "progress": 0,
                "progress_message": self.env._("Starting"),
            }
        )
        proc = None
        try:
            proc = backup_engine.spawn_job(payload)
            self._write_detached({"pid": proc.pid})
            result, error, stderr = self._supervise(proc)
        except Exception as exc:
            _logger.exception("Backup %s: could not run the engine", self.id)
            self._finish_failed(str(exc))
            return False
        if error or not result:
            message = (error or {}).get("message") or self.env._(
                "The backup process failed: %(tail)s", tail=stderr[-1000:]
            )
            self._finish_failed(
                message, copies=((error or {}).get("copies") or []) + unusable
            )
            return False
        result["copies"] = list(result.get("copies") or []) + unusable
        self._finish_done(result)
        return True

    def _supervise(self, proc):
        result = error = None
        last_write = 0.0
        expected = self._expected_size()
        try:
            for event in backup_engine.iter_events(proc):
                kind = event.get("event")
                if kind == "progress":
                    now = _monotonic()
                    if now - last_write >= 2:
                        last_write = now
                        done, total = event.get("done") or 0, event.get("total")
                        # The engine counts the archive's bytes written so far
                        # (no total: the compressed size is known at the end);
                        # the last archive's size gives an estimate, kept
                        # below 100 until the run is really done.
                        total = total or expected
                        step = (event.get("message") or "").strip()
                        self._write_detached(
                            {
                                "progress": min(100.0 * done / total, 99.0)
                                if total
                                else 0,
                                "progress_message": (
                                    "%s · %s" % (step, human_size(done))
                                    if done and step
                                    else step or human_size(done)
                                )[:200],
                            }
                        )
                        if total:
                            self.env["ir.cron"]._notify_progress(
                                done=int(done), remaining=max(int(total - done), 0)
                            )
                elif kind == "result":
                    result = event
                elif kind == "error":
                    error = event
                elif kind == "log":
                    _logger.info("backup job %s: %s", self.id, event.get("message"))
        finally:
            proc.stdout.close()
            stderr = proc.stderr.read().decode("utf-8", "replace")
            proc.stderr.close()
            returncode = proc.wait()
        if returncode and not error:
            error = {
                "message": self.env._(
                    "The backup process exited with code %(code)s: %(tail)s",
                    code=returncode,
                    tail=stderr.strip()[-800:],
                )
            }
        return result, error, stderr

    def _finish_failed(self, message, copies=None):
        if copies:  # no destination stored it: each one's reason
            reasons = "\n".join(
                "%s: %s" % (c.get("destination") or "?", c.get("error") or "?")
                for c in copies
                if not c.get("ok")
            )
            if reasons and reasons not in message:
                message = "%s\n%s" % (message, reasons)
        self._write_detached(
            {
                "state": "failed",
                "error": message,
                "finished_at": fields.Datetime.now(),
                "progress_message": False,
            },
            then=lambda run: run._after_failed(message),
        )

    def _after_failed(self, message):
        self.env["audit.event"].log_event(
            "backup",
            record=self,
            result="failure",
            details={"kind": self.kind, "label": self.label},
            message=message[:500],
        )
        self._send_alert("failed")

    def _finish_done(self, result):
        copies = result.get("copies") or []
        stored = [c for c in copies if c.get("ok")]
        manifest = result.get("manifest") or {}
        vals = {
            # some destinations failed, others hold the archive: partial
            "state": ("partial" if len(stored) < len(copies) else "done")
            if stored
            else "failed",
            "name": result.get("name"),
            "size": result.get("size") or 0,
            "encryption": "encrypted" if result.get("encrypted", True) else "plaintext",
            "key_id": result.get("key_id"),
            "archive_created_at": _parse_dt(result.get("created_at")),
            "odoo_version": self.env["db.backup.restore.wizard"]._manifest_odoo_version(
                manifest
            ),
            "manifest_json": json.dumps(manifest, default=str),
            "finished_at": fields.Datetime.now(),
            "progress": 100.0,
            "progress_message": False,
            "warning": "\n".join(result.get("warnings") or []) or False,
        }
        vals.update(self._storage_vals(result, stored))
        self._write_detached(vals, then=lambda run: run._after_done(copies))

    @api.model
    def _storage_vals(self, result, stored):
        """New data, logical size and storage kind of a run from the
        engine's result (its copies say what each cost at its destination;
        a result of an older engine: the archive's size at each)."""
        kinds = {c.get("storage") or "full" for c in stored}
        manifest = result.get("manifest") or {}
        logical = result.get("logical_size") or (
            int((manifest.get("dump") or {}).get("size") or 0)
            + int((manifest.get("filestore") or {}).get("bytes") or 0)
        )
        return {
            "new_data": sum(c.get("new_data", c.get("size")) or 0 for c in stored),
            "logical_size": logical,
            "storage": (kinds.pop() if len(kinds) == 1 else "mixed")
            if kinds
            else False,
        }

    def _after_done(self, copies):
        dests = (
            self.env["db.backup.destination"]
            .with_context(active_test=False)
            .browse([c["destination_id"] for c in copies if c.get("destination_id")])
            .exists()
        )
        by_id = {d.id: d for d in dests}
        self.env["db.backup.copy"].create(
            [
                {
                    "run_id": self.id,
                    "destination_id": c.get("destination_id")
                    if c.get("destination_id") in by_id
                    else False,
                    "destination_name": by_id[c["destination_id"]].name
                    if c.get("destination_id") in by_id
                    else c.get("destination_name"),
                    "dest_type": by_id[c["destination_id"]].dest_type
                    if c.get("destination_id") in by_id
                    else False,
                    "state": "done" if c.get("ok") else "failed",
                    "object_name": c.get("name"),
                    "size": c.get("size") or 0,
                    "error": c.get("error"),
                }
                for c in copies
            ]
        )
        failed = self.copy_ids.filtered(lambda c: c.state == "failed")
        stored = self.copy_ids.filtered(lambda c: c.state == "done")
        if failed:
            lines = "\n".join("%s: %s" % (c.destination_name, c.error) for c in failed)
            if stored:
                self.warning = "\n".join(
                    filter(
                        None,
                        [
                            self.warning,
                            self.env._(
                                "%(n)s of %(t)s destinations failed: %(names)s",
                                n=len(failed),
                                t=len(self.copy_ids),
                                names=", ".join(
                                    c.destination_name or "?" for c in failed
                                ),
                            ),
                            lines,
                        ],
                    )
                )
            else:
                self.error = lines
        self.env["audit.event"].log_event(
            "backup",
            record=self,
            result="success" if stored else "failure",
            details={
                "kind": self.kind,
                "label": self.label,
                "file": self.name,
                "size": self.size,
                "copies": len(stored),
                "failed": len(failed),
            },
            message=(self.error or self.warning or "")[:500] or None,
        )
        if failed:
            self._send_alert("failed")
        if stored and self.size > self._size_threshold():
            self._send_alert("large")

    def _size_threshold(self):
        """Alert threshold in bytes (the schedule's, else the system default)."""
        self.ensure_one()
        megabytes = self.schedule_id.alert_size_mb if self.schedule_id else None
        if megabytes is None or megabytes is False:
            megabytes = int(
                self.env["ir.config_parameter"]
                .sudo()
                .get_param("db_backup_suite.alert_size_mb", 500)
            )
        return megabytes * 1024 * 1024

    # ------------------------------------------------------------------
    # Alerts
    # ------------------------------------------------------------------
    def _alert_recipients(self):
        self.ensure_one()
        partners = self.schedule_id.alert_partner_ids
        if not partners:
            partners = (
                self.env.ref("base.group_system")
                .sudo()
                .users.filtered(lambda u: u.active and u.email and not u.share)
                .partner_id
            )
        return partners.filtered("email")

    def _send_alert(self, alert):
        """Mail the recipients about this run (``failed`` or ``large``)."""
        template = self.env.ref("db_backup_suite.mail_template_backup_%s" % alert)
        for run in self:
            partners = run._alert_recipients()
            if not partners:
                _logger.warning(
                    "Backup alert %s for run %s: nobody to mail", alert, run.id
                )
                continue
            mail_id = template.sudo().send_mail(
                run.id, email_values={"recipient_ids": [(6, 0, partners.ids)]}
            )
            reason = (run.error or run.warning or "").strip()
            if alert == "failed" and reason and mail_id:
                # a template kept from an older version (noupdate) may not
                # show the reason of a partial run: the mail always carries it
                mail = self.env["mail.mail"].sudo().browse(mail_id)
                if reason.splitlines()[0] not in (mail.body_html or ""):
                    mail.body_html = Markup("%s<pre>%s</pre>") % (
                        Markup(mail.body_html or ""),
                        reason,
                    )

    # ------------------------------------------------------------------
    # Leftovers of killed runs
    # ------------------------------------------------------------------
    @api.model
    def _cron_clean_leftovers(self):
        """Daily: remove what killed backups and restores of this database
        left at its destinations and on this server (temporary files,
        incomplete uploads, staging databases), as every backup does at its
        start. Only names the suite itself makes, and only runs the locks
        prove dead (``lib/cleanup.py``). Returns the engine's summary."""
        from odoo.addons.db_backup_suite.lib import cleanup

        dbname = self.env.cr.dbname
        destinations = self.env["db.backup.destination"].sudo().search([])
        sinks = []
        errors = []
        for dest in destinations:
            try:
                sinks.append((dest.id, dest._sink_config()))
            except Exception as exc:  # unreadable credentials: say so, go on
                errors.append("%s: %s" % (dest.name, exc))
        result = cleanup.clean_leftovers(
            sinks,
            dbname,
            pg=backup_engine.pg_params(),
            data_dir=backup_engine.data_dir(),
        )
        summary = result.as_dict()
        summary["errors"] = list(summary.get("errors") or []) + errors
        if result.removed or result.failed or summary["errors"]:
            _logger.info("Leftovers of killed runs of %s: %s", dbname, summary)
            self.env["audit.event"].log_event(
                "backup",
                res_model=self._name,
                result="failure" if result.failed or summary["errors"] else "success",
                details={"operation": "cleanup", **summary},
                message="Leftovers of killed runs: %s removed, %s failed"
                % (len(result.removed), len(result.failed)),
            )
        return summary

    # ------------------------------------------------------------------
    # Retention
    # ------------------------------------------------------------------
    @api.model
    def _cron_retention(self):
        """Delete what the engine's retention policy says, per schedule.

        The engine keeps the newest good backup whatever happens, expires
        ``pre-restore`` copies after 7 days and never touches ``manual`` ones
        nor any name that is not one of this database's archives.
        """
        from odoo.addons.db_backup_suite.lib import retention

        now = fields.Datetime.now()
        runs = self.search([("state", "in", STORED_STATES), ("name", "!=", False)])
        items = [_RetentionItem(run.name, True, run.id) for run in runs]
        doomed_ids = set()
        policies = [
            retention.RetentionPolicy(
                labels=frozenset(), pre_restore_days=PRE_RESTORE_KEEP_DAYS
            )
        ]
        for schedule in self.env["db.backup.schedule"].search([]):
            policies.append(schedule._retention_policy())
        for policy in policies:
            plan = retention.plan_retention(
                items, policy, now, database=self.env.cr.dbname
            )
            doomed_ids.update(item.run_id for item in plan.delete)
        doomed = self.browse(sorted(doomed_ids))
        doomed._delete_archives()
        return doomed

    def _delete_archives(self):
        """Delete each stored copy at its destination: a full archive is
        deleted, an incremental snapshot forgotten; then the repositories
        that lost snapshots are garbage-collected (``_collect_garbage``)."""
        from odoo.addons.db_backup_suite.lib import repository

        forgotten = self.env["db.backup.destination"]
        for run in self:
            errors = []
            for copy in run.copy_ids.filtered(lambda c: c.state == "done"):
                dest = copy.destination_id
                if not dest:
                    copy.state = "deleted"
                    continue
                try:
                    sink = dest._make_sink()
                    try:
                        sink.delete(copy.object_name)
                    finally:
                        sink.close()
                    copy.state = "deleted"
                    if repository.in_repository(copy.object_name):
                        forgotten |= dest
                except Exception as exc:
                    _logger.warning(
                        "Retention: cannot delete %s at %s: %s",
                        copy.object_name,
                        dest.name,
                        exc,
                    )
                    errors.append("%s: %s" % (dest.name, exc))
            if errors:
                run.warning = "\n".join(errors)
            else:
                run.state = "deleted"
            self.env["audit.event"].log_event(
                "backup",
                record=run,
                result="failure" if errors else "success",
                details={"operation": "retention_delete", "file": run.name},
                message="\n".join(errors) or False,
            )
        return self._collect_garbage(forgotten)

    @api.model
    def _gc_grace(self):
        """Seconds a new pack is spared by the garbage collection (a backup
        that outlived its repository lock may still be writing it):
        ``db_backup_suite.repository_gc_grace_hours``, 6 by default."""
        from odoo.addons.db_backup_suite.lib import repository

        value = (
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("db_backup_suite.repository_gc_grace_hours")
        )
        try:
            hours = float(value) if value not in (None, False, "") else None
        except ValueError:
            hours = None
        if hours is None or hours < 0:
            return repository.DEFAULT_GRACE
        return hours * 3600

    @api.model
    def _collect_garbage(self, destinations):
        """Garbage collection of this database's repositories at
        ``destinations``: packs no kept snapshot references are deleted
        (mostly dead ones repacked), under each repository's exclusive lock.
        A repository in use (a backup or restore holds its lock) is left for
        the next retention: nothing is lost meanwhile. Returns destination
        id -> bytes freed (None: not collected)."""
        from odoo.addons.db_backup_suite.lib import repository

        freed = {}
        grace = self._gc_grace()
        dbname = self.env.cr.dbname
        for dest in destinations:
            freed[dest.id] = None
            try:
                sink = dest._make_sink()
                try:
                    results = sink.collect_garbage(dbname, grace=grace)
                finally:
                    sink.close()
            except repository.RepositoryLockedError as exc:
                _logger.info("Garbage collection at %s postponed: %s", dest.name, exc)
                continue
            except Exception as exc:
                _logger.warning("Garbage collection at %s failed: %s", dest.name, exc)
                self.env["audit.event"].log_event(
                    "backup",
                    res_model=self._name,
                    result="failure",
                    details={
                        "operation": "garbage_collection",
                        "destination": dest.name,
                    },
                    message=str(exc)[:500],
                )
                continue
            freed[dest.id] = sum(
                r.freed_bytes - r.written_bytes for r in results.values()
            )
            problems = [p for r in results.values() for p in r.problems]
            self.env["audit.event"].log_event(
                "backup",
                res_model=self._name,
                result="failure" if problems else "success",
                details={
                    "operation": "garbage_collection",
                    "destination": dest.name,
                    "deleted_packs": sum(
                        len(r.deleted_packs) for r in results.values()
                    ),
                    "repacked_packs": sum(
                        len(r.repacked_packs) for r in results.values()
                    ),
                    "freed_bytes": freed[dest.id],
                    "problems": problems[:20],
                },
                message="Garbage collection at %s: %s freed"
                % (dest.name, human_size(freed[dest.id])),
            )
        return freed

    # ------------------------------------------------------------------
    # Restore entry points (the wizard does the work)
    # ------------------------------------------------------------------
    def action_open_restore_wizard(self):
        self.ensure_one()
        self._check_restore_access()
        if self.state not in STORED_STATES:
            raise UserError(self.env._("Only a completed backup can be restored."))
        wizard = self.env["db.backup.restore.wizard"].create({"run_id": self.id})
        return wizard._action_open()

    def action_open_download_wizard(self):
        self.ensure_one()
        self._check_restore_access()
        if self.state not in STORED_STATES:
            raise UserError(self.env._("Only a stored backup can be downloaded."))
        wizard = self.env["db.backup.download.wizard"].create({"run_id": self.id})
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Download with a Password"),
            "res_model": wizard._name,
            "res_id": wizard.id,
            "view_mode": "form",
            "target": "new",
        }

    def unlink(self):
        if any(run.state == "running" for run in self):
            raise UserError(self.env._("A running backup cannot be deleted."))
        for run in self:
            self.env["audit.event"].log_event(
                "backup", record=run, details={"operation": "delete", "file": run.name}
            )
        return super().unlink()

    def action_delete_archive(self):
        """Delete the archives at every destination, keep the row as deleted."""
        self._check_admin_access()
        self.check_access("unlink")
        self.sudo().filtered(lambda r: r.state in STORED_STATES)._delete_archives()
        return True

    # ------------------------------------------------------------------
    # Status panel
    # ------------------------------------------------------------------
    @api.model
    def _status_summary(self):
        runs = self.sudo()
        last_ok = runs.search(
            [
                ("state", "in", STORED_STATES + ("deleted",)),
                ("kind", "not in", ("sandbox_refresh", "drill")),
            ],
            limit=1,
        )
        next_runs = (
            self.env["db.backup.schedule"]
            .sudo()
            .search(
                [("active", "=", True), ("next_run", "!=", False)],
                order="next_run",
                limit=1,
            )
        )
        recent = runs.search([], limit=STATUS_WINDOW)
        problems = recent.filtered(lambda r: r.state == "failed" or r.warning)
        return {
            "last_ok": last_ok,
            "next_run": next_runs.next_run,
            "next_schedule": next_runs,
            # the newest proof that an archive restores (daily sandbox refresh)
            "last_proven_restorable": max(
                self.env["db.backup.schedule"]
                .sudo()
                .search([("last_proven_restorable", "!=", False)])
                .mapped("last_proven_restorable"),
                default=False,
            ),
            "problems": problems,
            "recent_count": len(recent),
        }

    @api.model
    def _mail_admins(self, subject, body_html):
        admins = (
            self.env.ref("base.group_system")
            .sudo()
            .users.filtered(lambda u: u.active and u.email and not u.share)
        )
        if not admins:
            _logger.warning("No administrator with an email to tell: %s", subject)
            return self.env["mail.mail"]
        return (
            self.env["mail.mail"]
            .sudo()
            .create(
                {
                    "subject": subject,
                    "body_html": body_html,
                    "recipient_ids": [(6, 0, admins.partner_id.ids)],
                    "auto_delete": False,
                }
            )
        )

    @api.model
    def _on_database_restored(self, restore_info):
        """The restored database's run table is the archive's; list again the
        archives of this database found at the destinations (the pre-restore
        copy and anything newer than the restored archive)."""
        return self._sync_from_destinations()

    @api.model
    def _sync_from_destinations(self):
        created = self.browse()
        known = set(self.search([]).mapped("name"))
        destinations = self.env["db.backup.destination"].search([("active", "=", True)])
        by_name = {}
        for destination in destinations:
            try:
                found = self._find_archives(destination)
            except Exception as exc:
                _logger.warning("Cannot list %s: %s", destination.name, exc)
                continue
            for name, (obj, info) in found.items():
                by_name.setdefault(name, []).append((destination, obj, info))
        for name, entries in sorted(by_name.items()):
            if name in known:
                continue
            _dest, obj, info = entries[0]
            created_at = info.created_at.replace(tzinfo=None)
            kind = {"manual": "manual", "pre-restore": "pre_restore"}.get(
                info.label, "found"
            )
            run = self.create(
                {
                    "name": name,
                    "kind": kind,
                    "state": "done",
                    "label": info.label,
                    "date": created_at,
                    "archive_created_at": created_at,
                    "size": obj.size,
                    "encryption": "encrypted" if info.encrypted else "plaintext",
                    "keep_until": created_at + timedelta(days=PRE_RESTORE_KEEP_DAYS)
                    if kind == "pre_restore"
                    else False,
                }
            )
            self.env["db.backup.copy"].create(
                [
                    {
                        "run_id": run.id,
                        "destination_id": dest.id,
                        "destination_name": dest.name,
                        "dest_type": dest.dest_type,
                        "state": "done",
                        "object_name": name,
                        "size": o.size,
                    }
                    for dest, o, _info in entries
                ]
            )
            created |= run
        return created

    @api.model
    def action_sync_from_destinations(self):
        self._check_admin_access()
        self.sudo()._sync_from_destinations()
        return True

    def _find_archives(self, destination):
        """Archives of this database at ``destination`` (name -> StoredObject)."""
        from odoo.addons.db_backup_suite.lib import naming

        sink = destination._make_sink()
        try:
            objects = sink.list()
        finally:
            sink.close()
        found = {}
        for obj in objects:
            # Only this database's archives: restore never offers another's.
            info = naming.parse_archive_name(obj.name, self.env.cr.dbname)
            if info is not None:
                found[obj.name] = (obj, info)
        return found


class _RetentionItem:
    __slots__ = ("name", "ok", "run_id")

    def __init__(self, name, ok, run_id):
        self.name, self.ok, self.run_id = name, ok, run_id


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _monotonic():
    import time

    return time.monotonic()


def _parse_dt(value):
    if not value:
        return False
    from datetime import datetime

    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    if dt.tzinfo:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt
