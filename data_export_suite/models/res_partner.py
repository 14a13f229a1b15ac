from odoo import api, fields, models


class ResPartner(models.Model):
    _inherit = "res.partner"

    export_last_activity_date = fields.Date(
        string="Last Order/Invoice Date",
        compute="_compute_export_last_activity_date",
        help="Most recent confirmed sale order or posted customer invoice the "
        "current user may read (empty without the Sales/Invoicing apps).",
    )

    @api.depends_context("uid", "allowed_company_ids")
    def _compute_export_last_activity_date(self):
        latest = dict.fromkeys(self.ids, False)
        for model_name, date_field, domain in self._export_activity_sources():
            Model = self.env[model_name]
            if not Model.has_access("read"):
                continue
            groups = Model._read_group(
                [("partner_id", "in", self.ids), *domain],
                groupby=["partner_id"],
                aggregates=[f"{date_field}:max"],
            )
            for partner, value in groups:
                if value and hasattr(value, "date"):
                    value = value.date()
                if value and (not latest.get(partner.id) or value > latest[partner.id]):
                    latest[partner.id] = value
        for partner in self:
            partner.export_last_activity_date = latest.get(partner.id, False)

    def _export_activity_sources(self):
        """(model, date field, extra domain) that count as customer activity.

        Hook: other addons append their own (repair orders, POS orders...).
        """
        sources = []
        if "account.move" in self.env:
            sources.append(
                (
                    "account.move",
                    "invoice_date",
                    [
                        ("move_type", "in", ("out_invoice", "out_refund")),
                        ("state", "=", "posted"),
                    ],
                )
            )
        if "sale.order" in self.env:
            sources.append(("sale.order", "date_order", [("state", "=", "sale")]))
        if "pos.order" in self.env:
            sources.append(
                ("pos.order", "date_order", [("state", "in", ("paid", "done"))])
            )
        return sources
