from odoo import api, fields, models

ACTIONS = [
    ("export", "Export"),
    ("delete", "Delete"),
    ("anonymize", "Anonymize"),
    ("retain", "Retain"),
]
RESULTS = [
    ("pending", "Pending"),
    ("exported", "Exported"),
    ("withheld", "Withheld"),
    ("deleted", "Deleted"),
    ("anonymized", "Anonymized"),
    ("retained", "Retained"),
    ("missing", "Already gone"),
]
CATEGORIES = [
    ("profile", "Subject profile"),
    ("related_partner", "Related contact"),
    ("user", "User account"),
    ("message", "Message"),
    ("mail", "Outgoing email"),
    ("follower", "Follower"),
    ("attachment", "Attachment"),
    ("invoice", "Invoice / journal entry"),
    ("payment", "Payment information"),
    ("record", "Other record"),
]


class DsrRequestLine(models.Model):
    _name = "dsr.request.line"
    _description = "Data Subject Request: discovered record"
    _order = "request_id, res_model, res_id"

    request_id = fields.Many2one(
        "dsr.request", required=True, ondelete="cascade", index=True
    )
    company_id = fields.Many2one(related="request_id.company_id", store=True)
    res_model = fields.Char(string="Model", required=True, index=True)
    res_id = fields.Integer(string="Record ID", required=True)
    model_description = fields.Char(
        string="Model name", compute="_compute_model_description", store=True
    )
    res_name = fields.Char(string="Record")
    category = fields.Selection(CATEGORIES, required=True, default="record")
    source = fields.Char(string="Found because")
    ref_fields = fields.Char(string="Reference fields")
    accessible = fields.Boolean(
        string="Readable by the officer",
        help="The officer who ran the discovery may read this record; records "
        "they may not read are listed but not exported.",
    )
    planned_action = fields.Selection(ACTIONS, required=True, default="export")
    reason = fields.Char()
    result = fields.Selection(RESULTS, default="pending", required=True)
    result_note = fields.Char()

    @api.depends("res_model")
    def _compute_model_description(self):
        names = {}
        for line in self:
            if line.res_model not in names:
                names[line.res_model] = (
                    self.env["ir.model"]._get(line.res_model).name or line.res_model
                )
            line.model_description = names[line.res_model]

    def action_open_record(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "res_model": self.res_model,
            "res_id": self.res_id,
            "view_mode": "form",
            "target": "current",
        }
