"""Key rotation: seal the suite's stored secrets again under the keyring's
active key, and say which key ids the archives and files still need.

The server keyring (``suite_core/keyring.py``) lives outside the
database; its first key encrypts everything new, the others only decrypt.
After a new key was added at the top of the keyring, "Rotate key" (Settings,
Database Backups; Settings administrators only) does, in one transaction:

- destination credentials (S3 secret key, SFTP password or private key):
  opened with their old key and sealed under the active one; one that cannot
  be opened stops the rotation with an error naming the destination and the
  key id, and nothing is changed;
- passwords waiting in the database for a job to start (a queued export's
  ZIP password, an export, upload or download dialog's password): sealed
  again when their key is still there, listed otherwise (they ask for the
  password again);

and lists what cannot be re-encrypted in place and keeps needing its key:
backup archives (at their destinations), stored export files, GDPR export
packages, erasure certificates and the audit trail's signatures. An old key
may leave the keyring only when nothing in that list names it any more.
"""

import base64
import io
import json
import logging
import os
from collections import defaultdict

from markupsafe import Markup

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from odoo.addons.audit_export.tools.suite_errors import suite_error_message

from suite_core import streamcrypt

from ..service import backup_engine
from . import db_backup_download_wizard, db_backup_restore_wizard

_logger = logging.getLogger(__name__)

#: Names shown per kind and key id in the report (the rest are counted).
NAMES_SHOWN = 10
#: Passwords the other addons keep sealed with the keyring (streamcrypt,
#: tenant the database uuid) until a job uses them: ``(model, domain,
#: field, purpose)``; a model whose addon is not installed is skipped.
STREAM_SEALS = (
    # data_export_suite: a queued export's ZIP password, and the dialog's
    (
        "data.export.job",
        [("state", "=", "queued")],
        "password_sealed",
        "export-password",
    ),
    ("data.export.wizard", [], "password_sealed", "export-password"),
    # gdpr_dsr: a queued export package's ZIP password
    (
        "dsr.package.job",
        [("state", "=", "queued")],
        "password_sealed",
        "dsr-package-password",
    ),
)


