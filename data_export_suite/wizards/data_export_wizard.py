from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

from odoo.addons.audit_export.lib.sensitive import SECRET_MODELS

from ..lib.serialize import parse_field_paths
from ..models.data_export_profile import FORMATS, MAX_JSON_DEPTH

MIN_PASSWORD_LENGTH = 12


class DataExportWizard(models.TransientModel):
    _name = "data.export.wizard"
    _description = "Export Data"

    profile_id = fields.Many2one(
        "data.export.profile", string="Profile",
        domain="[('model_name', '=?', model_name)]",
    )
    # Selections, not Many2one to ir.model / ir.model.fields: exporters are
    # not administrators and may not read those technical models.
    model_name = fields.Selection(
        selection="_selection_models", string="Model", required=True,
    )
    available_fields = fields.Text(
        compute="_compute_available_fields",
        help="Fields of the model you may export (name: label).",
    )
    field_paths = fields.Text(
        string="Fields", required=True, default="id",
        help="One field or related path (partner_id.country_id.name) per line.",
    )
    domain = fields.Char(default="[]")
    date_field = fields.Char(
        help="Technical name of a date or date-time field (e.g. create_date) "
        "for the date range.",
    )
    date_from = fields.Date()
    date_to = fields.Date()
    state_values = fields.Char(string="States")
    include_archived = fields.Boolean()
    export_format = fields.Selection(FORMATS, string="Format", default="csv",
                                     required=True)
    csv_delimiter = fields.Char(string="CSV Delimiter", default=",", size=1)
    csv_bom = fields.Boolean(string="UTF-8 BOM")
    json_depth = fields.Integer(string="JSON Depth", default=0)
    use_password = fields.Boolean(
        string="Password Protection",
        help="Deliver an AES-256 encrypted ZIP (WinZip AE-2) that 7-Zip opens.",
    )
    # The password is never stored, not even in this transient table: the
    # fields are not stored, and their inverse keeps only a seal (server
    # keyring, tenant, purpose export-password) that no user reads (groups=".")
    # and that is handed to the job, then erased.
    password = fields.Char(
        compute="_compute_password", inverse="_inverse_password", store=False
    )
    password_confirm = fields.Char(
        string="Confirm Password", compute="_compute_password",
        inverse="_inverse_password", store=False,
    )
    password_sealed = fields.Binary(attachment=False, groups=".", copy=False)
    save_profile = fields.Boolean(string="Save as Profile")
    profile_name = fields.Char()

    @api.model
    def _selection_models(self):
        """Models the current user may read (no wizard, no secret store)."""
        choices = []
        for name in sorted(self.env.registry.models):
            Model = self.env[name]
            if (
                Model._transient or Model._abstract or not Model._auto
                or name in SECRET_MODELS
            ):
                continue
            if Model.has_access("read"):
                choices.append((name, f"{Model._description} ({name})"))
        return choices

    @api.depends("model_name")
    def _compute_available_fields(self):
        Profile = self.env["data.export.profile"]
        for wizard in self:
            lines = []
            if wizard.model_name:
                Model = self.env[wizard.model_name]
                for name in Profile._exportable_fields(wizard.model_name):
                    field = Model._fields[name]
                    lines.append(f"{name}: {field._description_string(self.env)}")
            wizard.available_fields = "\n".join(lines)

    def _compute_password(self):
        # Write-only: the value typed passes through the inverse, never back.
        self.password = False
        self.password_confirm = False

    def _inverse_password(self):
        Job = self.env["data.export.job"]
        for wizard in self:
            password, confirm = wizard.password, wizard.password_confirm
            if not wizard.use_password or (not password and not confirm):
                wizard.sudo().password_sealed = False
                continue
            if not password or len(password) < MIN_PASSWORD_LENGTH:
                raise UserError(self.env._(
                    "The password must have at least %(count)s characters.",
                    count=MIN_PASSWORD_LENGTH,
                ))
            if password != confirm:
                raise UserError(self.env._("The passwords do not match."))
            wizard.sudo().password_sealed = Job._seal_password(password)

    @api.constrains("domain", "model_name")
    def _check_domain(self):
        """Refuse a domain that is not literal data as soon as it is saved."""
        Profile = self.env["data.export.profile"]
        for wizard in self:
            if wizard.model_name and wizard.model_name not in self.env:
                raise ValidationError(self.env._("Unknown model %(model)s.",
                                                 model=wizard.model_name))
            Profile._parse_domain(wizard.domain, wizard.model_name or None)

    @api.onchange("profile_id")
    def _onchange_profile_id(self):
        profile = self.profile_id
        if not profile:
            return
        Profile = self.env["data.export.profile"]
        allowed = set(Profile._exportable_fields(profile.model_name))
        # Offer only what the current user may read (related paths: first hop).
        paths = [
            p for p in parse_field_paths(profile.field_paths)
            if p.split(".")[0] in allowed
        ]
        self.update({
            "model_name": profile.model_name,
            "field_paths": "\n".join(paths) or "id",
            "domain": self.domain if self.domain not in (False, "[]")
            else profile.domain,
            "date_field": profile.date_field_name,
            "date_from": profile.date_from,
            "date_to": profile.date_to,
            "state_values": profile.state_values,
            "include_archived": profile.include_archived,
            "export_format": profile.export_format,
            "csv_delimiter": profile.csv_delimiter,
            "csv_bom": profile.csv_bom,
            "json_depth": profile.json_depth,
        })

    @api.model
    def _action_open_for_records(self, model_name, record_ids):
        """The wizard for ``model_name``, limited to the selected records."""
        profile = self.env["data.export.profile"].search(
            [("model_name", "=", model_name)], limit=1
        )
        context = {
            "default_model_name": model_name,
            "default_profile_id": profile.id,
            "default_domain": repr([("id", "in", list(record_ids))])
            if record_ids else "[]",
        }
        action = self.env["ir.actions.actions"]._for_xml_id(
            "data_export_suite.data_export_wizard_action"
        )
        action["context"] = context
        return action

    def _check_password(self):
        """The sealed password when one is asked for (checked by the inverse)."""
        if not self.use_password:
            return None
        sealed = self.sudo().password_sealed
        if not sealed:
            raise UserError(self.env._(
                "The password must have at least %(count)s characters.",
                count=MIN_PASSWORD_LENGTH,
            ))
        return sealed

    def _job_values(self):
        return {
            "profile_id": self.profile_id.id,
            "model_name": self.model_name,
            "field_paths": self.field_paths,
            "domain": self.domain or "[]",
            "date_field": self.date_field or False,
            "date_from": self.date_from,
            "date_to": self.date_to,
            "state_values": self.state_values,
            "include_archived": self.include_archived,
            "export_format": self.export_format,
            "csv_delimiter": self.csv_delimiter or ",",
            "csv_bom": self.csv_bom,
            "json_depth": min(max(self.json_depth, 0), MAX_JSON_DEPTH),
        }

    def action_export(self):
        self.ensure_one()
        password = self._check_password()
        values = self._job_values()
        # The wizard's context (e.g. the defaults of the list it was opened
        # from) is not the job's nor the saved profile's.
        env = self.with_context({
            key: value for key, value in self.env.context.items()
            if not key.startswith("default_")
        }).env
        if self.save_profile:
            date_field = self.env["ir.model.fields"].sudo()._get(
                self.model_name, self.date_field) if self.date_field else None
            env["data.export.profile"].create({
                "name": self.profile_name or self.model_name,
                "model_id": self.env["ir.model"]._get_id(self.model_name),
                "field_paths": self.field_paths,
                "domain": values["domain"],
                "date_field_id": date_field.id if date_field else False,
                "date_from": self.date_from,
                "date_to": self.date_to,
                "state_values": self.state_values,
                "include_archived": self.include_archived,
                "export_format": self.export_format,
                "csv_delimiter": values["csv_delimiter"],
                "csv_bom": self.csv_bom,
                "json_depth": values["json_depth"],
            })
        job = env["data.export.job"].create(values)
        if password:
            job._set_sealed_password(password)
        # The seal moved to the job: none stays on the wizard.
        self.sudo().password_sealed = False
        return job._launch()
