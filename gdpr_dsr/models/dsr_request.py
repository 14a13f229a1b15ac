import base64
import contextlib
import hashlib
import hmac
import io
import json
import logging
import os
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.modules.registry import DummyRLock, Registry
from odoo.tools import config
from odoo.tools.pdf import OdooPdfFileReader, OdooPdfFileWriter

from odoo.addons.audit_export.tools.suite_errors import suite_error_message

from suite_core import keyring as suite_keyring

from ..lib import certificate as certificate_lib
from ..lib.erasure_register import (
    ErasureRegister,
    ErasureRegisterError,
    digest,
    normalize_email,
)
from ..lib.package import SAFE_NAME_RE
from .dsr_erasure import ERASURE_CONTEXT

_logger = logging.getLogger(__name__)

DEADLINE_DAYS = {"gdpr": 30, "ccpa": 45}
REMINDER_DAYS_BEFORE = 7
OPEN_STATES = ("received", "verified", "in_progress")

# Fields that gate a dangerous step: set by the server's own methods only
# (they write them as superuser after their checks); a user, whatever their
# groups, cannot create or write them by RPC.
SERVER_FIELDS = frozenset(
    {
        "name",
        "state",
        "subject_email_sha256",
        "verified_by_id",
        "verified_on",
        "line_ids",
        "discovered_on",
        "package_file",
        "package_filename",
        "package_sha256",
        "package_generated_on",
        "package_expiry",
        "package_protected",
        "erased_on",
        "erasure_id",
        "certificate_json",
        "certificate_html",
        "certificate_pdf",
        "subject_erased_by",
    }
)
# The erasure certificate: the signed JSON (the source of truth), its HTML
# rendering and the PDF rendered by the report engine (the JSON embedded).
# Immutable once issued, for everyone; served by the download route only.
CERTIFICATE_FIELDS = frozenset(
    {"certificate_json", "certificate_html", "certificate_pdf"}
)
CERTIFICATE_KINDS = {
    "pdf": ("certificate_pdf", "application/pdf", "pdf"),
    "json": ("certificate_json", "application/json", "json"),
    "html": ("certificate_html", "text/html; charset=utf-8", "html"),
}
# Binary fields of the request stored as attachments: nobody but the server
# creates, changes or removes those attachments (see ir_attachment.py).
SERVER_BINARY_FIELDS = frozenset({"package_file"}) | CERTIFICATE_FIELDS
# Mark on the cursor while the server issues a certificate (only then may
# the superuser write its files).
CERTIFICATE_MARK = "gdpr_dsr.issuing_certificate"
# What the identity verification is about and what it rests on: frozen once
# the request left the "received" state.
RECEIVED_ONLY_FIELDS = frozenset(
    {
        "subject_email",
        "request_type",
        "company_id",
        "regime",
        "received_date",
        "verification_method",
        "verification_notes",
        "verification_attachment_ids",
    }
)


def gate_digest(email):
    """SHA-256 of an email typed at the erasure gate, normalised as the
    discovery compares emails (trimmed, case-insensitive)."""
    return hashlib.sha256((normalize_email(email) or "").encode("utf-8")).hexdigest()


def issuing_certificate(cr):
    """True while the server issues a certificate on ``cr``."""
    cache = getattr(cr, "cache", None)
    return bool(isinstance(cache, dict) and cache.get(CERTIFICATE_MARK))


