import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import uuid

from odoo import api, fields, models, modules
from odoo.exceptions import AccessError, UserError
from odoo.tools import SQL

from odoo.addons.audit_export.tools.suite_errors import suite_error_message

from ..lib.serialize import parse_field_paths, safe_filename
from ..lib.zipper import zip_member_writer
from .data_export_profile import FORMATS, MAX_JSON_DEPTH

_logger = logging.getLogger(__name__)

METADATA_FIELDS = ("create_date", "create_uid", "write_date", "write_uid")
#: Fields only the export machinery writes (never the requesting user): they
#: gate the run and the download.
PROTECTED_FIELDS = frozenset(
    {
        "state",
        "progress",
        "records_total",
        "records_done",
        "storage_name",
        "file_name",
        "file_size",
        "file_mimetype",
        "expires_at",
        "done_at",
        "error_message",
        "password_sealed",
        "password_protected",
        "background",
        "user_id",
        "download_token_hash",
        "download_token_user_id",
        "download_token_expires_at",
        "estimated_size",
        "omitted_paths",
    }
)
#: What the requester chooses, once: a job is not edited after its request.
REQUEST_FIELDS = frozenset(
    {
        "name",
        "profile_id",
        "company_ids",
        "model_name",
        "field_paths",
        "domain",
        "date_field",
        "date_from",
        "date_to",
        "state_values",
        "include_archived",
        "export_format",
        "csv_delimiter",
        "csv_bom",
        "json_depth",
        "header_style",
    }
)
#: A download link works once, for the user who asked for it, this long.
DOWNLOAD_TOKEN_TTL = dt.timedelta(minutes=5)
#: Bytes per invoice PDF, for the size estimate (one page, fonts embedded).
PDF_ESTIMATE = 60 * 1024
#: Bus notification type of a job's progress and end (static/src: the
#: progress widget and the "file is ready" notification listen to it).
BUS_UPDATE = "data_export_suite/job_update"
#: Default size limits (bytes): an export estimated above SYNC_MAX_BYTES runs
#: in the background even with few records (JSON at depth 3 on 14 users is
#: 131 MB and 28 s of work), one above MAX_FILE_BYTES is refused. Both are
#: system parameters (data_export_suite.sync_max_bytes / max_file_bytes).
SYNC_MAX_BYTES = 10 * 1024 * 1024
MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024
HEADER_STYLES = [
    ("labels", "Column labels"),
    ("names", "Technical names"),
]


def human_size(size):
    """``1536`` -> ``"1.5 KB"`` (decimal units, one decimal)."""
    value = float(size or 0)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            if unit == "bytes":
                return f"{int(value)} bytes"
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


class ExportTooLarge(UserError):
    """The export would exceed the size limit."""


