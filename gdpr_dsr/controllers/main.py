from odoo import http
from odoo.exceptions import AccessError, UserError
from odoo.http import request

from ..models.dsr_package_builder import DsrPackageRefused


class DsrPackageController(http.Controller):
    @http.route(
        "/gdpr_dsr/package/<int:request_id>",
        type="http",
        auth="user",
        methods=["GET"],
    )
    def download_package(self, request_id, **kwargs):
        """Stream the decrypted export package to a Privacy Officer.

        The link carries no secret: the session's user must be a Privacy
        Officer who may write the request, and the package is decrypted for
        this request and this database only (see ``_read_package``).
        """
        dsr = request.env["dsr.request"].browse(request_id).exists()
        if not dsr:
            raise request.not_found()
        try:
            data = dsr._read_package()
        except (AccessError, UserError) as exc:
            status = 410  # missing or expired
            if isinstance(exc, AccessError | DsrPackageRefused):
                status = 403
            return request.make_response(
                str(exc),
                headers=[
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Cache-Control", "no-store"),
                ],
                status=status,
            )
        return request.make_response(
            data,
            headers=[
                ("Content-Type", "application/zip"),
                (
                    "Content-Disposition",
                    http.content_disposition(dsr.package_filename or "package.zip"),
                ),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ],
        )

    @http.route(
        "/gdpr_dsr/certificate/<int:request_id>/<string:kind>",
        type="http",
        auth="user",
        methods=["GET"],
    )
    def download_certificate(self, request_id, kind, **kwargs):
        """Stream an erasure certificate (``pdf``, ``json``, ``html``) to a
        Privacy Officer or Auditor who may read the request; each download
        is an audit event (see ``_read_certificate``)."""
        dsr = request.env["dsr.request"].browse(request_id).exists()
        if not dsr:
            raise request.not_found()
        try:
            data, mimetype, filename = dsr._read_certificate(kind)
        except (AccessError, UserError) as exc:
            return request.make_response(
                str(exc),
                headers=[
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Cache-Control", "no-store"),
                ],
                status=403 if isinstance(exc, AccessError) else 404,
            )
        return request.make_response(
            data,
            headers=[
                ("Content-Type", mimetype),
                ("Content-Disposition", http.content_disposition(filename)),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ],
        )
