import logging
import secrets
from datetime import timedelta
from urllib.parse import quote as url_quote

from odoo import SUPERUSER_ID, api, fields, models
from odoo.exceptions import AccessError, UserError

from . import backup_engine

_logger = logging.getLogger(__name__)
# PostgreSQL names hold 63 bytes; the engine checks that its staging and
# safety names "<target>_restoring_<stamp>" / "<target>_pre_restore_<stamp>"
# fit, even for a sandbox.
MAX_SANDBOX_NAME = 63 - len("_pre_restore_20260101000000")
DROPPABLE_STATES = ("ready", "failed")


class DbBackupSandbox(models.Model):
    """A database the suite made beside this one: a neutralized sandbox, or
    the safety copy a production restore keeps of the replaced database.

    Every field is the server's: a sandbox row is created by the restore
    wizard (or the restore job), never by a user, and its name is the
    object of a ``DROP DATABASE``; see ``db.backup.guarded.mixin``.
    """

    _name = "db.backup.sandbox"
    _inherit = ["db.backup.guarded.mixin"]
    _description = "Sandbox Database Restored from a Backup"
    _order = "create_date desc, id desc"
    _user_create_fields = ()
    _user_write_fields = ()
    _server_creates_only = True

    name = fields.Char(string="Database", required=True, readonly=True)
    run_id = fields.Many2one(
        "db.backup.run", string="Backup", readonly=True, ondelete="set null"
    )
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
        default=lambda self: fields.Datetime.now() + timedelta(days=7),
        required=True,
        readonly=True,
    )
    url = fields.Char(string="Address", compute="_compute_url")
    own_host = fields.Boolean(
        compute="_compute_url",
        help="The sandbox has its own address (Settings → Database Backups → "
        "Sandbox address): opening it leaves this session alone.",
    )
    error = fields.Text(readonly=True)
    drop_error = fields.Text(readonly=True, copy=False)
    requested_by_id = fields.Many2one(
        "res.users", readonly=True, default=lambda self: self.env.user
    )
    # Written into the sandbox database itself when the suite makes it; a
    # drop requires the database to carry it (a database merely named like a
    # sandbox is not one).
    marker = fields.Char(
        readonly=True,
        copy=False,
        groups="base.group_system",
        default=lambda self: secrets.token_hex(24),
    )

    _sql_constraints = [
        ("name_uniq", "UNIQUE(name)", "A sandbox with this name exists.")
    ]

    @api.depends("name")
    def _compute_url(self):
        """``https://{db}.example.com`` (the setting, for sandboxes served on
        their own host name, see readme/CONFIGURE.md), else this server with
        ``?db=``: the browser's session then switches to the sandbox."""
        pattern = self._url_pattern()
        for sandbox in self:
            name = sandbox.name or ""
            sandbox.own_host = bool(pattern)
            if pattern:
                sandbox.url = pattern.replace("{db}", url_quote(name, safe=""))
            else:
                sandbox.url = "/web?db=%s" % url_quote(name, safe="")

    @api.model
    def _url_pattern(self):
        pattern = (
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("db_backup_suite.sandbox_url_pattern")
            or ""
        ).strip()
        return pattern if "{db}" in pattern else ""

    def unlink(self):
        if not self.env.su and any(
            sandbox.state not in ("dropped", "failed") for sandbox in self
        ):
            raise AccessError(
                self.env._(
                    "Drop a sandbox before deleting its row: the row is how the "
                    "suite knows the database is its own."
                )
            )
        return super().unlink()

    def action_open(self):
        self.ensure_one()
        self.env["db.backup.run"]._check_restore_access()
        if self.state != "ready":
            raise UserError(self.env._("This sandbox is not ready."))
        # On its own address: a new tab, this session stays. On this
        # server's address the session switches database anyway (the view
        # asked first): in this tab, not in a second one that would pull
        # this one along.
        return {
            "type": "ir.actions.act_url",
            "url": self.url,
            "target": "new" if self.own_host else "self",
        }

    def action_drop(self):
        self.env["db.backup.run"]._check_restore_access()
        self.check_access("read")
        creating = self.filtered(lambda s: s.state == "creating")
        if creating:
            raise UserError(
                self.env._(
                    "%(names)s is still being created; drop it once the restore ended.",
                    names=", ".join(creating.mapped("name")),
                )
            )
        failures = self.sudo()._drop()
        if failures:
            raise UserError(
                self.env._(
                    "Not dropped: %(reasons)s",
                    reasons="; ".join(
                        "%s: %s" % (sandbox.name, reason)
                        for sandbox, reason in failures
                    ),
                )
            )
        return True

    def _drop(self):
        """Drop these sandboxes' databases and filestores (sudo: the callers
        checked the user). Each is checked at this moment, whoever asked
        (the Drop button or the expiry cron): a row the server created, in a
        droppable state, a name the suite derives from THIS database (never
        this database, ``postgres``, a template, ``..``), a database that
        carries the row's marker, a filestore inside the data directory.

        The outcome of each (state, refusal, audit event) is written in its
        own transaction, committed at once: a ``DROP DATABASE`` cannot be
        rolled back, so neither may its record, and a refusal stays in the
        audit log even when the caller then raises. Returns
        ``[(sandbox, reason)]`` of those refused or failed.
        """
        from odoo.addons.db_backup_suite.lib import errors

        failures = []
        production = self.env.cr.dbname
        for sandbox in self.filtered(lambda s: s.state in DROPPABLE_STATES):
            name = sandbox.name
            try:
                report = backup_engine.drop_sandbox_database(
                    name, production, sandbox.sudo().marker
                )
            except errors.SafetyError as exc:
                reason = str(exc)
                _logger.warning("Refused to drop %r: %s", name, reason)
            except Exception as exc:
                reason = str(exc) or repr(exc)
                _logger.warning("Cannot drop sandbox %r: %s", name, reason)
            else:
                sandbox._record_drop(
                    {"state": "dropped", "drop_error": False},
                    details={
                        "operation": "drop",
                        "database": name,
                        "filestore": report.get("filestore"),
                    },
                )
                continue
            failures.append((sandbox, reason))
            sandbox._record_drop(
                {"drop_error": reason},
                result="failure",
                details={"operation": "drop", "database": name},
                message=reason[:500],
            )
        self.invalidate_recordset()
        return failures

    def _record_drop(self, vals, **audit):
        """Write a drop's outcome and its audit event, committed now."""
        self.ensure_one()
        with self.env.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            sandbox = env[self._name].browse(self.id)
            sandbox.write(vals)
            env["audit.event"].log_event("sandbox", record=sandbox, **audit)

    @api.model
    def _cron_drop_expired(self):
        # A sandbox refused once (drop_error set) is left to a person: the cron
        # does not fill the audit log with the same refusal every hour.
        expired = self.search(
            [
                ("state", "in", DROPPABLE_STATES),
                ("expires_at", "<", fields.Datetime.now()),
                ("drop_error", "=", False),
            ]
        )
        expired._drop()
        return expired

    @api.model
    def _unique_name(self, dbname, today=None):
        """``<db>-sandbox-<YYYYmmdd>`` (``-2``, ``-3``... when taken), short
        enough for the engine's ``<name>_pre_restore_<stamp>`` to fit
        PostgreSQL's 63 bytes (a long database name is cut): the names
        ``lib.safety.check_sandbox_name`` accepts for ``dbname``."""
        from odoo.addons.db_backup_suite.lib import safety

        day = (today or fields.Date.today()).strftime("%Y%m%d")
        known = set(self.sudo().search([]).mapped("name"))
        n = 1
        while True:
            name = safety.sandbox_name(dbname, day, n)
            if name not in known and not backup_engine.database_exists(name):
                return name
            n += 1
