import logging
import os

from odoo import fields, http
from odoo.exceptions import AccessError
from odoo.http import request
from odoo.tools import SQL, config

from ..lib import downloads
from ..service import backup_engine
from ..wizards.db_backup_download_wizard import token_digest

_logger = logging.getLogger(__name__)
#: system parameter: the proxy location serving <data_dir>/db_backup_suite/
#: downloads/ (internal), e.g. ``/db_backup_suite_downloads/``; with Odoo's
#: ``x_sendfile`` option on, prepared downloads are handed to the proxy
X_ACCEL_PARAM = "db_backup_suite.download_x_accel_prefix"


class DbBackupController(http.Controller):
    @http.route(
        "/db_backup_suite/download/<int:wizard_id>",
        type="http",
        auth="user",
        methods=["GET"],
    )
    def download(self, wizard_id, token=None, **kwargs):
        """Send a prepared archive (re-encrypted with the user's password
        by a detached process: ``lib/downloads.py``).

        The link's token is consumed by this request, atomically, whatever
        happens next: it is single use, bound to the user who asked for it
        and expires after a few minutes, so replaying a URL from an access
        log finds nothing.

        Nothing is decrypted, encrypted or read from a destination here: the
        worker sends a local file in blocks (constant memory, and fast: it
        does not wait on a destination). With Odoo's ``x_sendfile`` option
        and the system parameter ``db_backup_suite.download_x_accel_prefix``
        (an internal proxy location aliasing ``<data_dir>/db_backup_suite/
        downloads/``), the proxy sends it and the worker is free at once:
        only then is a download of any size and any client speed out of
        reach of ``limit_time_real`` (a worker sending a file is still
        killed at that limit). The file is removed once sent whole, or
        after a day.
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
                    SELECT id, run_id, prepare_id
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
             RETURNING used.run_id, used.prepare_id
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
        run_id, prepare_id = row
        env["db.backup.download.wizard"].browse(wizard_id).invalidate_recordset()
        # the token is gone for good, even if what follows fails
        env.cr.commit()
        base = backup_engine.jobs_dir()
        try:
            path = downloads.file_path(base, prepare_id)
        except ValueError as exc:
            raise invalid from exc
        if not os.path.isfile(path):
            raise AccessError(
                env._(
                    "The prepared file is gone (sent, or a day old): prepare it again."
                )
            )
        run = env["db.backup.run"].sudo().browse(run_id)
        ext = ".tar.gz.enc" if ".tar.gz" in (run.name or "") else ".tar.zst.enc"
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
        return file_response(path, filename, lambda: downloads.remove(base, prepare_id))


def file_response(path, filename, on_sent):
    """The response sending ``path`` (constant memory); ``on_sent`` is
    called once the whole file went out. Handed to the proxy
    (X-Accel-Redirect) when configured: then the daily cron removes it."""
    size = os.path.getsize(path)
    stream = http.Stream(
        type="path",
        path=path,
        mimetype="application/octet-stream",
        download_name=filename,
        size=size,
        conditional=False,
        as_attachment=True,
    )
    prefix = request.env["ir.config_parameter"].sudo().get_param(X_ACCEL_PARAM)
    if config["x_sendfile"] and prefix:
        # the proxy sends the file: the worker is free at once
        response = request.make_response(
            b"",
            headers=[
                ("Content-Type", "application/octet-stream"),
                ("Content-Disposition", http.content_disposition(filename)),
                (
                    "X-Accel-Redirect",
                    prefix.rstrip("/") + "/" + os.path.basename(path),
                ),
                ("Content-Length", "0"),
            ],
        )
    else:
        response = stream.get_response()
        response.response = _CountingBody(response.response, size, on_sent)
    response.headers["Cache-Control"] = "no-store"
    return response


class _CountingBody:
    """A response body that calls ``on_sent`` once all ``size`` bytes were
    handed to the server (a cut download keeps the file for another try)."""

    def __init__(self, body, size, on_sent):
        self.body = body
        self.size = size
        self.on_sent = on_sent
        self.sent = 0

    def __iter__(self):
        for block in self.body:
            self.sent += len(block)
            yield block
        if self.sent >= self.size:
            self.on_sent()

    def close(self):
        close = getattr(self.body, "close", None)
        if close:
            close()
