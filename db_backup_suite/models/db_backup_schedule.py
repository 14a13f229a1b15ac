import calendar
import json
import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL

from odoo.addons.audit_export.tools.suite_errors import suite_error_message
from odoo.addons.base.models.res_partner import _tz_get

from ..service import backup_engine

_logger = logging.getLogger(__name__)

FREQUENCIES = [
    ("hourly", "Every hour"),
    ("4h", "Every 4 hours"),
    ("24h", "Every 24 hours"),
    ("3d", "Every 3 days"),
    ("7d", "Every 7 days"),
    ("15d", "Every 15 days"),
    ("monthly", "Monthly"),
]
# Labels written in archive names and on each run (the "Frequency" column);
# the engine's naming accepts exactly these (lib/naming.py KNOWN_LABELS).
FREQUENCY_LABELS = {
    "hourly": "hourly",
    "4h": "4h",
    "24h": "24h",
    "3d": "3d",
    "7d": "7d",
    "15d": "15d",
    "monthly": "monthly",
}
# Nominal interval, for the "no successful backup for interval + 2 h" alert.
FREQUENCY_INTERVALS = {
    "hourly": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "24h": timedelta(days=1),
    "3d": timedelta(days=3),
    "7d": timedelta(days=7),
    "15d": timedelta(days=15),
    "monthly": timedelta(days=31),
}
DAY_STEPS = {"24h": 1, "3d": 3, "7d": 7, "15d": 15}
DRILL_SERVER_FIELDS = (
    "last_drill_at",
    "last_drill_state",
    "last_drill_message",
    "next_drill_at",
    "drill_database",
)
#: Restore drills: weekly unless a schedule says otherwise (0: off).
DRILL_DEFAULT_DAYS = 7
#: Where a drill's bar stands at each of its steps (restoring fills 5-75).
DRILL_STEP_PROGRESS = {"cleanup": 2.0, "restore": 5.0, "count": 80.0, "drop": 95.0}
#: The advisory key (in the database) of starting a drill: "DBSDRILL".
DRILL_START_LOCK = int.from_bytes(b"DBSDRILL", "big", signed=True)
#: A drill that started this long ago and whose process holds no work lock
#: is dead (killed, server lost): its run is failed.
DRILL_STALE_AFTER = timedelta(minutes=10)


def _add_month(local_dt):
    year, month = local_dt.year + local_dt.month // 12, local_dt.month % 12 + 1
    day = min(local_dt.day, calendar.monthrange(year, month)[1])
    return local_dt.replace(year=year, month=month, day=day)


