import logging

from odoo import fields, http
from odoo.exceptions import AccessError
from odoo.http import request
from odoo.tools import SQL

from ..wizards.db_backup_download_wizard import token_digest

_logger = logging.getLogger(__name__)
BLOCK = 1 << 20


class DbBackupController(http.Controller):
    @http.route(
        "/db_backup_suite/download/<int:wizard_id>",
        type="http",
        auth="user",
        methods=["GET"],
    )
    def download(self, wizard_id, token=None, **kwargs):
        """Stream an archive re-encrypted with the user's password.

        The link's token is consumed by this request, atomically, whatever
        happens next: it is single use, bound to the user who asked for it
        and expires after a few minutes, so replaying a URL from an access
        log finds nothing. The sealed password is taken out of the wizard in
        the same statement and opened here.

        Decrypt (server key, this database as tenant) -> encrypt (password,
        scrypt) block by block in memory: no plaintext ever reaches the disk.
        """
        env = request.env
        env["db.backup.run"]._check_restore_access()
        invalid = AccessError(env._("This download link is not valid any more."))
        if not token:
            raise invalid
        env.cr.execute(
            SQL(
                """
                WITH used AS (
                    SELECT id, run_id, password_sealed
                      FROM db_backup_download_wizard
                     WHERE id = %(id)s AND create_uid = %(uid)s
                       AND token_digest = %(digest)s AND token_expires > %(now)s
                       FOR UPDATE
                )
                UPDATE db_backup_download_wizard AS w
                   SET token_digest = NULL, token_expires = NULL,
                       password_sealed = NULL
                  FROM used
                 WHERE w.id = used.id
             RETURNING used.run_id, used.password_sealed
                """,
                id=wizard_id,
                uid=env.uid,
                digest=token_digest(token),
                now=fields.Datetime.now(),
            )
        )
        row = env.cr.fetchone()
        if not row or not row[1]:
            raise invalid
        run_id, sealed = row
        wizard = env["db.backup.download.wizard"].browse(wizard_id)
        wizard.invalidate_recordset()
        # the token is gone for good, even if what follows fails
        env.cr.commit()
        try:
            password = wizard._open_password(sealed)
        except ValueError as exc:
            raise invalid from exc
        run = env["db.backup.run"].sudo().browse(run_id)
        if run.state not in ("done", "partial"):
            raise AccessError(env._("Only a stored backup can be downloaded."))
        copy = run.copy_ids.filtered(lambda c: c.state == "done" and c.destination_id)[
            :1
        ]
        if not copy:
            raise AccessError(env._("No stored copy of this backup is reachable."))
        from odoo.addons.db_backup_suite.lib import crypto

        from ..models import backup_engine

        tenant = env["ir.config_parameter"].sudo().get_param("database.uuid", "")
        keyring = backup_engine.load_keyring()
        sink = copy.destination_id._make_sink()
        raw = sink.open_read(copy.object_name)
        try:
            reader = crypto.open_archive(raw, keyring=keyring, tenant=tenant)
        except Exception:
            raw.close()
            sink.close()
            raise
        content_type = reader.content_type or "tar+zstd"
        ext = ".tar.zst.enc" if "zstd" in content_type else ".tar.gz.enc"
        filename = (run.name or "backup").rsplit("/", 1)[-1].split(".tar")[0] + (
            "-password" + ext
        )
        env["audit.event"].log_event(
            "download",
            record=run,
            details={"file": run.name, "mode": "password"},
            message="Backup downloaded re-encrypted with a password",
        )
        env.cr.commit()

        def generate():
            out = _Buffer()
            try:
                writer = crypto.EncryptingWriter(
                    out,
                    password=password,
                    tenant=tenant,
                    purpose=crypto.PURPOSE,
                    content_type=content_type,
                )
                while True:
                    block = reader.read(BLOCK)
                    if not block:
                        break
                    writer.write(block)
                    if out.data:
                        yield out.take()
                writer.close()
                if out.data:
                    yield out.take()
            finally:
                raw.close()
                sink.close()

        headers = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Disposition", http.content_disposition(filename)),
            ("Cache-Control", "no-store"),
        ]
        return request.make_response(generate(), headers=headers)


class _Buffer:
    def __init__(self):
        self.data = bytearray()

    def write(self, data):
        self.data += data
        return len(data)

    def flush(self):
        return None

    def take(self):
        data, self.data = bytes(self.data), bytearray()
        return data
