import contextlib
import json
import logging
import os
from datetime import timedelta

import psycopg2
from markupsafe import Markup

from odoo import SUPERUSER_ID, api, fields, models, sql_db
from odoo.exceptions import AccessError, UserError
from odoo.tools import SQL, format_datetime

from odoo.addons.audit_export.tools.suite_errors import suite_error_message

from ..service import backup_engine

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
#: the watchdog cron (every minute): jobs whose supervising process died
WATCHDOG_CRON = "db_backup_suite.ir_cron_db_backup_watchdog"
#: a job claimed or a restore started this long ago without a process is dead
WATCHDOG_GRACE = timedelta(minutes=2)
#: seconds the watchdog follows a re-attached job per pass (then again at once)
FOLLOW_SECONDS = 45
#: queued runs one cron pass runs at most (one at a time per database)
MAX_RUNS_PER_PASS = 20
#: advisory lock namespace (int4) of the supervision locks: (namespace, run
#: id) held by the process following a backup job; (namespace, 0) by the
#: process running the daily sandbox refreshes
SUPERVISION_LOCK = 0x64627375
REFRESH_KEY = 0


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
        """The backup cron (and its "Run Manually"): due schedules, queued
        runs, daily sandbox refreshes, late alerts.

        It never commits its own transaction: ``ir.cron.method_direct_trigger``
        ("Run Manually") locks the cron's row in it until it ends, and a
        commit released that lock half-way, so the cron worker could run the
        same job at the same time (a queued run executed twice) and the
        manual trigger's last write then failed with "This cron task is
        currently being executed". What other cursors and processes must see
        is committed in cursors of its own instead: the queued runs, each
        claim (``_claim_queued``), the progress (``_write_detached``)."""
        self._watch_backup_runs()
        with self.env.registry.cursor() as cr:
            self.with_env(self.env(cr=cr))._queue_due_schedules()
        self._run_queued()
        self._run_refreshes()
        with self.env.registry.cursor() as cr:
            # a fresh snapshot: the runs just recorded count
            schedules = self.env(cr=cr)["db.backup.schedule"]
            schedules.search([("active", "=", True)])._check_late()

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
        """Run the queued backups one after the other (in child processes).

        Each is claimed first (``_claim_queued``, a row lock): a second cron
        worker, "Run Manually" or a test running this at the same time gets
        another run or none, never the same one."""
        cron = self.env["ir.cron"]
        executed = self.browse()
        for done in range(MAX_RUNS_PER_PASS):
            run = self._claim_queued()
            if not run:
                break
            cron._notify_progress(done=done, remaining=1)
            run._run_claimed()
            executed |= run
        if executed:  # all done: the cron runner need not call again
            cron._notify_progress(done=len(executed), remaining=0)
        return executed

    @api.model
    def _claim_queued(self, run_id=None):
        """Take one queued backup (the oldest, or ``run_id``) for this
        process: ``SELECT ... FOR UPDATE SKIP LOCKED``, then ``running``, in
        a transaction of its own committed at once. A run that another
        process is claiming (locked) or has claimed (no longer queued) is
        not returned: however the cron is triggered (two workers, Run
        Manually, Backup Now), a run executes once. Server side only."""
        query = SQL(
            "SELECT id FROM db_backup_run WHERE state = 'queued' AND kind IN %s "
            "%s ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
            BACKUP_KINDS,
            SQL("AND id = %s", run_id) if run_id else SQL(),
        )
        try:
            with self.env.registry.cursor() as cr:
                cr.execute(query)
                row = cr.fetchone()
                if not row:
                    return self.browse()
                env = api.Environment(cr, SUPERUSER_ID, {})
                claimed = env[self._name].browse(row[0])
                claimed.write(
                    {
                        "state": "running",
                        "started_at": fields.Datetime.now(),
                        "pid": 0,
                        "progress": 0,
                        "progress_message": self.env._("Starting"),
                    }
                )
                claimed._send_progress()
        except psycopg2.errors.SerializationFailure:
            # claimed and committed by another process since this snapshot
            return self.browse()
        run = self.browse(row[0])
        run.invalidate_recordset()
        return run

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
        """Runs whose process vanished are failed, finished ones recorded
        (``_watch_backup_runs``)."""
        return self._watch_backup_runs(follow=0)

    # ------------------------------------------------------------------
    # Watchdog: jobs whose supervising process died
    # ------------------------------------------------------------------
    @api.model
    def _cron_watchdog(self):
        """Every minute (and at once after a server start, ``_register_hook``):
        re-attach the backups whose supervising process is gone, record the
        ones that ended, fail the ones whose process died; fail the restores
        and sandboxes left "running" by a dead process. Two searches when
        nothing runs."""
        self._watch_backup_runs()
        self._watch_restores()

    def _register_hook(self):
        """At registry load (a server start): something left running wakes
        the watchdog now rather than at its next minute. One query."""
        super()._register_hook()
        cr = self.env.cr
        try:
            with cr.savepoint():
                cr.execute(
                    SQL(
                        "SELECT EXISTS(SELECT 1 FROM db_backup_run "
                        "WHERE state = 'running') OR EXISTS(SELECT 1 FROM "
                        "db_backup_sandbox WHERE state = 'creating')"
                    )
                )
                if cr.fetchone()[0]:
                    cron = self.env.ref(WATCHDOG_CRON, raise_if_not_found=False)
                    if cron:
                        cron._trigger()
        except Exception as exc:  # never a reason not to start
            _logger.warning("Backup watchdog not woken at start: %s", exc)

    @api.model
    def _watch_backup_runs(self, follow=None):
        """Each running backup nobody follows (its supervisor's lock is free):
        follow it ``follow`` seconds more when its process lives (the
        watchdog runs again at once if it is still running), record its
        result when it ended, fail it when its process died without one.
        Returns the runs recorded."""
        follow = FOLLOW_SECONDS if follow is None else follow
        recorded = self.browse()
        pending = False
        runs = self.search([("state", "=", "running"), ("kind", "in", BACKUP_KINDS)])
        for run in runs:
            outcome = run._reattach(follow)
            if outcome is None:
                pending = True
            elif outcome:
                recorded |= run
        if runs:  # the cron runner need not loop: a pending run is triggered
            self.env["ir.cron"]._notify_progress(done=len(runs), remaining=0)
        if pending:
            self.env.ref(WATCHDOG_CRON)._trigger()
        self._watch_refresh_runs()
        return recorded

    def _job_row(self):
        """(state, pid, started_at) of this run, read in a fresh transaction
        (the caller's snapshot may predate its end)."""
        with self.env.registry.cursor() as cr:
            cr.execute(
                SQL(
                    "SELECT state, pid, started_at FROM db_backup_run WHERE id = %s",
                    self.id,
                )
            )
            return cr.fetchone() or (None, 0, None)

    def _reattach(self, follow=FOLLOW_SECONDS):
        """Take over this running backup when its supervisor is gone.

        True: its result (or its failure) is recorded; None: its process
        still runs (followed ``follow`` seconds); False: nothing to do (its
        supervisor lives, it is no longer running, or it is being started).
        """
        self.ensure_one()
        with _supervision(self.env.cr.dbname, self.id) as mine:
            if not mine:
                return False  # its supervisor lives and follows it
            state, pid, started_at = self._job_row()
            if state != "running":
                return False
            path = self._events_path()
            alive = backup_engine.job_alive(pid)
            events = backup_engine.read_events(path)
            ended = any(e.get("event") in backup_engine.FINAL_EVENTS for e in events)
            if ended or alive:
                until = _monotonic() + follow
                return self._supervise(pid, until=until)
            if (
                not pid
                and started_at
                and (started_at > fields.Datetime.now() - WATCHDOG_GRACE)
            ):
                return False  # claimed a moment ago, its process not yet started
            self._record_outcome(None, _unusable_of(events), pid=pid)
            return True

    @api.model
    def _watch_refresh_runs(self):
        """Daily sandbox refreshes run inside the cron's process, holding the
        refresh lock: a refresh run still "running" while nobody holds it
        died with its process."""
        runs = self.search(
            [
                ("state", "=", "running"),
                ("kind", "=", "sandbox_refresh"),
                ("started_at", "<", fields.Datetime.now() - WATCHDOG_GRACE),
            ]
        )
        if not runs:
            return runs
        with _supervision(self.env.cr.dbname, REFRESH_KEY) as free:
            if not free:
                return self.browse()
            for run in runs:
                if run._job_row()[0] != "running":
                    continue
                run._finish_failed(
                    self.env._(
                        "The daily sandbox refresh stopped without a result "
                        "(server restart?). Yesterday's sandbox is kept."
                    )
                )
        return runs

    @api.model
    def _run_refreshes(self):
        """The daily sandbox refreshes: in a cursor of their own (they commit
        for the restore's cursors), one process at a time, holding the
        refresh lock that tells the watchdog their runs and sandboxes have a
        living process."""
        with _supervision(self.env.cr.dbname, REFRESH_KEY, wait=1) as mine:
            if not mine:
                return False
            with self.env.registry.cursor() as cr:
                self.env(cr=cr)["db.backup.schedule"]._run_due_refreshes()
        return True

    @api.model
    def _watch_restores(self):
        """Restores and sandboxes left "running" (restore dialog started,
        sandbox creating) for ``WATCHDOG_GRACE`` while no restore job runs on
        this server and no refresh holds its lock: their process died
        (server restart, kill). They are failed, their opener told."""
        limit = fields.Datetime.now() - WATCHDOG_GRACE
        stale = [("write_date", "<", limit)]
        Sandbox = self.env["db.backup.sandbox"].sudo()
        Wizard = self.env["db.backup.restore.wizard"].sudo()
        if not (
            Sandbox.search_count([("state", "=", "creating"), *stale], limit=1)
            or Wizard.search_count([("state", "=", "started"), *stale], limit=1)
        ):
            return 0
        if _restore_processes():
            return 0  # a restore job runs here: it may be theirs
        with _supervision(self.env.cr.dbname, REFRESH_KEY) as free:
            if not free:
                return 0
            # a fresh snapshot, after the process check: one that ended
            # meanwhile is no longer creating or started
            with self.env.registry.cursor() as cr:
                return self.env(cr=cr)[self._name]._fail_dead_restores(stale)

    @api.model
    def _fail_dead_restores(self, stale):
        message = self.env._(
            "The restore process stopped without a result (server restart?). "
            "This database is unchanged; start the restore again."
        )
        sandboxes = (
            self.env["db.backup.sandbox"]
            .sudo()
            .search([("state", "=", "creating"), *stale])
        )
        for sandbox in sandboxes:
            sandbox.write({"state": "failed", "error": message})
            self.env["audit.event"].log_event(
                "sandbox",
                res_model=self._name,
                result="failure",
                details={"sandbox": sandbox.name, "archive": sandbox.archive_name},
                message=message,
            )
        wizards = (
            self.env["db.backup.restore.wizard"]
            .sudo()
            .search([("state", "=", "started"), *stale])
        )
        for wizard in wizards:
            wizard._job_progress(result={"ok": False, "message": message})
        return len(sandboxes) + len(wizards)

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
                        "error": suite_error_message(self.env, exc) or repr(exc),
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
        """Claim this queued run and run it (``_run_claimed``); False when
        another process claimed it first, or when it failed."""
        self.ensure_one()
        run = self._claim_queued(self.id)
        if not run:
            return False
        return run._run_claimed()

    def _events_path(self):
        """This run's job event file (``backup_engine.job_events_path``)."""
        self.ensure_one()
        return backup_engine.job_events_path("backup", self.env.cr.dbname, self.id)

    def _run_claimed(self):
        """Run the engine for this claimed run in a child process and follow
        it to the end, holding the run's supervision lock.

        The child reports to its own event file (``backup_engine.spawn_job``):
        when this process dies, the job goes on, the lock dies with this
        process and the watchdog (``_cron_watchdog``) takes over."""
        self.ensure_one()
        with _supervision(self.env.cr.dbname, self.id, wait=10) as mine:
            if not mine:
                _logger.info("Backup %s: another process follows it", self.id)
                return False
            proc = self._start_job()
            if proc is None:
                return False
            return self._supervise(proc.pid, proc=proc)

    def _start_job(self):
        """Spawn the engine child of this claimed run (its pid recorded);
        None when it could not start (the run is failed)."""
        self.ensure_one()
        try:
            payload = self._backup_payload()
            unusable = payload.pop("unusable", [])
        except UserError as exc:
            self._finish_failed(str(exc))
            return None
        try:
            # the head event carries what recording the result needs after a
            # restart: the destinations that could not be used (no secret)
            proc = backup_engine.spawn_job(
                payload,
                events_path=self._events_path(),
                head={"event": "job", "run": self.id, "unusable": unusable},
            )
            self._write_detached({"pid": proc.pid})
        except Exception as exc:
            _logger.exception("Backup %s: could not run the engine", self.id)
            backup_engine.remove_job_files(self._events_path())
            self._finish_failed(str(exc))
            return None
        return proc

    def _supervise(self, pid, proc=None, until=None):
        """Follow this run's job event file: progress into the run (its own
        committed transactions, the bus), then its result recorded.

        ``proc``: the ``Popen`` when this process started the job, else its
        ``pid`` tells whether it lives. Returns True (stored) or False
        (failed) once recorded, None when ``until`` (monotonic) came first
        and the job still runs."""
        self.ensure_one()
        if proc is not None:
            alive = lambda: proc.poll() is None  # noqa: E731
        else:
            alive = lambda: backup_engine.job_alive(pid)  # noqa: E731
        final = None
        unusable = []
        last_write = 0.0
        expected = self._expected_size()
        follower = backup_engine.EventFile(self._events_path())
        for event in follower.follow(alive, until=until):
            kind = event.get("event")
            if kind == "progress":
                now = _monotonic()
                if now - last_write >= 2:
                    last_write = now
                    self._write_progress(event, expected)
            elif kind == "job":
                unusable = event.get("unusable") or []
            elif kind in backup_engine.FINAL_EVENTS:
                final = event
            elif kind == "log":
                _logger.info("backup job %s: %s", self.id, event.get("message"))
        if final is None and alive():
            return None  # still running: followed again later
        returncode = proc.wait() if proc is not None else None
        return self._record_outcome(final, unusable, pid=pid, returncode=returncode)

    def _write_progress(self, event, expected):
        done, total = event.get("done") or 0, event.get("total")
        # The engine counts the archive's bytes written so far (no total:
        # the compressed size is known at the end); the last archive's size
        # gives an estimate, kept below 100 until the run is really done.
        total = total or expected
        step = (event.get("message") or "").strip()
        self._write_detached(
            {
                "progress": min(100.0 * done / total, 99.0) if total else 0,
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

    def _record_outcome(self, final, unusable, pid=None, returncode=None):
        """Record the job's final event (``result``: done or partial with its
        copies; ``error``: failed with each destination's reason), or its
        death without one; then remove its event file. True when stored."""
        self.ensure_one()
        path = self._events_path()
        stderr = backup_engine.log_tail(path)
        try:
            if final and final.get("event") == "result":
                final["copies"] = list(final.get("copies") or []) + unusable
                self._finish_done(final)
                return bool(final.get("copies")) and any(
                    c.get("ok") for c in final["copies"]
                )
            if final:
                message = final.get("message") or self.env._(
                    "The backup process failed: %(tail)s", tail=stderr[-1000:]
                )
                self._finish_failed(
                    message, copies=(final.get("copies") or []) + unusable
                )
                return False
            if returncode:
                message = self.env._(
                    "The backup process exited with code %(code)s: %(tail)s",
                    code=returncode,
                    tail=stderr.strip()[-800:],
                )
            else:
                message = self.env._(
                    "The backup process (pid %(pid)s) stopped without a result "
                    "(server restart? killed?). No archive was kept; what it "
                    "left at the destinations is removed by the next backup.",
                    pid=pid or "?",
                )
            self._finish_failed(message, copies=unusable)
            return False
        finally:
            backup_engine.remove_job_files(path)

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
            "archive_created_at": backup_engine.naive_utc(result.get("created_at")),
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
        from ..lib import cleanup

        dbname = self.env.cr.dbname
        destinations = (
            self.env["db.backup.destination"].sudo().search([("active", "=", True)])
        )
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
        from ..lib import retention

        now = fields.Datetime.now()
        runs = self.search([("state", "in", STORED_STATES), ("name", "!=", False)])
        items = [_RetentionItem(run.name, True, run.id) for run in runs]
        doomed_ids = set()
        policies = [
            retention.RetentionPolicy(
                labels=frozenset(), pre_restore_days=PRE_RESTORE_KEEP_DAYS
            )
        ]
        schedules = self.env["db.backup.schedule"].search([("active", "=", True)])
        for schedule in schedules:
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
        from ..lib import repository

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
                    errors.append(
                        "%s: %s" % (dest.name, suite_error_message(self.env, exc))
                    )
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
        from ..lib import repository

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
        from ..lib import repository

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

    # A running backup's row is how its job reports: deleting it is refused
    # on purpose. pylint: disable=no-raise-unlink
    def unlink(self):
        if any(run.state == "running" for run in self):
            raise UserError(self.env._("A running backup cannot be deleted."))
        for run in self:
            self.env["audit.event"].log_event(
                "backup", record=run, details={"operation": "delete", "file": run.name}
            )
        return super().unlink()

    # pylint: enable=no-raise-unlink

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
        """The restored database's run table is the archive's, as it was
        while the archive was being made: its own run is still running (or
        queued) there. Reconcile it with what the destinations hold:

        - the archive's own run becomes done, with its name, size, copies
          and manifest facts (one row for the archive, never a second);
        - every other run the archive left queued or running is settled:
          done when its archive is at a destination, else failed saying
          why (never "process stopped without a result");
        - archives of this database at the destinations that no row lists
          (the pre-restore backup, anything newer than the archive) are
          listed again.
        """
        listing = self._list_destinations()
        settled = self._settle_archive_runs(restore_info, listing)
        created = self._sync_from_destinations(listing)
        return {
            "settled": {
                str(run_id): state for run_id, state in sorted(settled.items())
            },
            "listed": sorted(n for n in created.mapped("name") if n),
        }

    @api.model
    def _list_destinations(self):
        """``{archive name: [(destination, StoredObject, ArchiveName)]}`` of
        this database at every active destination (one that cannot be
        listed is skipped and logged)."""
        by_name = {}
        destinations = self.env["db.backup.destination"].search([("active", "=", True)])
        for destination in destinations:
            try:
                found = self._find_archives(destination)
            except Exception as exc:
                _logger.warning("Cannot list %s: %s", destination.name, exc)
                continue
            for name, (obj, info) in found.items():
                by_name.setdefault(name, []).append((destination, obj, info))
        return by_name

    @api.model
    def _restored_archive(self, restore_info):
        """``(full name, ArchiveName or None, created_at naive UTC)`` of the
        archive a restore came from (an uploaded file's bare name gets its
        database folder, as the destinations name it)."""
        from ..lib import naming

        name = restore_info.get("archive_name") or ""
        parsed = naming.parse_archive_name(name)
        if parsed is not None and "/" not in name:
            name = "%s/%s" % (parsed.database, name)
        created = backup_engine.naive_utc(
            restore_info.get("archive_created_at")
            or (restore_info.get("manifest") or {}).get("created_at")
        ) or (parsed.created_at.replace(tzinfo=None) if parsed else False)
        return name, parsed, created

    @api.model
    def _settle_archive_runs(self, restore_info, listing):
        """Settle the runs the archive left unfinished (see
        :meth:`_on_database_restored`); ``{run id: new state}``."""
        name, parsed, created = self._restored_archive(restore_info)
        if not created:
            return {}
        # the archive's rows still queued/running, or settled by a reaper
        # that ran in the restored database before this hook
        open_runs = self.search(
            [
                "|",
                ("state", "in", ACTIVE_STATES),
                "&",
                "&",
                ("state", "=", "failed"),
                ("name", "=", False),
                ("finished_at", ">=", created),
            ],
            order="started_at, id",
        )
        known = set(self.search([("name", "!=", False)]).mapped("name"))
        settled = {}
        own = self.browse()
        if name not in known:  # else a row names it already: no second one
            own = self._archive_own_run(open_runs, name, parsed, created)
        if own:
            own._settle_as_archive(name, listing, restore_info)
            known.add(name)
            settled[own.id] = own.state
        for run in open_runs - own:
            match = run._archive_at_destinations(listing, known)
            if match:
                run._settle_as_archive(match, listing, {})
                known.add(match)
            else:
                run.write(
                    {
                        "state": "failed",
                        "finished_at": created,
                        "pid": 0,
                        "progress_message": False,
                        "error": self.env._(
                            "Not finished when the archive %(file)s (restored "
                            "here) was taken, and no archive of it is at the "
                            "destinations: its outcome is recorded in the "
                            "database the restore replaced.",
                            file=name,
                        ),
                    }
                )
            settled[run.id] = run.state
        return settled

    @api.model
    def _archive_own_run(self, runs, name, parsed, created):
        """The run that made the restored archive: a backup run of the same
        archive label, started before the archive's date and the latest
        such (one backup at a time: in practice the only one)."""
        slack = timedelta(minutes=5)
        candidates = runs.filtered(
            lambda r: (
                r.kind in BACKUP_KINDS
                and (not r.name or r.name == name)
                and (parsed is None or r._archive_label() == parsed.label)
                and (not r.started_at or r.started_at <= created + slack)
            )
        )
        return candidates.sorted(lambda r: (r.started_at or r.date, r.id))[-1:]

    def _archive_at_destinations(self, listing, known):
        """The name of an archive at the destinations this unfinished run
        made (same label, dated from its start to a day later), or None."""
        self.ensure_one()
        if self.kind not in BACKUP_KINDS or not self.started_at:
            return None
        label = self._archive_label()
        start = self.started_at - timedelta(minutes=1)
        found = [
            (info.created_at.replace(tzinfo=None), name)
            for name, entries in listing.items()
            for _dest, _obj, info in entries[:1]
            if name not in known
            and info.label == label
            and start
            <= info.created_at.replace(tzinfo=None)
            <= self.started_at + timedelta(days=1)
        ]
        return min(found)[1] if found else None

    def _settle_as_archive(self, name, listing, restore_info):
        """This run made the archive ``name``: done, its size and copies
        from the destinations that hold it now, its facts from the
        manifest (when the restore read it)."""
        self.ensure_one()
        entries = listing.get(name) or []
        manifest = restore_info.get("manifest") or {}
        encryption = manifest.get("encryption") or {}
        size = max(
            [obj.size for _d, obj, _i in entries]
            or [restore_info.get("archive_size") or self.size or 0]
        )
        _n, parsed, created = self._restored_archive({"archive_name": name})
        stamped = backup_engine.naive_utc(manifest.get("created_at"))
        vals = {
            "name": name,
            "state": "done",
            "size": size,
            "archive_created_at": stamped or created,
            "finished_at": self.finished_at or created,
            "progress": 100.0,
            "progress_message": False,
            "pid": 0,
            "error": False,
            "warning": False
            if entries
            else self.env._(
                "No destination holds this archive now (it was restored from a file)."
            ),
        }
        if parsed is not None:
            vals["encryption"] = "encrypted" if parsed.encrypted else "plaintext"
        if manifest:
            vals.update(
                key_id=encryption.get("key_id") or False,
                odoo_version=self.env[
                    "db.backup.restore.wizard"
                ]._manifest_odoo_version(manifest),
                manifest_json=json.dumps(manifest, default=str),
            )
        self.write(vals)
        self.copy_ids.unlink()
        self.env["db.backup.copy"].create(
            [
                {
                    "run_id": self.id,
                    "destination_id": dest.id,
                    "destination_name": dest.name,
                    "dest_type": dest.dest_type,
                    "state": "done",
                    "object_name": name,
                    "size": obj.size,
                }
                for dest, obj, _info in entries
            ]
        )

    @api.model
    def _sync_from_destinations(self, listing=None):
        """A row for every archive of this database at the destinations that
        no row names yet (one row per name, its copies at each)."""
        created = self.browse()
        known = set(self.search([("name", "!=", False)]).mapped("name"))
        by_name = self._list_destinations() if listing is None else listing
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
            known.add(name)
            created |= run
        return created

    @api.model
    def action_sync_from_destinations(self):
        self._check_admin_access()
        self.sudo()._sync_from_destinations()
        return True

    def _find_archives(self, destination):
        """Archives of this database at ``destination`` (name -> StoredObject)."""
        from ..lib import naming

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


@contextlib.contextmanager
def _supervision(dbname, key, wait=0):
    """Hold the advisory lock ``(SUPERVISION_LOCK, key)`` of ``dbname`` for
    the block, on a private connection; yields whether it was taken (after
    waiting up to ``wait`` seconds). PostgreSQL releases it when the block
    ends or when this process dies (its connection closes): a free lock is
    how the watchdog tells a job whose supervisor died from one that is
    followed."""
    _name, info = sql_db.connection_info_for(dbname)
    conn = psycopg2.connect(**info)
    conn.autocommit = True
    try:
        with conn.cursor() as cr:
            if wait:
                query = SQL("SET lock_timeout = %s", "%dms" % int(wait * 1000))
                cr.execute(query.code, query.params)
                query = SQL("SELECT pg_advisory_lock(%s, %s)", SUPERVISION_LOCK, key)
                try:
                    cr.execute(query.code, query.params)
                    taken = True
                except psycopg2.errors.LockNotAvailable:
                    taken = False
            else:
                query = SQL(
                    "SELECT pg_try_advisory_lock(%s, %s)", SUPERVISION_LOCK, key
                )
                cr.execute(query.code, query.params)
                taken = cr.fetchone()[0]
        yield taken
    finally:
        conn.close()


def _unusable_of(events):
    """The unusable destinations the job's head event recorded."""
    for event in events:
        if event.get("event") == "job":
            return event.get("unusable") or []
    return []


def _restore_processes():
    """Pids of the restore jobs running for this server (``odoo db_backup
    restore-job`` started by the restore dialog, ``db_backup restore``: their
    arguments name this server's data dir); ``[-1]`` where processes cannot
    be listed (then none is taken as dead)."""
    if not os.path.isdir("/proc/self"):
        return [-1]
    where = backup_engine.data_dir()
    dirs = {os.fsencode(where), os.fsencode(os.path.realpath(where))}
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as handle:
                args = handle.read().split(b"\0")
        except OSError:
            continue
        if (
            b"db_backup" in args
            and (b"restore-job" in args or b"restore" in args)
            and any(d in arg for arg in args for d in dirs)
        ):
            found.append(int(name))
    return found


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
