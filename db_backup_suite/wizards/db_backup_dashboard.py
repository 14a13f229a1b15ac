from markupsafe import Markup, escape

from odoo import api, fields, models
from odoo.tools import format_datetime

from ..models.db_backup_run import ACTIVE_STATES, BACKUP_KINDS
from ..service import backup_engine

#: the keyring error that only says none is configured (the banner says it)
NO_KEYRING = "no keyring configured"


class DbBackupDashboard(models.TransientModel):
    """The Database Backups page: keyring banner, the latest backup with
    its live progress, status panel, Backup Now and the list of backups
    with their Restore buttons.

    Every figure is computed by the server when the page (re)loads; the
    page reloads itself when a backup moves (bus, ``static/src/backend``).
    """

    _name = "db.backup.dashboard"
    _inherit = ["db.backup.guarded.mixin"]
    _description = "Database Backups"
    # Every figure is computed by the server.
    _user_create_fields = ()
    _user_write_fields = ()

    keyring_ok = fields.Boolean(compute="_compute_status")
    keyring_message = fields.Char(compute="_compute_status")
    keyring_problem = fields.Char(
        compute="_compute_status",
        help="What is wrong with the configured keyring (empty when none is "
        "configured at all: the banner says so).",
    )
    has_destination = fields.Boolean(compute="_compute_status")
    last_success_date = fields.Datetime(
        string="Last successful backup", compute="_compute_status"
    )
    last_success_size = fields.Char(string="Size", compute="_compute_status")
    next_run = fields.Datetime(
        string="Next scheduled backup", compute="_compute_status"
    )
    next_schedule = fields.Char(string="Schedule", compute="_compute_status")
    last_proven_restorable = fields.Datetime(
        string="Last proven restorable", compute="_compute_status"
    )
    drill_status = fields.Html(
        string="Restore drills",
        compute="_compute_drill_status",
        sanitize=False,
        help="Per schedule: when an archive was last proven restorable (restore "
        "drill or daily sandbox refresh), red when its last drill failed or none "
        "passed within two intervals.",
    )
    drill_alarm_count = fields.Integer(compute="_compute_drill_status")
    problem_count = fields.Integer(compute="_compute_status")
    # Two lists of runs: each its own relation name, or the ORM would keep
    # them equal as if they were one relation.
    problem_ids = fields.Many2many(
        "db.backup.run",
        relation="db_backup_dashboard_problem_rel",
        string="Errors and warnings (last 30 backups)",
        compute="_compute_status",
    )
    running = fields.Boolean(compute="_compute_status")
    run_ids = fields.Many2many(
        "db.backup.run",
        relation="db_backup_dashboard_run_rel",
        string="Backups",
        compute="_compute_status",
    )
    can_restore = fields.Boolean(compute="_compute_status")
    # The latest backup, followed live by the page (same names as the
    # restore dialog's: one widget shows both).
    live_res_model = fields.Char(compute="_compute_status")
    live_res_id = fields.Integer(compute="_compute_status")
    live_title = fields.Char(compute="_compute_status")
    live_state = fields.Char(compute="_compute_status")
    live_state_label = fields.Char(compute="_compute_status")
    live_progress = fields.Float(compute="_compute_status")
    live_message = fields.Char(compute="_compute_status")
    live_error = fields.Char(compute="_compute_status")

    @api.model_create_multi
    def create(self, vals_list):
        dashboards = super().create(vals_list)
        # create() caches the lists of runs as empty: read them afresh
        dashboards.invalidate_recordset()
        return dashboards

    @api.depends_context("uid")
    def _compute_display_name(self):
        for dashboard in self:
            dashboard.display_name = self.env._("Database Backups")

    @api.depends_context("uid")
    def _compute_status(self):
        run_model = self.env["db.backup.run"]
        run_model._check_operator_access()
        ok, message = backup_engine.keyring_status()
        status = run_model._status_summary()
        runs = run_model.search([], limit=200)
        # the latest job the page follows: a backup or a restore drill
        latest = run_model.search([("kind", "in", (*BACKUP_KINDS, "drill"))], limit=1)
        payload = latest._progress_payload() if latest else {}
        has_destination = bool(
            self.env["db.backup.destination"]
            .sudo()
            .search_count([("active", "=", True)], limit=1)
        )
        for dashboard in self:
            dashboard.keyring_ok = ok
            dashboard.keyring_message = message
            dashboard.keyring_problem = (
                False if ok or message.startswith(NO_KEYRING) else message
            )
            dashboard.has_destination = has_destination
            dashboard.last_success_date = status["last_ok"].date
            dashboard.last_success_size = status["last_ok"].size_display
            dashboard.next_run = status["next_run"]
            dashboard.last_proven_restorable = status.get("last_proven_restorable")
            dashboard.next_schedule = status["next_schedule"].display_name or False
            dashboard.problem_count = len(status["problems"])
            dashboard.problem_ids = status["problems"]
            dashboard.running = bool(runs.filtered(lambda r: r.state in ACTIVE_STATES))
            dashboard.run_ids = runs
            dashboard.can_restore = self.env.user.has_group(
                "db_backup_suite.backup_group_restore"
            )
            # the page follows backups even before the first one
            dashboard.live_res_model = "db.backup.run"
            dashboard.live_res_id = payload.get("id", 0)
            dashboard.live_title = payload.get("name", False)
            dashboard.live_state = payload.get("state", False)
            dashboard.live_state_label = payload.get("state_label", False)
            dashboard.live_progress = payload.get("progress", 0.0)
            dashboard.live_message = payload.get("message", False)
            dashboard.live_error = payload.get("error", False)

    @api.depends_context("uid", "tz")
    def _compute_drill_status(self):
        """One line per schedule that proves its archives restorable (built
        here, escaped: a Backup Operator reads no schedule itself)."""
        self.env["db.backup.run"]._check_operator_access()
        now = fields.Datetime.now()
        schedules = (
            self.env["db.backup.schedule"]
            .sudo()
            .search([("active", "=", True)])
            .filtered(lambda s: s._drill_interval())
        )
        rows = []
        alarms = 0
        for schedule in schedules:
            alarm = schedule._is_drill_alarm(now)
            alarms += alarm
            proven = schedule.last_proven_restorable
            when = (
                format_datetime(self.env, proven, tz=self.env.user.tz)
                if proven
                else self.env._("never")
            )
            detail = ""
            if schedule.last_drill_state == "running":
                detail = self.env._("a drill is running")
            elif schedule.kind == "backup" and schedule.next_drill_at:
                detail = self.env._(
                    "next drill %(when)s",
                    when=format_datetime(
                        self.env, schedule.next_drill_at, tz=self.env.user.tz
                    ),
                )
            failure = ""
            if alarm and schedule.last_drill_state == "failed":
                failure = (schedule.last_drill_message or "").strip().splitlines()[:1]
                failure = failure[0][:300] if failure else ""
            rows.append(
                Markup(
                    '<li class="%s" data-schedule="%s"><strong>%s</strong>: %s%s%s</li>'
                )
                % (
                    "text-danger o_db_backup_drill_alarm"
                    if alarm
                    else "o_db_backup_drill_ok",
                    schedule.id,
                    schedule.display_name,
                    self.env._("Last proven restorable: %(when)s", when=when),
                    Markup(" <small class='text-muted'>(%s)</small>") % detail
                    if detail
                    else "",
                    Markup("<br/><small>%s</small>") % failure if failure else "",
                )
            )
        if rows:
            html = Markup('<ul class="list-unstyled mb-0">%s</ul>') % Markup("").join(
                rows
            )
        else:
            html = Markup('<span class="text-muted">%s</span>') % escape(
                self.env._(
                    "No restore drill: an administrator sets one on a backup "
                    "schedule (weekly by default)."
                )
            )
        for dashboard in self:
            dashboard.drill_status = html
            dashboard.drill_alarm_count = alarms

    def action_backup_now(self):
        """Queue a backup; the page reloads in place (no new breadcrumb) and
        then follows the backup by itself."""
        return self.env["db.backup.run"].action_backup_now()

    def action_reload(self):
        """Refresh: nothing to return, so the page reloads its record in
        place (every figure is computed again)."""
        self.env["db.backup.run"]._check_operator_access()
        return False

    @api.model
    def action_open(self):
        """The page, on a fresh (saved) record so every figure is current."""
        self.env["db.backup.run"]._check_operator_access()
        dashboard = self.create({})
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Database Backups"),
            "res_model": self._name,
            "res_id": dashboard.id,
            "view_mode": "form",
            "views": [(False, "form")],
            "target": "current",
        }

    def action_upload(self):
        self.env["db.backup.run"]._check_restore_access()
        wizard = self.env["db.backup.restore.wizard"].create({"source": "upload"})
        return wizard._action_open()
