"""Which models have their create / update / delete operations audited."""

from odoo import api, fields, models, tools
from odoo.exceptions import ValidationError

# Models whose changes are never captured by rules (the audit trail itself).
NEVER_AUDITED = frozenset({"audit.event", "audit.checkpoint"})
# The role that reads captured values: a field it may not read is withheld.
AUDITOR_GROUP = "audit_export.audit_group_auditor"


#: Models whose change history auditors read although they may not read the
#: records themselves: system parameters, judged value by value by their key
#: (``ir_config_parameter._audit_record_withheld``, the one rule for secrets).
SETTINGS_MODELS = frozenset({"ir.config_parameter"})


class AuditRule(models.Model):
    _name = "audit.rule"
    _description = "Audit Rule"
    _order = "model_name"
    _rec_name = "model_name"

    model_id = fields.Many2one(
        "ir.model",
        required=True,
        ondelete="cascade",
        index=True,
        domain="[('transient', '=', False)]",
    )
    model_name = fields.Char(related="model_id.model", store=True, string="Model Name")
    active = fields.Boolean(default=True)
    log_create = fields.Boolean(string="Log Creation", default=True)
    log_write = fields.Boolean(string="Log Updates", default=True)
    log_unlink = fields.Boolean(string="Log Deletion", default=True)
    excluded_field_ids = fields.Many2many(
        "ir.model.fields",
        string="Ignored Fields",
        domain="[('model_id', '=', model_id)]",
        help="Changes to these fields are not recorded (e.g. noisy counters).",
    )

    _sql_constraints = [
        ("model_unique", "UNIQUE(model_id)", "There is already a rule for this model."),
    ]

    @api.constrains("model_id")
    def _check_model_id(self):
        for rule in self:
            if rule.model_id.model in NEVER_AUDITED or rule.model_id.transient:
                raise ValidationError(
                    self.env._(
                        "%(model)s cannot be audited by a rule.",
                        model=rule.model_id.model,
                    )
                )

    @api.model_create_multi
    def create(self, vals_list):
        rules = super().create(vals_list)
        self.env.registry.clear_cache()
        return rules

    def write(self, vals):
        res = super().write(vals)
        self.env.registry.clear_cache()
        return res

    def unlink(self):
        res = super().unlink()
        self.env.registry.clear_cache()
        return res

    def _register_hook(self):
        # Capture starts once the registry is complete: module data loaded
        # during install/upgrade is not user activity.
        self.pool._audit_capture_ready = True
        return super()._register_hook()

    @api.model
    @tools.ormcache()
    def _rules_by_model(self):
        """``{model: {"create", "write", "unlink": bool, "excluded": set,
        "withheld": set}}``: ``withheld`` names the fields whose values the
        capture never reads nor stores (see ``base._audit_field_withheld``)."""
        result = {}
        has_group = self._auditor_has_group()
        # every rule: a handful of rows, read once per registry
        for rule in self.sudo().search([]):  # pylint: disable=no-search-all
            model = self.env.get(rule.model_name)
            fields_ = model._fields.items() if model is not None else ()
            # A model the Auditor may not read at all gives away no value
            # (nor record name) through its events: every field is
            # recorded as changed only.
            unreadable = (
                model is not None
                and rule.model_name not in SETTINGS_MODELS
                and not self._auditor_reads(rule.model_name)
            )
            withheld = frozenset(
                name
                for name, field in fields_
                if unreadable or model._audit_field_withheld(field, has_group)
            )
            result[rule.model_name] = {
                "create": rule.log_create,
                "write": rule.log_write,
                "unlink": rule.log_unlink,
                "excluded": frozenset(rule.excluded_field_ids.mapped("name")),
                "withheld": withheld,
            }
        return result

    @api.model
    def _auditor_reads(self, model_name):
        """Whether the Auditor group (or a group it implies, or everyone) has
        read access to ``model_name`` by ``ir.model.access``."""
        auditor = self.sudo().env.ref(AUDITOR_GROUP, raise_if_not_found=False)
        groups = (auditor | auditor.trans_implied_ids).ids if auditor else []
        return bool(
            self.env["ir.model.access"]
            .sudo()
            .search_count(
                [
                    ("model_id.model", "=", model_name),
                    ("perm_read", "=", True),
                    ("active", "=", True),
                    "|",
                    ("group_id", "=", False),
                    ("group_id", "in", groups),
                ],
                limit=1,
            )
        )

    @api.model
    def _auditor_has_group(self):
        """``has_group(xmlid)`` of the role that reads the log: the Auditor
        group and every group it implies (an unknown xml id is not held)."""
        auditor = self.sudo().env.ref(AUDITOR_GROUP, raise_if_not_found=False)
        held = set((auditor | auditor.trans_implied_ids).ids) if auditor else set()
        model_data = self.env["ir.model.data"]

        def has_group(xmlid):
            model, group_id = model_data._xmlid_to_res_model_res_id(xmlid)
            return model == "res.groups" and group_id in held

        return has_group
