import logging
import os
import secrets
from datetime import timedelta
from urllib.parse import quote as url_quote

from odoo import SUPERUSER_ID, api, fields, models
from odoo.exceptions import AccessError, UserError

from odoo.addons.audit_export.tools.suite_errors import suite_error_message

from ..service import backup_engine

_logger = logging.getLogger(__name__)
# PostgreSQL names hold 63 bytes; the engine checks that its staging and
# safety names "<target>_restoring_<stamp>" / "<target>_pre_restore_<stamp>"
# fit, even for a sandbox.
MAX_SANDBOX_NAME = 63 - len("_pre_restore_20260101000000")
DROPPABLE_STATES = ("ready", "failed")
#: the registry's kinds (``lib.registry.KINDS``), as listed here
KINDS = [
    ("sandbox", "Sandbox"),
    ("safety_copy", "Pre-restore safety copy"),
    ("drill", "Restore drill"),
    ("staging", "Restore staging"),
]
#: ``lib.safety`` name kind -> the row's kind
KIND_OF_NAME = {
    "sandbox": "sandbox",
    "safety": "safety_copy",
    "scratch": "drill",
    "drill": "drill",
    "staging": "staging",
}


def _registry():
    from ..lib import registry

    return registry


def kind_of_name(name):
    """The kind of a database the suite names ``name`` (sandbox default)."""
    from ..lib import safety

    return KIND_OF_NAME.get(safety.suite_database_kind(name), "sandbox")


