from odoo import api, models
from odoo.exceptions import AccessError, UserError


class DsrCertificateReport(models.AbstractModel):
    """Values of the certificate PDF: the signed JSON stored on each request
    (the PDF shows the certificate, it never recomputes it).

    Rendered by the erasure itself (as superuser) and stored; Odoo's report
    routes, which render as the user asking, are refused: the certificate is
    downloaded from its request, and every download is recorded.
    """

    _name = "report.gdpr_dsr.dsr_certificate_report_document"
    _description = "Data Subject Request: erasure certificate (PDF)"

    @api.model
    def _get_report_values(self, docids, data=None):
        if not self.env.su:
            raise AccessError(
                self.env._(
                    "Download the erasure certificate from its request: every "
                    "download is recorded."
                )
            )
        requests = self.env["dsr.request"].sudo().browse(docids).exists()
        certificates = {}
        for request in requests:
            document = request._certificate_document()
            if not document:
                raise UserError(
                    self.env._(
                        "Request %(ref)s has no erasure certificate.", ref=request.name
                    )
                )
            certificates[request.id] = document
        return {
            "doc_ids": requests.ids,
            "doc_model": "dsr.request",
            "docs": requests,
            "certificates": certificates,
        }
