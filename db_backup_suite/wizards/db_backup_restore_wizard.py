import base64
import io
import json
import logging
import os
from datetime import timedelta

from markupsafe import Markup, escape

from odoo import api, fields, models, release
from odoo.exceptions import AccessError, UserError
from odoo.tools import SQL, format_datetime, formatLang

from odoo.addons.audit_export.tools.suite_errors import suite_error_message

from ..controllers.upload import MAX_SIZE_PARAM, upload_error_text
from ..lib import uploads
from ..models.db_backup_run import BUS_PROGRESS, human_size
from ..service import backup_engine, restore_job

_logger = logging.getLogger(__name__)
# The archive password waits (sealed) between the upload and the restore.
PASSWORD_PURPOSE = "db-backup-upload-password"
# An archive sent whole in ``upload_file`` (base64, over RPC: the one request
# holds it) is accepted up to this size; the chunked upload
# (controllers/upload.py) takes any size up to its limit.
LEGACY_UPLOAD_MAX = 64 * 1024**2
# Who may restore over production an archive the server's keyring does not
# authenticate (a password-mode, legacy plaintext or Odoo archive: content a
# user could have written, e.g. a copy where they are administrators).
UNTRUSTED_PRODUCTION_GROUP = "base.group_system"
# What a user may send; everything else is the server's (archive facts,
# compatibility, source database, state, sandbox).
USER_CREATE_FIELDS = (
    "run_id",
    "source",
    "upload_id",
    "upload_filename",
    "upload_password",
    "target",
    "confirm_name",
    "sandbox_days",
    "confirm_foreign",
    "confirm_foreign_name",
)
USER_WRITE_FIELDS = tuple(
    f for f in USER_CREATE_FIELDS if f not in ("run_id", "source")
)
# The tables a person recognises, for the data summary of the dialog (the
# manifest counts the rows of every table): (table, model).
SUMMARY_TABLES = (
    ("res_company", "res.company"),
    ("res_users", "res.users"),
    ("res_partner", "res.partner"),
    ("product_template", "product.template"),
    ("crm_lead", "crm.lead"),
    ("sale_order", "sale.order"),
    ("purchase_order", "purchase.order"),
    ("account_move", "account.move"),
    ("stock_picking", "stock.picking"),
    ("project_task", "project.task"),
    ("hr_employee", "hr.employee"),
    ("mail_message", "mail.message"),
    ("ir_attachment", "ir.attachment"),
)
# Steps of a restore job and where its dialog's bar stands at each (%).
JOB_STEPS = {
    "check": 5,
    "pre_restore": 10,
    "restore": 30,
    "neutralize": 90,
    "post_restore": 95,
}


