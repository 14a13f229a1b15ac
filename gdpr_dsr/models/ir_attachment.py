from odoo import api, models
from odoo.exceptions import AccessError

from .dsr_request import SERVER_BINARY_FIELDS

DSR_MODEL = "dsr.request"


class IrAttachment(models.Model):
    """The files of a data subject request the server owns: its export
    package and erasure certificates (stored fields) and, once the identity
    is verified, the evidence it rests on. Odoo lets a user who may write a
    record create or change the attachments of its stored binary fields
    directly; for these files nobody but the server may.
    """

    _inherit = "ir.attachment"

    @api.model
    def _dsr_is_server_file(self, res_model, res_field):
        return res_model == DSR_MODEL and res_field in SERVER_BINARY_FIELDS

    def _dsr_check_server_files(self, vals=None):
        if self.env.su:
            return
        evidence_locked = (
            self.env[DSR_MODEL]
            .sudo()
            .search_count(
                [
                    ("verification_attachment_ids", "in", self.ids),
                    ("state", "!=", "received"),
                ],
                limit=1,
            )
            if self.ids
            else 0
        )
        for attachment in self.sudo():
            targets = {(attachment.res_model, attachment.res_field)}
            if vals:
                targets.add(
                    (
                        vals.get("res_model", attachment.res_model),
                        vals.get("res_field", attachment.res_field),
                    )
                )
            if any(self._dsr_is_server_file(*target) for target in targets):
                raise AccessError(
                    self.env._(
                        "The export package and the erasure certificates of a data "
                        "subject request are written by the server only."
                    )
                )
        if evidence_locked:
            raise AccessError(
                self.env._(
                    "The evidence of a verified identity cannot change any more."
                )
            )

    @api.model_create_multi
    def create(self, vals_list):
        if not self.env.su:
            for vals in vals_list:
                target = (vals.get("res_model"), vals.get("res_field"))
                if self._dsr_is_server_file(*target):
                    raise AccessError(
                        self.env._(
                            "The export package and the erasure certificates of a "
                            "data subject request are written by the server only."
                        )
                    )
        return super().create(vals_list)

    def write(self, vals):
        self._dsr_check_server_files(vals)
        return super().write(vals)

    def unlink(self):
        self._dsr_check_server_files()
        return super().unlink()
