import logging

from odoo import fields, http
from odoo.exceptions import AccessError
from odoo.http import request

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

        Decrypt (server key) -> encrypt (password, scrypt) block by block in
        memory: no plaintext ever reaches the disk.
        """
        env = request.env
        env["db.backup.run"]._check_restore_access()
        wizard = env["db.backup.download.wizard"].browse(wizard_id).exists()
        if (
            not wizard
            or not token
            or wizard.create_uid != env.user
            or wizard.token != token
            or wizard.token_expires < fields.Datetime.now()
        ):
            raise AccessError(env._("This download link is not valid any more."))
        password = wizard.password
        run = wizard.run_id.sudo()
        wizard.write({"token": False, "password": False, "password_confirm": False})
        copy = run.copy_ids.filtered(lambda c: c.state == "done" and c.destination_id)[
            :1
        ]
        if not copy:
            raise AccessError(env._("No stored copy of this backup is reachable."))
        from odoo.addons.db_backup_suite.lib import crypto

        from ..models import backup_engine

        keyring = backup_engine.load_keyring()
        sink = copy.destination_id._make_sink()
        raw = sink.open_read(copy.object_name)
        try:
            reader = crypto.open_archive(raw, keyring=keyring)
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
        env.cr.commit()  # noqa: B012 - the audit event must survive a cut stream

        def generate():
            out = _Buffer()
            try:
                writer = crypto.EncryptingWriter(
                    out,
                    password=password,
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