def _blob_key_id(blob):
    """Key id of a ``v1:<key id>:<payload>`` seal (None when malformed)."""
    parts = (blob or "").split(":", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "v1" else None


def _stream_key_id(raw):
    """Key id in the header of a streamcrypt file object (None: password
    mode, not one of ours, or unreadable)."""
    try:
        header = streamcrypt.read_header(raw)
    except Exception:  # damaged or not an encrypted file: nothing to tell
        return None
    return header.key_id if header.mode == "keyring" else None


class DbBackupKeyRotation(models.TransientModel):
    _name = "db.backup.key.rotation"
    _description = "Rotate the server key"

    active_key_id = fields.Char(string="Active key", compute="_compute_keyring")
    keyring_ids = fields.Char(string="Keys in the keyring", compute="_compute_keyring")
    keyring_problem = fields.Char(compute="_compute_keyring")
    usage_html = fields.Html(
        string="What needs which key",
        compute="_compute_usage_html",
        sanitize=False,
    )
    result_html = fields.Html(readonly=True, sanitize=False)
    state = fields.Selection(
        [("draft", "Review"), ("done", "Rotated")], default="draft", readonly=True
    )

    # -- access --------------------------------------------------------------
    @api.model
    def _check_admin(self):
        self.env["db.backup.run"]._check_admin_access()

    @api.model_create_multi
    def create(self, vals_list):
        self._check_admin()
        return super().create(vals_list)

    # -- keyring ---------------------------------------------------------------
    def _compute_keyring(self):
        try:
            keyring = backup_engine.load_keyring()
        except backup_engine.KeyringUnavailable as exc:
            self.active_key_id = False
            self.keyring_ids = False
            self.keyring_problem = suite_error_message(self.env, exc.__cause__ or exc)
            return
        for wizard in self:
            wizard.active_key_id = "%s (%s)" % (
                keyring.active.key_id,
                keyring.active.fingerprint,
            )
            wizard.keyring_ids = ", ".join(keyring.ids)
            wizard.keyring_problem = False

    # -- what needs which key ----------------------------------------------------
    @api.model
    def _key_usage(self):
        """``{key id: {kind label: (count, [names])}}`` of everything the
        suite keeps (in the database or at its destinations) that needs a
        server key. Each collector yields ``(key id, kind, name, count)``."""
        self._check_admin()  # archive names, file names: administrators only
        usage = defaultdict(lambda: defaultdict(lambda: [0, []]))
        for collect in (
            self._usage_destinations,
            self._usage_archives,
            self._usage_export_files,
            self._usage_sealed_passwords,
            self._usage_dsr,
            self._usage_audit,
        ):
            for key_id, kind, name, count in collect():
                if key_id:
                    entry = usage[key_id][kind]
                    entry[0] += count
                    if name:
                        entry[1].append(name)
        return usage

    def _usage_destinations(self):
        kind = self.env._("Destination credentials")
        dests = self.env["db.backup.destination"].sudo().with_context(active_test=False)
        for dest in dests.search([("secrets_encrypted", "!=", False)]):
            yield dest._secrets_key_id(), kind, dest.name, 1

    def _usage_archives(self):
        kind = self.env._("Backup archives")
        runs = (
            self.env["db.backup.run"]
            .sudo()
            .search(
                [
                    ("state", "in", ("done", "partial")),
                    ("encryption", "=", "encrypted"),
                ],
                order="date desc, id desc",
            )
        )
        for run in runs:
            key_id = run.key_id
            if not key_id and run.manifest_json:
                try:
                    manifest = json.loads(run.manifest_json)
                    key_id = (manifest.get("encryption") or {}).get("key_id")
                except (ValueError, AttributeError):
                    key_id = None
            yield key_id or "?", kind, run.name or run.display_name, 1

    def _usage_export_files(self):
        if "data.export.job" not in self.env:
            return
        kind = self.env._("Export files")
        jobs = self.env["data.export.job"].sudo().search([("state", "=", "done")])
        for job in jobs:
            path = job._storage_path()
            if not path or not os.path.exists(path):
                continue
            with open(path, "rb") as raw:
                key_id = _stream_key_id(raw)
            yield key_id, kind, job.file_name or job.display_name, 1

    def _usage_sealed_passwords(self):
        kind = self.env._("Passwords waiting for a job")
        for record, key_id, _reseal in self._sealed_passwords():
            yield key_id, kind, record.display_name, 1

    def _usage_dsr(self):
        if "dsr.request" not in self.env:
            return
        packages = self.env._("GDPR export packages")
        certificates = self.env._("GDPR erasure certificates")
        requests = self.env["dsr.request"].sudo().with_context(bin_size=False)
        for request in requests.search([("package_generated_on", "!=", False)]):
            if request.package_file:
                raw = io.BytesIO(base64.b64decode(request.package_file))
                yield _stream_key_id(raw), packages, request.name, 1
        erased = requests.search(
            [("request_type", "=", "erasure"), ("state", "=", "done")]
        )
        for request in erased.filtered("certificate_json"):
            try:
                document = json.loads(base64.b64decode(request.certificate_json))
                key_id = (document.get("signature") or {}).get("key_id")
            except (ValueError, TypeError, AttributeError):
                continue
            if key_id and key_id != "database.secret":
                yield key_id, certificates, request.name, 1

    def _usage_audit(self):
        for table, kind in (
            ("audit_event", self.env._("Audit events signed")),
            ("audit_checkpoint", self.env._("Audit checkpoints signed")),
        ):
            self.env.cr.execute(
                SQL(
                    "SELECT key_id, count(*) FROM %s WHERE key_id LIKE %s "
                    "GROUP BY key_id",
                    SQL.identifier(table),
                    "kr:%",
                )
            )
            for key_id, count in self.env.cr.fetchall():
                yield key_id[3:], kind, None, count

    # -- sealed passwords waiting for a job ---------------------------------------
    def _sealed_passwords(self):
        """``(record, key id, reseal)`` of every password sealed in the
        database until a job uses it; ``reseal()`` seals it again under the
        active key (raises when its key is gone)."""
        uuid = self.env["ir.config_parameter"].sudo().get_param("database.uuid", "")
        for model, field, purpose in (
            (
                "db.backup.restore.wizard",
                "upload_password_sealed",
                db_backup_restore_wizard.PASSWORD_PURPOSE,
            ),
            (
                "db.backup.download.wizard",
                "password_sealed",
                db_backup_download_wizard.PASSWORD_PURPOSE,
            ),
        ):
            for record in self.env[model].sudo().search([(field, "!=", False)]):
                yield (
                    record,
                    _blob_key_id(record[field]),
                    self._engine_resealer(record, field, purpose, uuid),
                )
        for model, domain, field, purpose in STREAM_SEALS:
            if model not in self.env or field not in self.env[model]._fields:
                continue  # that addon is not installed
            records = self.env[model].sudo().search(domain)
            for record in records.filtered(field):
                raw = io.BytesIO(base64.b64decode(record[field]))
                yield (
                    record,
                    _stream_key_id(raw),
                    self._stream_resealer(record, field, purpose, uuid),
                )

    @api.model
    def _engine_resealer(self, record, field, purpose, uuid):
        def reseal():
            aad = record._password_aad()
            plain = backup_engine.unseal(purpose, uuid, record[field], aad)
            record.write({field: backup_engine.seal(purpose, uuid, plain, aad)})

        return reseal

    @api.model
    def _stream_resealer(self, record, field, purpose, uuid):
        def reseal():
            keyring = backup_engine.load_keyring()
            reader = streamcrypt.DecryptingReader(
                io.BytesIO(base64.b64decode(record[field])),
                keyring=keyring,
                tenant=uuid,
                purpose=purpose,
            )
            plain = reader.read()
            sealed = io.BytesIO()
            writer = streamcrypt.EncryptingWriter(
                sealed, keyring=keyring, tenant=uuid, purpose=purpose
            )
            writer.write(plain)
            writer.close()
            record.write({field: base64.b64encode(sealed.getvalue())})

        return reseal

    # -- report ------------------------------------------------------------------
    def _compute_usage_html(self):
        try:
            held = set(backup_engine.load_keyring().ids)
        except backup_engine.KeyringUnavailable:
            held = set()
        html = self._usage_table(self._key_usage(), held)
        for wizard in self:
            wizard.usage_html = html

    @api.model
    def _usage_table(self, usage, held):
        if not usage:
            return Markup("<p>%s</p>") % self.env._(
                "Nothing stored needs a server key yet."
            )
        rows = []
        for key_id in sorted(usage):
            status = (
                self.env._("in the keyring")
                if key_id in held
                else self.env._("NOT in the keyring")
            )
            css = "text-success" if key_id in held else "text-danger fw-bold"
            for kind, (count, names) in sorted(usage[key_id].items()):
                shown = names[:NAMES_SHOWN]
                more = len(names) - len(shown)
                text = ", ".join(shown)
                if more:
                    text += " " + self.env._("and %(count)s more", count=more)
                rows.append(
                    Markup(
                        "<tr><td><code>%s</code></td><td class='%s'>%s</td>"
                        "<td>%s</td><td class='text-end'>%s</td><td>%s</td></tr>"
                    )
                    % (key_id, css, status, kind, count, text)
                )
        head = Markup(
            "<table class='table table-sm o_db_backup_key_usage'><thead><tr>"
            "<th>%s</th><th>%s</th><th>%s</th><th class='text-end'>%s</th>"
            "<th>%s</th></tr></thead><tbody>"
        ) % (
            self.env._("Key id"),
            self.env._("Keyring"),
            self.env._("What"),
            self.env._("Count"),
            self.env._("Names"),
        )
        return head + Markup("").join(rows) + Markup("</tbody></table>")

    # -- the rotation ----------------------------------------------------------------
    def action_rotate(self):
        """Seal every stored secret again under the keyring's active key, in
        this one transaction, and record it in the audit trail."""
        self._check_admin()
        try:
            keyring = backup_engine.load_keyring()
        except backup_engine.KeyringUnavailable as exc:
            raise UserError(
                self.env._(
                    "The server keyring cannot be read: %(reason)s",
                    reason=suite_error_message(self.env, exc.__cause__ or exc),
                )
            ) from exc
        active = keyring.active.key_id
        # Nobody changes the credentials while they are sealed again.
        self.env.cr.execute(
            SQL(
                "SELECT id FROM db_backup_destination "
                "WHERE secrets_encrypted IS NOT NULL FOR UPDATE"
            )
        )
        Destination = self.env["db.backup.destination"].sudo()
        # every destination, archived ones included (a handful of rows)
        every = Destination.with_context(active_test=False).search([])  # pylint: disable=no-search-all
        destinations = every._reseal_secrets()
        passwords, left = self._reseal_passwords(active, keyring)
        details = {
            "operation": "rotate_key",
            "active_key": active,
            "destinations": [
                {"name": dest.name, "from_key": old} for dest, old in destinations
            ],
            "passwords": passwords,
            "passwords_left": left,
            "keys_needed": {
                key_id: {kind: entry[0] for kind, entry in kinds.items()}
                for key_id, kinds in self._key_usage().items()
            },
        }
        self.env["audit.event"].log_event(
            "settings",
            res_model="db.backup.destination",
            res_name=self.env._("Server key rotation"),
            details=details,
            message="Server key rotated: %s destination credential(s) and %s "
            "password(s) now sealed with key %s"
            % (len(destinations), passwords, active),
        )
        wizard = self or self.create({})
        wizard.write(
            {
                "state": "done",
                "result_html": wizard._result_html(
                    active, [d.name for d, _o in destinations], passwords, left
                ),
            }
        )
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": wizard[:1].id,
            "view_mode": "form",
            "views": [(False, "form")],
            "target": "new",
            "name": self.env._("Rotate key"),
        }

    @api.model
    def _reseal_passwords(self, active, keyring):
        """Re-seal the waiting passwords whose key is still in the keyring;
        returns ``(re-sealed, left as they are)``."""
        done = left = 0
        for record, key_id, reseal in list(self._sealed_passwords()):
            if not key_id or key_id == active:
                continue
            if key_id not in keyring:
                left += 1
                continue
            try:
                with self.env.cr.savepoint():
                    reseal()
            except Exception as exc:  # a damaged seal: the job asks again
                _logger.warning(
                    "Key rotation: the password of %s cannot be opened: %s",
                    record.display_name,
                    exc,
                )
                left += 1
                continue
            done += 1
        return done, left

    @api.model
    def _result_html(self, active, names, passwords, left):
        lines = [
            self.env._(
                "Everything the suite seals in this database now uses key %(key)s.",
                key=active,
            ),
            self.env._(
                "Destination credentials sealed again: %(count)s%(names)s.",
                count=len(names),
                names=(" (%s)" % ", ".join(names)) if names else "",
            ),
            self.env._(
                "Passwords waiting for a job sealed again: %(count)s.", count=passwords
            ),
        ]
        if left:
            lines.append(
                self.env._(
                    "%(count)s waiting password(s) could not be opened (their key "
                    "is gone): the job or dialog will ask for them again.",
                    count=left,
                )
            )
        lines.append(
            self.env._(
                "Keep every old key that the table below still names: archives, "
                "files and signatures cannot be re-encrypted in place."
            )
        )
        return Markup("").join(Markup("<p>%s</p>") % line for line in lines)
