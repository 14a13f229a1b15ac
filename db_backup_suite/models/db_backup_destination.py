import base64
import json
import logging
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL, sql

from odoo.addons.audit_export.tools.suite_errors import suite_error_message

from ..service import backup_engine

_logger = logging.getLogger(__name__)

SECRET_FIELDS = ("s3_secret_key", "sftp_password", "sftp_private_key")
SECRET_PURPOSE = "db-backup-destination-secret"
SECRET_AAD = b"db.backup.destination/v1"


class DbBackupDestination(models.Model):
    _name = "db.backup.destination"
    _inherit = ["db.backup.guarded.mixin", "db.backup.settings.audit.mixin"]
    _description = "Backup Destination"
    _order = "sequence, id"
    # The confirmed host key is trusted for every connection: it is set only
    # by "Confirm host key" after "Fetch host key" (not typed in); the
    # stored secrets only through their write-only fields; the test results
    # only by the test.
    _server_owned_fields = (
        "sftp_known_hosts",
        "sftp_fingerprint",
        "sftp_pending_host_key",
        "sftp_pending_fingerprint",
        "secrets_encrypted",
        "secret_names",
        "last_test_date",
        "last_test_result",
        "last_test_ok",
    )

    name = fields.Char(required=True)
    active = fields.Boolean(default=True)
    sequence = fields.Integer(default=10)
    dest_type = fields.Selection(
        [("local", "Local folder"), ("s3", "S3 compatible"), ("sftp", "SFTP")],
        string="Type",
        required=True,
        default="local",
    )
    # local
    local_path = fields.Char(string="Folder", help="Absolute path on the Odoo server.")
    # S3
    s3_bucket = fields.Char(string="Bucket")
    s3_prefix = fields.Char(string="Key prefix", default="odoo-backups")
    s3_endpoint_url = fields.Char(
        string="Endpoint URL", help="Leave empty for AWS; e.g. http://seaweedfs:8333"
    )
    s3_region = fields.Char(string="Region")
    s3_access_key = fields.Char(string="Access key id")
    s3_sse = fields.Boolean(string="Server-side encryption")
    s3_checksum_when_required = fields.Boolean(
        string="Checksums only when required",
        help="Some S3-compatible servers reject the default checksums.",
    )
    # SFTP
    sftp_host = fields.Char(string="Host")
    sftp_port = fields.Integer(string="Port", default=22)
    sftp_username = fields.Char(string="User")
    sftp_path = fields.Char(string="Remote folder", default="odoo-backups")
    sftp_auth = fields.Selection(
        [("password", "Password"), ("key", "Private key")],
        string="Authentication",
        default="password",
    )
    sftp_known_hosts = fields.Text(
        string="Confirmed host key",
        readonly=True,
        copy=False,
        help="known_hosts line confirmed by an administrator.",
    )
    sftp_pending_host_key = fields.Text(readonly=True, copy=False)
    sftp_pending_fingerprint = fields.Char(readonly=True, copy=False)
    sftp_fingerprint = fields.Char(
        string="Host key fingerprint", readonly=True, copy=False
    )
    # Secrets: write-only. Never read back, never logged.
    s3_secret_key = fields.Char(
        string="Secret access key",
        compute="_compute_secrets",
        inverse="_inverse_s3_secret_key",
        store=False,
    )
    sftp_password = fields.Char(
        string="SFTP password",
        compute="_compute_secrets",
        inverse="_inverse_sftp_password",
        store=False,
    )
    sftp_private_key = fields.Text(
        string="SFTP private key",
        compute="_compute_secrets",
        inverse="_inverse_sftp_private_key",
        store=False,
    )
    secrets_encrypted = fields.Char(copy=False, groups="base.group_system")
    secret_names = fields.Char(
        string="Secrets stored",
        readonly=True,
        copy=False,
        help="Which secrets are stored (encrypted); their values are never shown.",
    )
    last_test_date = fields.Datetime(readonly=True, copy=False)
    last_test_result = fields.Char(readonly=True, copy=False)
    last_test_ok = fields.Boolean(readonly=True, copy=False)
    storage_mode = fields.Selection(
        [
            ("incremental", "Incremental (deduplicated snapshots)"),
            ("full", "Full archives"),
        ],
        string="Storage",
        compute="_compute_storage_mode",
        store=True,
        readonly=False,
        precompute=True,
        required=True,
        help="Incremental: each backup stores only what changed since the "
        "previous one (deduplicated, encrypted snapshots in a repository at the "
        "destination); daily or hourly backups of a large database cost little "
        "storage and upload. Full archives: each backup is one complete "
        "encrypted file, independent of every other one, that any copy of the "
        "suite restores on its own. Changing it keeps what the destination "
        "holds: both kinds stay listed and restorable.",
    )

    def _auto_init(self):
        # Destinations that existed before the storage mode keep writing
        # full archives (what they hold and what their administrator chose);
        # new S3 and SFTP destinations default to incremental snapshots.
        # (On a fresh install there is no table yet: nothing to keep.)
        if sql.table_exists(self.env.cr, self._table) and not sql.column_exists(
            self.env.cr, self._table, "storage_mode"
        ):
            sql.create_column(self.env.cr, self._table, "storage_mode", "varchar")
            self.env.cr.execute(
                SQL("UPDATE %s SET storage_mode = 'full'", SQL.identifier(self._table))
            )
        return super()._auto_init()

    @api.depends("dest_type")
    def _compute_storage_mode(self):
        for record in self:
            record.storage_mode = (
                "full" if record.dest_type == "local" else "incremental"
            )

    def _compute_secrets(self):
        for record in self:
            record.s3_secret_key = False
            record.sftp_password = False
            record.sftp_private_key = False

    def _inverse_s3_secret_key(self):
        self._store_secret("s3_secret_key")

    def _inverse_sftp_password(self):
        self._store_secret("sftp_password")

    def _inverse_sftp_private_key(self):
        self._store_secret("sftp_private_key")

    @api.constrains(
        "dest_type", "local_path", "s3_bucket", "sftp_host", "sftp_username"
    )
    def _check_required_settings(self):
        for record in self:
            if record.dest_type == "local" and not (
                record.local_path and os.path.isabs(record.local_path)
            ):
                raise UserError(
                    self.env._("A local destination needs an absolute folder path.")
                )
            if record.dest_type == "s3" and not record.s3_bucket:
                raise UserError(self.env._("An S3 destination needs a bucket."))
            if record.dest_type == "sftp" and not (
                record.sftp_host and record.sftp_username
            ):
                raise UserError(
                    self.env._("An SFTP destination needs a host and a user.")
                )

    # -- secrets -----------------------------------------------------------
    def _keyring(self):
        try:
            return backup_engine.load_keyring()
        except backup_engine.KeyringUnavailable as exc:
            raise UserError(
                self.env._(
                    "The server keyring is not configured, so credentials cannot be "
                    "stored encrypted: %(reason)s",
                    reason=suite_error_message(self.env, exc.__cause__ or exc),
                )
            ) from exc

    def _secret_key(self, key_id=None):
        """``(key id, AES key)`` sealing this database's destination
        credentials under ``key_id`` (default: the keyring's active key).

        A key id the keyring no longer holds is an error naming the
        destination and the key id (never "the key that encrypted this
        archive")."""
        keyring = self._keyring()
        kid = key_id or keyring.active.key_id
        if kid not in keyring:
            raise UserError(self._missing_key_message(kid, keyring.ids))
        uuid = self.env["ir.config_parameter"].sudo().get_param("database.uuid", "")
        return kid, keyring.derive(SECRET_PURPOSE, uuid, key_id=kid)

    def _missing_key_message(self, key_id, held):
        return self.env._(
            'The credentials of destination "%(name)s" cannot be decrypted: the '
            "server key that encrypted them, %(key)s, is not in the server keyring "
            "(it holds: %(held)s). Add key %(key)s back to the keyring and use "
            "Settings > Database Backups > Rotate key, or type the destination's "
            "credentials again.",
            name=self.name,
            key=key_id,
            held=", ".join(held) or "-",
        )

    def _secrets_key_id(self):
        """The key id sealing this destination's stored credentials (False
        when none are stored)."""
        self.ensure_one()
        blob = self.sudo().secrets_encrypted
        if not blob:
            return False
        parts = blob.split(":", 2)
        return parts[1] if len(parts) == 3 else False

    def _read_secrets(self):
        """The decrypted secrets (dict). Only for building a sink config."""
        self.ensure_one()
        blob = self.sudo().secrets_encrypted
        if not blob:
            return {}
        version, kid, payload = blob.split(":", 2)
        if version != "v1":
            raise UserError(self.env._("Unknown secret format %(v)s", v=version))
        _kid, key = self._secret_key(kid)
        raw = base64.b64decode(payload)
        try:
            plain = AESGCM(key).decrypt(raw[:12], raw[12:], SECRET_AAD)
        except Exception as exc:
            raise UserError(
                self.env._(
                    'The stored credentials of destination "%(name)s" cannot be '
                    "decrypted with server key %(key)s (was the key replaced by "
                    "another one with the same id?). Enter them again.",
                    name=self.name,
                    key=kid,
                )
            ) from exc
        return json.loads(plain)

    def _write_secrets(self, secrets):
        self.ensure_one()
        secrets = {k: v for k, v in secrets.items() if v}
        if not secrets:
            blob = False
        else:
            kid, key = self._secret_key()
            nonce = os.urandom(12)
            ct = AESGCM(key).encrypt(nonce, json.dumps(secrets).encode(), SECRET_AAD)
            blob = "v1:%s:%s" % (kid, base64.b64encode(nonce + ct).decode())
        self.sudo().with_context(db_backup_secret_write=True).write(
            {
                "secrets_encrypted": blob,
                "secret_names": ", ".join(sorted(secrets)) or False,
            }
        )

    def _reseal_secrets(self):
        """Seal the stored credentials again under the keyring's active key
        (key rotation). Returns ``[(destination, old key id)]`` of those
        re-sealed; raises (naming the destination and the key id) when one
        cannot be opened, before anything is written."""
        active = self._keyring().active.key_id
        todo = [
            (dest, dest._secrets_key_id())
            for dest in self.sudo().with_context(active_test=False)
            if dest._secrets_key_id() and dest._secrets_key_id() != active
        ]
        opened = [(dest, old, dest._read_secrets()) for dest, old in todo]
        for dest, _old, secrets in opened:
            dest._write_secrets(secrets)
        return [(dest, old) for dest, old, _secrets in opened]

    def _store_secret(self, field_name):
        for record in self:
            value = record[field_name]
            if not value:
                continue  # an empty write-only field means "keep the stored one"
            secrets = record._read_secrets()
            secrets[field_name] = value
            record._write_secrets(secrets)

    def action_clear_secrets(self):
        self.env["db.backup.run"]._check_admin_access()
        self.check_access("write")
        for record in self:
            record._write_secrets({})
        self._log_settings("clear_secrets")

    # -- CRUD --------------------------------------------------------------
    @api.model_create_multi
    def create(self, vals_list):
        records = super().create(vals_list)
        records._log_settings("create")
        return records

    def write(self, vals):
        result = super().write(vals)
        if not self.env.context.get("db_backup_secret_write") and not set(vals) <= {
            "last_test_date",
            "last_test_result",
            "last_test_ok",
        }:
            self._log_settings("write", sorted(vals))
        return result

    def unlink(self):
        self._log_settings("delete")
        return super().unlink()

    def _settings_audit_label(self):
        self.ensure_one()
        return "Backup destination %s" % self.name

    # -- engine configuration ----------------------------------------------
    def _sink_config(self):
        """The engine's sink config of this destination.

        Archive names start with the database's own folder
        (``<db>/<db>_<label>_<stamp>...``, lib/naming.py), so several
        databases can share one destination without seeing each other's.
        """
        self.ensure_one()
        config = self._sink_options()
        # how the engine writes here; every reader lists and reads both
        # kinds (lib/sinks: make_sink -> repository.StoredBackupsSink)
        config["storage"] = self.storage_mode or "full"
        config["database"] = self.env.cr.dbname
        keyring_file = backup_engine.keyring_path()
        if keyring_file:
            config["keyring_file"] = os.path.abspath(keyring_file)
        return config

    def _sink_options(self):
        """The sink's own options (lib/sinks), secrets included."""
        self.ensure_one()
        secrets = self._read_secrets()
        if self.dest_type == "local":
            return {"type": "local", "path": self.local_path}
        if self.dest_type == "s3":
            prefix = (self.s3_prefix or "").strip("/")
            return {
                "type": "s3",
                "bucket": self.s3_bucket,
                "prefix": prefix,
                "endpoint_url": self.s3_endpoint_url or None,
                "region": self.s3_region or None,
                "access_key": self.s3_access_key or None,
                "secret_key": secrets.get("s3_secret_key"),
                "sse": "AES256" if self.s3_sse else None,
                "checksum_when_required": self.s3_checksum_when_required,
            }
        if not self.sftp_known_hosts:
            raise UserError(
                self.env._(
                    "The SFTP host key of %(name)s is not confirmed yet: use "
                    "'Fetch host key' and confirm it.",
                    name=self.name,
                )
            )
        path = self.sftp_path or "."
        config = {
            "type": "sftp",
            "host": self.sftp_host,
            "port": self.sftp_port or 22,
            "username": self.sftp_username,
            "known_hosts": self.sftp_known_hosts,
            "path": path,
        }
        if self.sftp_auth == "key":
            config["private_key"] = secrets.get("sftp_private_key")
        else:
            config["password"] = secrets.get("sftp_password")
        return config

    def _make_sink(self):
        from ..lib import sinks

        return sinks.make_sink(self._sink_config())

    # -- actions ------------------------------------------------------------
    def action_test_connection(self):
        self.ensure_one()
        self.env["db.backup.run"]._check_admin_access()
        self.check_access("write")
        try:
            sink = self._make_sink()
            try:
                sink.test_connection()
            finally:
                sink.close()
        except Exception as exc:
            # The error is shown to the administrator and kept on the record;
            # it never contains the secrets (the engine does not echo them).
            _logger.info("Backup destination %s: test failed: %s", self.name, exc)
            message = suite_error_message(self.env, exc)
            self.sudo().write(
                {
                    "last_test_date": fields.Datetime.now(),
                    "last_test_ok": False,
                    "last_test_result": message[:500],
                }
            )
            return self._notify(
                self.env._("Connection failed: %(e)s", e=message), "danger"
            )
        self.sudo().write(
            {
                "last_test_date": fields.Datetime.now(),
                "last_test_ok": True,
                "last_test_result": self.env._("Connection OK"),
            }
        )
        return self._notify(self.env._("Connection OK"), "success")

    def _notify(self, message, kind):
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "message": message,
                "type": kind,
                "sticky": kind == "danger",
                "next": {"type": "ir.actions.client", "tag": "soft_reload"},
            },
        }

    def action_fetch_host_key(self):
        """Connect once, read the server's host key, keep it pending."""
        self.ensure_one()
        self.env["db.backup.run"]._check_admin_access()
        self.check_access("write")
        from ..lib.sinks import sftp

        try:
            line = sftp.fetch_host_key(self.sftp_host, self.sftp_port or 22)
            key_type, fingerprint = sftp.known_hosts_fingerprint(line)
        except Exception as exc:
            raise UserError(
                self.env._(
                    "Could not read the host key of %(h)s: %(e)s",
                    h=self.sftp_host,
                    e=suite_error_message(self.env, exc),
                )
            ) from exc
        self.sudo().write(
            {
                "sftp_pending_host_key": line,
                "sftp_pending_fingerprint": "%s %s" % (key_type, fingerprint),
            }
        )
        return True

    def action_confirm_host_key(self):
        self.ensure_one()
        self.env["db.backup.run"]._check_admin_access()
        self.check_access("write")
        if not self.sftp_pending_host_key:
            raise UserError(self.env._("Fetch the host key first."))
        self.sudo().write(
            {
                "sftp_known_hosts": self.sftp_pending_host_key,
                "sftp_fingerprint": self.sftp_pending_fingerprint,
                "sftp_pending_host_key": False,
                "sftp_pending_fingerprint": False,
            }
        )
        return True

    def action_reject_host_key(self):
        self.ensure_one()
        self.env["db.backup.run"]._check_admin_access()
        self.check_access("write")
        self.sudo().write(
            {"sftp_pending_host_key": False, "sftp_pending_fingerprint": False}
        )
        return True
