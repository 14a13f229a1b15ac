import hashlib
import hmac

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError

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
    """One record the discovery tied to the subject of a request.

    Lines are server-owned: only the discovery (and the erasure, for its
    results) creates and writes them, as superuser after its own checks.
    Officers read them and may only downgrade a planned erasure step to
    "retain" (:meth:`action_keep`). Each line carries a seal (HMAC with the
    database secret over the request, model, id, category and planned
    action): the erasure acts only on sealed lines, so a line that did not
    come from the discovery of this request is refused.
    """

    _name = "dsr.request.line"
    _description = "Data Subject Request: discovered record"
    _order = "request_id, res_model, res_id"

    request_id = fields.Many2one(
        "dsr.request", required=True, ondelete="cascade", index=True, readonly=True
    )
    company_id = fields.Many2one(related="request_id.company_id", store=True)
    res_model = fields.Char(string="Model", required=True, index=True, readonly=True)
    res_id = fields.Integer(string="Record ID", required=True, readonly=True)
    model_description = fields.Char(
        string="Model name", compute="_compute_model_description", store=True
    )
    res_name = fields.Char(string="Record", readonly=True)
    category = fields.Selection(
        CATEGORIES, required=True, default="record", readonly=True
    )
    source = fields.Char(string="Found because", readonly=True)
    ref_fields = fields.Char(string="Reference fields", readonly=True)
    accessible = fields.Boolean(
        string="Readable by the officer",
        readonly=True,
        help="The officer who ran the discovery may read this record; records "
        "they may not read are listed but not exported.",
    )
    planned_action = fields.Selection(
        ACTIONS, required=True, default="export", readonly=True
    )
    reason = fields.Char(readonly=True)
    result = fields.Selection(RESULTS, default="pending", required=True, readonly=True)
    result_note = fields.Char(readonly=True)
    seal = fields.Char(readonly=True, copy=False, groups="base.group_system")

    # -- CRUD: the server only ----------------------------------------------
    @api.model_create_multi
    def create(self, vals_list):
        if not self.env.su:
            raise AccessError(
                self.env._("Discovered records are listed by the discovery only.")
            )
        return super().create(vals_list)

    def write(self, vals):
        if not self.env.su:
            raise AccessError(
                self.env._(
                    "Discovered records and their results are set by the server only."
                )
            )
        return super().write(vals)

    # Lines are the server's record of what discovery found: users never
    # delete them. pylint: disable=no-raise-unlink
    def unlink(self):
        if not self.env.su:
            raise AccessError(
                self.env._("Discovered records are removed by the discovery only.")
            )
        return super().unlink()

    # pylint: enable=no-raise-unlink

    @api.depends("res_model")
    def _compute_model_description(self):
        names = {}
        for line in self:
            if line.res_model not in names:
                names[line.res_model] = (
                    self.env["ir.model"]._get(line.res_model).name or line.res_model
                )
            line.model_description = names[line.res_model]

    # -- seal -----------------------------------------------------------------
    @api.model
    def _seal_value(self, request_id, res_model, res_id, category, planned_action):
        """HMAC-SHA256 (database secret) binding a line to its request and
        to what the discovery planned for it."""
        secret = self.env["ir.config_parameter"].sudo().get_param("database.secret")
        message = "\x1f".join(
            [
                "gdpr_dsr.line.v1",
                str(int(request_id)),
                res_model or "",
                str(int(res_id)),
                category or "",
                planned_action or "",
            ]
        )
        return hmac.new(
            (secret or "").encode(), message.encode(), hashlib.sha256
        ).hexdigest()

    def _seal_valid(self):
        self.ensure_one()
        line = self.sudo()
        expected = self._seal_value(
            line.request_id.id,
            line.res_model,
            line.res_id,
            line.category,
            line.planned_action,
        )
        return bool(line.seal) and hmac.compare_digest(line.seal, expected)

    # -- actions ----------------------------------------------------------------
    def action_keep(self):
        """Keep the record instead of erasing it (the officer's only change
        to a plan): the line is re-planned ``retain`` and re-sealed."""
        for line in self:
            request = line.request_id
            request._check_officer()
            if request.request_type != "erasure" or request.state not in (
                "received",
                "verified",
                "in_progress",
            ):
                raise UserError(
                    self.env._("Only the plan of an open erasure request can change.")
                )
            if line.result != "pending" or line.planned_action == "retain":
                continue
            line.sudo().write(
                {
                    "planned_action": "retain",
                    "reason": self.env._(
                        "kept by decision of %(officer)s", officer=self.env.user.name
                    )[:250],
                    "seal": self._seal_value(
                        request.id, line.res_model, line.res_id, line.category, "retain"
                    ),
                }
            )
            request._audit("line_kept", res_model=line.res_model, res_id=line.res_id)
        return True

    def action_open_record(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "res_model": self.res_model,
            "res_id": self.res_id,
            "view_mode": "form",
            "target": "current",
        }
