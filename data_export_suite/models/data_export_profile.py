"""Export profiles: what to export, from which records, in which format.

This file holds the model's fields, constraints, CRUD rules, its
``_register_hook`` and its public actions. What it does is split along its
concerns into abstract models it inherits (each file named after its model):

- ``data.export.field.access`` (``data_export_field_access.py``): which
  fields the current user may export (field groups, secrets, computations
  the user cannot run) and what the wizard offers (models, field tree);
- ``data.export.record.selection`` (``data_export_record_selection.py``):
  which records (typed domains, date ranges, states, batches);
- ``data.export.values`` (``data_export_values.py``): reading and serialising
  the values (tabular rows, the SQL fast path, JSON);
- ``data.export.ready.made`` (``data_export_ready_made.py``): the ready-made
  profiles for the installed apps, defined in ``lib/ready_made.py``.
"""

import logging

from odoo import api, fields, models
from odoo.exceptions import AccessError, ValidationError

from ..lib.serialize import check_path_syntax, parse_field_paths
from .data_export_values import MAX_JSON_DEPTH

_logger = logging.getLogger(__name__)

#: Set by the server only: what marks a ready-made profile (shared by all).
SERVER_FIELDS = frozenset({"ready_made_key", "ready_made_paths"})

FORMATS = [
    ("csv", "CSV"),
    ("json", "JSON"),
    ("xlsx", "Excel (XLSX)"),
    ("pdf", "PDF (invoices only)"),
]