class DsrRequest(models.Model):
    _name = "dsr.request"
    _description = "Data Subject Request"
    _inherit = [
        "mail.thread",
        "mail.activity.mixin",
        "dsr.package.builder",
        "dsr.restore.hook",
    ]
    _order = "received_date desc, id desc"

    name = fields.Char(
        string="Reference", required=True, readonly=True, copy=False, default="/"
    )
    company_id = fields.Many2one(
        "res.company", required=True, default=lambda self: self.env.company
    )
    subject_email = fields.Char(
        string="Subject email",
        help="Email address of the data subject; every partner whose email "
        "matches (case-insensitive) is part of the request. Cleared after an "
        "erasure (a SHA-256 digest is kept).",
    )
    subject_email_sha256 = fields.Char(
        string="Subject email digest", readonly=True, copy=False
    )
    subject_name = fields.Char()
    subject_phone = fields.Char()
    regime = fields.Selection(
        [("gdpr", "GDPR (30 days)"), ("ccpa", "CCPA (45 days)")],
        required=True,
        default="gdpr",
        tracking=True,
    )
    request_type = fields.Selection(
        [("access", "Access / export"), ("erasure", "Erasure")],
        string="Type",
        required=True,
        default="access",
        tracking=True,
    )
    state = fields.Selection(
        [
            ("received", "Received"),
            ("verified", "Identity verified"),
            ("in_progress", "In progress"),
            ("done", "Done"),
            ("rejected", "Rejected"),
        ],
        required=True,
        default="received",
        tracking=True,
        copy=False,
        readonly=True,
    )
    received_date = fields.Date(
        required=True, default=fields.Date.context_today, tracking=True
    )
    deadline = fields.Date(compute="_compute_deadline", store=True)
    is_overdue = fields.Boolean(
        string="Overdue", compute="_compute_is_overdue", search="_search_is_overdue"
    )
    user_id = fields.Many2one(
        "res.users",
        string="Assigned officer",
        tracking=True,
        default=lambda self: self.env.user,
        domain=lambda self: [
            ("groups_id", "in", self.env.ref("gdpr_dsr.dsr_group_officer").id)
        ],
    )
    verified_by_id = fields.Many2one("res.users", readonly=True, copy=False)
    verified_on = fields.Datetime(readonly=True, copy=False)
    verification_method = fields.Selection(
        [
            ("id_document", "Identity document checked"),
            ("email_challenge", "Confirmation from the registered email address"),
            ("account_login", "Request made from the subject's signed-in account"),
            ("other", "Other (see notes)"),
        ],
        copy=False,
    )
    verification_notes = fields.Text(copy=False)
    verification_attachment_ids = fields.Many2many(
        "ir.attachment",
        "dsr_request_evidence_rel",
        "request_id",
        "attachment_id",
        string="Verification evidence",
        copy=False,
    )
    rejection_reason = fields.Text(copy=False)
    line_ids = fields.One2many(
        "dsr.request.line", "request_id", copy=False, readonly=True
    )
    line_count = fields.Integer(compute="_compute_line_count")
    discovered_on = fields.Datetime(readonly=True, copy=False)
    # Read by the server only (the download route decrypts it for officers).
    package_file = fields.Binary(
        string="Export package (encrypted)",
        attachment=True,
        copy=False,
        readonly=True,
        groups="base.group_system",
    )
    package_filename = fields.Char(readonly=True, copy=False)
    package_sha256 = fields.Char(
        readonly=True,
        copy=False,
        groups="base.group_system",
        help="SHA-256 of the encrypted package the server stored: any other "
        "content is refused at download.",
    )
    package_generated_on = fields.Datetime(readonly=True, copy=False)
    package_expiry = fields.Datetime(readonly=True, copy=False)
    package_protected = fields.Boolean(
        string="Password protected", readonly=True, copy=False
    )
    # the current officer's latest package job (live on the form, static/src)
    package_job_id = fields.Many2one(
        "dsr.package.job",
        string="Package job",
        compute="_compute_package_job",
        groups="gdpr_dsr.dsr_group_officer",
    )
    package_job_state = fields.Selection(
        [
            ("queued", "Queued"),
            ("running", "Running"),
            ("done", "Package ready"),
            ("failed", "Failed"),
        ],
        compute="_compute_package_job",
        groups="gdpr_dsr.dsr_group_officer",
    )
    package_job_step = fields.Char(
        compute="_compute_package_job", groups="gdpr_dsr.dsr_group_officer"
    )
    package_job_progress = fields.Float(
        compute="_compute_package_job", groups="gdpr_dsr.dsr_group_officer"
    )
    package_job_error = fields.Text(
        compute="_compute_package_job", groups="gdpr_dsr.dsr_group_officer"
    )
    erased_on = fields.Datetime(readonly=True, copy=False)
    erasure_id = fields.Char(
        string="Erasure register id",
        readonly=True,
        copy=False,
        help="Identifier of this erasure in the erasure register kept outside "
        "the database (re-applied after a restore).",
    )
    certificate_json = fields.Binary(
        string="Erasure certificate (signed JSON)",
        attachment=True,
        copy=False,
        readonly=True,
    )
    certificate_html = fields.Binary(
        string="Erasure certificate", attachment=True, copy=False, readonly=True
    )
    certificate_pdf = fields.Binary(
        string="Erasure certificate (PDF)",
        attachment=True,
        copy=False,
        readonly=True,
    )
    certificate_html_filename = fields.Char(compute="_compute_certificate_filenames")
    certificate_json_filename = fields.Char(compute="_compute_certificate_filenames")
    certificate_pdf_filename = fields.Char(compute="_compute_certificate_filenames")
    has_certificate = fields.Boolean(compute="_compute_has_certificate")
    subject_erased_by = fields.Char(
        string="Subject erased by",
        readonly=True,
        copy=False,
        help="Reference of the erasure that pseudonymised this request: the "
        "subject's email, name, phone, evidence and export package are gone; "
        "the reference, dates, type and outcome stay in the register.",
    )

    _sql_constraints = [
        ("name_company_uniq", "unique(name, company_id)", "The reference is unique."),
    ]

    # -- computes ------------------------------------------------------------
    @api.depends("received_date", "regime")
    def _compute_deadline(self):
        for request in self:
            request.deadline = request.received_date and (
                request.received_date
                + timedelta(days=DEADLINE_DAYS.get(request.regime, 30))
            )

    @api.depends("name")
    def _compute_certificate_filenames(self):
        for request in self:
            base = SAFE_NAME_RE.sub("-", request.name or "dsr")
            request.certificate_html_filename = f"{base}-erasure-certificate.html"
            request.certificate_json_filename = f"{base}-erasure-certificate.json"
            request.certificate_pdf_filename = f"{base}-erasure-certificate.pdf"

    def _compute_has_certificate(self):
        stored = dict(
            self.env["ir.attachment"]
            .sudo()
            ._read_group(
                [
                    ("res_model", "=", self._name),
                    ("res_id", "in", self.ids),
                    ("res_field", "=", "certificate_json"),
                ],
                ["res_id"],
                ["__count"],
            )
        )
        for request in self:
            request.has_certificate = bool(stored.get(request.id))

    @api.depends("deadline", "state")
    def _compute_is_overdue(self):
        today = fields.Date.context_today(self)
        for request in self:
            request.is_overdue = bool(
                request.state in OPEN_STATES
                and request.deadline
                and request.deadline < today
            )

    def _search_is_overdue(self, operator, value):
        if operator not in ("=", "!=") or not isinstance(value, bool):
            raise UserError(self.env._("Unsupported search on the overdue flag."))
        domain = [
            ("state", "in", OPEN_STATES),
            ("deadline", "<", fields.Date.context_today(self)),
        ]
        positive = (operator == "=") == value
        return domain if positive else ["!", "&", *domain]

    def _compute_line_count(self):
        counts = dict(
            self.env["dsr.request.line"]._read_group(
                [("request_id", "in", self.ids)], ["request_id"], ["__count"]
            )
        )
        for request in self:
            request.line_count = counts.get(request, 0)

    @api.constrains("subject_email", "state")
    def _check_subject_email(self):
        for request in self:
            if request.subject_erased_by:
                continue  # pseudonymised by an erasure of its subject
            if request.state != "done" or request.request_type != "erasure":
                email = normalize_email(request.subject_email)
                if not email or "@" not in email:
                    raise UserError(
                        self.env._("A valid subject email address is required.")
                    )

    # -- CRUD ------------------------------------------------------------------
    @api.model_create_multi
    def create(self, vals_list):
        if not self.env.su:
            # Context defaults never reach server-owned fields: Odoo applies
            # ``default_<field>`` after these checks (a ``default_state`` of
            # "verified" would otherwise skip identity verification).
            self = self.with_context(  # pylint: disable=context-overridden
                {
                    key: value
                    for key, value in self.env.context.items()
                    if not (key.startswith("default_") and key[8:] in SERVER_FIELDS)
                }
            )
            for vals in vals_list:
                self._check_user_values(vals, creating=True)
        for vals in vals_list:
            if vals.get("name", "/") == "/":
                sequence = self.env["ir.sequence"].sudo()
                vals["name"] = sequence.next_by_code("dsr.request") or "/"
            if vals.get("subject_email"):
                vals["subject_email"] = vals["subject_email"].strip()
                vals["subject_email_sha256"] = digest(vals["subject_email"])
        requests = super().create(vals_list)
        if not self.env.su:
            requests._check_evidence()
        for request in requests:
            request._audit("received")
        return requests

    def write(self, vals):
        user_write = not self.env.su
        if user_write:
            self._check_user_values(vals)
            frozen = sorted(set(vals) & RECEIVED_ONLY_FIELDS)
            closed = self.filtered(lambda r: r.state != "received")
            if frozen and closed:
                raise UserError(
                    self.env._(
                        "Request %(ref)s: %(fields)s can only change while the request "
                        "is received (before the identity verification).",
                        ref=closed[0].name,
                        fields=", ".join(frozen),
                    )
                )
        if set(vals) & CERTIFICATE_FIELDS and not issuing_certificate(self.env.cr):
            # nobody changes an issued certificate, the superuser included
            raise AccessError(
                self.env._(
                    "An erasure certificate is issued by the erasure only and "
                    "never changes: %(fields)s",
                    fields=", ".join(sorted(set(vals) & CERTIFICATE_FIELDS)),
                )
            )
        if vals.get("subject_email"):
            vals["subject_email"] = vals["subject_email"].strip()
            vals["subject_email_sha256"] = digest(vals["subject_email"])
        result = super().write(vals)
        if user_write:
            if "verification_attachment_ids" in vals:
                self._check_evidence()
            if {"subject_email", "request_type", "company_id"} & set(vals):
                # what was discovered was discovered for someone/something else
                stale = self.filtered("line_ids")
                stale.line_ids.sudo().unlink()
                stale._server_write({"discovered_on": False})
        return result

    def read(self, fields=None, load="_classic_read"):
        """The content of a certificate is downloaded through the request's
        route (every download recorded), never read over RPC: a read of all
        fields leaves it out, a read that names it is refused (the web client
        reads binary fields as sizes, ``bin_size``, which stays allowed)."""
        if not self.env.su and not self.env.context.get("bin_size"):
            names = self.check_field_access_rights("read", fields)
            if CERTIFICATE_FIELDS & set(names):
                if fields is None:
                    fields = [name for name in names if name not in CERTIFICATE_FIELDS]
                elif self.sudo().filtered("has_certificate"):
                    raise AccessError(
                        self.env._(
                            "Download the erasure certificate with the request's "
                            "buttons: every download is recorded."
                        )
                    )
        return super().read(fields, load=load)

    def export_data(self, fields_to_export):
        """No certificate content through the generic export either."""
        if not self.env.su and any(
            (path or "").split("/")[0] in CERTIFICATE_FIELDS
            for path in fields_to_export
        ):
            raise AccessError(
                self.env._(
                    "Download the erasure certificate with the request's buttons: "
                    "every download is recorded."
                )
            )
        return super().export_data(fields_to_export)

    def _check_user_values(self, vals, creating=False):
        """Refuse server-owned fields in values a user sends (RPC included)."""
        forbidden = set(vals) & SERVER_FIELDS
        if creating:
            # the defaults a client may send back unchanged
            if vals.get("name", "/") == "/":
                forbidden.discard("name")
            if vals.get("state", "received") == "received":
                forbidden.discard("state")
        if forbidden:
            _logger.warning(
                "DSR: uid %s tried to set server-owned fields %s",
                self.env.uid,
                ", ".join(sorted(forbidden)),
            )
            raise AccessError(
                self.env._(
                    "These fields of a data subject request are set by the server "
                    "only (through the request's actions): %(fields)s",
                    fields=", ".join(sorted(forbidden)),
                )
            )

    def _check_evidence(self):
        """Evidence of identity must be a file uploaded for this request: a
        file uploaded by the user and not attached yet is attached to it, any
        other attachment (of another document, or a stored field) is refused
        (the erasure deletes the evidence)."""
        for request in self:
            for attachment in request.sudo().verification_attachment_ids:
                if (
                    not attachment.res_field
                    and attachment.res_model == self._name
                    and attachment.res_id == request.id
                ):
                    continue
                if (
                    not attachment.res_field
                    and not attachment.res_id
                    and attachment.res_model in (False, self._name)
                    and attachment.create_uid == self.env.user
                ):
                    attachment.write({"res_model": self._name, "res_id": request.id})
                    continue
                raise ValidationError(
                    self.env._(
                        "Request %(ref)s: the evidence %(name)s is not a file uploaded "
                        "for this request.",
                        ref=request.name,
                        name=attachment.name,
                    )
                )

    def _server_write(self, vals):
        """Write server-owned fields, after the caller's checks (as superuser;
        the current user stays the author of the tracking messages)."""
        return self.sudo().write(vals)

    # -- helpers -------------------------------------------------------------
    def _check_officer(self):
        if not self.env.user.has_group("gdpr_dsr.dsr_group_officer"):
            raise AccessError(
                self.env._("Only Privacy Officers may handle data subject requests.")
            )
        self.check_access("write")

    def _audit(self, step, result="success", **details):
        self.ensure_one()
        details.update(step=step, request_type=self.request_type, regime=self.regime)
        return self.env["audit.event"].log_event(
            "dsr",
            record=self,
            res_name=self.name,
            result=result,
            details=details,
            message=self.env._(
                "Data subject request %(ref)s: %(step)s", ref=self.name, step=step
            ),
        )

    def _audit_independently(self, step, **details):
        """Log a refused step in its own transaction: the UserError that
        follows rolls the current one back, the audit trail must keep it."""
        self.ensure_one()
        try:
            with self.env.registry.cursor() as cr:
                self.with_env(self.env(cr=cr))._audit(step, result="failure", **details)
        except Exception:
            # e.g. the request is not committed yet: the server log keeps it
            _logger.exception(
                "DSR %s: audit event %r (failure) could not be written on its "
                "own cursor",
                self.name,
                step,
            )

    def _database_uuid(self):
        return self.env["ir.config_parameter"].sudo().get_param("database.uuid")

    @api.model
    def _erasure_register(self, database_uuid=None):
        """The register of erasures of this database, outside the database and
        its filestore: ``<data_dir>/gdpr_dsr/<database uuid>.jsonl``, or under
        the directory named by the server option ``dsr_erasure_register_dir``
        (e.g. storage that restores never touch)."""
        directory = config.get("dsr_erasure_register_dir") or os.path.join(
            config["data_dir"], "gdpr_dsr"
        )
        return ErasureRegister(directory, database_uuid or self._database_uuid())

    def _check_verified(self):
        for request in self:
            if request.state not in ("verified", "in_progress"):
                raise UserError(
                    self.env._(
                        "Request %(ref)s: the subject's identity must be verified "
                        "first.",
                        ref=request.name,
                    )
                )

    # -- actions: workflow -------------------------------------------------------
    def action_verify(self):
        self._check_officer()
        for request in self:
            if request.state != "received":
                raise UserError(self.env._("Only received requests can be verified."))
            if not request.verification_method:
                raise UserError(self.env._("Choose how the identity was verified."))
            if not request.verification_attachment_ids:
                raise UserError(
                    self.env._("Attach the evidence of the identity verification.")
                )
            request._server_write(
                {
                    "state": "verified",
                    "verified_by_id": self.env.uid,
                    "verified_on": fields.Datetime.now(),
                }
            )
            request._audit("verified", method=request.verification_method)
        return True

    def action_reject(self):
        self._check_officer()
        for request in self:
            if request.state not in OPEN_STATES:
                raise UserError(self.env._("Only open requests can be rejected."))
            if not (request.rejection_reason or "").strip():
                raise UserError(
                    self.env._(
                        "Write the reason of the rejection first (it is sent to the "
                        "subject with your answer)."
                    )
                )
            request._server_write({"state": "rejected"})
            request._audit("rejected")
        return True

    def action_discover(self):
        """Find every record tied to the subject and list it as lines."""
        self._check_officer()
        for request in self:
            if request.state not in OPEN_STATES:
                raise UserError(self.env._("The request is closed."))
            request._run_discovery()
            if request.state == "verified":
                request._server_write({"state": "in_progress"})
        return True

    def _run_discovery(self):
        self.ensure_one()
        subject_ids, hits = (
            self.env["dsr.discovery"].sudo()._discover(self.subject_email)
        )
        if self.request_type == "erasure":
            self.env["dsr.erasure"].sudo()._plan(hits, subject_ids)
        else:
            for hit in hits:
                hit["planned_action"] = "export"
                hit["reason"] = "subject access request"
        Line = self.env["dsr.request.line"]
        self.line_ids.sudo().unlink()
        values = []
        for hit in hits:
            record = (
                self.env[hit["res_model"]]
                .with_context(active_test=False)
                .browse(hit["res_id"])
            )
            accessible = bool(self._filtered_readable(record))
            values.append(
                {
                    "request_id": self.id,
                    "res_model": hit["res_model"],
                    "res_id": hit["res_id"],
                    "res_name": (
                        record.display_name
                        if accessible
                        else self.env._("(not readable by you)")
                    ),
                    "category": hit["category"],
                    "source": hit["source"],
                    "ref_fields": ",".join(hit["ref_fields"]),
                    "accessible": accessible,
                    "planned_action": hit["planned_action"],
                    "reason": hit["reason"],
                    "seal": Line._seal_value(
                        self.id,
                        hit["res_model"],
                        hit["res_id"],
                        hit["category"],
                        hit["planned_action"],
                    ),
                }
            )
        Line.sudo().create(values)
        self._server_write({"discovered_on": fields.Datetime.now()})
        # a note in the chatter, without notification nor sender address (an
        # officer may have no email address)
        self._message_log(
            body=(
                self.env._("Discovery found 1 record.")
                if len(values) == 1
                else self.env._("Discovery found %(count)s records.", count=len(values))
            )
        )
        return subject_ids

    def action_view_lines(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "gdpr_dsr.dsr_request_line_action"
        )
        action["domain"] = [("request_id", "=", self.id)]
        action["context"] = {"search_default_group_model": 1}
        return action

    def action_open_package_wizard(self):
        self.ensure_one()
        self._check_officer()
        self._check_verified()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Export Package"),
            "res_model": "dsr.package.wizard",
            "view_mode": "form",
            "target": "new",
            "context": {"default_request_id": self.id},
        }

    def action_open_erasure_wizard(self):
        self.ensure_one()
        self._check_officer()
        self._check_verified()
        if self.request_type != "erasure":
            raise UserError(self.env._("This is not an erasure request."))
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Erase the Subject's Data"),
            "res_model": "dsr.erasure.wizard",
            "view_mode": "form",
            "target": "new",
            "context": {"default_request_id": self.id},
        }

    def action_download_package(self):
        self.ensure_one()
        self._check_officer()
        if not self.package_generated_on:
            raise UserError(self.env._("No export package was generated."))
        return {
            "type": "ir.actions.act_url",
            "url": f"/gdpr_dsr/package/{self.id}",
            "target": "download",
        }

    # -- export package: the officer's jobs (dsr.package.builder builds it) ----
    def _compute_package_job(self):
        """The current officer's latest package job of each request (their
        own jobs only: another officer's job is theirs)."""
        jobs = self.env["dsr.package.job"]
        if self.ids and self.env.user.has_group("gdpr_dsr.dsr_group_officer"):
            jobs = jobs.search(
                [("request_id", "in", self.ids), ("user_id", "=", self.env.uid)],
                order="id desc",
            )
        for request in self:
            job = jobs.filtered(lambda j, r=request: j.request_id == r)[:1]
            request.package_job_id = job
            request.package_job_state = job.state
            request.package_job_step = job.step
            request.package_job_progress = job.progress
            request.package_job_error = job.error_message

    # -- erasure -------------------------------------------------------------------
    def _identity_evidence(self):
        """The request's own evidence of identity (files attached to this
        request, nothing else), as superuser: erased with the subject."""
        self.ensure_one()
        return self.sudo().verification_attachment_ids.filtered(
            lambda att: (
                att.res_model == "dsr.request"
                and att.res_id == self.id
                and not att.res_field
            )
        )

    def _erase(self, typed_email=None, typed_sha256=None):
        """Apply the erasure after the gate: ``typed_email`` (or its digest
        ``typed_sha256``, see the wizard) must be the subject's email,
        compared as the discovery compares emails (trimmed, any case)."""
        self.ensure_one()
        self._check_officer()
        self._check_verified()
        if self.request_type != "erasure":
            raise UserError(self.env._("This is not an erasure request."))
        typed = typed_sha256 if typed_sha256 is not None else gate_digest(typed_email)
        if not normalize_email(self.subject_email) or not hmac.compare_digest(
            typed or "", gate_digest(self.subject_email)
        ):
            self._audit_independently("erasure_refused", reason="gate mismatch")
            raise UserError(
                self.env._(
                    "The email typed does not match the subject's email: nothing was "
                    "erased."
                )
            )
        if not self.line_ids:
            self._run_discovery()
        subject_ids, hits = self._check_erasure_lines()
        return self._apply_erasure(subject_ids, hits)

    def _apply_erasure(self, subject_ids, hits):
        """Erase (after the gate and the checks of every line), then leave
        nothing behind and prove it: the side effects are cleared, earlier
        requests of the subject pseudonymised, the whole database scanned
        for the subject's identifiers (what is found is deleted, anonymised
        in place or kept with its legal basis), the audit trail redacted,
        the subject's files removed from the filestore, and the certificate
        (signed JSON, HTML, PDF) states all of it."""
        self.ensure_one()
        erasure = self.env["dsr.erasure"].sudo().with_context(**ERASURE_CONTEXT)
        scanner = self.env["dsr.leftover.scan"].sudo().with_context(**ERASURE_CONTEXT)
        partners = (
            self.env["res.partner"]
            .sudo()
            .with_context(active_test=False)
            .browse(subject_ids)
            .exists()
        )
        fingerprints = [
            {
                "id": partner.id,
                "email_sha256": digest(
                    partner.email_normalized or normalize_email(partner.email)
                ),
                "name_sha256": digest(partner.name),
            }
            for partner in partners
        ]
        user_ids = partners.with_context(active_test=False).user_ids.ids
        identifiers = scanner._collect_identifiers(
            partners.ids,
            user_ids,
            emails=[self.subject_email],
            names=[self.subject_name],
            phones=[self.subject_phone],
        )
        with erasure._running(user_ids) as running:
            erasure._execute(hits, subject_ids, self.name)
            for hit in hits:
                hit["line"].sudo().write(
                    {
                        "result": hit["result"],
                        "result_note": (hit.get("result_note") or "")[:250],
                        # the display name of an erased record is personal data
                        "res_name": False,
                    }
                )
            try:
                entry = self._erasure_register().append(
                    request_ref=self.name,
                    email_sha256=self.subject_email_sha256,
                    partners=fingerprints,
                    records=[
                        (hit["res_model"], hit["res_id"], hit["result"]) for hit in hits
                    ],
                )
            except ErasureRegisterError as exc:
                # the erasure is rolled back with this transaction
                raise UserError(suite_error_message(self.env, exc)) from exc
            # The evidence of identity is personal data too: it goes with the
            # rest (only files of this request: nothing else is deleted on its
            # account).
            evidence = self._identity_evidence()
            self._server_write(
                {
                    "state": "done",
                    "erased_on": fields.Datetime.now(),
                    "erasure_id": entry["erasure_id"],
                    "subject_email": False,
                    "subject_name": False,
                    "subject_phone": False,
                    "verification_attachment_ids": [(5, 0, 0)],
                }
            )
            evidence.sudo().with_context(**ERASURE_CONTEXT).unlink()
            cleanup = self._leave_nothing_behind(
                erasure, subject_ids, user_ids, identifiers, entry, self
            )
            kept = {
                (hit["res_model"], hit["res_id"]): hit.get("result_note")
                or hit.get("reason")
                or "kept by decision of the officer"
                for hit in hits
                if hit.get("kept")
            }
            scan = scanner._run(
                identifiers,
                {
                    "label": self.name,
                    "partner_ids": partners.ids,
                    "user_ids": user_ids,
                    "kept": kept,
                },
            )
            # what the steps above queued for the bus goes too
            cleanup["bus_notifications"] += erasure._drop_buffered_notifications(
                subject_ids, user_ids, identifiers
            )
            cleanup["files"] = erasure._purge_files(running["files"], self.name)
        _logger.info(
            "DSR %s: leftover scan: %s (%s occurrence(s) treated, %s audit "
            "event(s) redacted)",
            self.name,
            scan["result"],
            scan["treated_count"],
            scan["audit_events_redacted"],
        )
        if not scan["clean"]:
            _logger.warning(
                "DSR %s: left without a legal basis (review them): %s",
                self.name,
                ", ".join(
                    f"{occ['table']}#{occ['record_id']}.{occ['column']}"
                    for occ in scan["remaining"]
                    if not occ["basis"]
                ),
            )
        self._issue_certificate(hits, entry, scan=scan, cleanup=cleanup)
        counts = defaultdict(int)
        for hit in hits:
            counts[hit["result"]] += 1
        self._audit(
            "erased",
            erasure_id=entry["erasure_id"],
            counts=dict(counts),
            leftover_scan=self._scan_summary(scan),
        )
        return True

    @api.model
    def _leave_nothing_behind(
        self, erasure, subject_ids, user_ids, identifiers, entry, requests
    ):
        """What the erasure must not leave, beyond the records the lines
        list: emails and notifications queued for the subject, the wizards
        of ``requests`` (the erasure's own), the subject's other requests
        (pseudonymised)."""
        cleanup = erasure._clear_side_effects(subject_ids, user_ids, identifiers)
        cleanup["wizards"] = requests._clear_wizards()
        earlier = self._pseudonymize_requests(
            {entry.get("email_sha256")}
            | {digest(email) for email in identifiers.values("email")},
            entry.get("request_ref") or "erasure",
            exclude_ids=requests.ids,
        )
        cleanup["earlier_requests"] = earlier.mapped("name")
        return cleanup

    @api.model
    def _scan_summary(self, scan):
        """The scan in a few numbers (audit events, restore reports)."""
        return {
            "result": scan["result"],
            "clean": scan["clean"],
            "remaining": scan["remaining_count"],
            "treated": scan["treated_count"],
            "audit_events_redacted": scan["audit_events_redacted"],
            "tables": scan["tables"],
            "columns": scan["columns"],
        }

    def _clear_wizards(self):
        """The wizards opened on these requests (what was typed in them goes
        with the subject): their number."""
        count = 0
        for model_name in ("dsr.erasure.wizard", "dsr.package.wizard"):
            wizards = (
                self.env[model_name].sudo().search([("request_id", "in", self.ids)])
            )
            count += len(wizards)
            wizards.unlink()
        return count

    @api.model
    def _pseudonymize_requests(self, email_digests, label, exclude_ids=()):
        """Earlier requests of an erased subject keep their place in the
        register (reference, dates, type, outcome) and lose what identifies
        the subject: email, name, phone, verification notes and evidence,
        export package, the names of their discovered records. An open one
        cannot be answered any more: it is closed as rejected, saying why.
        Returns the requests changed."""
        email_digests = sorted(filter(None, email_digests))
        if not email_digests:
            return self.browse()
        requests = (
            self.sudo()
            .with_context(active_test=False)
            .search(
                [
                    ("subject_email_sha256", "in", email_digests),
                    ("id", "not in", list(exclude_ids)),
                    ("subject_erased_by", "=", False),
                ]
            )
        )
        for request in requests:
            vals = {
                "subject_email": False,
                "subject_name": False,
                "subject_phone": False,
                "verification_notes": False,
                "package_file": False,
                "package_sha256": False,
                "package_expiry": False,
                "subject_erased_by": label,
            }
            if request.state in OPEN_STATES:
                vals["state"] = "rejected"
                vals["rejection_reason"] = (
                    f"The subject's data was erased under {label} before this "
                    "request was answered."
                )
            evidence = request.verification_attachment_ids.filtered(
                lambda att, r=request: att.res_model == r._name and att.res_id == r.id
            )
            request.write({**vals, "verification_attachment_ids": [(5, 0, 0)]})
            evidence.unlink()
            request.line_ids.sudo().write({"res_name": False})
            request._message_log(
                body=self.env._(
                    "The subject of this request was erased under %(ref)s: what "
                    "identified them here is removed.",
                    ref=label,
                )
            )
            request._audit("pseudonymised", erasure=label)
        return requests

    def _check_erasure_lines(self):
        """Re-check every line right before the erasure acts on it; return
        ``(subject_ids, hits)`` to execute, or refuse the whole erasure.

        A line is acted upon only if the discovery of this request wrote it
        (its seal), it is of a model the discovery scans, the discovery run
        now still ties the record to the subject with the same plan (or the
        officer kept it), and the officer may read the record with their own
        rights and companies. Records tied to the subject that the lines do
        not list refuse the erasure as well (the officer did not review them).
        """
        self.ensure_one()
        erasure = self.env["dsr.erasure"].sudo()
        discovery = self.env["dsr.discovery"].sudo()
        subject_ids, fresh = discovery._discover(self.subject_email)
        erasure._plan(fresh, subject_ids)
        fresh_by_key = {(hit["res_model"], hit["res_id"]): hit for hit in fresh}
        scanned = discovery._scanned_models()
        problems, hits, listed = [], [], set()
        for line in self.line_ids.sudo():
            key = (line.res_model, line.res_id)
            listed.add(key)
            fresh_hit = fresh_by_key.get(key)
            record = None
            if not line._seal_valid():
                problem = self.env._(
                    "it was not listed by the discovery of this request"
                )
            elif line.res_model not in scanned:
                problem = self.env._("the discovery never lists this model")
            elif erasure._is_protected_model(line.res_model) and (
                line.planned_action != "retain"
            ):
                problem = self.env._("records of this model are never erased")
            elif (
                record := erasure._record(
                    {
                        "res_model": line.res_model,
                        "res_id": line.res_id,
                    }
                )
            ) is None:
                problem = None  # already gone: reported as such
            elif fresh_hit is None:
                problem = self.env._("the record is no longer tied to the subject")
            elif fresh_hit["category"] != line.category or line.planned_action not in (
                fresh_hit["planned_action"],
                "retain",
            ):
                problem = self.env._(
                    "the plan changed since the discovery (now: %(action)s)",
                    action=fresh_hit["planned_action"],
                )
            else:
                problem = None
            kept = bool(
                fresh_hit
                and line.planned_action == "retain"
                and fresh_hit["planned_action"] != "retain"
            )
            hit = {
                "line": line,
                "res_model": line.res_model,
                "res_id": line.res_id,
                "category": line.category,
                "ref_fields": list(fresh_hit["ref_fields"]) if fresh_hit else [],
                "planned_action": line.planned_action,
                "reason": line.reason,
                "kept": kept,
            }
            if (
                not problem
                and record is not None
                and erasure._acts_on(record, hit)
                and not self._officer_may_erase(record)
            ):
                problem = self.env._(
                    "you may not read this record (its company or your access rights)"
                )
            if problem:
                problems.append(
                    self.env._(
                        "%(model)s #%(id)s: %(problem)s",
                        model=line.res_model,
                        id=line.res_id,
                        problem=problem,
                    )
                )
            hits.append(hit)
        protected = erasure._protected_partner_ids() & set(subject_ids)
        for partner in self.env["res.partner"].sudo().browse(sorted(protected)):
            problems.append(
                self.env._(
                    "res.partner #%(id)s: the subject is the contact of a system or "
                    "administrator account (%(login)s); remove its administrator "
                    "rights first",
                    id=partner.id,
                    login=", ".join(
                        partner.with_context(active_test=False).user_ids.mapped("login")
                    ),
                )
            )
        unlisted = sorted(set(fresh_by_key) - listed)
        if unlisted:
            problems.append(
                self.env._(
                    "%(count)s records tied to the subject are not listed (e.g. "
                    "%(model)s #%(id)s): run the discovery again and review them",
                    count=len(unlisted),
                    model=unlisted[0][0],
                    id=unlisted[0][1],
                )
            )
        if problems:
            self._audit_independently(
                "erasure_refused", reason="lines refused", lines=problems[:50]
            )
            raise UserError(
                self.env._(
                    "Request %(ref)s: the erasure is refused, nothing was erased:\n"
                    "%(lines)s",
                    ref=self.name,
                    lines="\n".join(f"- {p}" for p in problems[:20]),
                )
            )
        return subject_ids, hits

    def _filtered_readable(self, records):
        """The part of ``records`` the current (non-superuser) user may read:
        attachments by the document they belong to, as Odoo serves them."""
        records = records.with_env(self.env(su=False)).with_context(active_test=False)
        if records._name == "ir.attachment":
            allowed = records.env["ir.attachment"]._filter_attachment_access(
                records.ids
            )
            return records.browse([rid for rid in records.ids if rid in allowed.ids])
        return records._filtered_access("read")

    def _officer_may_erase(self, record):
        """Whether the current user may read ``record`` (a singleton), with
        their own access rights, record rules and companies. Hook: extend
        for models officers read through another document."""
        record = record.with_env(self.env(su=False)).with_context(active_test=False)
        if record._name == "mail.mail":
            # outgoing emails are readable by administrators only: the
            # officer must be able to read the message they carry
            message = record.sudo().mail_message_id
            return bool(message) and bool(self._filtered_readable(message))
        if record._name == "mail.followers":
            follower = record.sudo()
            if not self._filtered_readable(record):
                return False
            if follower.res_model in self.env and follower.res_id:
                document = self.env[follower.res_model].browse(follower.res_id).exists()
                return not document or bool(self._filtered_readable(document))
            return True
        return bool(self._filtered_readable(record))

    def _certificate_key(self, key_id=None):
        """Return ``(key, key_id)`` for signing certificates: an HKDF sub-key
        (purpose ``dsr-certificate``, this database) of the server keyring's
        key ``key_id`` (default: the active key), else the database secret."""
        try:
            keyring = suite_keyring.Keyring.from_config(config)
        except suite_keyring.KeyringError as exc:
            _logger.warning(
                "DSR certificate signed with the database secret (no keyring: %s)",
                exc,
            )
            secret = self.env["ir.config_parameter"].sudo().get_param("database.secret")
            return secret.encode(), "database.secret"
        key_id = key_id or keyring.active.key_id
        return (
            keyring.derive("dsr-certificate", self._database_uuid(), key_id=key_id),
            key_id,
        )

    def _issue_certificate(self, hits, entry, scan=None, cleanup=None, extra=None):
        """Sign the certificate (JSON, the source of truth) and store it with
        its HTML and PDF renderings; returns the signed document."""
        self.ensure_one()
        records = [
            {
                "model": hit["res_model"],
                "id": hit["res_id"],
                "category": hit["category"],
                "planned_action": hit.get("planned_action"),
                "result": hit["result"],
                "reason": hit.get("result_note") or hit.get("reason") or "",
            }
            for hit in sorted(hits, key=lambda h: (h["res_model"], h["res_id"]))
        ]
        counts, planned = defaultdict(int), defaultdict(int)
        for record in records:
            counts[record["result"]] += 1
            planned[record["planned_action"] or "retain"] += 1
        document = {
            "format": "gdpr_dsr.erasure_certificate",
            "version": 2,
            "issued_at": datetime.now(UTC).isoformat(),
            "issuer": {
                "company": self.company_id.name,
                "database_uuid": self._database_uuid(),
                "officer": self.env.user.name,
            },
            "request": {
                "reference": self.name,
                "regime": self.regime,
                "received_date": fields.Date.to_string(self.received_date),
                "deadline": fields.Date.to_string(self.deadline),
                "verified_on": fields.Datetime.to_string(self.verified_on),
                "verified_by": self.verified_by_id.name,
                "verification_method": self.verification_method,
            },
            "subject_email_sha256": self.subject_email_sha256,
            "erasure_register_id": entry["erasure_id"],
            "records": records,
            # what the officer confirmed (the erasure dialog's figures) and
            # what was done
            "planned_counts": dict(sorted(planned.items())),
            "counts": dict(sorted(counts.items())),
            "leftover_scan": scan,
            "cleanup": cleanup or {},
            **(extra or {}),
        }
        key, key_id = self._certificate_key()
        signed = certificate_lib.sign(document, key, key_id=key_id)
        payload = json.dumps(signed, indent=2, sort_keys=True).encode()
        html = self.env["ir.qweb"]._render(
            "gdpr_dsr.dsr_certificate_document", {"doc": signed}
        )
        with self._issuing_certificate():
            self._server_write(
                {
                    "certificate_json": base64.b64encode(payload),
                    "certificate_html": base64.b64encode(str(html).encode()),
                }
            )
            pdf = self._render_certificate_pdf(payload)
            if pdf:
                self._server_write({"certificate_pdf": base64.b64encode(pdf)})
        return signed

    @contextlib.contextmanager
    def _issuing_certificate(self):
        cache = self.env.cr.cache
        previous = cache.get(CERTIFICATE_MARK)
        cache[CERTIFICATE_MARK] = True
        try:
            yield
        finally:
            if previous is None:
                cache.pop(CERTIFICATE_MARK, None)
            else:
                cache[CERTIFICATE_MARK] = previous

    def _report_server_reachable(self):
        """Whether wkhtmltopdf's requests back to this server can be served.

        They need the registry lock: while the registry loads (tests run at
        install) or another thread holds it, they would wait for ever and
        so would the rendering. Only asked under tests: in production the
        registry is loaded and the lock is free."""
        if self.env.registry.in_test_mode():
            return True  # HttpCase: requests share the test cursor
        if not self.env.registry.ready:
            return False
        lock = Registry._lock
        if isinstance(lock, DummyRLock):
            return True  # a registry is in test mode: nothing waits for it
        if lock._is_owned():
            return False  # held by this very thread: requests would wait
        if not lock.acquire(blocking=False):
            return False
        lock.release()
        return True

    def _render_certificate_pdf(self, payload):
        """The certificate rendered by Odoo's report engine from the signed
        JSON just stored, with that JSON embedded in the PDF (bytes, or
        ``None`` when the PDF engine is missing: the JSON and HTML stay)."""
        self.ensure_one()
        if config["test_enable"] and not self._report_server_reachable():
            _logger.warning(
                "DSR %s: no certificate PDF: this server cannot serve the "
                "report's assets now (registry loading)",
                self.name,
            )
            return None
        report = (
            self.env["ir.actions.report"]
            .sudo()
            .with_context(force_report_rendering=True)
        )
        try:
            pdf, _kind = report._render_qweb_pdf(
                "gdpr_dsr.dsr_certificate_report", res_ids=self.ids
            )
        except UserError as exc:
            _logger.warning(
                "DSR %s: the certificate PDF could not be rendered: %s", self.name, exc
            )
            return None
        reader = OdooPdfFileReader(io.BytesIO(pdf), strict=False)
        writer = OdooPdfFileWriter()
        writer.cloneReaderDocumentRoot(reader)
        writer.addAttachment(
            self.certificate_json_filename, payload, subtype="application/json"
        )
        buffer = io.BytesIO()
        writer.write(buffer)
        return buffer.getvalue()

    # -- certificate downloads ------------------------------------------------
    def _check_certificate_reader(self):
        """Privacy Officers and Auditors who may read the request."""
        user = self.env.user
        if not (
            user.has_group("gdpr_dsr.dsr_group_officer")
            or user.has_group("audit_export.audit_group_auditor")
        ):
            raise AccessError(
                self.env._(
                    "Only Privacy Officers and Auditors may download erasure "
                    "certificates."
                )
            )
        self.check_access("read")

    def action_download_certificate_pdf(self):
        return self._certificate_download_action("pdf")

    def action_download_certificate_json(self):
        return self._certificate_download_action("json")

    def _certificate_download_action(self, kind):
        self.ensure_one()
        self._check_certificate_reader()
        if not self.has_certificate:
            raise UserError(self.env._("This request has no erasure certificate."))
        return {
            "type": "ir.actions.act_url",
            "url": f"/gdpr_dsr/certificate/{self.id}/{kind}",
            "target": "download",
        }

    def _read_certificate(self, kind):
        """``(bytes, mimetype, filename)`` of the certificate as ``kind``
        (``pdf``, ``json``, ``html``); every download is an audit event."""
        self.ensure_one()
        self._check_certificate_reader()
        if kind not in CERTIFICATE_KINDS:
            raise UserError(self.env._("Unknown certificate format."))
        fname, mimetype, extension = CERTIFICATE_KINDS[kind]
        stored = self.sudo().with_context(bin_size=False)
        if kind == "pdf" and not stored.certificate_pdf and stored.certificate_json:
            self._complete_certificate_pdf()
        data = stored[fname]
        if not data:
            raise UserError(self.env._("This request has no erasure certificate."))
        raw = base64.b64decode(data)
        self._audit(
            "certificate_downloaded",
            format=kind,
            size=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
        )
        return raw, mimetype, stored[f"certificate_{extension}_filename"]

    def _complete_certificate_pdf(self):
        """Render the PDF of a certificate issued while the PDF engine was
        missing: once, from the signed JSON, after checking its signature."""
        self.ensure_one()
        if not self._verify_certificate():
            raise UserError(
                self.env._(
                    "Request %(ref)s: the signed certificate does not verify; no PDF "
                    "is made from it.",
                    ref=self.name,
                )
            )
        payload = base64.b64decode(
            self.sudo().with_context(bin_size=False).certificate_json
        )
        pdf = self._render_certificate_pdf(payload)
        if pdf:
            with self._issuing_certificate():
                self._server_write({"certificate_pdf": base64.b64encode(pdf)})

    def _certificate_document(self):
        self.ensure_one()
        stored = self.sudo().with_context(bin_size=False)
        if not stored.certificate_json:
            return None
        return json.loads(base64.b64decode(stored.certificate_json))

    def _verify_certificate(self):
        document = self._certificate_document()
        if not document:
            return False
        key_id = (document.get("signature") or {}).get("key_id") or None
        try:
            key, _key_id = self._certificate_key(
                key_id=None if key_id == "database.secret" else key_id
            )
        except suite_keyring.KeyringError:
            return False  # signed with a key this server no longer holds
        return certificate_lib.verify(document, key)

    # -- crons -------------------------------------------------------------------------
    @api.model
    def _cron_remind_deadlines(self):
        """Schedule a to-do for the assignee of every open request due within a
        week (or overdue) that has none yet."""
        limit = fields.Date.context_today(self) + timedelta(days=REMINDER_DAYS_BEFORE)
        requests = self.search(
            [
                ("state", "in", OPEN_STATES),
                ("deadline", "<=", limit),
                ("user_id", "!=", False),
            ]
        )
        todo = self.env.ref("mail.mail_activity_data_todo")
        for index, request in enumerate(requests, start=1):
            pending = request.activity_ids.filtered(
                lambda a, r=request: (
                    a.activity_type_id == todo
                    and a.user_id == r.user_id
                    and a.summary
                    and a.summary.startswith("DSR deadline")
                )
            )
            if not pending:
                request.activity_schedule(
                    "mail.mail_activity_data_todo",
                    date_deadline=request.deadline,
                    summary=f"DSR deadline {request.deadline}",
                    note=self.env._(
                        "Data subject request %(ref)s must be answered by %(date)s.",
                        ref=request.name,
                        date=request.deadline,
                    ),
                    user_id=request.user_id.id,
                )
            self.env["ir.cron"]._notify_progress(
                done=index, remaining=len(requests) - index
            )
        return len(requests)

    @api.model
    def _cron_purge_packages(self):
        """Delete export packages older than their 30-day validity."""
        expired = self.sudo().search(
            [
                ("package_expiry", "!=", False),
                ("package_expiry", "<", fields.Datetime.now()),
            ]
        )
        for request in expired:
            request.write(
                {
                    "package_file": False,
                    "package_sha256": False,
                    "package_expiry": False,
                }
            )
            request._message_log(body=self.env._("The export package expired."))
        return len(expired)
