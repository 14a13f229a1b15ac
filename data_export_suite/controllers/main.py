import logging

from werkzeug.wrappers import Response

from odoo import http
from odoo.http import content_disposition, request

_logger = logging.getLogger(__name__)

CHUNK = 256 * 1024


class DataExportController(http.Controller):
    @http.route(
        "/data_export_suite/download/<int:job_id>",
        type="http",
        auth="user",
        methods=["GET"],
    )
    def download(self, job_id, token=None):
        """Stream the decrypted export file to its owner or an auditor.

        The link's token (``action_download``) is spent first: it works once,
        for the user who asked for it, within minutes. Access (record rules),
        the audit event and the decryption set-up all happen before the first
        byte is sent; the body is decrypted chunk by chunk, so a large export
        is never held in memory.
        """
        job = request.env["data.export.job"].browse(job_id).exists()
        if not job:
            return request.not_found()
        job._consume_download_token(token)
        reader = job._open_decrypted()
        file_name = job.sudo().file_name
        mimetype = job.sudo().file_mimetype or "application/octet-stream"

        def body():
            try:
                while chunk := reader.read(CHUNK):
                    yield chunk
            except Exception:
                _logger.exception("Export %s: decryption stopped the download", job_id)
                raise
            finally:
                reader.close()
                reader.raw_file.close()

        return Response(
            body(),
            headers=[
                ("Content-Type", mimetype),
                ("Content-Disposition", content_disposition(file_name)),
                ("X-Content-Type-Options", "nosniff"),
                ("Cache-Control", "no-store"),
            ],
            direct_passthrough=True,
        )
