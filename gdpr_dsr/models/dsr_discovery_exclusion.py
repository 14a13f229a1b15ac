from odoo import api, fields, models


class DsrDiscoveryExclusion(models.Model):
    _name = "dsr.discovery.exclusion"
    _description = "Data Subject Request: discovery exclusion"
    _order = "model_name, field_name"

    model_name = fields.Char(
        string="Model",
        required=True,
        help="Technical name of the model (e.g. res.company). The model does not "
        "need to be installed: the exclusion applies when it is. For the leftover "
        "scan, a database table name is accepted too.",
    )
    field_name = fields.Char(
        string="Field",
        help="Technical name of the field (discovery: a many2one/many2many; "
        "leftover scan: a text column) to ignore; leave empty to ignore the whole "
        "model.",
    )
    scope = fields.Selection(
        [
            ("discovery", "Discovery"),
            ("scan", "Leftover scan"),
            ("both", "Discovery and leftover scan"),
        ],
        required=True,
        default="both",
        help="Discovery: the references to the subject this model/field holds are "
        "not listed. Leftover scan: the text the erasure searches for what is left "
        "of the subject is not read there (the certificate lists what was not "
        "read, with the reason).",
    )
    reason = fields.Char(required=True)
    active = fields.Boolean(default=True)

    _sql_constraints = [
        (
            "model_field_uniq",
            "unique(model_name, field_name)",
            "This model/field is already excluded.",
        ),
    ]

    @api.depends("model_name", "field_name")
    def _compute_display_name(self):
        for exclusion in self:
            exclusion.display_name = (
                f"{exclusion.model_name}.{exclusion.field_name}"
                if exclusion.field_name
                else exclusion.model_name
            )

    @api.model
    def _get_exclusions(self):
        """Return ``(excluded_models, excluded_fields)`` of the discovery."""
        models_, fields_ = set(), set()
        for exclusion in self.sudo().search([("scope", "in", ("discovery", "both"))]):
            name = (exclusion.model_name or "").strip()
            if exclusion.field_name:
                fields_.add((name, exclusion.field_name.strip()))
            else:
                models_.add(name)
        return models_, fields_

    @api.model
    def _get_scan_exclusions(self):
        """``[(model or table, field or column or None, reason)]`` of the
        leftover scan."""
        return [
            (
                (exclusion.model_name or "").strip(),
                (exclusion.field_name or "").strip() or None,
                exclusion.reason,
            )
            for exclusion in self.sudo().search([("scope", "in", ("scan", "both"))])
        ]
