import logging
from datetime import timedelta

from odoo import api, fields, models

from . import backup_engine

_logger = logging.getLogger(__name__)
# PostgreSQL names hold 63 bytes; the engine checks that its staging and
# safety names "<target>_restoring_<stamp>" / "<target>_pre_restore_<stamp>"
# fit, even for a sandbox.
MAX_SANDBOX_NAME = 63 - len("_pre_restore_20260101000000")


class DbBackupSandbox(models.Model):
    _name = "db.backup.sandbox"
    _description = "Sandbox Database Restored from a Backup"
    _order = "create_date desc, id desc"

    name = fields.Char(string="Database", required=True, readonly=True)
    run_id = fields.Many2one("db.backup.run", readonly=True, ondelete="set null")
    archive_name = fields.Char(readonly=True)
    state = fields.Selection(
        [
            ("creating", "Creating"),
            ("ready", "Ready"),
            ("failed", "Failed"),
            ("dropped", "Dropped"),
        ],
        default="creating",
        required=True,
        readonly=True,
    )
    expires_at = fields.Datetime(
        default=lambda self: fields.Datetime.now() + timedelta(days=7), required=True
    )
    url = fields.Char(compute="_compute_url")
    error = fields.Text(readonly=True)
    requested_by_id = fields.Many2one(
        "res.users", readonly=True, default=lambda self: self.env.user
    )

    _sql_constraints = [
        ("name_uniq", "UNIQUE(name)", "A sandbox with this name exists.")
    ]

    @api.depends("name")
    def _compute_url(self):
        for sandbox in self:
            sandbox.url = "/web?db=%s" % sandbox.name

    def action_open(self):
        self.ensure_one()
        return {"type": "ir.actions.act_url", "url": self.url, "target": "new"}

    def action_drop(self):
        self.env["db.backup.run"]._check_restore_access()
        self.sudo()._drop()
        return True

    def _drop(self):
        for sandbox in self.filtered(
            lambda s: s.state in ("ready", "failed", "creating")
        ):
            try:
                backup_engine.drop_database(sandbox.name)
            except Exception as exc:
                _logger.warning("Cannot drop sandbox %s: %s", sandbox.name, exc)
                sandbox.error = str(exc)
                self.env["audit.event"].log_event(
                    "sandbox",
                    record=sandbox,
                    result="failure",
                    details={"operation": "drop"},
                    message=str(exc)[:500],
                )
                continue
            sandbox.state = "dropped"
            self.env["audit.event"].log_event(
                "sandbox", record=sandbox, details={"operation": "drop"}
            )

    @api.model
    def _cron_drop_expired(self):
        expired = self.search(
            [
                ("state", "in", ("ready", "failed")),
                ("expires_at", "<", fields.Datetime.now()),
            ]
        )
        expired._drop()
        return expired

    @api.model
    def _unique_name(self, dbname, today=None):
        """``<db>-sandbox-<YYYYmmdd>`` (``-2``, ``-3``... when taken), short
        enough for the engine's ``<name>_pre_restore_<stamp>`` to fit
        PostgreSQL's 63 bytes (a long database name is cut)."""
        stamp = (today or fields.Date.today()).strftime("%Y%m%d")
        known = set(self.with_context(active_test=False).search([]).mapped("name"))
        n = 1
        while True:
            suffix = "-sandbox-%s" % stamp + ("-%d" % n if n > 1 else "")
            name = dbname[: MAX_SANDBOX_NAME - len(suffix)] + suffix
            if name not in known and not backup_engine.database_exists(name):
                return name
            n += 1