class DbBackupRestoreWizard(models.TransientModel):
    """Restore a backup over this database or into a sandbox.

    Server-side gates, re-checked when the restore starts (never taken from
    a stored flag): the Backup Restore group, a completed backup or an
    uploaded archive that still has the content that was described, a
    compatible Odoo version, the typed database name (production), and for
    an archive of ANOTHER database (its uuid differs from this one's) a
    separate confirmation naming both databases. The archive's facts, the
    source database and the state are the server's
    (``db.backup.guarded.mixin``); the upload password is never stored in
    clear (sealed with the server keyring until the restore starts).
    """

    _name = "db.backup.restore.wizard"
    _inherit = ["db.backup.guarded.mixin"]
    _description = "Restore a Database Backup"
    _user_create_fields = USER_CREATE_FIELDS
    _user_write_fields = USER_WRITE_FIELDS

    run_id = fields.Many2one("db.backup.run", string="Backup", readonly=True)
    source = fields.Selection(
        [("run", "A backup of this database"), ("upload", "An uploaded archive")],
        default="run",
        required=True,
        readonly=True,
    )
    upload_id = fields.Char(
        string="Uploaded archive",
        copy=False,
        help="The chunked upload holding the archive (a file of the server's "
        "private uploads folder, opened by this user); removed when the "
        "restore ends, or after a day if it never starts.",
    )
    upload_filename = fields.Char()
    upload_password = fields.Char(
        string="Archive password",
        compute="_compute_upload_password",
        inverse="_inverse_upload_password",
        help="For an archive downloaded with a password; leave empty for one "
        "encrypted with this server's key. Never stored in clear: it is kept "
        "sealed with the server key until the restore starts, then erased.",
    )
    upload_password_sealed = fields.Char(
        readonly=True, copy=False, groups="base.group_system"
    )
    upload_password_set = fields.Boolean(
        string="Password given", compute="_compute_upload_password"
    )
    upload_sha256 = fields.Char(readonly=True, copy=False)
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
    database_uuid = fields.Char(
        string="This database's uuid", compute="_compute_database_uuid"
    )
    # Whose archive: read from the archive itself (header and head manifest).
    archive_trusted = fields.Boolean(
        string="Authenticated by this server's key",
        readonly=True,
        help="A keyring-encrypted archive of this database: its header and "
        "every chunk are authenticated by the server key no user sees. Any "
        "other archive (password-encrypted, plaintext, another database's) "
        "may hold content a user wrote: only a Settings administrator "
        "restores it over this database.",
    )
    production_refusal = fields.Text(compute="_compute_production_refusal")
    source_db_name = fields.Char(string="Source database", readonly=True)
    source_db_uuid = fields.Char(string="Source database uuid", readonly=True)
    source_created_at = fields.Datetime(string="Source backup date", readonly=True)
    foreign = fields.Boolean(
        string="Archive of another database",
        readonly=True,
        help="The archive's database uuid differs from this database's.",
    )
    foreign_warning = fields.Text(compute="_compute_foreign_warning")
    confirm_foreign = fields.Boolean(
        string="I restore another database's archive here",
        help="Its data replaces this database's (or fills the sandbox); the "
        "restored database keeps this database's uuid.",
    )
    confirm_foreign_name = fields.Char(string="Type the source database name")
    foreign_expected_name = fields.Char(compute="_compute_foreign_warning")
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
    progress = fields.Float(readonly=True)
    progress_message = fields.Char(string="Step", readonly=True)
    data_summary = fields.Html(
        string="What the archive holds", readonly=True, sanitize=True
    )
    version_summary = fields.Char(string="Odoo version", readonly=True)
    sandbox_id = fields.Many2one("db.backup.sandbox", readonly=True)
    sandbox_url = fields.Char(related="sandbox_id.url")
    sandbox_own_host = fields.Boolean(related="sandbox_id.own_host")
    sandbox_state = fields.Selection(related="sandbox_id.state", string="Sandbox state")
    # Followed live by the dialog (same names as the backups page's: one
    # widget shows both; static/src/backend).
    live_res_model = fields.Char(compute="_compute_live")
    live_res_id = fields.Integer(compute="_compute_live")
    live_title = fields.Char(compute="_compute_live")
    live_state = fields.Char(compute="_compute_live")
    live_state_label = fields.Char(compute="_compute_live")
    live_progress = fields.Float(compute="_compute_live")
    live_message = fields.Char(compute="_compute_live")
    live_error = fields.Char(compute="_compute_live")

    @api.depends("state", "progress", "progress_message", "result_message", "target")
    def _compute_live(self):
        for wizard in self:
            payload = wizard._progress_payload()
            wizard.live_res_model = payload["model"]
            wizard.live_res_id = payload["id"]
            wizard.live_title = payload["name"]
            wizard.live_state = payload["state"] or False
            wizard.live_state_label = payload["state_label"] or False
            wizard.live_progress = payload["progress"]
            wizard.live_message = payload["message"] or False
            wizard.live_error = payload["error"] or False

    def _compute_upload_password(self):
        for wizard in self:
            # write-only: the value is never read back
            wizard.upload_password = False
            wizard.upload_password_set = bool(wizard.sudo().upload_password_sealed)

    def _inverse_upload_password(self):
        """Handled in ``create`` / ``write``: the clear password never
        reaches the database."""

    @api.depends_context("uid")
    def _compute_database_uuid(self):
        uuid = self._this_uuid()
        for wizard in self:
            wizard.database_uuid = uuid

    @api.depends("foreign", "source_db_name", "source_db_uuid", "source_created_at")
    def _compute_foreign_warning(self):
        for wizard in self:
            wizard.foreign_expected_name = wizard._foreign_expected_name()
            if not wizard.foreign:
                wizard.foreign_warning = False
                continue
            wizard.foreign_warning = self.env._(
                "FOREIGN ARCHIVE: this is a backup of database %(src)s (uuid "
                "%(src_uuid)s, taken %(date)s), not of this database %(db)s "
                "(uuid %(uuid)s). Restoring it puts %(src)s's data into "
                "%(into)s.",
                src=wizard.source_db_name or self.env._("(unknown name)"),
                src_uuid=wizard.source_db_uuid or self.env._("none"),
                date=format_datetime(self.env, wizard.source_created_at)
                if wizard.source_created_at
                else self.env._("at an unknown date"),
                db=self.env.cr.dbname,
                uuid=self._this_uuid(),
                into=self.env.cr.dbname
                if wizard.target == "production"
                else self.env._("a sandbox of %(db)s", db=self.env.cr.dbname),
            )

    @api.depends("archive_trusted", "archive_name", "target")
    @api.depends_context("uid")
    def _compute_production_refusal(self):
        for wizard in self:
            wizard.production_refusal = (
                wizard._untrusted_production_text()
                if wizard.archive_name and wizard._production_refused()
                else False
            )

    @api.depends(
        "confirm_name",
        "database_name",
        "target",
        "compatible",
        "foreign",
        "confirm_foreign",
        "confirm_foreign_name",
        "archive_trusted",
    )
    def _compute_name_matches(self):
        # For the view only: the restore checks everything again itself.
        for wizard in self:
            wizard.name_matches = (
                bool(wizard.compatible)
                and not (wizard.target == "production" and wizard._production_refused())
                and (
                    wizard.target == "sandbox"
                    or (wizard.confirm_name or "") == self.env.cr.dbname
                )
                and (not wizard.foreign or wizard._foreign_confirmed())
            )

    # -- CRUD -------------------------------------------------------------
    @api.model_create_multi
    def create(self, vals_list):
        self.env["db.backup.run"]._check_restore_access()
        # An upload given as a context default is taken as given in vals
        # (checked: a finished upload of this user), never applied unchecked.
        context = dict(self.env.context)
        default_upload = context.pop("default_upload_id", None)
        model = self.with_context(context)  # pylint: disable=context-overridden
        stored = []  # uploads made here from a legacy upload_file
        try:
            passwords = model._check_create_vals(vals_list, default_upload, stored)
            wizards = super(DbBackupRestoreWizard, model).create(vals_list)
            for wizard, password in zip(wizards, passwords, strict=True):
                if password:
                    wizard._seal_password(password)
                wizard._load_archive_info()
        except Exception:
            for upload_id in stored:
                uploads.remove(backup_engine.jobs_dir(), upload_id)
            raise
        return wizards

    def _check_create_vals(self, vals_list, default_upload, stored):
        """Check each wizard's values (upload, backup) before it is created;
        the upload passwords, taken out of the values."""
        passwords = []
        for vals in vals_list:
            if default_upload and "upload_id" not in vals:
                vals["upload_id"] = default_upload
            passwords.append(vals.pop("upload_password", None))
            legacy = bool(vals.get("upload_file"))
            self._take_upload(vals)
            if legacy:
                stored.append(vals["upload_id"])
            if vals.get("run_id"):
                run = self.env["db.backup.run"].browse(vals["run_id"]).exists()
                if not run:
                    raise UserError(self.env._("This backup does not exist."))
                run.check_access("read")
                if run.sudo().state not in ("done", "partial"):
                    raise UserError(
                        self.env._("Only a completed backup can be restored.")
                    )
                if vals.get("source", "run") != "run":
                    raise UserError(self.env._("A backup is restored as a backup."))
        return passwords

    def write(self, vals):
        self.env["db.backup.run"]._check_restore_access()
        if not self.env.su:
            self._check_own()
            if any(w.state != "draft" for w in self):
                raise UserError(self.env._("This restore has started already."))
        vals = dict(vals)
        password = vals.pop("upload_password", None)
        legacy = bool(vals.get("upload_file"))
        self._take_upload(vals)
        replaced = []
        if "upload_id" in vals or password:
            # what was confirmed was about the previous archive
            vals.update(confirm_foreign=False, confirm_foreign_name=False)
            replaced = [
                (w.create_uid.id, w.upload_id)
                for w in self
                if w.upload_id and w.upload_id != vals.get("upload_id")
            ]
        try:
            result = super().write(vals)
            if password:
                for wizard in self:
                    wizard._seal_password(password)
            if "upload_id" in vals or password:
                for wizard in self.filtered(lambda w: w.source == "upload"):
                    wizard._load_archive_info()
        except Exception:
            if legacy:  # stored for this write only
                uploads.remove(backup_engine.jobs_dir(), vals["upload_id"])
            raise
        if "upload_id" in vals:
            # the replaced upload, once the new one is read: only one of the
            # wizard's user in this database (never another's file)
            for wizard_uid, upload_id in replaced:
                uploads.remove_owned(
                    backup_engine.jobs_dir(),
                    upload_id,
                    database=self.env.cr.dbname,
                    uid=wizard_uid,
                )
        return result

    def _take_upload(self, vals):
        """Check the ``upload_id`` a user gives (a finished upload of theirs
        in this database) and fill its file name; turn a legacy
        ``upload_file`` (the archive in base64, small ones only) into such
        an upload. ``vals`` is changed in place."""
        legacy = vals.pop("upload_file", None)
        if legacy:
            vals["upload_id"] = self._store_legacy_upload(
                legacy, vals.get("upload_filename")
            )
        if not vals.get("upload_id"):
            return
        try:
            meta = uploads.read_meta(
                backup_engine.jobs_dir(),
                vals["upload_id"],
                database=self.env.cr.dbname,
                uid=self.env.uid,
            )
        except uploads.UploadError as exc:
            raise UserError(
                self.env._("This upload does not exist (or is not yours).")
            ) from exc
        if not meta["finished"]:
            raise UserError(
                self.env._("The upload is not complete: send the rest of the file.")
            )
        vals["upload_filename"] = meta["filename"]

    def _store_legacy_upload(self, content, filename):
        """An archive sent whole (base64) as a finished upload; its id.

        Held to the same limits as a chunked upload (the system parameter
        ``db_backup_suite.upload_max_bytes``, the free disk space, the
        number of unfinished uploads); a file that cannot be stored whole
        is removed at once."""
        if isinstance(content, str):
            content = content.encode()
        if len(content) > LEGACY_UPLOAD_MAX * 4 // 3 + 4:
            raise UserError(
                self.env._(
                    "An archive sent in one request may hold at most %(max)s; "
                    "use the upload of the restore dialog (in chunks) for a "
                    "larger one.",
                    max=human_size(LEGACY_UPLOAD_MAX),
                )
            )
        data = base64.b64decode(content)
        base = backup_engine.jobs_dir()
        owner = {"database": self.env.cr.dbname, "uid": self.env.uid}
        max_size = uploads.max_size_of(
            self.env["ir.config_parameter"].sudo().get_param(MAX_SIZE_PARAM)
        )
        try:
            meta = uploads.open_upload(
                base,
                size=len(data),
                filename=filename,
                max_size=max_size,
                **owner,
            )
        except uploads.UploadError as exc:
            raise UserError(upload_error_text(self.env, exc)) from exc
        try:
            uploads.write_chunk(
                base,
                meta["id"],
                offset=0,
                stream=io.BytesIO(data),
                length=len(data),
                **owner,
            )
            uploads.finish(base, meta["id"], **owner)
        except uploads.UploadError as exc:
            uploads.remove(base, meta["id"])
            raise UserError(upload_error_text(self.env, exc)) from exc
        except BaseException:
            uploads.remove(base, meta["id"])
            raise
        return meta["id"]

    def _remove_upload(self):
        """Remove this wizard's uploaded archive (the restore ended)."""
        for wizard in self.filtered("upload_id"):
            uploads.remove_owned(
                backup_engine.jobs_dir(),
                wizard.upload_id,
                database=self.env.cr.dbname,
                uid=wizard.create_uid.id,
            )

    @api.model
    def _cron_remove_stale_uploads(self):
        """Daily: uploads untouched for a day (abandoned, or whose restore
        never started) and prepared downloads a day old are removed."""
        base = backup_engine.jobs_dir()
        removed = uploads.remove_stale(base)
        if removed:
            _logger.info("Removed %s abandoned upload(s)", len(removed))
        self.env["db.backup.download.wizard"]._remove_stale_files()
        return removed

    def _check_own(self):
        """A wizard is driven by the user who opened it (the record rule
        hides the others' too)."""
        if not self.env.su and any(w.create_uid != self.env.user for w in self):
            raise AccessError(self.env._("This restore was opened by someone else."))

    # -- the sealed upload password ---------------------------------------
    def _this_uuid(self):
        return self.env["ir.config_parameter"].sudo().get_param("database.uuid", "")

    def _password_aad(self):
        self.ensure_one()
        return (
            "%s:%s:%s:%s"
            % (self._name, self.env.cr.dbname, self.id, self.create_uid.id)
        ).encode()

    def _seal_password(self, password):
        self.ensure_one()
        try:
            sealed = backup_engine.seal(
                PASSWORD_PURPOSE, self._this_uuid(), password, self._password_aad()
            )
        except backup_engine.KeyringUnavailable as exc:
            raise UserError(
                self.env._(
                    "The server keyring is needed to keep the archive password "
                    "until the restore starts: %(reason)s",
                    reason=suite_error_message(self.env, exc.__cause__ or exc),
                )
            ) from exc
        self.sudo().write({"upload_password_sealed": sealed})

    def _unsealed_password(self):
        self.ensure_one()
        sealed = self.sudo().upload_password_sealed
        if not sealed:
            return None
        try:
            return backup_engine.unseal(
                PASSWORD_PURPOSE, self._this_uuid(), sealed, self._password_aad()
            )
        except ValueError as exc:
            raise UserError(
                self.env._("Type the archive password again (%(e)s).", e=exc)
            ) from exc

    def _erase_password(self):
        self.sudo().write({"upload_password_sealed": False})

    # -- archive information --------------------------------------------
    def _stored_copy(self):
        self.ensure_one()
        return self.run_id.sudo().copy_ids.filtered(
            lambda c: c.state == "done" and c.destination_id
        )[:1]

    def _read_archive(self):
        """What the archive says about itself: ``(vals, manifest)``, the
        owner (source database name, uuid, date) read from the archive
        first. Raises UserError when it cannot be read."""
        self.ensure_one()
        if self.source == "run" and self.run_id:
            run = self.run_id.sudo()
            manifest = json.loads(run.manifest_json or "{}")
            owner = {}
            copy = self._stored_copy()
            if copy:
                try:
                    owner = restore_job.describe_stored(
                        copy.destination_id._sink_config(), copy.object_name
                    )
                except Exception as exc:
                    # the run's manifest (the server's own record) stands in
                    _logger.warning("Cannot read %s: %s", copy.object_name, exc)
            if not manifest and owner.get("manifest_read"):
                # A run listed again from the destinations (after a restore,
                # or Rescan) has no manifest of its own: the archive's or
                # snapshot's head manifest, just read, says what it is.
                manifest = {
                    key: owner[key]
                    for key in ("database", "uuid", "created_at", "label")
                    if owner.get(key)
                }
                manifest["odoo_version"] = owner.get("odoo_version") or ""
            vals = {
                "archive_name": run.name,
                "archive_date": run.archive_created_at or run.date,
                "archive_size": run.size_display,
                "archive_encrypted": run.encryption != "plaintext",
            }
            # the server's own backup, restored with the keyring: trusted
            # unless it is plaintext (then anyone who could write it could
            # have written it)
            keyring_mode = run.encryption != "plaintext" and owner.get(
                "encrypted", True
            )
        elif self.source == "upload" and self.upload_id:
            path = self._upload_path()
            password = self._unsealed_password()
            try:
                described = restore_job.describe_file(path, password)
            except UserError:
                raise
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
                        "This file cannot be read as a backup archive: %(e)s",
                        e=suite_error_message(self.env, exc),
                    )
                ) from exc
            manifest = described.get("manifest") or {}
            owner = described.get("owner") or {}
            vals = {
                "archive_name": self.upload_filename or os.path.basename(path),
                "archive_date": backup_engine.naive_utc(manifest.get("created_at")),
                "archive_size": described.get("size_display"),
                "archive_encrypted": described.get("encrypted", False),
                "upload_sha256": described.get("sha256"),
            }
            # read (every chunk authenticated) with the server keyring, not
            # with a password a user chose, nor plaintext
            keyring_mode = bool(described.get("encrypted")) and not password
        else:
            return None, None
        source_uuid = owner.get("uuid") if owner.get("uuid") is not None else None
        if source_uuid is None:
            source_uuid = manifest.get("uuid") or ""
        created = owner.get("created_at") or manifest.get("created_at")
        vals.update(
            source_db_name=owner.get("database") or manifest.get("database") or False,
            source_db_uuid=source_uuid or False,
            source_created_at=backup_engine.naive_utc(created)
            or vals.get("archive_date")
            or False,
            foreign=source_uuid != self._this_uuid(),
        )
        # this database's archive, authenticated by the server's key: what
        # a Backup Restore user may restore over production
        vals["archive_trusted"] = bool(keyring_mode) and not vals["foreign"]
        vals.update(self._compare_manifest(manifest))
        vals["data_summary"] = self._data_summary(manifest)
        return vals, manifest

    def _load_archive_info(self):
        self.ensure_one()
        vals, manifest = self._read_archive()
        if vals is None:
            return
        if self.source == "upload":
            self.env["audit.event"].log_event(
                "upload",
                res_model=self._name,
                res_id=self.id,
                res_name=self.upload_filename,
                details={
                    "file": self.upload_filename,
                    "size": vals.get("archive_size"),
                    "encrypted": vals.get("archive_encrypted"),
                    "database": vals.get("source_db_name"),
                    "uuid": vals.get("source_db_uuid"),
                    "foreign": vals.get("foreign"),
                },
                message="Backup archive uploaded for a restore",
            )
        self.sudo().write(vals)

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

    def _data_summary(self, manifest):
        """Rows of the main models in the archive beside this database's, and
        the filestore: what a restore brings back (HTML table)."""
        counts = manifest.get("row_counts") or {}
        if not counts:
            return False
        here = self._row_counts_here([t for t, _m in SUMMARY_TABLES if t in counts])
        models_ = self.env["ir.model"].sudo()
        rows = []
        for table, model in SUMMARY_TABLES:
            if table not in counts:
                continue
            label = models_._get(model).name if model in self.env else model
            rows.append(
                Markup(
                    "<tr><td>%s</td><td class='text-end'>%s</td>"
                    "<td class='text-end'>%s</td></tr>"
                )
                % (
                    label,
                    self._format_count(counts[table]),
                    self._format_count(here.get(table))
                    if table in here
                    else self.env._("none"),
                )
            )
        filestore = manifest.get("filestore") or {}
        totals = self.env._(
            "%(tables)s tables, %(rows)s rows; filestore: %(files)s files, %(size)s",
            tables=self._format_count(len(counts)),
            rows=self._format_count(sum(counts.values())),
            files=self._format_count(
                filestore.get("files", filestore.get("listed_files", 0))
            ),
            size=human_size(filestore.get("bytes", filestore.get("listed_bytes", 0))),
        )
        return Markup(
            "<table class='table table-sm o_db_backup_data_summary'><thead><tr>"
            "<th>%s</th><th class='text-end'>%s</th><th class='text-end'>%s</th>"
            "</tr></thead><tbody>%s</tbody></table><p class='text-muted'>%s</p>"
        ) % (
            self.env._("Records"),
            self.env._("In the archive"),
            self.env._("Here now"),
            Markup("").join(rows),
            totals,
        )

    def _row_counts_here(self, tables):
        """``count(*)`` of these tables in this database (those that exist)."""
        if not tables:
            return {}
        self.env.cr.execute(
            SQL(
                "SELECT relname FROM pg_class WHERE relkind = 'r' "
                "AND relnamespace = 'public'::regnamespace AND relname IN %s",
                tuple(tables),
            )
        )
        existing = [row[0] for row in self.env.cr.fetchall()]
        counts = {}
        for table in existing:
            self.env.cr.execute(SQL("SELECT count(*) FROM %s", SQL.identifier(table)))
            counts[table] = self.env.cr.fetchone()[0]
        return counts

    def _format_count(self, value):
        return escape(formatLang(self.env, int(value or 0), digits=0))

    @api.model
    def _series(self, version):
        """``18.0`` of ``18.0``, ``18.0.1.3``, ``18.0-20250506`` or
        ``saas~18.2`` (``saas~18.2``)."""
        version = (version or "").strip()
        if version.startswith("saas~"):
            return version.split("-")[0]
        parts = version.split("-")[0].split("+")[0].split(".")
        return ".".join(parts[:2]) if len(parts) >= 2 else version

    def _compare_manifest(self, manifest):
        version = self._manifest_odoo_version(manifest)
        running = release.version
        vals = {"archive_odoo_version": version or self.env._("unknown")}
        if version:
            series, here = self._series(version), self._series(running)
            vals["version_summary"] = (
                self.env._(
                    "Odoo %(series)s, like this server: it can be restored here",
                    series=series,
                )
                if series == here
                else self.env._(
                    "Odoo %(series)s (this server runs Odoo %(here)s)",
                    series=series,
                    here=here,
                )
            )
        else:
            vals["version_summary"] = self.env._("Unknown")
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
        # every module this server knows (a few hundred rows)
        modules = self.env["ir.module.module"].sudo()
        available = set(modules.search([]).mapped("name"))  # pylint: disable=no-search-all
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
        """The uploaded archive: a private file (0600) of the data dir's
        uploads folder (0700), finished, of this wizard's user and database.

        An archive is ciphertext (or, for a legacy plaintext one, already a
        file the user holds); it is removed when the restore ends.
        """
        self.ensure_one()
        try:
            return uploads.finished_path(
                backup_engine.jobs_dir(),
                self.upload_id,
                database=self.env.cr.dbname,
                uid=self.create_uid.id,
            )
        except uploads.UploadError as exc:
            raise UserError(
                self.env._(
                    "The uploaded archive is gone (removed after a day, or "
                    "after its restore): upload it again."
                )
            ) from exc

    def _action_open(self):
        self.ensure_one()
        if self.source == "upload":
            name = self.env._("Restore an Uploaded Archive")
        else:
            name = self.env._("Restore a Backup")
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "views": [(False, "form")],
            "target": "new",
            "name": name,
        }

    def action_refresh(self):
        self.ensure_one()
        self.env["db.backup.run"]._check_restore_access()
        self._check_own()
        if self.state != "draft":
            raise UserError(self.env._("This restore has started already."))
        self._load_archive_info()
        return self._action_open()

    # -- the restore --------------------------------------------------------
    def _foreign_expected_name(self):
        """What the user types to confirm a foreign archive: the source
        database's name (its uuid when the archive does not say)."""
        self.ensure_one()
        return self.source_db_name or self.source_db_uuid or ""

    def _foreign_confirmed(self):
        self.ensure_one()
        expected = self._foreign_expected_name()
        return bool(
            self.confirm_foreign
            and expected
            and (self.confirm_foreign_name or "").strip() == expected
        )

    def _check_ready(self):
        """Every gate, checked now from the archive itself (not from the
        wizard's stored flags, which only feed the view)."""
        self.ensure_one()
        self.env["db.backup.run"]._check_restore_access()
        self._check_own()
        if self.state != "draft":
            raise UserError(self.env._("This restore has started already."))
        if self.source == "run":
            if not self.run_id or self.run_id.sudo().state not in ("done", "partial"):
                raise UserError(self.env._("Only a completed backup can be restored."))
        elif not self.upload_id:
            raise UserError(self.env._("Upload an archive first."))
        vals, _manifest = self._read_archive()
        shown = (self.source_db_uuid or "", bool(self.foreign))
        if (vals["source_db_uuid"] or "", bool(vals["foreign"])) != shown:
            # the archive changed since it was shown: show it again
            self.sudo().write(
                dict(vals, confirm_foreign=False, confirm_foreign_name=False)
            )
            raise UserError(
                self.env._("The archive is not the one shown any more; check it again.")
            )
        if not vals["compatible"]:
            raise UserError(
                vals["incompatibility"]
                or self.env._("This archive cannot be restored.")
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
        if vals["foreign"] and not self._foreign_confirmed():
            raise UserError(
                self.env._(
                    "This is an archive of another database (%(src)s, uuid "
                    "%(uuid)s), not of %(db)s. Tick the confirmation and type "
                    "%(name)s to restore it anyway.",
                    src=vals["source_db_name"] or self.env._("unknown name"),
                    uuid=vals["source_db_uuid"] or self.env._("none"),
                    db=self.env.cr.dbname,
                    name=self._foreign_expected_name(),
                )
            )
        if (
            self.target == "production"
            and not vals["archive_trusted"]
            and not self._may_restore_untrusted()
        ):
            raise AccessError(self._untrusted_production_text())
        ok, reason = backup_engine.keyring_status()
        if not ok:
            raise UserError(
                self.env._("The server keyring is missing: %(r)s", r=reason)
            )

    def _may_restore_untrusted(self):
        """Whether this user may restore, over production, an archive the
        server's keyring does not authenticate (a Settings administrator:
        the Backup Restore group is below it)."""
        return self.env.user.has_group(UNTRUSTED_PRODUCTION_GROUP)

    def _production_refused(self):
        """For the view: production is refused to this user for this
        archive (``_check_ready`` decides, from the archive itself)."""
        self.ensure_one()
        return not self.archive_trusted and not self._may_restore_untrusted()

    def _untrusted_production_text(self):
        return self.env._(
            "This archive is not authenticated by this server's key (it is "
            "encrypted with a password, not encrypted, or a backup of another "
            "database): its content may have been written by anyone who had "
            "the file. Only a Settings administrator may restore it over "
            "%(db)s; you may restore it to a sandbox.",
            db=self.env.cr.dbname,
        )

    def _build_job(self):
        self.ensure_one()
        run_model = self.env["db.backup.run"].sudo()
        dests = run_model.env["db.backup.destination"].search([("active", "=", True)])
        this_uuid = self._this_uuid()
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
            # whose archive (the engine checks it before anything else)
            "expected_uuid": this_uuid,
        }
        if self.foreign:
            job.update(allow_foreign=True, foreign_source_uuid=self.source_db_uuid)
        if self.source == "run":
            copy = self._stored_copy()
            if not copy:
                raise UserError(
                    self.env._("No stored copy of this backup is reachable.")
                )
            job["source"] = {
                "sink": copy.destination_id._sink_config(),
                "name": copy.object_name,
            }
        else:
            path = self._upload_path()
            if restore_job.file_sha256(path) != self.upload_sha256:
                self._remove_upload()
                raise UserError(
                    self.env._(
                        "The uploaded file is not the one that was checked; "
                        "upload it again."
                    )
                )
            job["source"] = {
                "path": path,
                "password": self._unsealed_password(),
                "remove_after": True,
            }
        if self.target == "sandbox":
            Sandbox = self.env["db.backup.sandbox"].sudo()
            sandbox = Sandbox.create(
                {
                    "name": Sandbox._unique_name(self.env.cr.dbname),
                    "run_id": self.run_id.id,
                    "archive_name": self.archive_name,
                    "expires_at": fields.Datetime.now()
                    + timedelta(days=min(max(self.sandbox_days, 1), 90)),
                    "requested_by_id": self.env.user.id,
                }
            )
            self.sudo().sandbox_id = sandbox
            job["sandbox_name"] = sandbox.name
            job["sandbox_id"] = sandbox.id
            job["sandbox_marker"] = sandbox.marker
        return job

    def _log_requested(self):
        self.env["audit.event"].log_event(
            "sandbox" if self.target == "sandbox" else "restore",
            record=self.run_id or None,
            res_model=None if self.run_id else self._name,
            details={
                "operation": "requested",
                "archive": self.archive_name,
                "target": self.target,
                "source": self.source,
                "source_database": self.source_db_name,
                "source_uuid": self.source_db_uuid,
                "foreign": bool(self.foreign),
            },
            message="Restore requested"
            + (
                " (archive of another database: %s, confirmed)" % self.source_db_name
                if self.foreign
                else ""
            ),
        )

    def action_restore(self):
        """Start the restore in a detached process; return at once."""
        self._check_ready()
        job = self._build_job()
        self._erase_password()
        self._log_requested()
        # The detached process must see the sandbox row and the audit event.
        self.env.cr.commit()  # pylint: disable=invalid-commit
        restore_job.spawn_detached(job)
        self.sudo().write(
            {
                "state": "started",
                "progress": 0.0,
                "progress_message": self._step_label("start"),
                "result_message": self._started_message(),
            }
        )
        return self._action_open()

    def _started_message(self):
        self.ensure_one()
        if self.target == "sandbox":
            return self.env._(
                "The sandbox is being created in the background; this window "
                "follows it until it is ready. This database is not touched."
            )
        return self.env._(
            "The restore runs in the background; this window follows it. At "
            "the end the restored database replaces this one: everyone is "
            "disconnected for a moment. Administrators receive a mail when it "
            "ends."
        )

    # -- progress, written by the restore job ---------------------------
    def _step_label(self, step, done=None, detail=None):
        labels = {
            "start": self.env._("Starting"),
            "check": self.env._("Checking the archive"),
            "pre_restore": self.env._(
                "Backing up this database first (pre-restore copy)"
            ),
            "restore": self.env._("Restoring the sandbox database")
            if self.target == "sandbox"
            else self.env._(
                "Restoring into a new database (it replaces this one at the end)"
            ),
            "neutralize": self.env._(
                "Neutralizing the sandbox (no outgoing mail, no scheduled actions)"
            ),
            "post_restore": self.env._("Final steps"),
        }
        label = labels.get(step, step)
        if detail:
            label = "%s: %s" % (label, detail)
        if done:
            label = "%s · %s" % (label, human_size(done))
        return label

    def _progress_payload(self):
        """What the dialog (and a notification, at the end) shows of this
        restore: for its opener only (bus channel of the user)."""
        self.ensure_one()
        state = {"started": "running", "done": "done", "failed": "failed"}.get(
            self.state, ""
        )
        labels = {
            "running": self.env._("Running"),
            "done": self.env._("Done"),
            "failed": self.env._("Failed"),
        }
        if self.target == "sandbox":
            name = self.env._("Sandbox from %(file)s", file=self.archive_name or "")
        else:
            name = self.env._("Restore of %(file)s", file=self.archive_name or "")
        message = self.progress_message or ""
        if self.state in ("done", "failed"):
            message = self.result_message or message
        return {
            "model": self._name,
            "id": self.id,
            "name": name,
            "state": state,
            "state_label": labels.get(state, ""),
            "progress": 100.0 if self.state == "done" else self.progress or 0.0,
            "message": message,
            "error": (self.result_message or "") if self.state == "failed" else "",
            "final": self.state in ("done", "failed"),
            "target": self.target,
            "sandbox_id": self.sandbox_id.id or False,
        }

    def _job_progress(self, step=None, done=None, detail=None, result=None):
        """The restore job tells where it stands (sudo, from its process):
        the step (and bytes), or the end (``result``: ``{"ok", "message"}``).
        The dialog's opener sees it at once (bus)."""
        self.ensure_one()
        wizard = self.with_context(lang=self.create_uid.lang or "en_US")
        vals = {}
        if result is not None:
            vals = {
                "state": "done" if result.get("ok") else "failed",
                "result_message": result.get("message") or False,
                "progress": 100.0 if result.get("ok") else self.progress,
                "progress_message": False,
            }
        elif step:
            vals = {
                "progress_message": wizard._step_label(step, done, detail)[:200],
                "progress": float(JOB_STEPS.get(step, self.progress or 0)),
            }
        if vals:
            self.sudo().write(vals)
        self.create_uid.sudo()._bus_send(BUS_PROGRESS, wizard._progress_payload())

    def _restore_now(self):
        """Run the restore in this process and wait (tests, the CLI): the
        same gates as ``action_restore``; not callable over RPC."""
        self._check_ready()
        job = self._build_job()
        self._erase_password()
        self._log_requested()
        result = restore_job.run_job(job)
        self.env.invalidate_all()  # the job wrote through its own cursors
        self.sudo().write(
            {
                "state": "done" if result.get("ok") else "failed",
                "result_message": result.get("message"),
            }
        )
        return result

    def action_open_sandbox(self):
        self.ensure_one()
        self._check_own()
        return self.sandbox_id.action_open()