class DataExportJob(models.Model):
    _name = "data.export.job"
    _description = "Data Export Job"
    _inherit = [
        "mail.thread",
        "data.export.file.store",
        "data.export.file.writer",
    ]
    _order = "id desc"

    name = fields.Char(required=True, readonly=True)
    profile_id = fields.Many2one(
        "data.export.profile", ondelete="set null", readonly=True
    )
    user_id = fields.Many2one(
        "res.users",
        string="Owner",
        required=True,
        readonly=True,
        index=True,
        default=lambda self: self.env.user,
    )
    company_ids = fields.Many2many(
        "res.company",
        string="Companies",
        readonly=True,
        default=lambda self: self.env.companies,
        help="The companies selected when the export was requested: the "
        "export sees their records only (multi-company rules).",
    )
    model_name = fields.Char(string="Model", required=True, readonly=True)
    field_paths = fields.Text(string="Fields", required=True, readonly=True)
    domain = fields.Char(default="[]", readonly=True)
    date_field = fields.Char(readonly=True)
    date_from = fields.Date(readonly=True)
    date_to = fields.Date(readonly=True)
    state_values = fields.Char(string="States", readonly=True)
    include_archived = fields.Boolean(readonly=True)
    export_format = fields.Selection(
        FORMATS, string="Format", required=True, default="csv", readonly=True
    )
    csv_delimiter = fields.Char(default=",", readonly=True)
    csv_bom = fields.Boolean(readonly=True)
    json_depth = fields.Integer(default=0, readonly=True)
    # The wizard asks for labels by default; a job requested by a script
    # (RPC) without saying keeps the technical names it always had.
    header_style = fields.Selection(
        HEADER_STYLES,
        string="Column Headers",
        default="names",
        required=True,
        readonly=True,
        help="CSV and Excel: the first row shows the columns' labels (as on "
        "screen) or the fields' technical names.",
    )
    estimated_size = fields.Integer(
        string="Estimated Size (bytes)",
        readonly=True,
        copy=False,
        help="Size of the file estimated before the export ran, in bytes.",
    )
    omitted_paths = fields.Text(
        string="Columns Left Out",
        readonly=True,
        copy=False,
        help="Columns of the profile this export was made from that its owner "
        "may not export (their access rights): left out of the file.",
    )
    model_label = fields.Char(string="Records Of", compute="_compute_model_label")
    file_size_text = fields.Char(string="Size", compute="_compute_size_texts")
    estimated_size_text = fields.Char(
        string="Estimated Size", compute="_compute_size_texts"
    )
    password_protected = fields.Boolean(
        readonly=True,
        help="The file is an AES-256 ZIP (WinZip AE-2) that 7-Zip opens.",
    )
    # groups=".": no user reads these over RPC, administrators included;
    # only server code (superuser environment) does.
    password_sealed = fields.Binary(
        attachment=False,
        groups=".",
        copy=False,
        help="The ZIP password, encrypted with the server keyring (purpose "
        "export-password, tenant the database uuid) until the job used it, "
        "then erased.",
    )
    state = fields.Selection(
        [
            ("queued", "Queued"),
            ("running", "Running"),
            ("done", "Ready"),
            ("failed", "Failed"),
            ("expired", "Expired"),
        ],
        default="queued",
        required=True,
        readonly=True,
        index=True,
        tracking=True,
    )
    background = fields.Boolean(readonly=True)
    records_total = fields.Integer(string="Records", readonly=True, aggregator="sum")
    records_done = fields.Integer(
        string="Records Written", readonly=True, aggregator="sum"
    )
    progress = fields.Float(
        readonly=True, aggregator="avg", help="Percentage of records written."
    )
    storage_name = fields.Char(readonly=True, copy=False, groups="base.group_system")
    file_name = fields.Char(readonly=True, copy=False)
    file_size = fields.Integer(
        readonly=True, copy=False, help="Size of the encrypted file in bytes."
    )
    file_mimetype = fields.Char(readonly=True, copy=False)
    done_at = fields.Datetime(readonly=True, copy=False)
    expires_at = fields.Datetime(readonly=True, copy=False, index=True)
    error_message = fields.Text(readonly=True, copy=False)
    download_token_hash = fields.Char(groups=".", copy=False)
    download_token_user_id = fields.Many2one("res.users", groups=".", copy=False)
    download_token_expires_at = fields.Datetime(groups=".", copy=False)

    @api.depends("model_name")
    def _compute_model_label(self):
        Profile = self.env["data.export.profile"]
        for job in self:
            job.model_label = (
                Profile._model_label(job.model_name) if job.model_name else False
            )

    @api.depends("file_size", "estimated_size")
    def _compute_size_texts(self):
        for job in self:
            job.file_size_text = human_size(job.file_size) if job.file_size else False
            job.estimated_size_text = (
                self.env._("about %(size)s", size=human_size(job.estimated_size))
                if job.estimated_size
                else False
            )

    # ------------------------------------------------------------------
    # CRUD
    # ------------------------------------------------------------------
    @api.model_create_multi
    def create(self, vals_list):
        # Context defaults never reach server-owned fields (a default_state
        # or default_storage_name would otherwise slip past the checks below).
        # the whole context, minus keys that must not reach the server's fields
        self = self.with_context(  # pylint: disable=context-overridden
            {
                key: value
                for key, value in self.env.context.items()
                if not (key.startswith("default_") and key[8:] in PROTECTED_FIELDS)
            }
        )
        if not self.env.su:
            # The requester chooses what to export, never the job's outcome
            # nor its owner.
            for vals in vals_list:
                refused = sorted(
                    key
                    for key in vals
                    if key in PROTECTED_FIELDS
                    and not (key == "user_id" and vals[key] == self.env.uid)
                )
                if refused:
                    raise AccessError(
                        self.env._(
                            "These fields of an export job are set by the server "
                            "only: %(fields)s",
                            fields=", ".join(refused),
                        )
                    )
            vals_list = [
                dict(vals, user_id=self.env.uid, state="queued") for vals in vals_list
            ]
        for vals in vals_list:
            if vals.get("profile_id"):
                self._complete_from_profile(vals)
            vals.setdefault("name", self._default_job_name(vals))
        jobs = super().create(vals_list)
        for job in jobs:
            job._validate_request()
        return jobs

    def write(self, vals):
        if "user_id" in vals and any(
            job.user_id.id != vals["user_id"] for job in self.sudo()
        ):
            # Not even the server: a job runs as the user who asked for it.
            raise AccessError(
                self.env._("The owner of an export job cannot be changed.")
            )
        if not self.env.su:
            refused = sorted((PROTECTED_FIELDS | REQUEST_FIELDS) & vals.keys())
            if refused:
                raise AccessError(
                    self.env._(
                        "An export job cannot be changed once requested (fields: "
                        "%(fields)s).",
                        fields=", ".join(refused),
                    )
                )
        return super().write(vals)

    def unlink(self):
        # Check first: the files must not go when the deletion is refused.
        self.check_access("unlink")
        for job in self.sudo():
            if job.storage_name:
                self.env["audit.event"].log_event(
                    "delete",
                    record=job,
                    details={"file": job.file_name, "owner": job.user_id.login},
                )
            job._delete_file()
        return super().unlink()

    def _complete_from_profile(self, vals):
        """A request naming a profile gets the profile's settings it does not
        give itself; without columns, the profile's columns the requester
        may export (the others are left out and listed, not refused: a
        ready-made profile serves users with and without, say, accounting
        rights). Columns given explicitly are checked strictly."""
        profile = self.env["data.export.profile"].browse(vals["profile_id"])
        profile.check_access("read")
        vals.setdefault("model_name", profile.model_name)
        if vals["model_name"] != profile.model_name:
            raise UserError(
                self.env._(
                    "Profile %(profile)s exports %(model)s records.",
                    profile=profile.name,
                    model=profile.model_name,
                )
            )
        defaults = {
            "domain": profile.domain or "[]",
            "date_field": profile.date_field_name or False,
            "date_from": profile.date_from,
            "date_to": profile.date_to,
            "state_values": profile.state_values,
            "include_archived": profile.include_archived,
            "export_format": profile.export_format,
            "csv_delimiter": profile.csv_delimiter or ",",
            "csv_bom": profile.csv_bom,
            "json_depth": profile.json_depth,
        }
        for key, value in defaults.items():
            vals.setdefault(key, value)
        if not vals.get("field_paths") or parse_field_paths(
            vals["field_paths"]
        ) == parse_field_paths(profile.field_paths):
            kept, omitted = self.env["data.export.profile"]._split_exportable_paths(
                profile.model_name, parse_field_paths(profile.field_paths)
            )
            if not kept:
                raise AccessError(
                    self.env._(
                        "You may export none of the columns of profile %(profile)s.",
                        profile=profile.name,
                    )
                )
            vals["field_paths"] = "\n".join(kept)
            if omitted:
                Profile = self.env["data.export.profile"]
                vals["omitted_paths"] = "\n".join(
                    Profile._path_label(profile.model_name, path) for path in omitted
                )

    def _default_job_name(self, vals):
        label = vals.get("model_name") or "export"
        if vals.get("profile_id"):
            label = self.env["data.export.profile"].browse(vals["profile_id"]).name
        elif label in self.env:
            label = self.env["data.export.profile"]._model_label(label)
        return f"{label} ({self._user_timestamp()})"

    def _user_timestamp(self, value=None, time_format=None):
        """``value`` (UTC, default now) in the user's time zone and date
        format, to the minute: what job names and messages show."""
        value = value or fields.Datetime.now()
        local = fields.Datetime.context_timestamp(
            self.with_context(tz=self.env.context.get("tz") or self.env.user.tz),
            value,
        )
        lang = self.env["res.lang"]._get_data(code=self.env.lang or "en_US")
        date_format = lang.date_format or "%m/%d/%Y"
        if time_format is None:
            time_format = (lang.time_format or "%H:%M:%S").replace(":%S", "")
        return local.strftime(f"{date_format} {time_format}".strip())

    # ------------------------------------------------------------------
    # Request
    # ------------------------------------------------------------------
    def _owner_env(self):
        """The environment of the requesting user: their rights, rules, companies."""
        self.ensure_one()
        user = self.sudo().user_id
        companies = self.sudo().company_ids & user.company_ids or user.company_id
        context = {
            "lang": user.lang,
            "tz": user.tz,
            "allowed_company_ids": companies.ids,
            "active_test": not self.include_archived,
        }
        if self.env.context.get("force_report_rendering"):
            # Odoo's switch for real PDF rendering under --test-enable.
            context["force_report_rendering"] = True
        return self.env(user=user.id, su=False, context=context)

    def _validate_request(self):
        """Fail at request time on anything the owner may not export."""
        self.ensure_one()
        if self.export_format not in dict(FORMATS):
            raise UserError(self.env._("Unknown export format."))
        if not 0 <= self.json_depth <= MAX_JSON_DEPTH:
            raise UserError(
                self.env._(
                    "The JSON depth must be between 0 and %(max)s.", max=MAX_JSON_DEPTH
                )
            )
        env = self._owner_env()
        if not env.user.has_group("data_export_suite.export_group_user"):
            raise AccessError(self.env._("You are not allowed to export data."))
        if self.profile_id:
            # Its name ends up in the file name: only a profile the owner reads.
            self.profile_id.with_env(env).check_access("read")
        Profile = env["data.export.profile"]
        if self.export_format == "csv":
            # refused now, not by the CSV writer when the export runs
            Profile._check_delimiter(self.csv_delimiter or ",")
        if self.export_format == "pdf" and (
            self.model_name != "account.move" or "account.move" not in env
        ):
            raise UserError(self.env._("PDF exports are available for invoices only."))
        Profile._resolve_field_paths(self.model_name, self._export_paths())
        Profile._build_domain(
            self.model_name,
            self.domain,
            self.date_field,
            self.date_from,
            self.date_to,
            self.state_values,
        )

    def _export_paths(self):
        paths = parse_field_paths(self.field_paths)
        if self.export_format == "json":
            Model = self.env[self.model_name]
            Profile = self._owner_env()["data.export.profile"]
            for name in METADATA_FIELDS:
                field = Model._fields.get(name)
                if (
                    name not in paths
                    and field is not None
                    and Profile._is_field_exportable(Model.with_env(Profile.env), field)
                ):
                    paths.append(name)
        return paths

    def _set_password(self, password):
        """Seal the ZIP password with the server keyring until the job runs."""
        self.ensure_one()
        if password:
            self._set_sealed_password(self._seal_password(password))

    def _set_sealed_password(self, sealed):
        """Keep an already sealed password (from the wizard) until the job runs."""
        self.ensure_one()
        if self.state != "queued":
            raise UserError(self.env._("This export has already started."))
        self.sudo().write({"password_protected": True, "password_sealed": sealed})

    def _unseal_password(self):
        sealed = self.sudo().password_sealed
        if not sealed:
            raise UserError(self.env._("The password of this export is lost."))
        return self._open_sealed_password(sealed)

    def _launch(self):
        """Run a small export now; queue a large one for the cron.

        Returns the client action to show (download or the job form).
        """
        self.ensure_one()
        if self.state != "queued" or self.background:
            raise UserError(self.env._("This export was launched already."))
        self._load_keyring()  # refuse at once when files cannot be encrypted
        env = self._owner_env()
        Profile = env["data.export.profile"]
        Model = Profile._get_export_model(self.model_name)
        domain = Profile._build_domain(
            self.model_name,
            self.domain,
            self.date_field,
            self.date_from,
            self.date_to,
            self.state_values,
        )
        total = Model.search_count(domain)
        estimate = self._estimate_size(Profile, Model, domain, total)
        self._check_size(estimate)
        self.sudo().write({"records_total": total, "estimated_size": estimate})
        if total <= self._sync_record_limit() and estimate <= self._sync_max_bytes():
            self._execute(background=False)
            return self.action_download() if self.state == "done" else False
        self.sudo().background = True
        self.env.ref("data_export_suite.ir_cron_run_export_jobs").sudo()._trigger()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Export Job"),
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "current",
        }

    def _estimate_size(self, Profile, Model, domain, total):
        """Bytes the file will take, from a sample of its first records.

        The first records are written the way the export writes them (same
        columns, same JSON depth: a related record expanded three levels
        deep weighs megabytes) and their size is scaled to ``total``. Cheap
        for flat exports (one batch of 20 rows), bounded for deep JSON
        (3 records).
        """
        job = self.sudo()
        if not total:
            return 0
        if job.export_format == "pdf":
            return total * PDF_ESTIMATE
        paths = self._export_paths()
        deep = job.export_format == "json" and job.json_depth > 0
        sample_size = min(total, 3 if deep else 20)
        return Profile._estimate_export_size(
            Model,
            domain,
            paths,
            job.export_format,
            job.json_depth,
            total,
            sample_size,
        )

    def _check_size(self, estimate):
        limit = self._max_file_bytes()
        if estimate > limit:
            raise ExportTooLarge(
                self.env._(
                    "This export would be about %(size)s, more than the %(limit)s "
                    "allowed. Export fewer records or columns, or a lower JSON "
                    "depth.",
                    size=human_size(estimate),
                    limit=human_size(limit),
                )
            )

    # ------------------------------------------------------------------
    # Settings
    # ------------------------------------------------------------------
    def _get_int_param(self, key, default):
        value = self.env["ir.config_parameter"].sudo().get_param(key)
        try:
            return max(1, int(value)) if value else default
        except ValueError:
            _logger.warning("Ignoring non-integer parameter %s=%r", key, value)
            return default

    def _sync_record_limit(self):
        return self._get_int_param("data_export_suite.sync_record_limit", 2000)

    def _sync_max_bytes(self):
        return self._get_int_param("data_export_suite.sync_max_bytes", SYNC_MAX_BYTES)

    def _max_file_bytes(self):
        return self._get_int_param("data_export_suite.max_file_bytes", MAX_FILE_BYTES)

    def _batch_size(self):
        return self._get_int_param("data_export_suite.batch_size", 1000)

    def _retention_days(self):
        return self._get_int_param("data_export_suite.retention_days", 30)

    # ------------------------------------------------------------------
    # Execution
    # ------------------------------------------------------------------
    def _execute(self, background):
        """Run the export; record success or failure on the job."""
        self.ensure_one()
        job = self.sudo()
        # Preconditions, checked when the step runs: a synchronous export
        # starts from "queued", the cron marked a background one "running".
        if job.state != ("running" if background else "queued"):
            raise UserError(
                self.env._(
                    "Export %(name)s cannot run in state %(state)s.",
                    name=job.name,
                    state=job.state,
                )
            )
        if not background:
            # In the cron the job was marked running and committed already:
            # writing the row again here would lock it against the progress
            # updates made through a second cursor.
            job.write({"state": "running", "error_message": False})
        try:
            with self.env.cr.savepoint():
                self._run_export(background=background)
        except Exception as exc:
            if not background:
                raise
            _logger.exception("Export job %s failed", self.id)
            # the owner reads it: in their language, the library's errors
            # translated
            job.write(
                {
                    "state": "failed",
                    "error_message": suite_error_message(self._owner_env(), exc),
                    "password_sealed": False,
                }
            )
            self.env["audit.event"].log_event(
                "export",
                record=job,
                result="failure",
                message=str(exc),
                details=self._audit_details(),
            )
            job._notify_owner(failed=True)
            return False
        if background:
            job._notify_owner()
        return True

    def _audit_details(self):
        job = self.sudo()
        return {
            "model": job.model_name,
            "format": job.export_format,
            "fields": parse_field_paths(job.field_paths),
            "domain": job.domain,
            "date_field": job.date_field or None,
            "date_from": job.date_from and job.date_from.isoformat() or None,
            "date_to": job.date_to and job.date_to.isoformat() or None,
            "states": job.state_values or None,
            "records": job.records_done,
            "password_protected": job.password_protected,
            "owner": job.user_id.login,
        }

    def _run_export(self, background=False):
        job = self.sudo()
        env = self._owner_env()
        if not env.user.has_group("data_export_suite.export_group_user"):
            # Checked again when the job runs: the right may be gone by then.
            raise AccessError(
                self.env._(
                    "%(user)s is no longer allowed to export data.", user=env.user.name
                )
            )
        Profile = env["data.export.profile"]
        Model = Profile._get_export_model(job.model_name)
        paths = self._export_paths()
        columns = Profile._resolve_field_paths(job.model_name, paths)
        domain = Profile._build_domain(
            job.model_name,
            job.domain,
            job.date_field,
            job.date_from,
            job.date_to,
            job.state_values,
        )
        total = Model.search_count(domain)
        password = self._unseal_password() if job.password_protected else None
        ext, mimetype = self._file_type(total)
        base = safe_filename(job.profile_id.name or job.model_name.replace(".", "_"))
        stamp = fields.Datetime.context_timestamp(
            job.with_env(env), fields.Datetime.now()
        ).strftime("%Y%m%d-%H%M%S")
        file_name = f"{base}-{stamp}.{ext}"
        inner_name = f"{base}-{stamp}.{job.export_format}"
        storage_name = f"{uuid.uuid4().hex}.enc"
        done = 0
        batch_size = self._batch_size()

        max_bytes = self._max_file_bytes()

        def report(count):
            nonlocal done
            done += count
            if counter.size > max_bytes:
                # The estimate was too low: stop before filling the disk.
                raise ExportTooLarge(
                    self.env._(
                        "The export passed the %(limit)s allowed after %(count)s "
                        "records. Export fewer records or columns, or a lower JSON "
                        "depth.",
                        limit=human_size(max_bytes),
                        count=done,
                    )
                )
            self._report_progress(done, total, background)

        with self._write_stored_file(storage_name, mimetype) as (counter, encrypted):
            if job.export_format == "pdf":
                self._write_pdf(
                    Profile,
                    Model,
                    domain,
                    encrypted,
                    password,
                    total,
                    batch_size,
                    report,
                )
            else:
                with contextlib.ExitStack() as stack:
                    payload = encrypted
                    if password:
                        payload = stack.enter_context(
                            zip_member_writer(encrypted, inner_name, password)
                        )
                    self._write_table(
                        Profile,
                        Model,
                        domain,
                        columns,
                        paths,
                        payload,
                        batch_size,
                        report,
                    )
        now = fields.Datetime.now()
        job.write(
            {
                "state": "done",
                "storage_name": storage_name,
                "file_name": file_name,
                "file_size": counter.size,
                "file_mimetype": mimetype,
                "records_total": total,
                "records_done": done,
                "progress": 100.0,
                "done_at": now,
                "expires_at": now + dt.timedelta(days=self._retention_days()),
                "password_sealed": False,
            }
        )
        self.env["audit.event"].log_event(
            "export",
            record=job,
            details=self._audit_details(),
            message=self.env._(
                "%(records)s of %(model)s exported to %(file)s",
                records=self._records_text(done),
                model=job.model_name,
                file=file_name,
            ),
        )

    def _report_progress(self, done, total, background):
        if not background:
            return
        progress = 100.0 * done / total if total else 100.0
        # A separate short transaction: the owner sees the progress while the
        # export's own transaction (one consistent snapshot) is still open;
        # the bus message leaves when that transaction commits.
        payload = self._update_payload(
            records_done=done,
            records_total=total,
            progress=progress,
            state="running",
        )
        partner = self.sudo().user_id.partner_id  # the owner's bus channel
        with self.env.registry.cursor() as cr:
            cr.execute(
                SQL(
                    "UPDATE data_export_job SET records_done = %s, progress = %s "
                    "WHERE id = %s",
                    done,
                    progress,
                    self.id,
                )
            )
            self.env(cr=cr, su=True)["bus.bus"]._sendone(partner, BUS_UPDATE, payload)
        self.env["ir.cron"]._notify_progress(done=done, remaining=max(total - done, 0))

    def _send_update(self, **values):
        """Tell the owner's open tabs (bus) where the job stands: the
        progress bars of the job list and form follow, and the end shows a
        notification with a Download button (static/src)."""
        self.sudo().user_id._bus_send(BUS_UPDATE, self._update_payload(**values))

    def _update_payload(self, **values):
        job = self.sudo()
        payload = {
            "id": job.id,
            "name": job.name,
            "state": job.state,
            "records_done": job.records_done,
            "records_total": job.records_total,
            "progress": job.progress,
        }
        payload.update(values)
        return payload

    @api.model
    def _records_text(self, count):
        """ "1 record" / "12 records", translated."""
        if count == 1:
            return self.env._("1 record")
        return self.env._("%(count)s records", count=count)

    def _notify_owner(self, failed=False):
        job = self.sudo()
        owner_self = self.with_user(job.user_id).with_context(
            lang=job.user_id.lang, tz=job.user_id.tz
        )
        if failed:
            title = owner_self.env._("Export failed")
            body = owner_self.env._(
                "Your export %(name)s failed: %(error)s",
                name=job.name,
                error=job.error_message,
            )
        else:
            title = owner_self.env._("Your file is ready")
            body = owner_self.env._(
                "Your export %(name)s is ready (%(records)s, %(size)s). Download "
                "it from the export job within %(days)s days.",
                name=job.name,
                records=owner_self._records_text(job.records_done),
                size=human_size(job.file_size),
                days=self._retention_days(),
            )
        job.message_post(
            body=body,
            partner_ids=job.user_id.partner_id.ids,
            subtype_xmlid="mail.mt_comment",
            message_type="notification",
        )
        job._send_update(final=True, title=title, message=body)

    # ------------------------------------------------------------------
    # Crons
    # ------------------------------------------------------------------
    @api.model
    def _commit(self):
        """Commit the cron's transaction (never inside tests)."""
        if not modules.module.current_test:
            # Long background export: the "running" state must be visible to
            # the owner and to a second cron worker while the export runs.
            self.env.cr.commit()  # pylint: disable=invalid-commit

    @api.model
    def _cron_run_queued_jobs(self):
        """Run the oldest queued job; the cron runs again while more wait."""
        self.flush_model(["state"])
        # SKIP LOCKED: two cron workers never take the same job (the commit
        # below releases the cron's own row lock).
        self.env.cr.execute(
            SQL(
                "SELECT id FROM data_export_job WHERE state = 'queued' "
                "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
        )
        row = self.env.cr.fetchone()
        job = self.sudo().browse(row[0] if row else [])
        if not job:
            self.env["ir.cron"]._notify_progress(done=0, remaining=0)
            return
        job.write({"state": "running"})
        job._send_update()
        self._commit()
        job._execute(background=True)
        remaining = self.sudo().search_count([("state", "=", "queued")])
        self.env["ir.cron"]._notify_progress(
            done=max(job.records_done, 1), remaining=remaining
        )

    @api.model
    def _cron_purge_expired(self):
        """Delete files older than the retention period, and stale leftovers."""
        now = fields.Datetime.now()
        Job = self.sudo()
        expired = Job.search([("state", "=", "done"), ("expires_at", "<=", now)])
        for job in expired:
            job._delete_file()
        expired.write({"state": "expired", "storage_name": False})
        Job.search([("download_token_expires_at", "<", now)]).write(
            {
                "download_token_hash": False,
                "download_token_user_id": False,
                "download_token_expires_at": False,
            }
        )
        stale = Job.search(
            [
                ("state", "in", ("running", "queued")),
                ("write_date", "<", now - dt.timedelta(days=1)),
            ]
        )
        stale.write(
            {
                "state": "failed",
                "password_sealed": False,
                "error_message": self.env._("The export did not finish within a day."),
            }
        )
        self._purge_orphan_files(now)
        self.env["data.export.profile"]._setup_ready_made_profiles()
        return expired

    # ------------------------------------------------------------------
    # Download
    # ------------------------------------------------------------------
    def action_download(self):
        """A download link for the current user: one use, a few minutes.

        The link carries a random token of which only the hash is stored,
        bound to the user who asked (owner or auditor); the download erases
        it. Asking again gives a new link (the previous one stops working).
        """
        self.ensure_one()
        self._check_downloadable()
        token = secrets.token_urlsafe(32)
        self.sudo().write(
            {
                "download_token_hash": self._hash_token(token),
                "download_token_user_id": self.env.uid,
                "download_token_expires_at": fields.Datetime.now() + DOWNLOAD_TOKEN_TTL,
            }
        )
        return {
            "type": "ir.actions.act_url",
            "url": f"/data_export_suite/download/{self.id}?token={token}",
            "target": "download",
        }

    @api.model
    def _hash_token(self, token):
        return hashlib.sha256(token.encode("utf-8")).hexdigest()

    def _consume_download_token(self, token):
        """Check and spend the token of a download link (controller)."""
        self.ensure_one()
        self.check_access("read")
        job = self.sudo()
        expected = job.download_token_hash
        valid = (
            bool(token)
            and bool(expected)
            and hmac.compare_digest(expected, self._hash_token(token))
            and job.download_token_user_id.id == self.env.uid
            and job.download_token_expires_at
            and fields.Datetime.now() <= job.download_token_expires_at
        )
        if not valid:
            _logger.info(
                "Export %s: download link refused for uid %s", self.id, self.env.uid
            )
            raise AccessError(
                self.env._(
                    "This download link is not valid: it was used already, it "
                    "expired, or it was made for another user. Use Download on the "
                    "export job again."
                )
            )
        job.write(
            {
                "download_token_hash": False,
                "download_token_user_id": False,
                "download_token_expires_at": False,
            }
        )

    def _check_downloadable(self):
        """The current user may read the job and its file is there, not expired."""
        self.ensure_one()
        self.check_access("read")  # owner or auditor (record rules)
        job = self.sudo()
        if job.state != "done":
            raise UserError(
                self.env._(
                    "This export has no file to download (state: %(state)s).",
                    state=dict(self._fields["state"].selection)[job.state],
                )
            )
        if job.expires_at and job.expires_at <= fields.Datetime.now():
            raise UserError(self.env._("This export file has expired."))

    def _open_decrypted(self):
        """Check access, log the download, return a decrypting reader.

        The caller closes the reader (and its file, ``reader.raw_file``).
        """
        self.ensure_one()
        self._check_downloadable()
        job = self.sudo()
        reader = self._open_stored_file()
        self.env["audit.event"].log_event(
            "download",
            record=job,
            details={
                "file": job.file_name,
                "size": job.file_size,
                "owner": job.user_id.login,
            },
        )
        return reader

    def _read_file(self):
        """The decrypted file content (small files, tests)."""
        reader = self._open_decrypted()
        try:
            return reader.read()
        finally:
            reader.close()
            reader.raw_file.close()
