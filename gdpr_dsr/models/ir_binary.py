from odoo import models
from odoo.exceptions import AccessError

from .dsr_request import CERTIFICATE_FIELDS

DSR_MODEL = "dsr.request"


class IrBinary(models.AbstractModel):
    _inherit = "ir.binary"

    def _record_to_stream(self, record, field_name):
        """Erasure certificates are not served by ``/web/content`` (nor
        ``/web/image``): the request's download route serves them and records
        every download in the audit trail."""
        target = record.sudo()
        if (target._name == DSR_MODEL and field_name in CERTIFICATE_FIELDS) or (
            target._name == "ir.attachment"
            and target.res_model == DSR_MODEL
            and target.res_field in CERTIFICATE_FIELDS
        ):
            raise AccessError(
                self.env._(
                    "Download the erasure certificate from its request: every "
                    "download is recorded."
                )
            )
        return super()._record_to_stream(record, field_name)
