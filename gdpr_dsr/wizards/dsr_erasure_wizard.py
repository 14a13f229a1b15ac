from odoo import api, fields, models


class DsrErasureWizard(models.TransientModel):
    _name = "dsr.erasure.wizard"
    _description = "Data Subject Request: confirm the erasure"

    request_id = fields.Many2one("dsr.request", required=True, ondelete="cascade")
    typed_email = fields.Char(
        string="Type the subject's email to confirm",
        help="The erasure is irreversible: type the subject's email address "
        "exactly as it appears on the request.",
    )
    delete_count = fields.Integer(compute="_compute_counts")
    anonymize_count = fields.Integer(compute="_compute_counts")
    retain_count = fields.Integer(compute="_compute_counts")

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

    def action_confirm(self):
        self.ensure_one()
        # The request re-checks the typed email, the group and the state.
        self.request_id._erase(self.typed_email)
        return {"type": "ir.actions.act_window_close"}
