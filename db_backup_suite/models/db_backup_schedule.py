import calendar
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from odoo import api, fields, models
from odoo.exceptions import ValidationError

from odoo.addons.base.models.res_partner import _tz_get

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
    _server_owned_fields = ("last_run", "next_run", "late_alert_sent", "run_ids")

    name = fields.Char(
        string="Label", help="Shown in the Frequency column; defaults to the frequency."
    )
    active = fields.Boolean(default=True)
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
        if {"frequency", "hour", "company_id", "company_tz", "active"} & set(vals):
            self._reschedule()
        if not set(vals) <= {"last_run", "next_run", "late_alert_sent"}:
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
            self.frequency,
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
                reference + FREQUENCY_INTERVALS[schedule.frequency] + timedelta(hours=2)
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
