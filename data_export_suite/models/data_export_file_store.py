"""Export file store: where export files live, encrypted, and their keys.

Export files are stored as ciphertext only (``suite_core.streamcrypt``
with the server keyring, bound to this database's uuid) in the filestore's
``data_export_suite`` folder, written atomically; ZIP passwords are sealed
with the same keyring until the job used them. Inherited by
``data.export.job`` (its records carry ``storage_name`` and ``file_name``).
"""

import base64
import contextlib
import datetime as dt
import io
import logging
import os

from odoo import api, models, tools
from odoo.exceptions import UserError
from odoo.tools import SQL

from odoo.addons.audit_export.tools.suite_errors import suite_error_message

from suite_core import keyring as suite_keyring
from suite_core import streamcrypt

from ..lib.serialize import CountingWriter

_logger = logging.getLogger(__name__)

STORAGE_DIR = "data_export_suite"
#: Seals of ZIP passwords (wizard until the job exists, job until it ran).
PASSWORD_PURPOSE = "export-password"


class DataExportFileStore(models.AbstractModel):
    _name = "data.export.file.store"
    _description = "Export File Store"

    def _tenant(self):
        """The database uuid every seal and file of this database is bound to."""
        tenant = self.env["ir.config_parameter"].sudo().get_param("database.uuid")
        if not tenant:
            raise UserError(
                self.env._("This database has no uuid: exports cannot be encrypted.")
            )
        return tenant

    def _load_keyring(self):
        try:
            return suite_keyring.Keyring.from_config(tools.config)
        except suite_keyring.KeyringError as exc:
            raise UserError(
                self.env._(
                    "Export files are stored encrypted with the server keyring, "
                    "and it is not usable: %(error)s",
                    error=suite_error_message(self.env, exc),
                )
            ) from exc

    @api.model
    def _seal_password(self, password):
        """``password`` encrypted with the server keyring (base64), bound to
        this database (tenant) and to ZIP passwords (purpose)."""
        ring = self._load_keyring()
        sealed = io.BytesIO()
        writer = streamcrypt.EncryptingWriter(
            sealed, keyring=ring, tenant=self._tenant(), purpose=PASSWORD_PURPOSE
        )
        writer.write(password.encode("utf-8"))
        writer.close()
        return base64.b64encode(sealed.getvalue())

    @api.model
    def _open_sealed_password(self, sealed):
        reader = streamcrypt.DecryptingReader(
            io.BytesIO(base64.b64decode(sealed)),
            keyring=self._load_keyring(),
            tenant=self._tenant(),
            purpose=PASSWORD_PURPOSE,
        )
        return reader.read().decode("utf-8")

    def _storage_dir(self):
        path = os.path.join(tools.config.filestore(self.env.cr.dbname), STORAGE_DIR)
        os.makedirs(path, mode=0o700, exist_ok=True)
        if os.stat(path).st_mode & 0o777 != 0o700:
            os.chmod(path, 0o700)  # made by an older version or another umask
        return path

    def _storage_path(self):
        self.ensure_one()
        name = self.sudo().storage_name
        if not name or os.path.basename(name) != name:
            return None
        return os.path.join(self._storage_dir(), name)

    def _delete_file(self):
        path = self._storage_path()
        if path and os.path.exists(path):
            os.unlink(path)
            _logger.info("Deleted export file %s of job %s", path, self.id)

    def _purge_orphan_files(self, now):
        """Files of the export folder no job references (crashed transactions)."""
        folder = self._storage_dir()
        self.env.cr.execute(
            SQL(
                "SELECT storage_name FROM data_export_job "
                "WHERE storage_name IS NOT NULL"
            )
        )
        known = {row[0] for row in self.env.cr.fetchall()}
        limit = now.replace(tzinfo=dt.UTC).timestamp() - 86400
        for entry in os.scandir(folder):
            if (
                entry.is_file()
                and entry.name not in known
                and entry.stat().st_mtime < limit
            ):
                os.unlink(entry.path)
                _logger.info("Deleted orphan export file %s", entry.path)

    @contextlib.contextmanager
    def _write_stored_file(self, storage_name, content_type):
        """Write an export file to the store, encrypted: yields ``(counter,
        encrypted)`` -- write the file to ``encrypted``, ``counter.size`` is
        what reached the disk so far.

        The file is written under a temporary name (created exclusively,
        mode 0600), synced and renamed to ``storage_name`` when the block
        ends; whatever stops the block removes the temporary file.
        """
        ring = self._load_keyring()
        final_path = os.path.join(self._storage_dir(), storage_name)
        tmp_path = final_path + ".part"
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as raw:
                counter = CountingWriter(raw)
                encrypted = streamcrypt.EncryptingWriter(
                    counter,
                    keyring=ring,
                    tenant=self._tenant(),
                    purpose="export",
                    content_type=content_type,
                )
                yield counter, encrypted
                encrypted.close()
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(tmp_path, final_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)
            raise

    def _open_stored_file(self):
        """A decrypting reader of this record's stored file.

        The caller closes the reader and its file (``reader.raw_file``). No
        access check here: the caller checks who may read the file.
        """
        self.ensure_one()
        path = self._storage_path()
        if not path or not os.path.exists(path):
            raise UserError(self.env._("The export file is missing on the server."))
        ring = self._load_keyring()
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
        try:
            reader = streamcrypt.DecryptingReader(
                raw, keyring=ring, tenant=self._tenant(), purpose="export"
            )
        except suite_keyring.UnknownKeyError as exc:
            raw.seek(0)
            key_id = streamcrypt.read_header(raw).key_id
            raw.close()
            raise UserError(
                self.env._(
                    'Export "%(name)s" cannot be decrypted: the server key that '
                    "encrypted it, %(key)s, is not in the server keyring (it holds: "
                    "%(held)s). Add key %(key)s back to the keyring, or run the "
                    "export again.",
                    name=self.sudo().file_name,
                    key=key_id,
                    held=", ".join(ring.ids),
                )
            ) from exc
        except Exception:
            raw.close()
            raise
        reader.raw_file = raw
        return reader