class DataExportProfile(models.Model):
    _name = "data.export.profile"
    _description = "Data Export Profile"
    # data.export.field.access after the two concerns built on it (MRO).
    _inherit = [
        "data.export.record.selection",
        "data.export.values",
        "data.export.field.access",
        "data.export.ready.made",
    ]
    _order = "sequence, name, id"

    name = fields.Char(required=True, translate=True)
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True)
    ready_made_key = fields.Char(
        readonly=True,
        copy=False,
        help="Set on the profiles this addon ships (Customers, Users...).",
    )
    ready_made_paths = fields.Text(
        readonly=True,
        copy=False,
        help="The columns this addon generated for a ready-made profile: while "
        "the profile still has them, they follow the installed apps.",
    )
    user_id = fields.Many2one(
        "res.users",
        string="Owner",
        default=lambda self: self.env.user,
        index=True,
        copy=False,
        help="Empty for the ready-made profiles everyone may use.",
    )
    shared = fields.Boolean(help="Other exporters may use (not edit) this profile.")
    model_id = fields.Many2one(
        "ir.model",
        required=True,
        ondelete="cascade",
        domain=[("transient", "=", False)],
    )
    model_name = fields.Char(related="model_id.model", store=True, string="Model Name")
    field_paths = fields.Text(
        string="Fields",
        required=True,
        default="id",
        help="Field names or related paths (partner_id.country_id.name), one "
        "per line or comma separated, in column order.",
    )
    domain = fields.Char(default="[]", help="Odoo domain filtering the records.")
    date_field_id = fields.Many2one(
        "ir.model.fields",
        ondelete="set null",
        domain="[('model_id', '=', model_id), ('ttype', 'in', ('date', 'datetime'))]",
    )
    date_field_name = fields.Char(
        related="date_field_id.name", string="Date Field Name"
    )
    date_from = fields.Date()
    date_to = fields.Date()
    state_values = fields.Char(
        string="States",
        help="Comma separated values of the model's 'state' field to keep "
        "(e.g. posted,cancel). Empty: every state.",
    )
    include_archived = fields.Boolean(help="Also export archived records.")
    export_format = fields.Selection(
        FORMATS, string="Format", default="csv", required=True
    )
    csv_delimiter = fields.Char(string="CSV Delimiter", default=",", size=1)
    csv_bom = fields.Boolean(
        string="UTF-8 BOM", help="Add a byte-order mark (Excel on Windows)."
    )
    json_depth = fields.Integer(
        string="JSON Depth",
        default=0,
        help="0: relations as {id, display_name}; 1-3: related records "
        "expanded with their own fields to that depth.",
    )

    @api.constrains("json_depth")
    def _check_json_depth(self):
        for profile in self:
            if not 0 <= profile.json_depth <= MAX_JSON_DEPTH:
                raise ValidationError(
                    self.env._(
                        "The JSON depth must be between 0 and %(max)s.",
                        max=MAX_JSON_DEPTH,
                    )
                )

    @api.constrains("model_id", "field_paths", "domain", "state_values")
    def _check_definition(self):
        for profile in self:
            paths = parse_field_paths(profile.field_paths)
            if not paths:
                raise ValidationError(self.env._("Choose at least one field."))
            for path in paths:
                try:
                    check_path_syntax(path)
                except ValueError as exc:
                    raise ValidationError(
                        self.env._("Invalid field path: %(path)s", path=repr(path))
                    ) from exc
            self._parse_domain(profile.domain, profile.model_name)

    @api.constrains("csv_delimiter")
    def _check_csv_delimiter(self):
        for profile in self:
            self._check_delimiter(profile.csv_delimiter)

    @api.model
    def _check_delimiter(self, delimiter):
        """Refuse a CSV delimiter the CSV writer cannot use (one character,
        not a quote, a line break, a letter or a digit): the rule of
        profiles and of export requests alike."""
        delimiter = delimiter or ""
        if len(delimiter) != 1 or delimiter in '"\r\n' or delimiter.isalnum():
            raise ValidationError(
                self.env._("The CSV delimiter must be one punctuation character.")
            )

    # ------------------------------------------------------------------
    # CRUD
    # ------------------------------------------------------------------
    def _check_server_fields(self, vals):
        refused = sorted(SERVER_FIELDS & vals.keys())
        if refused and not self.env.su:
            raise AccessError(
                self.env._(
                    "These fields of an export profile are set by the server only: "
                    "%(fields)s",
                    fields=", ".join(refused),
                )
            )

    @api.model_create_multi
    def create(self, vals_list):
        # the whole context, minus keys that must not reach the server's fields
        self = self.with_context(  # pylint: disable=context-overridden
            {
                key: value
                for key, value in self.env.context.items()
                if not (key.startswith("default_") and key[8:] in SERVER_FIELDS)
            }
        )
        if not self.env.su:
            for vals in vals_list:
                self._check_server_fields(vals)
                if vals.get("user_id") not in (None, False, self.env.uid):
                    raise AccessError(
                        self.env._("You may only create export profiles of your own.")
                    )
            # A user's profile is theirs: not ready-made (no owner) either.
            vals_list = [dict(vals, user_id=self.env.uid) for vals in vals_list]
        return super().create(vals_list)

    def write(self, vals):
        self._check_server_fields(vals)
        if (
            "user_id" in vals
            and not self.env.su
            and any(profile.user_id.id != vals["user_id"] for profile in self)
        ):
            raise AccessError(
                self.env._("The owner of an export profile cannot be changed.")
            )
        return super().write(vals)

    def _register_hook(self):
        """Follow the apps installed in the same run as, or after, this addon.

        Odoo calls this hook once the registry is fully loaded, i.e. after
        every module of the run (this one, accounting...) is installed and its
        models exist -- the moment the data file of this addon cannot see
        (apps loaded after it in the same run), and the only one reachable
        from an app that does not know this addon. Only when the load
        installed or updated modules (``updated_modules``): a plain server
        start or worker does not write. Uninstalled apps take their profiles
        and list actions with them (``ondelete="cascade"`` on the model).
        """
        super()._register_hook()
        if self.pool.updated_modules:
            created = self._setup_ready_made_profiles()
            if created:
                _logger.info(
                    "Ready-made export profiles added for newly installed apps: %s",
                    ", ".join(created.mapped("ready_made_key")),
                )

    def action_open_export_wizard(self):
        """Export with this profile: the wizard, filled with what the user
        may export of it."""
        self.ensure_one()
        action = self.env["ir.actions.actions"]._for_xml_id(
            "data_export_suite.data_export_wizard_action"
        )
        action["context"] = {
            "default_profile_id": self.id,
            "default_model_name": self.model_name,
            "dialog_size": "extra-large",
        }
        return action

    def action_refresh_ready_made(self):
        # Creates shared profiles and server actions: administrators only.
        if not self.env.user.has_group("base.group_system"):
            raise AccessError(
                self.env._("Only administrators may refresh the ready-made profiles.")
            )
        self._setup_ready_made_profiles()
        return {"type": "ir.actions.client", "tag": "reload"}
