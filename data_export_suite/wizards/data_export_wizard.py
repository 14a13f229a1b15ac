from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError

from suite_core import passwords
from suite_core.sensitive import SECRET_MODELS

from ..lib.serialize import parse_field_paths
from ..models.data_export_job import HEADER_STYLES, human_size
from ..models.data_export_profile import FORMATS, MAX_JSON_DEPTH

MIN_PASSWORD_LENGTH = passwords.MIN_LENGTH


class DataExportWizard(models.TransientModel):
    _name = "data.export.wizard"
    _description = "Export Data"

    profile_id = fields.Many2one(
        "data.export.profile",
        domain="[('model_name', '=?', model_name)]",
        help="A saved export: its records, columns and format fill the form.",
    )
    # Selections, not Many2one to ir.model / ir.model.fields: exporters are
    # not administrators and may not read those technical models. The
    # wizard's model picker (static/src) shows the business models only.
    model_name = fields.Selection(
        selection="_selection_models",
        string="Export",
        required=True,
    )
    available_fields = fields.Text(
        compute="_compute_available_fields",
        help="Fields of the model you may export (name: label).",
    )
    field_paths = fields.Text(
        string="Columns",
        required=True,
        default="id",
        help="The columns, in order: fields or related paths "
        "(partner_id.country_id.name), one per line.",
    )
    omitted_fields = fields.Text(
        string="Columns Left Out",
        readonly=True,
        help="Columns of the profile your access rights do not let you export.",
    )
    domain = fields.Char(string="Records", default="[]")
    date_field = fields.Char(
        help="Technical name of a date or date-time field (e.g. create_date) "
        "for the date range.",
    )
    date_field_label = fields.Char(
        string="Date Range On", compute="_compute_date_field_label"
    )
    date_from = fields.Date()
    date_to = fields.Date()
    state_values = fields.Char(string="States")
    include_archived = fields.Boolean(
        help="Also export archived records (and archived related records).",
    )
    export_format = fields.Selection(
        FORMATS, string="Format", default="csv", required=True
    )
    csv_delimiter = fields.Char(string="CSV Delimiter", default=",", size=1)
    csv_bom = fields.Boolean(
        string="UTF-8 BOM",
        help="Add a byte-order mark (Excel on Windows).",
    )
    json_depth = fields.Integer(
        string="JSON Depth",
        default=0,
        help="0: related records as their id and name; 1-3: related records "
        "with their own fields, that many levels deep (files grow fast).",
    )
    header_style = fields.Selection(
        HEADER_STYLES,
        string="Column Headers",
        default="labels",
        required=True,
        help="The first row of a CSV or Excel file: the columns' labels as "
        "shown on screen, or the fields' technical names (for re-import or "
        "scripts).",
    )
    record_count = fields.Integer(string="Records Found", compute="_compute_estimate")
    estimate_text = fields.Char(string="Estimate", compute="_compute_estimate")
    use_password = fields.Boolean(
        string="Password Protection",
        help="Deliver an AES-256 encrypted ZIP (WinZip AE-2) that 7-Zip opens.",
    )
    # The password is never stored, not even in this transient table: the
    # fields are not stored, and their inverse keeps only a seal (server
    # keyring, tenant, purpose export-password) that no user reads (groups=".")
    # and that is handed to the job, then erased.
    password = fields.Char(
        compute="_compute_password",
        inverse="_inverse_password",
        store=False,
        help="At least 12 characters, hard to guess: several words or a mix "
        "nobody could link to you.",
    )
    password_confirm = fields.Char(
        string="Confirm Password",
        compute="_compute_password",
        inverse="_inverse_password",
        store=False,
    )
    password_sealed = fields.Binary(attachment=False, groups=".", copy=False)
    save_profile = fields.Boolean(string="Save as Profile")
    profile_name = fields.Char()

    @api.model
    def _selection_models(self):
        """Models the current user may read (no wizard, no secret store).

        Every readable model is a valid value (a profile may name one); the
        model picker offers the business models (``get_export_models``).
        """
        Profile = self.env["data.export.profile"]
        choices = []
        for name in self.env.registry.models:
            Model = self.env[name]
            if (
                Model._transient
                or Model._abstract
                or not Model._auto
                or name in SECRET_MODELS
            ):
                continue
            if Model.has_access("read"):
                choices.append((name, Profile._model_label(name)))
        return sorted(choices, key=lambda item: (item[1].lower(), item[0]))

    # ------------------------------------------------------------------
    # Computes
    # ------------------------------------------------------------------
    @api.model_create_multi
    def create(self, vals_list):
        # Over RPC a profile alone is enough: the form is filled as the
        # dialog's onchange fills it (what the caller gives wins).
        for vals in vals_list:
            if vals.get("profile_id"):
                profile = self.env["data.export.profile"].browse(vals["profile_id"])
                profile.check_access("read")
                given = dict(vals)
                vals.update(self._profile_values(profile))
                # The profile's own column list (or none) stands for "the
                # profile": filtered; another list is the caller's, checked
                # strictly when the job is requested.
                if given.get("field_paths") and parse_field_paths(
                    given["field_paths"]
                ) != parse_field_paths(profile.field_paths):
                    vals["omitted_fields"] = False
                else:
                    given.pop("field_paths", None)
                vals.update(given)
        return super().create(vals_list)

    @api.model
    def _profile_values(self, profile):
        """What ``profile`` puts in the form for the current user.

        Columns the user may not export (field rights, secrets, every hop of
        a related path) are left out and listed, not refused: a ready-made
        profile such as Customers serves users with and without the
        accounting rights its lifetime spend needs.
        """
        Profile = self.env["data.export.profile"]
        kept, omitted = Profile._split_exportable_paths(
            profile.model_name, parse_field_paths(profile.field_paths)
        )
        return {
            "model_name": profile.model_name,
            "field_paths": "\n".join(kept) or "id",
            "omitted_fields": "\n".join(
                Profile._path_label(profile.model_name, path) for path in omitted
            )
            or False,
            "domain": profile.domain or "[]",
            "date_field": profile.date_field_name or False,
            "date_from": profile.date_from,
            "date_to": profile.date_to,
            "state_values": profile.state_values,
            "include_archived": profile.include_archived,
            "export_format": profile.export_format,
            "csv_delimiter": profile.csv_delimiter or ",",
            "csv_bom": profile.csv_bom,
            "json_depth": profile.json_depth,
        }

    @api.onchange("profile_id")
    def _onchange_profile_id(self):
        profile = self.profile_id
        if not profile:
            self.omitted_fields = False
            return
        values = self._profile_values(profile)
        if self.domain not in (False, "[]"):
            # Opened from a list with records selected: keep the selection.
            values["domain"] = self.domain
        self.update(values)

    @api.onchange("model_name")
    def _onchange_model_name(self):
        """Another model: columns and date range of the previous one go."""
        if self.profile_id and self.profile_id.model_name != self.model_name:
            self.profile_id = False
            self.omitted_fields = False
        if not self.model_name:
            return
        kept, omitted = self.env["data.export.profile"]._split_exportable_paths(
            self.model_name, parse_field_paths(self.field_paths)
        )
        if omitted:
            self.field_paths = "\n".join(kept) or "id"
        if self.date_field and self.date_field not in self.env[self.model_name]._fields:
            self.date_field = False

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

    @api.depends("model_name", "date_field")
    def _compute_date_field_label(self):
        for wizard in self:
            field = (
                self.env[wizard.model_name]._fields.get(wizard.date_field)
                if wizard.model_name and wizard.date_field
                else None
            )
            wizard.date_field_label = (
                field._description_string(self.env) if field else False
            )

    @api.depends(
        "model_name",
        "field_paths",
        "domain",
        "date_field",
        "date_from",
        "date_to",
        "state_values",
        "include_archived",
        "export_format",
        "json_depth",
    )
    def _compute_estimate(self):
        """How many records, how large, and whether it runs in the background."""
        Job = self.env["data.export.job"]
        for wizard in self:
            wizard.record_count = 0
            wizard.estimate_text = False
            if not wizard.model_name:
                continue
            try:
                count, size = wizard._estimate()
            except (AccessError, UserError, ValidationError, ValueError):
                # Not a valid request yet: the Export button says why.
                continue
            wizard.record_count = count
            records = Job._records_text(count)
            background = (
                count > Job._sync_record_limit() or size > Job._sync_max_bytes()
            )
            if size > Job._max_file_bytes():
                wizard.estimate_text = self.env._(
                    "%(records)s, about %(size)s: too large (at most %(limit)s).",
                    records=records,
                    size=human_size(size),
                    limit=human_size(Job._max_file_bytes()),
                )
            elif background:
                wizard.estimate_text = self.env._(
                    "%(records)s, about %(size)s: runs in the background; you "
                    "are notified when the file is ready.",
                    records=records,
                    size=human_size(size),
                )
            else:
                wizard.estimate_text = self.env._(
                    "%(records)s, about %(size)s: downloads at once.",
                    records=records,
                    size=human_size(size),
                )

    def _estimate(self):
        """(records, bytes) of the export as it stands, as the current user."""
        self.ensure_one()
        Profile = self.env["data.export.profile"].with_context(
            active_test=not self.include_archived
        )
        Model = Profile._get_export_model(self.model_name)
        domain = Profile._build_domain(
            self.model_name,
            self.domain or "[]",
            self.date_field,
            self.date_from,
            self.date_to,
            self.state_values,
        )
        count = Model.search_count(domain)
        paths = parse_field_paths(self.field_paths) or ["id"]
        if self.export_format == "pdf":
            return count, count * 60 * 1024
        deep = self.export_format == "json" and self.json_depth > 0
        depth = min(max(self.json_depth, 0), MAX_JSON_DEPTH)
        size = Profile._estimate_export_size(
            Model,
            domain,
            paths,
            self.export_format,
            depth,
            count,
            min(count, 1 if deep else 20),
        )
        return count, size

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
            self.env["audit.password.policy"]._check_new(password, confirm)
            wizard.sudo().password_sealed = Job._seal_password(password)

    # ------------------------------------------------------------------
    # Password policy: the suite's one policy (audit.password.policy)
    # ------------------------------------------------------------------
    @api.model
    def _password_message(self, verdict):
        return self.env["audit.password.policy"]._message(verdict)

    @api.model
    def password_strength(self, password):
        """What the strength meter of the wizard shows (never stores anything).

        Exporters only (the wizard's access rights).
        """
        self.check_access("create")
        return self.env["audit.password.policy"]._strength(password)

    # ------------------------------------------------------------------
    # What the wizard offers (model picker, field tree), for exporters only
    # ------------------------------------------------------------------
    @api.model
    def get_export_models(self):
        """[{value, label}] of the business models the user may export."""
        self.check_access("create")
        return [
            {"value": name, "label": label}
            for name, label in self.env["data.export.profile"]._export_models()
        ]

    @api.model
    def get_export_fields(self, model_name, prefix="", parent_label=""):
        """One level of the field tree (see ``_export_field_tree``)."""
        self.check_access("create")
        return self.env["data.export.profile"]._export_field_tree(
            model_name, prefix or "", parent_label or ""
        )

    @api.model
    def get_column_labels(self, model_name, paths):
        """{path: label} for the chosen columns (the tree's right side, and
        the columns of a job: auditors read them too). Field labels only."""
        self.env["data.export.job"].check_access("read")
        if model_name not in self.env or not self.env[model_name].has_access("read"):
            return {path: path for path in paths}
        Profile = self.env["data.export.profile"]
        return {path: Profile._path_label(model_name, path) for path in paths}

    # ------------------------------------------------------------------
    # Constraints, actions
    # ------------------------------------------------------------------
    @api.constrains("domain", "model_name")
    def _check_domain(self):
        """Refuse a domain that is not literal data as soon as it is saved."""
        Profile = self.env["data.export.profile"]
        for wizard in self:
            if wizard.model_name and wizard.model_name not in self.env:
                raise ValidationError(
                    self.env._("Unknown model %(model)s.", model=wizard.model_name)
                )
            Profile._parse_domain(wizard.domain, wizard.model_name or None)

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
            if record_ids
            else "[]",
        }
        action = self.env["ir.actions.actions"]._for_xml_id(
            "data_export_suite.data_export_wizard_action"
        )
        action["context"] = {**context, "dialog_size": "extra-large"}
        return action

    def _check_password(self):
        """The sealed password when one is asked for (checked by the inverse)."""
        if not self.use_password:
            return None
        sealed = self.sudo().password_sealed
        if not sealed:
            raise UserError(self._password_message(passwords.check_password("")))
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
            "header_style": self.header_style or "labels",
        }

    def action_export(self):
        """Request the export; returns the download (small exports) or the job.

        See :meth:`action_run` for the button of the dialog.
        """
        return self._request_export()[1]

    def _request_export(self):
        """(job, action): the job requested and what ``_launch`` returned."""
        self.ensure_one()
        password = self._check_password()
        values = self._job_values()
        # The wizard's context (e.g. the defaults of the list it was opened
        # from) is not the job's nor the saved profile's.
        # the whole context, minus keys that must not reach the server's fields
        env = self.with_context(  # pylint: disable=context-overridden
            {
                key: value
                for key, value in self.env.context.items()
                if not key.startswith("default_")
            }
        ).env
        if self.save_profile:
            date_field = (
                self.env["ir.model.fields"]
                .sudo()
                ._get(self.model_name, self.date_field)
                if self.date_field
                else None
            )
            env["data.export.profile"].create(
                {
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
                }
            )
        job = env["data.export.job"].create(values)
        if self.omitted_fields:
            job.sudo().omitted_paths = self.omitted_fields
        if password:
            job._set_sealed_password(password)
        # The seal moved to the job: none stays on the wizard.
        self.sudo().password_sealed = False
        return job, job._launch()

    def action_run(self):
        """The dialog's Export button: request the export, then say so.

        A small export downloads at once ("Your file is ready"); a large one
        is queued ("you will be notified"). The button closes the dialog
        (``close="1"``) once this returns; an error keeps it open.
        """
        job, action = self._request_export()
        Job = self.env["data.export.job"]
        if action and action.get("type") == "ir.actions.act_url":
            message = self.env._(
                "%(name)s: %(records)s, %(size)s. The download starts; the "
                "file stays in My Exports for %(days)s days.",
                name=job.name,
                records=Job._records_text(job.records_done),
                size=human_size(job.file_size),
                days=Job._retention_days(),
            )
            download = {
                "type": "ir.actions.client",
                "tag": "data_export_suite.download",
                "params": {"url": action["url"]},
            }
            return self._notification(
                self.env._("Your file is ready"), message, "success", download
            )
        message = self.env._(
            "%(name)s: %(records)s, about %(size)s. It runs in the background: "
            "you are notified here when the file is ready, and it appears in "
            "My Exports.",
            name=job.name,
            records=Job._records_text(job.records_total),
            size=human_size(job.estimated_size),
        )
        return self._notification(self.env._("Export queued"), message, "info")

    @api.model
    def _notification(self, title, message, kind, next_action=None):
        params = {"title": title, "message": message, "type": kind, "sticky": False}
        if next_action:
            params["next"] = next_action
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": params,
        }
