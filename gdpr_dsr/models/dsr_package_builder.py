"""The export package of a data subject request: the document (the
subject's records as the officer may read them, credentials and secrets
withheld), the attached files, the ZIP (optionally AES-256 with the
officer's password) encrypted at rest with the server keyring, and its
reading back for the download.

An abstract model ``dsr.request`` inherits: every method runs on the
request (``self`` is a ``dsr.request``).
"""

import base64
import hashlib
import hmac
import io
import json
import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import config

from odoo.addons.audit_export.tools.suite_errors import suite_error_message
from odoo.addons.data_export_suite.lib import zipper

from suite_core import keyring as suite_keyring
from suite_core import streamcrypt
from suite_core.sensitive import SECRET_MODELS, is_withheld

from ..lib.masking import mask_document
from ..lib.package import SAFE_NAME_RE, add_to_section, attachment_arcname, new_sections

_logger = logging.getLogger(__name__)

PACKAGE_VALIDITY_DAYS = 30
# What the package is sealed for: every read names it (with the tenant).
PACKAGE_PURPOSE = "dsr-export"


class DsrPackageRefused(UserError):
    """The stored package is not the one this server generated for the
    request (or not an export package of this database): never served."""


class DsrPackageBuilder(models.AbstractModel):
    _name = "dsr.package.builder"
    _description = "Data Subject Request: Export Package"

    @api.model
    def _keyring(self):
        try:
            return suite_keyring.Keyring.from_config(config)
        except suite_keyring.KeyringError as exc:
            raise UserError(
                self.env._(
                    "The server keyring is not configured, so export packages cannot "
                    "be encrypted at rest: %(error)s",
                    error=suite_error_message(self.env, exc),
                )
            ) from exc

    def _queue_package(self, password=None):
        """Queue the generation of the package for the current officer (the
        cron builds it, ``dsr.package.job``); ``password`` is the checked
        ZIP password, sealed until the job starts."""
        self.ensure_one()
        self._check_officer()
        self._check_verified()
        self._keyring()  # refuse at once when the package cannot be encrypted
        return self.env["dsr.package.job"]._queue(self, password=password or None)

    def _generate_package(self, password=None, progress=None):
        """Build the export package (ZIP, optionally AES-256 with ``password``),
        encrypt it with the server keyring and store it for 30 days.

        Runs in the package job (``dsr.package.job``), as the officer who
        asked for it; ``progress(step, percent, **counts)`` hears each step.
        Nothing is stored unless everything succeeded (the package fields
        are written last, in one write).
        """
        self.ensure_one()
        self._check_officer()
        self._check_verified()
        if password is not None and not password:
            password = None
        progress = progress or (lambda step, percent, **counts: None)
        if not self.line_ids:
            progress(self.env._("Discovering the subject's records"), 2.0)
            self._run_discovery()
        document, files = self._build_package_document(progress=progress)
        progress(
            self.env._("Writing the archive (%(count)s files)", count=len(files) + 1),
            85.0,
        )
        payload = json.dumps(
            document, indent=2, ensure_ascii=False, sort_keys=True, default=str
        ).encode("utf-8")
        members = [("data.json", payload), *files]
        keyring = self._keyring()
        buffer = io.BytesIO()
        writer = streamcrypt.EncryptingWriter(
            buffer,
            keyring=keyring,
            tenant=self._database_uuid(),
            purpose=PACKAGE_PURPOSE,
            content_type="application/zip",
        )
        try:
            count = zipper.write_zip(writer, members, password=password)
        except zipper.ZipperError as exc:
            raise UserError(suite_error_message(self.env, exc)) from exc
        writer.close()
        encrypted = buffer.getvalue()
        progress(self.env._("Storing the encrypted package"), 95.0)
        now = fields.Datetime.now()
        reference = SAFE_NAME_RE.sub("-", self.name)
        self._server_write(
            {
                "package_file": base64.b64encode(encrypted),
                "package_sha256": hashlib.sha256(encrypted).hexdigest(),
                "package_filename": f"{reference}.zip",
                "package_generated_on": now,
                "package_expiry": now + timedelta(days=PACKAGE_VALIDITY_DAYS),
                "package_protected": bool(password),
                "state": "done" if self.request_type == "access" else self.state,
            }
        )
        self._audit(
            "exported",
            members=count,
            records=len(self.line_ids),
            password_protected=bool(password),
        )
        return True

    def _read_package(self):
        """Return the decrypted ZIP bytes (raises when expired or missing).

        Only the package this server generated for this request opens: the
        stored bytes must have the digest recorded at generation, and the
        decryption names this database (tenant) and the export-package
        purpose, so a backup archive, a data export or another database's
        blob is refused before any key is derived.
        """
        self.ensure_one()
        self._check_officer()
        stored = self.sudo().with_context(bin_size=False)
        if not stored.package_generated_on or not stored.package_file:
            raise UserError(self.env._("No export package is available."))
        if stored.package_expiry and stored.package_expiry < fields.Datetime.now():
            raise UserError(
                self.env._(
                    "The export package expired on %(date)s; generate a new one.",
                    date=stored.package_expiry,
                )
            )
        encrypted = base64.b64decode(stored.package_file)
        expected = stored.package_sha256 or ""
        if not hmac.compare_digest(hashlib.sha256(encrypted).hexdigest(), expected):
            self._audit_independently(
                "download_refused", reason="not the package the server stored"
            )
            raise DsrPackageRefused(
                self.env._(
                    "Request %(ref)s: the stored export package is not the one this "
                    "server generated; download refused. Generate a new package.",
                    ref=self.name,
                )
            )
        try:
            reader = streamcrypt.DecryptingReader(
                io.BytesIO(encrypted),
                keyring=self._keyring(),
                tenant=self._database_uuid(),
                purpose=PACKAGE_PURPOSE,
            )
            data = reader.read()
        except suite_keyring.UnknownKeyError as exc:
            ring = self._keyring()
            key_id = streamcrypt.read_header(io.BytesIO(encrypted)).key_id
            self._audit_independently("download_refused", reason="missing key")
            raise UserError(
                self.env._(
                    "The export package of %(ref)s cannot be decrypted: the server "
                    "key that encrypted it, %(key)s, is not in the server keyring "
                    "(it holds: %(held)s). Add key %(key)s back to the keyring, or "
                    "generate a new package.",
                    ref=self.name,
                    key=key_id,
                    held=", ".join(ring.ids),
                )
            ) from exc
        except suite_keyring.StreamCryptError as exc:
            self._audit_independently("download_refused", reason=str(exc)[:200])
            raise DsrPackageRefused(
                self.env._(
                    "Request %(ref)s: the stored file is not an export package of this "
                    "database (%(error)s); download refused.",
                    ref=self.name,
                    error=suite_error_message(self.env, exc),
                )
            ) from exc
        self._audit("downloaded", size=len(data))
        return data

    def _build_package_document(self, progress=None):
        """Return ``(document, files)``: the JSON-ready document and the list
        of ``(arcname, bytes)`` attachment members. Runs as the officer:
        records they may not read are listed under ``withheld``.
        ``progress(step, percent, **counts)`` hears each model read."""
        self.ensure_one()
        progress = progress or (lambda step, percent, **counts: None)
        by_model = defaultdict(list)
        for line in self.line_ids:
            by_model[(line.category, line.res_model)].append(line)
        Line = self.env["dsr.request.line"]
        # what the steps below fill in
        package = {
            "sections": new_sections(),
            "files": [],
            "attachments": [],
            "secrets": set(),
            "withheld": [],
            "withheld_fields": {},
            "exported_lines": Line,
            "withheld_lines": Line,
        }
        groups = sorted(by_model.items())
        counts = {
            "models_done": 0,
            "models_total": len(groups),
            "records_done": 0,
            "records_total": len(self.line_ids),
        }
        for (category, model_name), lines in groups:
            self._report_model_progress(progress, model_name, counts, len(lines))
            self._package_model(package, category, model_name, lines)
        counts.update(models_done=len(groups), records_done=len(self.line_ids))
        progress(self.env._("Preparing the document"), 80.0, **counts)
        package["exported_lines"].sudo().write({"result": "exported"})
        package["withheld_lines"].sudo().write({"result": "withheld"})
        document = {
            "format": "gdpr_dsr.subject_access_package",
            "version": 1,
            "generated_at": datetime.now(UTC).isoformat(),
            "request": {
                "reference": self.name,
                "regime": self.regime,
                "type": self.request_type,
                "received_date": fields.Date.to_string(self.received_date),
            },
            "subject": {
                "email": self.subject_email,
                "name": self.subject_name or None,
                "phone": self.subject_phone or None,
            },
            **package["sections"],
            "attachments": package["attachments"],
            "withheld": package["withheld"],
            # fields left out because the officer may not read what they are
            # computed from (e.g. accounting statistics without accounting rights)
            "withheld_fields": package["withheld_fields"],
        }
        return mask_document(document, package["secrets"]), package["files"]

    def _package_model(self, package, category, model_name, lines):
        """Add the records of ``model_name`` discovered as ``category`` (the
        request ``lines`` naming them) to ``package``: those the officer may
        read to their section (files to the ZIP), the others withheld."""
        if model_name not in self.env:
            return
        if model_name in SECRET_MODELS:
            # credentials are never exported, whoever asks
            self._package_withhold(
                package, model_name, lines, "holds credentials (never exported)"
            )
            return
        records = (
            self.env[model_name]
            .with_context(active_test=False)
            .browse([ln.res_id for ln in lines])
            .exists()
        )
        readable = self._filtered_readable(records)
        if category == "attachment":
            readable = readable.filtered(lambda att: not self._attachment_withheld(att))
        for line in lines:
            if line.res_id in readable.ids:
                package["exported_lines"] |= line
            else:
                self._package_withhold(
                    package,
                    model_name,
                    line,
                    "not readable by the officer, a secret, or no longer exists",
                )
        if model_name == "res.partner.bank":
            for bank in records.sudo():
                package["secrets"].update(
                    filter(None, [bank.acc_number, bank.sanitized_acc_number])
                )
        if not readable:
            return
        if category == "attachment":
            self._package_attachments(package, readable)
            return
        data, skipped = self._serialize_safely(readable)
        if skipped:
            package["withheld_fields"][model_name] = skipped
        add_to_section(package["sections"], category, model_name, data)

    def _package_withhold(self, package, model_name, lines, reason):
        """List the records of ``lines`` as withheld, for ``reason``."""
        for line in lines:
            package["withheld_lines"] |= line
            package["withheld"].append(
                {"model": model_name, "id": line.res_id, "reason": reason}
            )

    def _package_attachments(self, package, attachments):
        """Add the files of ``attachments`` to the ZIP and their description
        to the document."""
        for attachment in attachments:
            arcname = attachment_arcname(attachment.id, attachment.name)
            package["files"].append((arcname, attachment.raw or b""))
            package["attachments"].append(
                {
                    "id": attachment.id,
                    "name": attachment.name,
                    "mimetype": attachment.mimetype,
                    "file": arcname,
                    "res_model": attachment.res_model,
                    "res_id": attachment.res_id,
                    "size": attachment.file_size,
                }
            )

    def _report_model_progress(self, progress, model_name, counts, size):
        """Report the model about to be read, then count it as done."""
        model = (
            self.env["ir.model"]._get(model_name) if model_name in self.env else None
        )
        label = model.sudo().name if model else model_name
        total = counts["records_total"] or 1
        progress(
            self.env._("Reading %(model)s", model=label),
            5.0 + 75.0 * counts["records_done"] / total,
            **counts,
        )
        counts["models_done"] += 1
        counts["records_done"] += size

    def _serialize_safely(self, records):
        """Serialise ``records`` with data_export_suite as the current user.

        A field may be readable yet computed from records the officer may not
        read (e.g. sales statistics computed from invoices): such fields are
        left out (and named) rather than failing the whole package.
        """
        profile = self.env["data.export.profile"]
        fnames = [
            fname
            for fname in profile._exportable_fields(records._name)
            if not self._field_withheld(records._fields[fname])
        ]
        try:
            return profile._serialize_records(records, fnames, depth=0), []
        except AccessError:
            _logger.info(
                "DSR %s: some %s fields are not readable by %s; serialising "
                "field by field",
                self.name,
                records._name,
                self.env.user.login,
            )
        # ("id" is never tried alone: with no other field, read() reads all)
        kept, skipped = ["id"], []
        for fname in fnames:
            if fname == "id":
                continue
            try:
                profile._serialize_records(records, ["id", fname], depth=0)
            except AccessError:
                skipped.append(fname)
                records.invalidate_recordset([fname])
            else:
                kept.append(fname)
        return profile._serialize_records(records, kept, depth=0), skipped

    def _field_withheld(self, field):
        """The suite's one rule for secrets, for the officer reading."""
        if field.name == "id":
            return False
        return is_withheld(
            field.model_name,
            field.name,
            field.type,
            field.groups,
            self.env.user.has_group,
        )

    def _attachment_withheld(self, attachment):
        """A file of a credentials model or of a secret binary field."""
        attachment = attachment.sudo()
        if attachment.res_model in SECRET_MODELS:
            return True
        if attachment.res_field and attachment.res_model in self.env:
            field = self.env[attachment.res_model]._fields.get(attachment.res_field)
            return field is None or self._field_withheld(field)
        return False
