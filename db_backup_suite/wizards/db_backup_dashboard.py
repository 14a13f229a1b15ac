from odoo import api, fields, models

from ..models import backup_engine


class DbBackupDashboard(models.TransientModel):
    """The Database Backups page: keyring banner, status panel, Backup Now
    and the list of backups with their Restore buttons."""

    _name = "db.backup.dashboard"
    _inherit = ["db.backup.guarded.mixin"]
    _description = "Database Backups"
    # Every figure is computed by the server.
    _user_create_fields = ()
    _user_write_fields = ()

    keyring_ok = fields.Boolean(compute="_compute_status")
    keyring_message = fields.Char(compute="_compute_status")
    last_success_date = fields.Datetime(
        string="Last successful backup", compute="_compute_status"
    )
    last_success_size = fields.Char(string="Size", compute="_compute_status")
    next_run = fields.Datetime(
        string="Next scheduled backup", compute="_compute_status"
    )
    next_schedule = fields.Char(string="Schedule", compute="_compute_status")
    problem_count = fields.Integer(compute="_compute_status")
    problems = fields.Text(
        string="Errors and warnings (last 30 backups)", compute="_compute_status"
    )
    running = fields.Boolean(compute="_compute_status")
    run_ids = fields.Many2many(
        "db.backup.run", string="Backups", compute="_compute_status"
    )
    can_restore = fields.Boolean(compute="_compute_status")

    @api.depends_context("uid")
    def _compute_status(self):
        run_model = self.env["db.backup.run"]
        run_model._check_operator_access()
        ok, message = backup_engine.keyring_status()
        status = run_model._status_summary()
        runs = run_model.search([], limit=200)
        for dashboard in self:
            dashboard.keyring_ok = ok
            dashboard.keyring_message = message
            dashboard.last_success_date = status["last_ok"].date
            dashboard.last_success_size = status["last_ok"].size_display
            dashboard.next_run = status["next_run"]
            dashboard.next_schedule = status["next_schedule"].display_name or False
            dashboard.problem_count = len(status["problems"])
            dashboard.problems = (
                "\n".join(
                    "%s %s: %s"
                    % (
                        fields.Datetime.to_string(r.date),
                        r.label or "",
                        (r.error or r.warning or "").splitlines()[0][:200]
                        if (r.error or r.warning)
                        else "",
                    )
                    for r in status["problems"]
                )
                or False
            )
            dashboard.running = bool(
                runs.filtered(lambda r: r.state in ("queued", "running"))
            )
            dashboard.run_ids = runs
            dashboard.can_restore = self.env.user.has_group(
                "db_backup_suite.backup_group_restore"
            )

    def action_backup_now(self):
        self.env["db.backup.run"].action_backup_now()
        return self.action_reload()

    def action_reload(self):
        return self.action_open()

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
