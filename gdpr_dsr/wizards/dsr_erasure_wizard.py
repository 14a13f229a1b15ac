from odoo import api, fields, models
from odoo.exceptions import AccessError

from ..models.dsr_request import gate_digest


class DsrErasureWizard(models.TransientModel):
    """Confirm an erasure by typing the subject's email.

    What is typed is personal data: only its digest is kept in this
    transient record (the request compares it with the subject's email when
    the erasure runs), so nothing of the subject stays behind the erasure.
    """

    _name = "dsr.erasure.wizard"
    _description = "Data Subject Request: confirm the erasure"

    request_id = fields.Many2one("dsr.request", required=True, ondelete="cascade")
    typed_email = fields.Char(
        string="Type the subject's email to confirm",
        compute="_compute_typed_email",
        inverse="_inverse_typed_email",
        help="The erasure is irreversible: type the subject's email address as "
        "it appears on the request (case and surrounding spaces do not matter).",
    )
    typed_sha256 = fields.Char(readonly=True)
    delete_count = fields.Integer(compute="_compute_counts")
    anonymize_count = fields.Integer(compute="_compute_counts")
    retain_count = fields.Integer(compute="_compute_counts")

    def _compute_typed_email(self):
        for wizard in self:
            wizard.typed_email = False

    def _inverse_typed_email(self):
        for wizard in self:
            wizard.sudo().typed_sha256 = (
                gate_digest(wizard.typed_email) if wizard.typed_email else False
            )

    @api.depends("request_id")
    def _compute_counts(self):
        for wizard in self:
            lines = wizard.request_id.line_ids
            wizard.delete_count = len(
                lines.filtered(lambda ln: ln.planned_action == "delete")
            )
            wizard.anonymize_count = len(
                lines.filtered(lambda ln: ln.planned_action == "anonymize")
            )
            wizard.retain_count = len(
                lines.filtered(lambda ln: ln.planned_action == "retain")
            )

    @api.model_create_multi
    def create(self, vals_list):
        if not self.env.su and any("typed_sha256" in vals for vals in vals_list):
            raise AccessError(self.env._("Type the subject's email to confirm."))
        if not self.env.su:
            self = self.with_context(default_typed_sha256=False)
        return super().create(vals_list)

    def write(self, vals):
        if not self.env.su and "typed_sha256" in vals:
            raise AccessError(self.env._("Type the subject's email to confirm."))
        return super().write(vals)

    def action_confirm(self):
        self.ensure_one()
        # The request re-checks the typed email, the group, the state and
        # every line it is about to act on.
        self.request_id._erase(typed_sha256=self.typed_sha256 or "")
        return {"type": "ir.actions.act_window_close"}