def next_run_after(frequency, hour, tz_name, now, last_run=None):
    """Next run time (naive UTC) of a schedule, strictly after ``now``.

    ``now`` and ``last_run`` are naive UTC (Odoo's convention); ``hour`` is
    the hour of day in ``tz_name``. Daily and longer schedules fire at that
    hour, ``N`` days after the last run (or at the next such hour when the
    schedule never ran); ``4h`` fires at ``hour``, ``hour + 4``, ... local
    time; ``hourly`` at the top of every hour.
    """
    try:
        tz = ZoneInfo(tz_name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    utc = ZoneInfo("UTC")
    now_utc = now.replace(tzinfo=utc)
    if frequency == "hourly":
        candidate = now_utc.replace(minute=0, second=0, microsecond=0)
        return (candidate + timedelta(hours=1)).replace(tzinfo=None)
    now_local = now_utc.astimezone(tz)

    def at_hour(day_local, h):
        # Wall-clock time in tz (fold=0 on DST ambiguity), converted to UTC.
        wall = datetime(day_local.year, day_local.month, day_local.day, h, tzinfo=tz)
        return wall.astimezone(utc)

    if frequency == "4h":
        day = now_local.date() - timedelta(days=1)
        for _ in range(4 * 6 + 12):
            for slot in sorted({(hour + 4 * i) % 24 for i in range(6)}):
                candidate = at_hour(day, slot)
                if candidate > now_utc:
                    return candidate.replace(tzinfo=None)
            day += timedelta(days=1)
        raise ValueError("no 4-hour slot found")  # cannot happen
    # daily and longer
    if last_run:
        last_local = last_run.replace(tzinfo=utc).astimezone(tz)
        if frequency == "monthly":
            day = _add_month(last_local).date()
        else:
            day = last_local.date() + timedelta(days=DAY_STEPS[frequency])
        candidate = at_hour(day, hour)
        if candidate > now_utc:
            return candidate.replace(tzinfo=None)
        # Overdue (the server was down): run at the next hour slot.
    day = now_local.date()
    candidate = at_hour(day, hour)
    if candidate <= now_utc:
        candidate = at_hour(day + timedelta(days=1), hour)
    return candidate.replace(tzinfo=None)


class DbBackupSchedule(models.Model):
    _name = "db.backup.schedule"
    _inherit = ["db.backup.guarded.mixin", "db.backup.settings.audit.mixin"]
    _description = "Backup Schedule"
    _order = "sequence, id"
    # When the next backup runs and whether the late alert went out are the
    # scheduler's; the runs are the engine's.
    _server_owned_fields = (
        "last_run",
        "next_run",
        "late_alert_sent",
        "run_ids",
        "last_proven_restorable",
        "sandbox_id",
        "last_drill_at",
        "last_drill_state",
        "last_drill_message",
        "next_drill_at",
        "drill_database",
    )

    name = fields.Char(
        string="Label", help="Shown in the Frequency column; defaults to the frequency."
    )
    active = fields.Boolean(default=True)
    kind = fields.Selection(
        [("backup", "Backup"), ("sandbox_refresh", "Daily sandbox refresh")],
        required=True,
        default="backup",
        help="Daily sandbox refresh: every day at the schedule's hour, the newest "
        "archive of this database is restored (verified, neutralized) into the "
        "rolling sandbox <database>-sandbox-daily, replacing yesterday's once "
        "today's succeeded; each refresh proves the archive restorable.",
    )
    last_proven_restorable = fields.Datetime(
        readonly=True,
        copy=False,
        help="When an archive of this schedule's database was last restored "
        "successfully (daily sandbox refresh, or this schedule's restore drill).",
    )
    drill_interval_days = fields.Integer(
        string="Restore drill every (days)",
        default=DRILL_DEFAULT_DAYS,
        help="Every this many days the newest archive of this schedule is "
        "restored into a temporary database, its row counts checked against "
        "its manifest, and the database dropped; a failure alerts like a failed "
        "backup. 0 turns the drill off.",
    )
    next_drill_at = fields.Datetime(
        string="Next restore drill", readonly=True, copy=False
    )
    last_drill_at = fields.Datetime(
        string="Last restore drill", readonly=True, copy=False
    )
    last_drill_state = fields.Selection(
        [("running", "Running"), ("ok", "Passed"), ("failed", "Failed")],
        string="Last drill result",
        readonly=True,
        copy=False,
    )
    last_drill_message = fields.Text(
        string="Last drill report", readonly=True, copy=False
    )
    drill_database = fields.Char(
        readonly=True,
        copy=False,
        help="The temporary database of the running (or last killed) drill: "
        "what the next drill removes if a killed one left it.",
    )
    drill_alarm = fields.Boolean(
        compute="_compute_drill_alarm",
        help="The last drill failed, or nothing proved an archive restorable "
        "within two drill intervals.",
    )
    sandbox_id = fields.Many2one(
        "db.backup.sandbox",
        string="Current daily sandbox",
        readonly=True,
        copy=False,
        ondelete="set null",
    )
    sequence = fields.Integer(default=10)
    frequency = fields.Selection(FREQUENCIES, required=True, default="24h")
    hour = fields.Integer(
        string="Hour of day", default=2, help="In the company's timezone (0-23)."
    )
    tz = fields.Char(
        string="Timezone",
        compute="_compute_tz",
        help="The company's time zone (its partner's); UTC until the company has one.",
    )
    company_tz = fields.Selection(
        _tz_get,
        string="Company time zone",
        compute="_compute_company_tz",
        inverse="_inverse_company_tz",
        help="The time zone of the company: schedules run at their hour in it.",
    )
    company_id = fields.Many2one(
        "res.company", required=True, default=lambda self: self.env.company
    )
    destination_ids = fields.Many2many(
        "db.backup.destination", string="Destinations", required=True
    )
    retention_mode = fields.Selection(
        [("days", "Keep for N days"), ("gfs", "Daily / weekly / monthly counts")],
        default="days",
        required=True,
    )
    retention_days = fields.Integer(default=7)
    keep_daily = fields.Integer(default=7)
    keep_weekly = fields.Integer(default=4)
    keep_monthly = fields.Integer(default=6)
    alert_partner_ids = fields.Many2many(
        "res.partner",
        string="Alert recipients",
        help="Mailed when a backup fails, is late, or is larger than the threshold.",
    )
    alert_size_mb = fields.Integer(string="Large archive threshold (MB)", default=500)
    last_run = fields.Datetime(readonly=True, copy=False)
    next_run = fields.Datetime(readonly=True, copy=False)
    late_alert_sent = fields.Datetime(readonly=True, copy=False)
    run_ids = fields.One2many(
        "db.backup.run", "schedule_id", string="Runs", readonly=True
    )

    @api.depends("company_id.partner_id.tz")
    def _compute_tz(self):
        for record in self:
            record.tz = record.company_id.partner_id.tz or False

    @api.depends("company_id.partner_id.tz")
    def _compute_company_tz(self):
        # apart from _compute_tz: a field being written is not recomputed,
        # nor are those its compute method computes with it
        for record in self:
            record.company_tz = record.company_id.partner_id.tz or False

    def _inverse_company_tz(self):
        """The schedule's form asks for the company's time zone when it has
        none: whoever may change the company sets it."""
        for record in self:
            company = record.company_id
            company.check_access("write")
            company.partner_id.sudo().tz = record.company_tz

    @api.constrains("hour")
    def _check_hour(self):
        for record in self:
            if not 0 <= record.hour <= 23:
                raise ValidationError(self.env._("The hour of day is 0 to 23."))

    @api.constrains("drill_interval_days")
    def _check_drill_interval(self):
        for record in self:
            if not 0 <= record.drill_interval_days <= 366:
                raise ValidationError(
                    self.env._(
                        "A restore drill runs every 1 to 366 days (0 turns it off)."
                    )
                )

    @api.constrains("retention_days", "keep_daily", "keep_weekly", "keep_monthly")
    def _check_retention(self):
        for record in self:
            if record.retention_mode == "days" and record.retention_days < 1:
                raise ValidationError(self.env._("Keep backups at least one day."))
            if record.retention_mode == "gfs" and (
                record.keep_daily + record.keep_weekly + record.keep_monthly < 1
            ):
                raise ValidationError(self.env._("Keep at least one backup."))

    def _label(self):
        self.ensure_one()
        return self.name or FREQUENCY_LABELS[self.frequency]

    def _archive_label(self):
        """The label in archive names: the frequency (names need a safe token)."""
        self.ensure_one()
        return FREQUENCY_LABELS[self.frequency]

    @api.depends("name", "frequency")
    def _compute_display_name(self):
        for record in self:
            record.display_name = record._label()

    @api.model_create_multi
    def create(self, vals_list):
        records = super().create(vals_list)
        records._reschedule()
        records._reschedule_drill()
        records._log_settings("create")
        return records

    def write(self, vals):
        result = super().write(vals)
        if {"frequency", "hour", "company_id", "company_tz", "active", "kind"} & set(
            vals
        ):
            self._reschedule()
        if {"drill_interval_days", "active", "kind"} & set(vals):
            self._reschedule_drill()
        if not set(vals) <= {
            "last_run",
            "next_run",
            "late_alert_sent",
            "last_proven_restorable",
            "sandbox_id",
            *DRILL_SERVER_FIELDS,
        }:
            self._log_settings("write", sorted(vals))
        return result

    def unlink(self):
        self._log_settings("delete")
        return super().unlink()

    def _settings_audit_label(self):
        self.ensure_one()
        return "Backup schedule %s" % self._label()

    def _compute_next_run(self, now=None):
        self.ensure_one()
        return next_run_after(
            "24h" if self.kind == "sandbox_refresh" else self.frequency,
            self.hour,
            self.tz,
            now or fields.Datetime.now(),
            self.last_run,
        )

    def _reschedule(self, now=None):
        for record in self:
            # The scheduler's own field (sudo: a user may not set it).
            record.sudo().write(
                {"next_run": record._compute_next_run(now) if record.active else False}
            )

    def _due(self, now=None):
        now = now or fields.Datetime.now()
        return self.search([("active", "=", True), ("next_run", "<=", now)])

    def _retention_policy(self):
        """The engine's retention policy for this schedule's archives."""
        self.ensure_one()
        from ..lib import retention

        if self.retention_mode == "days":
            return retention.RetentionPolicy(
                max_age_days=self.retention_days, labels={self._archive_label()}
            )
        return retention.RetentionPolicy(
            keep_daily=self.keep_daily,
            keep_weekly=self.keep_weekly,
            keep_monthly=self.keep_monthly,
            labels={self._archive_label()},
        )

    def action_run_now(self):
        """Queue a run of this schedule now (administrators)."""
        self.ensure_one()
        self.env["db.backup.run"]._check_admin_access()
        self.check_access("write")
        if self.kind == "sandbox_refresh":
            # a restore that takes a while: the backup cron runs it now
            self.sudo().write({"next_run": fields.Datetime.now()})
            self.env.ref("db_backup_suite.ir_cron_db_backup_process").sudo()._trigger()
            return {
                "type": "ir.actions.client",
                "tag": "display_notification",
                "params": {
                    "title": self.env._("Run now: %(name)s", name=self.display_name),
                    "message": self.env._(
                        "The daily sandbox refresh starts in the background."
                    ),
                    "type": "success",
                    "sticky": False,
                },
            }
        self.env["db.backup.run"]._check_destinations(schedule=self)
        run = (
            self.env["db.backup.run"]
            .sudo()
            ._queue_backup(schedule=self.sudo(), kind="scheduled", user=self.env.user)
        )
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("Run now: %(name)s", name=self.display_name),
                "message": self.env._(
                    "Backup queued: it runs in the background. Database Backups → "
                    "Overview follows it until it ends."
                )
                if run
                else self.env._(
                    "A backup is already queued or running; it was not started twice."
                ),
                "type": "success" if run else "warning",
                "sticky": False,
            },
        }

    def _check_late(self, now=None):
        """Mail the recipients once when no backup succeeded for the
        schedule's interval plus 2 hours."""
        now = now or fields.Datetime.now()
        template = self.env.ref("db_backup_suite.mail_template_backup_late")
        late = self.browse()
        for schedule in self:
            last_ok = self.env["db.backup.run"].search(
                [
                    ("schedule_id", "=", schedule.id),
                    ("state", "in", ("done", "partial", "deleted")),
                    ("kind", "!=", "drill"),
                ],
                limit=1,
                order="date desc",
            )
            reference = last_ok.date or schedule.create_date
            deadline = (
                reference
                + FREQUENCY_INTERVALS[
                    "24h" if schedule.kind == "sandbox_refresh" else schedule.frequency
                ]
                + timedelta(hours=2)
            )
            if deadline >= now:
                continue
            if schedule.late_alert_sent and schedule.late_alert_sent >= reference:
                continue  # already told about this silence
            partners = schedule.alert_partner_ids.filtered("email") or (
                self.env.ref("base.group_system")
                .sudo()
                .users.filtered(lambda u: u.email and not u.share)
                .partner_id
            )
            if partners:
                template.sudo().send_mail(
                    schedule.id, email_values={"recipient_ids": [(6, 0, partners.ids)]}
                )
            schedule.sudo().write({"late_alert_sent": now})
            late |= schedule
        return late

    def _last_success(self):
        self.ensure_one()
        return self.env["db.backup.run"].search(
            [
                ("schedule_id", "=", self.id),
                ("state", "in", ("done", "partial", "deleted")),
                ("kind", "!=", "drill"),
            ],
            limit=1,
            order="date desc",
        )

    # ------------------------------------------------------------------
    # Daily sandbox refresh
    # ------------------------------------------------------------------
    @api.model
    def _run_due_refreshes(self, now=None):
        """Refresh the daily sandbox of every due refresh schedule."""
        now = now or fields.Datetime.now()
        runs = self.env["db.backup.run"]
        for schedule in self._due(now).filtered(lambda s: s.kind == "sandbox_refresh"):
            schedule.sudo().write({"last_run": now})
            schedule._reschedule(now)
            runs |= schedule.sudo()._refresh_daily_sandbox(now)
        return runs

    def _newest_archive(self, own=False):
        """The newest stored run of this database and a stored copy of it
        (at one of the schedule's destinations when it has some); ``own``:
        only this schedule's runs (its restore drill)."""
        self.ensure_one()
        Run = self.env["db.backup.run"].sudo()
        domain = [
            ("state", "in", ("done", "partial")),
            ("name", "!=", False),
            ("kind", "not in", ("sandbox_refresh", "drill")),
            ("database", "=", self.env.cr.dbname),
        ]
        if own:
            domain.append(("schedule_id", "=", self.id))
        runs = Run.search(domain, order="archive_created_at desc, id desc")
        for run in runs:
            copies = run.copy_ids.filtered(
                lambda c: (
                    c.state == "done" and c.destination_id and c.destination_id.active
                )
            )
            preferred = copies.filtered(
                lambda c: c.destination_id in self.destination_ids
            )
            copy = (preferred or copies)[:1]
            if copy:
                return run, copy
        return Run.browse(), self.env["db.backup.copy"]

    def _refresh_daily_sandbox(self, now=None):
        """Restore the newest archive into a new sandbox, through the same
        verified pipeline as the sandbox wizard (the engine verifies the
        archive and the row counts, the copy is neutralized and marked);
        only when it succeeded, drop yesterday's daily sandbox (the guarded
        drop: the name and the marker) and give the new one its name
        ``<db>-sandbox-daily``. A failure leaves yesterday's sandbox, fails
        the run and alerts like a failed backup. Returns the run."""
        self.ensure_one()
        from ..lib import safety
        from ..service import restore_job

        now = now or fields.Datetime.now()
        dbname = self.env.cr.dbname
        Run = self.env["db.backup.run"].sudo()
        Sandbox = self.env["db.backup.sandbox"].sudo()
        run = Run.create(
            {
                "kind": "sandbox_refresh",
                "label": "sandbox",
                "schedule_id": self.id,
                "state": "running",
                "started_at": now,
            }
        )
        source_run, copy = self._newest_archive()
        if not copy:
            run._finish_failed(
                self.env._("No stored archive of %(db)s to restore.", db=dbname)
            )
            return run
        daily_name = safety.daily_sandbox_name(dbname)
        # until the next refresh, plus a day
        expires = self._compute_next_run(now) + timedelta(days=1)
        sandbox = Sandbox.create(
            {
                "name": Sandbox._unique_name(dbname),
                "run_id": source_run.id,
                "archive_name": source_run.name,
                "expires_at": expires,
            }
        )
        job = {
            "database": dbname,
            "target": "sandbox",
            "requested_by": "Daily sandbox refresh (%s)" % self._label(),
            "archive_name": source_run.name,
            "archive_created_at": fields.Datetime.to_string(
                source_run.archive_created_at
            )
            if source_run.archive_created_at
            else None,
            "pre_restore_sinks": [],
            "db": backup_engine.db_params(dbname),
            "data_dir": backup_engine.data_dir(),
            "expected_uuid": self.env["ir.config_parameter"]
            .sudo()
            .get_param("database.uuid"),
            "sandbox_name": sandbox.name,
            "sandbox_id": sandbox.id,
            "sandbox_marker": sandbox.marker,
        }
        try:
            job["source"] = {
                "sink": copy.destination_id.sudo()._sink_config(),
                "name": copy.object_name,
            }
            if not self.env.registry.in_test_mode():
                # the restore reads the sandbox row from its own cursors
                self.env.cr.commit()  # pylint: disable=invalid-commit
            outcome = restore_job.run_job(job)
        except Exception as exc:
            _logger.exception("Daily sandbox refresh of %s failed", dbname)
            outcome = {
                "ok": False,
                "message": suite_error_message(self.env, exc) or repr(exc),
            }
        sandbox.invalidate_recordset()
        if not outcome.get("ok"):
            run._finish_failed(
                self.env._(
                    "Daily sandbox refresh from %(file)s failed; yesterday's "
                    "sandbox is kept: %(reason)s",
                    file=source_run.name,
                    reason=outcome.get("message"),
                )
            )
            return run
        # Today's works: yesterday's goes (guarded drop), today's takes the name.
        warnings = []
        previous = Sandbox.search(
            [("name", "=", daily_name), ("state", "in", ("ready", "failed"))]
        )
        failures = previous._drop() if previous else []
        if failures or backup_engine.database_exists(daily_name):
            warnings.append(
                self.env._(
                    "Yesterday's sandbox %(name)s could not be dropped (%(why)s); "
                    "today's is %(new)s.",
                    name=daily_name,
                    why="; ".join(reason for _s, reason in failures)
                    or self.env._("a database of that name exists"),
                    new=sandbox.name,
                )
            )
        else:
            try:
                backup_engine.rename_sandbox(sandbox.name, daily_name)
                sandbox.write({"name": daily_name})
            except Exception as exc:
                _logger.exception("Cannot rename %s", sandbox.name)
                warnings.append(
                    self.env._(
                        "Today's sandbox kept its name %(new)s: %(why)s",
                        new=sandbox.name,
                        why=suite_error_message(self.env, exc),
                    )
                )
        self.sudo().write({"last_proven_restorable": now, "sandbox_id": sandbox.id})
        done = self.env._(
            "Sandbox %(name)s refreshed from %(file)s",
            name=sandbox.name,
            file=source_run.name,
        )
        run._write_detached(
            {
                "state": "done",
                "finished_at": fields.Datetime.now(),
                "progress": 100.0,
                # what it did, in the Step column; a warning only when any
                "progress_message": done[:200],
                "archive_created_at": source_run.archive_created_at,
                "warning": "\n".join(warnings) or False,
            }
        )
        self.env["audit.event"].log_event(
            "sandbox",
            record=sandbox,
            details={
                "operation": "daily_refresh",
                "database": sandbox.name,
                "archive": source_run.name,
                "dropped": previous.filtered(lambda s: s.state == "dropped").mapped(
                    "name"
                ),
            },
            message="Daily sandbox refreshed from %s" % source_run.name,
        )
        return run

    # ------------------------------------------------------------------
    # Restore drill
    # ------------------------------------------------------------------
    def _drill_interval(self):
        """How often this schedule proves an archive restorable (None: off):
        a daily refresh every day, a backup schedule by its drill."""
        self.ensure_one()
        if self.kind == "sandbox_refresh":
            return timedelta(days=1)
        if self.drill_interval_days > 0:
            return timedelta(days=self.drill_interval_days)
        return None

    def _drill_failed_last(self):
        self.ensure_one()
        if self.kind == "sandbox_refresh":
            last = (
                self.env["db.backup.run"]
                .sudo()
                .search(
                    [("schedule_id", "=", self.id), ("kind", "=", "sandbox_refresh")],
                    limit=1,
                    order="id desc",
                )
            )
            return last.state == "failed"
        return self.last_drill_state == "failed"

    def _is_drill_alarm(self, now=None):
        """Red on the panel: the last drill failed, or nothing proved an
        archive restorable within two intervals (counted from the schedule's
        creation until a first proof)."""
        self.ensure_one()
        interval = self._drill_interval()
        if not interval:
            return False
        if self._drill_failed_last():
            return True
        reference = self.last_proven_restorable or self.create_date
        return bool(reference) and reference + 2 * interval < (
            now or fields.Datetime.now()
        )

    @api.depends(
        "kind", "drill_interval_days", "last_drill_state", "last_proven_restorable"
    )
    def _compute_drill_alarm(self):
        now = fields.Datetime.now()
        for record in self:
            record.drill_alarm = bool(record.id) and record._is_drill_alarm(now)

    def _reschedule_drill(self, now=None):
        """The next drill: an interval after the last one (after now when
        none ran yet); none when the drill is off."""
        now = now or fields.Datetime.now()
        for record in self:
            interval = (
                record._drill_interval()
                if record.active and record.kind == "backup"
                else None
            )
            record.sudo().write(
                {
                    "next_drill_at": (record.last_drill_at or now) + interval
                    if interval
                    else False
                }
            )

    @api.model
    def _due_drills(self, now=None):
        """Backup schedules whose restore drill is due."""
        return self.sudo().search(
            [
                ("active", "=", True),
                ("kind", "=", "backup"),
                ("drill_interval_days", ">", 0),
                ("next_drill_at", "<=", now or fields.Datetime.now()),
            ],
            order="next_drill_at, id",
        )

    @api.model
    def _drill_busy_reason(self, lock_start=False):
        """Why no drill may start now (None: it may): another drill or a
        restore of this database runs. ``lock_start``: also take the
        transaction's drill-start lock, so that two starts at the same
        moment cannot both pass (the drill's run is committed before the
        lock goes)."""
        if lock_start:
            self.env.cr.execute(
                SQL("SELECT pg_try_advisory_xact_lock(%s)", DRILL_START_LOCK)
            )
            if not self.env.cr.fetchone()[0]:
                return self.env._("A restore drill of this database is starting.")
        Run = self.env["db.backup.run"].sudo()
        if Run.search_count(
            [("state", "in", ("queued", "running")), ("kind", "=", "drill")]
        ):
            return self.env._("A restore drill of this database is already running.")
        if Run.search_count(
            [("state", "in", ("queued", "running")), ("kind", "=", "pre_restore")]
        ) or self.env["db.backup.restore.wizard"].sudo().search_count(
            [
                ("state", "=", "started"),
                ("target", "=", "production"),
                ("write_date", ">", fields.Datetime.now() - timedelta(hours=6)),
            ]
        ):
            return self.env._("A restore of this database is running.")
        from ..lib import lock

        # the engine's own word: a restore, verify or drill of this database
        # holds its work lock (shared) while it works
        with lock.work_lock(
            backup_engine.pg_params(), self.env.cr.dbname, exclusive=True
        ) as free:
            if not free:
                return self.env._(
                    "A restore, verification or drill of this database is running."
                )
        return None

    def action_run_drill(self):
        """Run this schedule's restore drill now, in the background
        (Settings administrators; refused while a drill or a restore of this
        database runs)."""
        self.ensure_one()
        self.env["db.backup.run"]._check_admin_access()
        self.check_access("write")
        if self.kind != "backup":
            raise UserError(
                self.env._(
                    "A daily sandbox refresh is its own restore drill: use Run now."
                )
            )
        self._reap_dead_drills()
        busy = self._drill_busy_reason(lock_start=True)
        if busy:
            raise UserError(busy)
        run = self.sudo()._start_drill(user=self.env.user)
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("Restore drill: %(name)s", name=self.display_name),
                "message": self.env._(
                    "The drill runs in the background: Database Backups follows "
                    "it until it ends."
                )
                if run.state == "running"
                else run.error or "",
                "type": "success" if run.state == "running" else "danger",
                "sticky": run.state != "running",
                "next": {"type": "ir.actions.client", "tag": "soft_reload"},
            },
        }

    @api.model
    def _cron_run_drills(self, now=None):
        """Hourly: fail drills whose process died, remove what killed drills
        left, then start the first due drill (one at a time per database,
        each in the detached job process: a long drill never holds a cron
        worker nor the backups)."""
        now = now or fields.Datetime.now()
        self._reap_dead_drills(now)
        if self._drill_busy_reason(lock_start=True):
            return self.env["db.backup.run"]
        self._clean_drill_leftovers()
        # schedules that never planned a drill (made before drills existed):
        # their first drill is due now
        self.sudo().search(
            [
                ("active", "=", True),
                ("kind", "=", "backup"),
                ("drill_interval_days", ">", 0),
                ("next_drill_at", "=", False),
            ]
        ).write({"next_drill_at": now})
        due = self._due_drills(now)[:1]
        if not due:
            return self.env["db.backup.run"]
        # the tests' transaction is never committed: they drill in-process
        return due._start_drill(now=now, detach=not self.env.registry.in_test_mode())

    @api.model
    def _clean_drill_leftovers(self):
        from ..lib import drill

        known = (
            self.sudo()
            .with_context(active_test=False)
            .search([("drill_database", "!=", False)])
        )
        try:
            result = drill.clean_drill_leftovers(
                backup_engine.pg_params(),
                self.env.cr.dbname,
                data_dir=backup_engine.data_dir(),
                known=known.mapped("drill_database"),
            )
        except Exception as exc:  # a cleanup never stops the drill cron
            _logger.warning("Drill leftovers not cleaned: %s", exc)
            return None
        if result["removed"] or result["errors"] or result.get("left_alone"):
            self.env["audit.event"].log_event(
                "backup",
                res_model=self._name,
                result="failure" if result["errors"] else "success",
                details={"operation": "drill_cleanup", **result},
                message="Leftovers of killed restore drills: %s removed, %s failed, "
                "%s look-alike(s) the suite did not make left alone"
                % (
                    len(result["removed"]),
                    len(result["errors"]),
                    len(result.get("left_alone") or ()),
                ),
            )
        return result

    @api.model
    def _reap_dead_drills(self, now=None):
        """A drill still running long after it started while nothing holds
        this database's work lock died without a result: fail it (alerting)."""
        now = now or fields.Datetime.now()
        stale = (
            self.env["db.backup.run"]
            .sudo()
            .search(
                [
                    ("kind", "=", "drill"),
                    ("state", "in", ("queued", "running")),
                    ("started_at", "<", now - DRILL_STALE_AFTER),
                ]
            )
        )
        if not stale:
            return stale
        from ..lib import lock

        with lock.work_lock(
            backup_engine.pg_params(), self.env.cr.dbname, exclusive=True
        ) as free:
            if not free:
                return stale.browse()
        for run in stale:
            run.schedule_id._drill_finished(
                run,
                False,
                self.env._(
                    "The drill process stopped without a result (killed, or the "
                    "server restarted); its temporary database is removed by the "
                    "next drill."
                ),
            )
        return stale

    def _start_drill(self, now=None, user=None, detach=True):
        """Record a drill run and start the drill of this schedule's newest
        archive: in the detached job process (``detach``), else here and
        to the end (tests). Returns the run."""
        self.ensure_one()
        from ..lib import safety
        from ..service import restore_drill, restore_job

        now = now or fields.Datetime.now()
        dbname = self.env.cr.dbname
        Run = self.env["db.backup.run"].sudo()
        drill_db = safety.drill_name(dbname, now.strftime("%Y%m%d%H%M%S"))
        known = (
            self.sudo()
            .with_context(active_test=False)
            .search([("drill_database", "!=", False)])
            .mapped("drill_database")
        )
        interval = self._drill_interval()
        self.sudo().write(
            {
                "last_drill_at": now,
                "last_drill_state": "running",
                "last_drill_message": False,
                "drill_database": drill_db,
                "next_drill_at": now + interval if interval else False,
            }
        )
        run = Run.create(
            {
                "kind": "drill",
                "label": "drill",
                "schedule_id": self.id,
                "state": "running",
                "date": now,
                "started_at": now,
                "progress": 0.0,
                "progress_message": self.env._("Starting"),
                "requested_by_id": user.id if user else False,
            }
        )
        source_run, copy = self._newest_archive(own=True)
        if not copy:
            self._drill_finished(
                run,
                False,
                self.env._(
                    "No stored archive of the schedule %(name)s to restore: nothing "
                    "is proven restorable.",
                    name=self.display_name,
                ),
            )
            return run
        manifest = json.loads(source_run.manifest_json or "{}")
        job = {
            "target": "drill",
            "database": dbname,
            "run_id": run.id,
            "schedule_id": self.id,
            "archive_name": source_run.name,
            "stamp": now.strftime("%Y%m%d%H%M%S"),
            "known_drills": [name for name in known if name != drill_db],
            "db": backup_engine.db_params(dbname),
            "data_dir": backup_engine.data_dir(),
            "expected_uuid": self.env["ir.config_parameter"]
            .sudo()
            .get_param("database.uuid"),
            "expected_row_counts": manifest.get("row_counts") or None,
            "expected_bytes": int((manifest.get("dump") or {}).get("size") or 0)
            + int((manifest.get("filestore") or {}).get("bytes") or 0),
        }
        try:
            job["source"] = {
                "sink": copy.destination_id.sudo()._sink_config(),
                "name": copy.object_name,
            }
        except Exception as exc:  # credentials unreadable: the drill says so
            self._drill_finished(
                run,
                False,
                self.env._(
                    "The destination %(dest)s of %(file)s cannot be read: %(why)s",
                    dest=copy.destination_id.name,
                    file=source_run.name,
                    why=suite_error_message(self.env, exc),
                ),
            )
            return run
        if not detach:
            # the job writes through its own cursors: nothing of ours may be
            # flushed after it (it would overwrite its result)
            self.env.flush_all()
            restore_drill.run_drill_job(job)
            self.invalidate_recordset()
            run.invalidate_recordset()
            return run
        # the job process reads the run and the schedule from its own cursors
        self.env.cr.commit()  # pylint: disable=invalid-commit
        try:
            restore_job.spawn_detached(job)
        except Exception as exc:
            _logger.exception("Cannot start the restore drill of %s", dbname)
            self._drill_finished(
                run,
                False,
                self.env._("The drill process could not start: %(why)s", why=exc),
            )
        return run

    def _drill_progress(self, run, step, done=0, total=0):
        """The job process tells where the drill stands (its own cursor)."""
        from .db_backup_run import human_size

        labels = {
            "cleanup": self.env._("Removing what earlier drills left"),
            "restore": self.env._(
                "Verifying the archive and restoring it into a temporary database"
            ),
            "count": self.env._("Counting the rows of every table"),
            "drop": self.env._("Dropping the temporary database"),
        }
        message = labels.get(step, step)
        if done:
            message = "%s · %s" % (message, human_size(done))
        # restoring takes most of the bar (by bytes when the size is known)
        progress = DRILL_STEP_PROGRESS.get(step, run.progress)
        if step == "restore" and done and total:
            progress = 5.0 + 70.0 * min(done / total, 1.0)
        run.write({"progress": progress, "progress_message": message[:200]})
        run._send_progress()

    def _drill_finished(self, run, ok, message, details=None):
        """Record a drill's end: the run's state, the schedule's last drill
        (and, when it passed, its last proven restorable date); an alert
        mail with the reason when it failed; an audit event either way.
        ``self`` may be empty (the schedule was deleted meanwhile)."""
        details = details or {}
        now = fields.Datetime.now()
        if ok:
            summary = self.env._(
                "Restored %(file)s into a temporary database: %(tables)s tables, "
                "%(rows)s rows match the manifest; dropped.",
                file=details.get("archive") or details.get("archive_name") or "",
                tables=details.get("tables", 0),
                rows=details.get("rows", 0),
            )
            run.write(
                {
                    "state": "done",
                    "finished_at": now,
                    "progress": 100.0,
                    "progress_message": summary[:200],
                    "archive_created_at": backup_engine.naive_utc(
                        details.get("archive_created_at")
                    ),
                    "warning": "\n".join(details.get("warnings") or []) or False,
                }
            )
        else:
            summary = self.env._(
                "Restore drill of %(file)s failed: %(reason)s",
                file=details.get("archive") or self.env._("no archive"),
                reason=message,
            )
            run.write(
                {
                    "state": "failed",
                    "finished_at": now,
                    "progress_message": False,
                    "error": summary,
                }
            )
        for schedule in self.sudo():
            vals = {
                "last_drill_state": "ok" if ok else "failed",
                "last_drill_message": summary,
                "drill_database": False,
            }
            if ok:
                vals["last_proven_restorable"] = now
            schedule.write(vals)
        self.env["audit.event"].log_event(
            "backup",
            record=run,
            result="success" if ok else "failure",
            details={"operation": "restore_drill", **details},
            message=summary[:500],
        )
        if not ok:
            run._send_alert("drill_failed")
        run._send_progress()