class DbBackupSandbox(models.Model):
    """A database the suite made beside this one: a neutralized sandbox, or
    the safety copy a production restore keeps of the replaced database
    (``kind``; restore drill and staging databases left behind are listed
    too).

    The rows live in this database, which a production restore replaces:
    the suite also keeps every such database in its registry outside every
    database (``lib.registry``). Each row that becomes ready is registered,
    each drop unregisters it, and ``_sync_registry`` (the expiry cron and
    every restore) lists again what the registry holds for this database,
    so a restore never hides a database the suite made. A drop requires
    the registry to list the name for this database, besides the naming
    rule and the marker written into the database.

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
    # not required in SQL: rows written before it (or behind the server's
    # back) are sandboxes, the strictest kind to drop
    kind = fields.Selection(KINDS, default="sandbox", readonly=True)
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

    @api.model_create_multi
    def create(self, vals_list):
        records = super().create(vals_list)
        records.filtered(lambda s: s.state in DROPPABLE_STATES)._registry_register()
        return records

    def write(self, vals):
        old_names = {}
        if "name" in vals:
            old_names = {sandbox.id: sandbox.name for sandbox in self}
        result = super().write(vals)
        if old_names:
            for sandbox in self:
                if old_names[sandbox.id] != sandbox.name:
                    sandbox._registry_rename(old_names[sandbox.id])
        if vals.get("state") == "dropped":
            self._registry_unregister()
        elif {"state", "expires_at", "name"} & set(vals):
            self.filtered(lambda s: s.state in DROPPABLE_STATES)._registry_register()
        return result

    # A live sandbox's row is the suite's proof that the database is its own:
    # deleting it is refused on purpose. pylint: disable=no-raise-unlink
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

    # pylint: enable=no-raise-unlink

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
        if any(sandbox.kind not in (False, "sandbox") for sandbox in self):
            # the state before a restore (and what a drill or restore left):
            # administrators only
            self.env["db.backup.run"]._check_admin_access()
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
        from ..lib import errors

        failures = []
        production = self.env.cr.dbname
        for sandbox in self.filtered(lambda s: s.state in DROPPABLE_STATES):
            name = sandbox.name
            try:
                report = sandbox._drop_registered(production)
            except errors.SafetyError as exc:
                reason = suite_error_message(self.env, exc)
                _logger.warning("Refused to drop %r: %s", name, reason)
            except Exception as exc:
                reason = suite_error_message(self.env, exc) or repr(exc)
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

    def _drop_registered(self, production):
        """Drop this row's database and filestore, checked: the name is the
        suite's for this kind and ``production`` (``lib.safety``), the
        registry lists it for ``production`` (a database merely named like
        one, or a row forged in this table, is left alone), the database
        carries this row's marker (``drill``/``staging``: the registered
        marker when there is one), the filestore lies inside the data
        directory. A row whose database and filestore are both gone is only
        marked dropped. Unregisters it after the drop."""
        self.ensure_one()
        from ..lib import errors, safety

        registry = _registry()
        name, data_dir = self.name, backup_engine.data_dir()
        kinds = registry.KIND_NAMES[self.kind or "sandbox"]
        safety.check_suite_database_name(name, kinds, production)
        filestore = safety.filestore_of(data_dir, name)
        entry = registry.get(data_dir, name)
        if entry is None or entry.production_db != production:
            if not backup_engine.database_exists(name) and not os.path.lexists(
                filestore
            ):
                return {"database": name, "filestore": None, "gone": True}
            raise errors.NotSuiteDatabaseError(
                self.env._(
                    "refusing to drop %(name)s: the suite's registry does not list "
                    "it as a database it made for %(db)s",
                    name=name,
                    db=production,
                )
            )
        if self.kind in (False, "sandbox", "safety_copy"):
            report = backup_engine.drop_sandbox_database(
                name, production, self.sudo().marker
            )
        else:
            found = backup_engine.sandbox_marker_of(name)
            if (
                entry.marker_sha256
                and backup_engine.database_exists(name)
                and not registry.marker_matches(entry, found)
            ):
                raise errors.NotSuiteDatabaseError(
                    self.env._(
                        "refusing to drop %(name)s: it does not carry the mark "
                        "the suite registered for it",
                        name=name,
                    )
                )
            backup_engine._close_database(name)
            report = safety.drop_database_if_suite_owned(
                backup_engine.pg_params(),
                name,
                production_db=production,
                data_dir=data_dir,
                kinds=kinds,
            )
        registry.unregister(data_dir, name)
        return report

    # ------------------------------------------------------------------
    # The registry of the databases the suite made (lib/registry.py)
    # ------------------------------------------------------------------
    def _registry_register(self):
        """Record these rows' databases in the registry when they exist and
        carry the row's marker (best effort: the registry is a list, a
        failure to write it is logged, never a failed restore)."""
        from ..lib import errors

        registry = _registry()
        production = self.env.cr.dbname
        for sandbox in self.sudo():
            marker = sandbox.marker
            try:
                # a name the suite would not give (never connected to)
                registry.check_entry_name(
                    sandbox.name, sandbox.kind or "sandbox", production
                )
                if not backup_engine.database_exists(sandbox.name):
                    continue
                found = backup_engine.sandbox_marker_of(sandbox.name)
                marked = bool(marker and found == marker)
                if sandbox.kind in (False, "sandbox", "safety_copy") and not marked:
                    continue  # not (yet) marked as made by this row
                registry.register(
                    backup_engine.data_dir(),
                    sandbox.name,
                    sandbox.kind or "sandbox",
                    production,
                    expires=sandbox.expires_at,
                    creator=sandbox.requested_by_id.login or None,
                    # only a marker the database carries (else the
                    # registered one, if any, stays)
                    marker=marker if marked else None,
                )
            except (errors.SafetyError, registry.RegistryError) as exc:
                _logger.debug("Not registered: %s: %s", sandbox.name, exc)
            except Exception as exc:
                _logger.warning("Not registered: %s: %s", sandbox.name, exc)

    def _registry_unregister(self):
        registry = _registry()
        for sandbox in self:
            try:
                entry = registry.get(backup_engine.data_dir(), sandbox.name)
                if entry and entry.production_db == self.env.cr.dbname:
                    registry.unregister(backup_engine.data_dir(), sandbox.name)
            except Exception as exc:
                _logger.warning("Cannot unregister %s: %s", sandbox.name, exc)

    def _registry_rename(self, old):
        self.ensure_one()
        try:
            if not _registry().rename(backup_engine.data_dir(), old, self.name):
                self._registry_register()
        except Exception as exc:
            _logger.warning("Cannot rename %s in the registry: %s", old, exc)

    @api.model
    def _sync_registry(self, restored=False):
        """List again what the registry holds for this database.

        - entries whose database is gone are pruned;
        - every registered database without a row gets one (its kind,
          expiry and creator from the registry; the marker read from the
          database when it is the one registered, else a new one: then the
          drop refuses it until a person looks);
        - rows this database lists whose database exists and carries the
          row's marker are registered (rows made before the registry);
        - after a restore (``restored``), rows the archive left
          ``creating`` are settled, and ready rows whose database is gone
          and that the registry does not list are marked dropped.

        Returns ``{"listed": [names], "settled": [names]}``.
        """
        registry = _registry()
        data_dir = backup_engine.data_dir()
        production = self.env.cr.dbname
        Sandbox = self.sudo().with_context(active_test=False)
        try:
            registry.prune(data_dir, backup_engine.database_exists, production)
            entries = registry.entries_for(data_dir, production)
        except Exception as exc:
            _logger.warning("Cannot read the registry of %s: %s", production, exc)
            return {"listed": [], "settled": [], "error": str(exc)}
        rows = {row.name: row for row in Sandbox.search([])}
        listed = []
        for entry in entries:
            row = rows.get(entry.name)
            if row and row.state != "dropped":
                continue
            vals = self._vals_from_entry(entry)
            if row:
                row.write(vals)
            else:
                rows[entry.name] = Sandbox.create(vals)
            listed.append(entry.name)
        registered = {entry.name for entry in entries}
        Sandbox.browse(
            [
                row.id
                for name, row in rows.items()
                if name not in registered and row.state in DROPPABLE_STATES
            ]
        )._registry_register()
        settled = self._settle_after_restore(rows, registered) if restored else []
        return {"listed": listed, "settled": settled}

    @api.model
    def _vals_from_entry(self, entry):
        from .db_backup_run import PRE_RESTORE_KEEP_DAYS

        registry = _registry()
        found = backup_engine.sandbox_marker_of(entry.name)
        created = entry.created_at.replace(tzinfo=None)
        days = PRE_RESTORE_KEEP_DAYS if entry.kind == "safety_copy" else 7
        expires = entry.expires_at
        user = (
            self.env["res.users"]
            .sudo()
            .search([("login", "=", entry.creator or "")], limit=1)
        )
        return {
            "name": entry.name,
            "kind": entry.kind,
            "state": "ready",
            "archive_name": self.env._(
                "listed from the registry (made %(date)s)",
                date=fields.Datetime.to_string(created),
            )
            if entry.kind != "safety_copy"
            else self.env._("state before a restore"),
            "expires_at": expires.replace(tzinfo=None)
            if expires
            else created + timedelta(days=days),
            "requested_by_id": user.id or False,
            "marker": found
            if registry.marker_matches(entry, found)
            else secrets.token_hex(24),
            "drop_error": False,
        }

    @api.model
    def _settle_after_restore(self, rows, registered):
        """The archive's rows after a restore: ``creating`` ones are ready
        when their database exists and is registered, else failed; ready
        ones whose database is gone (and unregistered) were dropped."""
        settled = []
        for name, row in rows.items():
            if name in registered or row.state not in ("creating", "ready"):
                continue
            if backup_engine.database_exists(name):
                if row.state == "creating":
                    row.write(
                        {
                            "state": "failed",
                            "error": self.env._(
                                "Still being created when the restored archive was "
                                "taken; check it before use."
                            ),
                        }
                    )
                    settled.append(name)
                continue
            row.write(
                {
                    "state": "failed" if row.state == "creating" else "dropped",
                    "error": self.env._(
                        "Its database no longer exists (seen after a restore)."
                    ),
                }
            )
            settled.append(name)
        return settled

    @api.model
    def _on_database_restored(self, restore_info):
        """A production restore brought back this table as the archive had
        it: list again every database the registry holds for this one."""
        if restore_info.get("target") != "production":
            return None  # a sandbox's rows describe its source's sandboxes
        return self._sync_registry(restored=True)

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
        # what the registry holds for this database is listed first (a
        # restore may have replaced the rows), so it expires too
        self._sync_registry()
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
        from ..lib import safety

        day = (today or fields.Date.today()).strftime("%Y%m%d")
        # every row: a long database name is cut in its sandboxes' names, so
        # no prefix of ``dbname`` finds them (a handful of rows)
        rows = self.sudo().search([])  # pylint: disable=no-search-all
        known = set(rows.mapped("name"))
        n = 1
        while True:
            name = safety.sandbox_name(dbname, day, n)
            if name not in known and not backup_engine.database_exists(name):
                return name
            n += 1
