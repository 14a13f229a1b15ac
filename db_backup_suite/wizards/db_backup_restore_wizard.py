import base64
import json
import logging
import os

from odoo import api, fields, models, release
from odoo.exceptions import UserError

from ..models import backup_engine, restore_job

_logger = logging.getLogger(__name__)


class DbBackupRestoreWizard(models.TransientModel):
    _name = "db.backup.restore.wizard"
    _description = "Restore a Database Backup"

    run_id = fields.Many2one("db.backup.run", string="Backup", readonly=True)
    source = fields.Selection(
        [("run", "A backup of this database"), ("upload", "An uploaded archive")],
        default="run",
        required=True,
    )
    upload_file = fields.Binary(string="Archive file", attachment=False)
    upload_filename = fields.Char()
    upload_password = fields.Char(
        string="Archive password",
        help="For an archive downloaded with a password; leave empty for one "
        "encrypted with this server's key.",
    )
    target = fields.Selection(
        [("production", "Replace this database"), ("sandbox", "Restore to a sandbox")],
        default="production",
        required=True,
    )
    archive_name = fields.Char(string="File", readonly=True)
    archive_date = fields.Datetime(string="Date/Time", readonly=True)
    archive_size = fields.Char(string="Size", readonly=True)
    archive_encrypted = fields.Boolean(string="Encrypted", readonly=True)
    archive_odoo_version = fields.Char(string="Archive's Odoo version", readonly=True)
    running_odoo_version = fields.Char(
        string="Running Odoo version",
        readonly=True,
        default=lambda self: release.version,
    )
    modules_missing = fields.Text(
        string="Modules in the archive, not on this server", readonly=True
    )
    modules_extra = fields.Text(
        string="Modules installed here, not in the archive", readonly=True
    )
    compatible = fields.Boolean(readonly=True)
    incompatibility = fields.Char(readonly=True)
    database_name = fields.Char(
        string="Database", readonly=True, default=lambda self: self.env.cr.dbname
    )
    confirm_name = fields.Char(string="Type the database name to confirm")
    name_matches = fields.Boolean(compute="_compute_name_matches")
    sandbox_days = fields.Integer(string="Sandbox expires after (days)", default=7)
    state = fields.Selection(
        [
            ("draft", "Draft"),
            ("started", "Started"),
            ("done", "Done"),
            ("failed", "Failed"),
        ],
        default="draft",
        readonly=True,
    )
    result_message = fields.Text(readonly=True)
    sandbox_id = fields.Many2one("db.backup.sandbox", readonly=True)
    sandbox_url = fields.Char(related="sandbox_id.url")

    @api.depends("confirm_name", "database_name", "target", "compatible")
    def _compute_name_matches(self):
        for wizard in self:
            wizard.name_matches = bool(wizard.compatible) and (
                wizard.target == "sandbox"
                or (wizard.confirm_name or "") == wizard.database_name
            )

    @api.model_create_multi
    def create(self, vals_list):
        self.env["db.backup.run"]._check_restore_access()
        wizards = super().create(vals_list)
        for wizard in wizards:
            wizard._load_archive_info()
        return wizards

    def write(self, vals):
        self.env["db.backup.run"]._check_restore_access()
        result = super().write(vals)
        if "upload_file" in vals or "upload_password" in vals:
            for wizard in self.filtered(lambda w: w.source == "upload"):
                wizard._load_archive_info()
        return result

    # -- archive information --------------------------------------------
    def _load_archive_info(self):
        self.ensure_one()
        manifest = {}
        info = {}
        if self.source == "run" and self.run_id:
            run = self.run_id.sudo()
            manifest = json.loads(run.manifest_json or "{}")
            info = {
                "archive_name": run.name,
                "archive_date": run.archive_created_at or run.date,
                "archive_size": run.size_display,
                "archive_encrypted": run.encryption != "plaintext",
            }
        elif self.source == "upload" and self.upload_file:
            path = self._upload_path()
            try:
                described = restore_job.describe_file(path, self.upload_password)
            except Exception as exc:
                self.env["audit.event"].log_event(
                    "upload",
                    res_model=self._name,
                    res_id=self.id,
                    result="failure",
                    details={"file": self.upload_filename},
                    message=str(exc)[:500],
                )
                raise UserError(
                    self.env._(
                        "This file cannot be read as a backup archive: %(e)s", e=exc
                    )
                ) from exc
            manifest = described.get("manifest") or {}
            self.env["audit.event"].log_event(
                "upload",
                res_model=self._name,
                res_id=self.id,
                res_name=self.upload_filename,
                details={
                    "file": self.upload_filename,
                    "size": described.get("size"),
                    "encrypted": described.get("encrypted"),
                    "database": manifest.get("database"),
                },
                message="Backup archive uploaded for a restore",
            )
            info = {
                "archive_name": self.upload_filename or os.path.basename(path),
                "archive_date": restore_job.naive_utc(manifest.get("created_at")),
                "archive_size": described.get("size_display"),
                "archive_encrypted": described.get("encrypted", False),
            }
        else:
            return
        info.update(self._compare_manifest(manifest))
        super().write(info)

    @api.model
    def _manifest_odoo_version(self, manifest):
        """The archive's Odoo version; when ``base`` has no recorded version
        (Odoo 18 leaves it empty in databases it creates), the series most
        modules of the archive carry (``18.0`` of ``18.0.1.2``)."""
        version = manifest.get("odoo_version")
        if version:
            return version
        series = {}
        for module_version in (manifest.get("modules") or {}).values():
            parts = (module_version or "").split(".")
            if len(parts) >= 4:  # 18.0.x.y: the series prefix is meaningful
                key = ".".join(parts[:2])
                series[key] = series.get(key, 0) + 1
        return max(series, key=series.get) if series else ""

    def _compare_manifest(self, manifest):
        version = self._manifest_odoo_version(manifest)
        running = release.version
        vals = {"archive_odoo_version": version or self.env._("unknown")}
        if not version:
            vals.update(
                compatible=False,
                incompatibility=self.env._(
                    "The archive does not say which Odoo version made it."
                ),
            )
        elif version.split(".")[0] != running.split(".")[0] and not (
            version.startswith("saas~")
            and version[5:].split(".")[0] == running.split(".")[0]
        ):
            vals.update(
                compatible=False,
                incompatibility=self.env._(
                    "The archive was made by Odoo %(a)s; this server runs "
                    "Odoo %(b)s. A different major version cannot be restored "
                    "here (upgrade the database with Odoo's upgrade service "
                    "first).",
                    a=version,
                    b=running,
                ),
            )
        else:
            vals.update(compatible=True, incompatibility=False)
        modules = manifest.get("modules") or {}
        archived = set(modules if not isinstance(modules, dict) else modules.keys())
        installed = set(
            self.env["ir.module.module"]
            .sudo()
            .search([("state", "=", "installed")])
            .mapped("name")
        )
        available = set(self.env["ir.module.module"].sudo().search([]).mapped("name"))
        vals["modules_missing"] = ", ".join(sorted(archived - available)) or False
        vals["modules_extra"] = ", ".join(sorted(installed - archived)) or False
        if vals["modules_missing"] and vals.get("compatible"):
            vals.update(
                compatible=False,
                incompatibility=self.env._(
                    "Modules of the archive are not available on this server: %(m)s",
                    m=vals["modules_missing"],
                ),
            )
        return vals

    def _upload_path(self):
        """The uploaded archive in a private file (0600) of the data dir.

        An archive is ciphertext (or, for a legacy plaintext one, already a
        file the user holds); it is removed when the restore ends.
        """
        self.ensure_one()
        directory = os.path.join(backup_engine.jobs_dir(), "uploads")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        path = os.path.join(
            directory, "wizard-%s-%s.upload" % (self.env.cr.dbname, self.id)
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(base64.b64decode(self.upload_file))
        return path

    def _action_open(self):
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "new",
            "name": self.env._("Restore Database"),
        }

    def action_refresh(self):
        self._load_archive_info()
        return self._action_open()

    # -- the restore --------------------------------------------------------
    def _check_ready(self):
        self.ensure_one()
        self.env["db.backup.run"]._check_restore_access()
        if not self.compatible:
            raise UserError(
                self.incompatibility or self.env._("This archive cannot be restored.")
            )
        if (
            self.target == "production"
            and (self.confirm_name or "") != self.env.cr.dbname
        ):
            raise UserError(
                self.env._(
                    "Type the database name %(db)s exactly to confirm the restore.",
                    db=self.env.cr.dbname,
                )
            )
        ok, reason = backup_engine.keyring_status()
        if not ok and (self.source == "run" or not self.upload_password):
            raise UserError(
                self.env._("The server keyring is missing: %(r)s", r=reason)
            )

    def _build_job(self):
        self.ensure_one()
        run_model = self.env["db.backup.run"].sudo()
        dests = run_model.env["db.backup.destination"].search([("active", "=", True)])
        job = {
            "database": self.env.cr.dbname,
            "target": self.target,
            "requested_by_id": self.env.user.id,
            "requested_by": self.env.user.name,
            "archive_name": self.archive_name,
            "archive_created_at": fields.Datetime.to_string(self.archive_date)
            if self.archive_date
            else None,
            "pre_restore_sinks": [
                {"destination_id": d.id, "config": d._sink_config()} for d in dests
            ],
            "db": backup_engine.db_params(self.env.cr.dbname),
            "data_dir": backup_engine.data_dir(),
            "wizard_id": self.id,
        }
        if self.source == "run":
            copy = self.run_id.sudo().copy_ids.filtered(
                lambda c: c.state == "done" and c.destination_id
            )[:1]
            if not copy:
                raise UserError(
                    self.env._("No stored copy of this backup is reachable.")
                )
            job["source"] = {
                "sink": copy.destination_id._sink_config(),
                "name": copy.object_name,
            }
        else:
            job["source"] = {
                "path": self._upload_path(),
                "password": self.upload_password or None,
                "remove_after": True,
            }
        if self.target == "sandbox":
            sandbox = (
                self.env["db.backup.sandbox"]
                .sudo()
                .create(
                    {
                        "name": self.env["db.backup.sandbox"]
                        .sudo()
                        ._unique_name(self.env.cr.dbname),
                        "run_id": self.run_id.id,
                        "archive_name": self.archive_name,
                        "expires_at": fields.Datetime.now()
                        + __import__("datetime").timedelta(
                            days=max(self.sandbox_days, 1)
                        ),
                    }
                )
            )
            self.sandbox_id = sandbox
            job["sandbox_name"] = sandbox.name
            job["sandbox_id"] = sandbox.id
        return job

    def action_restore(self):
        """Start the restore in a detached process; return at once."""
        self._check_ready()
        job = self._build_job()
        self.env["audit.event"].log_event(
            "sandbox" if self.target == "sandbox" else "restore",
            record=self.run_id or None,
            res_model=None if self.run_id else self._name,
            details={
                "operation": "requested",
                "archive": self.archive_name,
                "target": self.target,
                "source": self.source,
            },
            message="Restore requested",
        )
        # The detached process must see the sandbox row and the audit event.
        self.env.cr.commit()  # noqa: B012 - the job process reads what we wrote
        restore_job.spawn_detached(job)
        self.write(
            {
                "state": "started",
                "result_message": self.env._(
                    "The restore runs in the background. Administrators "
                    "receive a mail when it ends; during the swap, users are "
                    "disconnected for a moment."
                ),
            }
        )
        return self._action_open()

    def action_restore_now(self):
        """Run the restore in this process and wait (tests, the CLI)."""
        self._check_ready()
        job = self._build_job()
        result = restore_job.run_job(job)
        self.env.invalidate_all()  # the job wrote through its own cursors
        self.write(
            {
                "state": "done" if result.get("ok") else "failed",
                "result_message": result.get("message"),
            }
        )
        return result

    def action_open_sandbox(self):
        self.ensure_one()
        return self.sandbox_id.action_open()
