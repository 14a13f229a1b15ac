from odoo import http
from odoo.exceptions import AccessError, UserError
from odoo.http import request


class DsrPackageController(http.Controller):
    @http.route(
        "/gdpr_dsr/package/<int:request_id>", type="http", auth="user",
        methods=["GET"],
    )
    def download_package(self, request_id, **kwargs):
        """Stream the decrypted export package to a Privacy Officer."""
        dsr = request.env["dsr.request"].browse(request_id).exists()
        if not dsr:
            raise request.not_found()
        try:
            data = dsr._read_package()
        except (AccessError, UserError) as exc:
            return request.make_response(
                str(exc), headers=[("Content-Type", "text/plain; charset=utf-8")],
                status=403 if isinstance(exc, AccessError) else 410,
            )
        return request.make_response(
            data,
            headers=[
                ("Content-Type", "application/zip"),
                ("Content-Disposition", http.content_disposition(
                    dsr.package_filename or "package.zip"
                )),
                ("Cache-Control", "no-store"),
            ],
        )
