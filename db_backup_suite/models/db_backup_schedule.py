import calendar
import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from odoo import api, fields, models
from odoo.exceptions import ValidationError

from odoo.addons.base.models.res_partner import _tz_get

from . import backup_engine

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
    _inherit = ["db.backup.guarded.mixin"]
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
        "successfully (daily sandbox refresh).",
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
        records._log_settings("create")
        return records

    def write(self, vals):
        result = super().write(vals)
        if {"frequency", "hour", "company_id", "company_tz", "active", "kind"} & set(
            vals
        ):
            self._reschedule()
        if not set(vals) <= {
            "last_run",
            "next_run",
            "late_alert_sent",
            "last_proven_restorable",
            "sandbox_id",
        }:
            self._log_settings("write", sorted(vals))
        return result

    def unlink(self):
        self._log_settings("delete")
        return super().unlink()

    def _log_settings(self, operation, field_names=None):
        for record in self:
            self.env["audit.event"].log_event(
                "settings",
                record=record,
                details={"operation": operation, "fields": field_names or []},
                message="Backup schedule %s: %s" % (record._label(), operation),
            )

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
            super(DbBackupSchedule, record.sudo()).write(
                {"next_run": record._compute_next_run(now) if record.active else False}
            )

    def _due(self, now=None):
        now = now or fields.Datetime.now()
        return self.search([("active", "=", True), ("next_run", "<=", now)])

    def _retention_policy(self):
        """The engine's retention policy for this schedule's archives."""
        self.ensure_one()
        from odoo.addons.db_backup_suite.lib import retention

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
            super(DbBackupSchedule, self.sudo()).write(
                {"next_run": fields.Datetime.now()}
            )
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

    def _newest_archive(self):
        """The newest stored run of this database and a stored copy of it
        (at one of the schedule's destinations when it has some)."""
        self.ensure_one()
        Run = self.env["db.backup.run"].sudo()
        runs = Run.search(
            [
                ("state", "in", ("done", "partial")),
                ("name", "!=", False),
                ("kind", "!=", "sandbox_refresh"),
                ("database", "=", self.env.cr.dbname),
            ],
            order="archive_created_at desc, id desc",
        )
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
        from odoo.addons.db_backup_suite.lib import safety

        from . import restore_job

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
                self.env.cr.commit()
            outcome = restore_job.run_job(job)
        except Exception as exc:
            _logger.exception("Daily sandbox refresh of %s failed", dbname)
            outcome = {"ok": False, "message": str(exc) or repr(exc)}
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
                        why=exc,
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
