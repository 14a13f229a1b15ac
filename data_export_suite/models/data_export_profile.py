import datetime as dt
import json
import logging
from collections import namedtuple

from odoo import api, fields, models, tools
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.osv import expression
from odoo.tools import SQL

from odoo.addons.audit_export.lib.sensitive import SECRET_MODELS, is_withheld

from ..lib.domain import DomainError, parse_domain
from ..lib.serialize import (
    check_path_syntax,
    get_zone,
    iso_datetime,
    json_value,
    parse_field_paths,
)

_logger = logging.getLogger(__name__)

#: Field types never exported (no portable value).
UNEXPORTABLE_TYPES = frozenset({"properties", "properties_definition"})
RELATIONAL_TYPES = frozenset({"many2one", "one2many", "many2many"})
#: Types read straight from their column by the tabular fast path.
SQL_READABLE_TYPES = frozenset(
    {
        "char",
        "text",
        "html",
        "integer",
        "float",
        "monetary",
        "boolean",
        "date",
        "datetime",
        "selection",
        "many2one",
    }
)
MAX_JSON_DEPTH = 3
#: How many of a model's first records a computed field is tried on (plus
#: the first record of each company) before it is offered.
PROBE_SAMPLE = 20
#: The field tree of the wizard expands relations this many hops deep
#: (Odoo's own export dialog: three).
MAX_TREE_HOPS = 3
#: Model name prefixes never offered in the wizard: Odoo's technical models
#: (settings, views, actions, the bus, reports' abstract models...).
TECHNICAL_PREFIXES = (
    "ir.",
    "base.",
    "base_",
    "bus.",
    "web_",
    "web.",
    "res.config",
    "report.",
    "res.users.log",
    "res.users.settings",
    "res.users.deletion",
    "mail.alias",
    "mail.template",
    "mail.mail",
    "mail.notification",
    "mail.tracking",
    "mail.followers",
    "mail.guest",
    "mail.link.preview",
    "mail.presence",
    "discuss.",
    "iap.",
    "sms.",
    "auth_",
    "spreadsheet.",
    "onboarding.",
    "digest.",
    "snailmail.",
    "privacy.",
    "html_field_history",
    "data.export.",
)

#: A resolved, access-checked column: ``path`` as requested, ``chain`` of
#: (model name, field) hops, ``field`` the last field (None for ``id``).
Column = namedtuple("Column", "path parts chain field label")


class _NoSampleRecord(Exception):
    """The user reads no record of the model: nothing to probe (not cached)."""


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
                    raise ValidationError(str(exc)) from exc
            self._parse_domain(profile.domain, profile.model_name)

    @api.constrains("csv_delimiter")
    def _check_csv_delimiter(self):
        for profile in self:
            delimiter = profile.csv_delimiter or ""
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

    # ------------------------------------------------------------------
    # Field access: what the CURRENT user may export
    # ------------------------------------------------------------------
    @api.model
    def _get_export_model(self, model_name):
        """The model ``model_name`` in the current env, if the user may read it."""
        if not model_name or model_name not in self.env:
            raise UserError(self.env._("Unknown model %(model)s.", model=model_name))
        Model = self.env[model_name]
        if Model._transient or Model._abstract:
            raise UserError(
                self.env._("Model %(model)s cannot be exported.", model=model_name)
            )
        if model_name in SECRET_MODELS:
            raise AccessError(
                self.env._(
                    "Model %(model)s holds secrets and is never exported.",
                    model=model_name,
                )
            )
        Model.check_access("read")
        return Model

    @api.model
    def _is_field_exportable(self, Model, field, include_binary=False):
        """Whether the current user may export ``field`` of ``Model``."""
        if field.name == "id":
            return True
        if field.type in UNEXPORTABLE_TYPES:
            return False
        if field.type == "binary" and not include_binary:
            return False
        if not field.is_accessible(Model.env):
            return False
        if self._is_withheld(Model, field):
            return False
        if field.type in RELATIONAL_TYPES:
            comodel = field.comodel_name
            if comodel in SECRET_MODELS or comodel not in Model.env:
                return False
            if not Model.env[comodel].has_access("read"):
                return False
        return self._is_compute_readable(Model, field)

    @api.model
    def _is_withheld(self, Model, field):
        """The suite's one rule for secrets (``audit_export``): a secret by
        name or type, or a ``groups=`` field the user of ``Model.env`` lacks
        (``groups="."``, Odoo's "always forbidden", nobody holds)."""
        user = Model.env.user
        return is_withheld(
            Model._name,
            field.name,
            field.type,
            field.groups,
            lambda xmlid: xmlid != "." and user.has_group(xmlid),
        )

    @api.model
    def _is_compute_readable(self, Model, field):
        """Whether the current user can compute ``field`` (non-stored).

        A non-stored computed field is computed as the reading user: its
        compute method may read other models or other companies' records the
        user may not read (e.g. ``res.partner.days_sales_outstanding`` reads
        ``account.move``, ``res.partner.fiscal_country_codes`` the partner's
        company), which neither field groups nor ``depends`` reveal. Such a
        field is computed on a sample of records the user may read (see
        :meth:`_probe_sample`), inside a savepoint, and withheld when that
        raises. The answer is cached per user, companies, model and field
        (access rights, groups and record rules changes clear the cache).
        Stored fields, ``compute_sudo`` fields (related fields...) and the
        superuser need no probe.
        """
        if Model.env.su or not field.compute or field.store or field.compute_sudo:
            return True
        try:
            return self.with_env(Model.env)._probe_compute(Model._name, field.name)
        except _NoSampleRecord:
            # No readable record: nothing would be exported; probe later.
            return True

    @tools.ormcache(
        "self.env.uid", "tuple(self.env.companies.ids)", "model_name", "field_name"
    )
    def _probe_compute(self, model_name, field_name):
        Model = self.env[model_name].with_context(
            active_test=False, prefetch_fields=False
        )
        sample = self._probe_sample(Model)
        if sample is None:
            # No table to sample (a model living in the cache only, such as
            # account.code.mapping, whose search is not implemented): its
            # computed fields cannot be checked, so they are not offered.
            _logger.debug(
                "Field %s.%s withheld from exports: the model has no table to sample",
                model_name,
                field_name,
            )
            return False
        # A savepoint that does not clear the cache when rolled back: the
        # caller's new records (an onchange's wizard) live in that cache only.
        # Computing reads and never writes, so what stays cached is true.
        self.env.flush_all()
        try:
            with self.env.cr.savepoint(flush=False):
                for record in sample:
                    record[field_name]  # pylint: disable=pointless-statement
        except AccessError as exc:
            sample.invalidate_recordset([field_name])
            _logger.info(
                "Field %s.%s withheld from exports for uid %s: its computation "
                "needs access the user lacks (%s)",
                model_name,
                field_name,
                self.env.uid,
                str(exc).splitlines()[0],
            )
            return False
        except Exception as exc:
            sample.invalidate_recordset([field_name])
            _logger.warning(
                "Field %s.%s withheld from exports for uid %s: computing it "
                "failed with %r",
                model_name,
                field_name,
                self.env.uid,
                exc,
            )
            return False
        return True

    @api.model
    def _probe_sample(self, Model):
        """Records of ``Model`` the current user may read, to compute on.

        Never ``search()``: a model may not implement it (or implement only
        the domains its own views use). The ids are read from the model's
        table -- the first ones, plus the first of every company when the
        model has a stored ``company_id``, so that a computation reaching
        another company's records is seen -- and kept when the user's record
        rules allow reading them. ``None`` when the model has no table;
        raises :class:`_NoSampleRecord` when the user reads none of them.
        """
        if not Model._is_an_ordinary_table():
            return None
        table = SQL.identifier(Model._table)
        query = SQL("SELECT id FROM %s ORDER BY id LIMIT %s", table, PROBE_SAMPLE)
        company = Model._fields.get("company_id")
        if company is not None and company.store and company.type == "many2one":
            query = SQL(
                "(%s) UNION (SELECT min(id) FROM %s GROUP BY company_id)",
                query,
                table,
            )
        self.env.cr.execute(query)
        ids = sorted({row[0] for row in self.env.cr.fetchall()})
        sample = Model.browse(ids)._filtered_access("read")
        if not sample:
            raise _NoSampleRecord(Model._name)
        return sample

    @api.model
    def _exportable_fields(self, model_name, include_binary=False):
        """Field names the current user may read on ``model_name``, no secret.

        ``id`` first, then the model's fields in definition order. Binary
        fields (images, documents) only with ``include_binary``. A model the
        user cannot read gives an empty list.
        """
        if model_name not in self.env or model_name in SECRET_MODELS:
            return []
        Model = self.env[model_name]
        if not Model.has_access("read"):
            return []
        names = ["id"]
        for name, field in Model._fields.items():
            if name != "id" and self._is_field_exportable(
                Model, field, include_binary=include_binary
            ):
                names.append(name)
        return names

    @api.model
    def _split_exportable_paths(self, model_name, paths):
        """(kept, omitted): the paths the current user may export, in order,
        and those they may not (field rights, secrets, fields gone with an
        uninstalled app). Each path is checked whole, every hop."""
        kept, omitted = [], []
        for path in paths:
            try:
                self._resolve_field_paths(model_name, [path])
            except (AccessError, UserError):
                omitted.append(path)
            else:
                kept.append(path)
        return kept, omitted

    @api.model
    def _path_label(self, model_name, path):
        """ "Country / Country Name" for ``country_id.name`` (labels as on
        screen, in the user's language); unknown hops keep their name."""
        if path == "id":
            return self.env._("ID")
        Model = self.env[model_name] if model_name in self.env.registry else None
        labels = []
        for part in path.split("."):
            field = Model._fields.get(part) if Model is not None else None
            if field is None:
                labels.append(part)
                Model = None
                continue
            labels.append(field._description_string(self.env))
            Model = self.env[field.comodel_name] if field.relational else None
        return " / ".join(labels)

    # ------------------------------------------------------------------
    # What the wizard offers (business models, field tree)
    # ------------------------------------------------------------------
    @api.model
    def _is_offered_model(self, model_name):
        """A business model: a table of records with a window action (a
        screen), not one of Odoo's technical models, not a secret store."""
        Model = self.env[model_name]
        return (
            not (Model._transient or Model._abstract)
            and model_name not in SECRET_MODELS
            and not model_name.startswith(TECHNICAL_PREFIXES)
            and model_name in self._window_action_models()
        )

    @tools.ormcache()
    def _window_action_models(self):
        """Models some window action opens (cached; actions clear caches)."""
        self.env.cr.execute(
            SQL(
                "SELECT DISTINCT res_model FROM ir_act_window "
                "WHERE res_model IS NOT NULL"
            )
        )
        return frozenset(row[0] for row in self.env.cr.fetchall())

    @tools.ormcache("self.env.lang")
    def _model_labels(self):
        """{model: human name in the user's language} (ir.model names)."""
        # a label for every model (a few hundred rows, no filter applies)
        model = self.env["ir.model"].sudo()
        rows = model.search_read([], ["model", "name"])  # pylint: disable=no-search-all
        return {row["model"]: row["name"] for row in rows}

    @api.model
    def _model_label(self, model_name):
        return self._model_labels().get(model_name) or (
            self.env[model_name]._description if model_name in self.env else model_name
        )

    @api.model
    def _export_models(self):
        """[(model, label)] the current user may read and export, by label.

        Two models with the same name get their technical name in brackets.
        """
        names = [
            name
            for name in self.env.registry.models
            if self._is_offered_model(name) and self.env[name].has_access("read")
        ]
        labels = {name: self._model_label(name) for name in names}
        counts = {}
        for label in labels.values():
            counts[label] = counts.get(label, 0) + 1
        choices = [
            (name, label if counts[label] == 1 else f"{label} ({name})")
            for name, label in labels.items()
        ]
        return sorted(choices, key=lambda item: (item[1].lower(), item[0]))

    @api.model
    def _export_field_tree(self, model_name, prefix="", parent_label=""):
        """One level of the field tree of the wizard, like Odoo's export
        dialog (``/web/export/get_fields``): the fields of ``model_name`` the
        current user may export, by label, ``id`` first; relations can be
        expanded (``prefix``: the path of the relation, ``parent_label`` its
        label) up to :data:`MAX_TREE_HOPS` hops.

        Field labels and types come from ``fields_get`` (which already drops
        the fields of other groups), then the suite's rules filter them
        (``_is_field_exportable``: secrets, ``groups=``, unreadable comodels,
        computations the user cannot run).
        """
        if prefix:
            # The prefix must itself be an exportable path of the root model.
            self._resolve_field_paths(model_name, [prefix])
            Model = self._get_export_model(model_name)
            for part in prefix.split("."):
                Model = Model.env[Model._fields[part].comodel_name]
        else:
            Model = self._get_export_model(model_name)
        hops = len(prefix.split(".")) if prefix else 0
        described = Model.fields_get(
            attributes=["type", "string", "relation", "help", "exportable"]
        )
        items = []
        for name, info in described.items():
            field = Model._fields.get(name)
            if field is None or not info.get("exportable", True):
                continue
            if not self._is_field_exportable(Model, field):
                continue
            path = f"{prefix}.{name}" if prefix else name
            label = self.env._("ID") if name == "id" else info.get("string") or name
            expandable = bool(field.relational and hops + 1 < MAX_TREE_HOPS)
            items.append(
                {
                    "id": path,
                    "name": name,
                    "label": label,
                    "string": f"{parent_label} / {label}" if parent_label else label,
                    "type": info.get("type"),
                    "relation": info.get("relation") or False,
                    "help": info.get("help") or "",
                    "children": expandable,
                }
            )
        items.sort(
            key=lambda item: (item["name"] != "id", item["label"].lower(), item["name"])
        )
        return items

    @api.model
    def _estimate_export_size(
        self, Model, domain, paths, export_format, depth, total, sample_size
    ):
        """Bytes of an export of ``total`` records, scaled from the first
        ``sample_size`` written the way the export writes them."""
        if not total or not sample_size:
            return 0
        columns = self._resolve_field_paths(Model._name, paths)
        if export_format == "json":
            batch = Model.search(domain, order="id", limit=sample_size)
            items = self._serialize_records(batch, paths, depth)
            size = len(json.dumps(items, default=str).encode("utf-8")) + 2
            count = len(batch)
        else:
            rows = next(
                iter(self._iter_table_batches(Model, domain, columns, sample_size)),
                [],
            )
            size = sum(
                len(",".join("" if v is None else str(v) for v in row).encode()) + 2
                for row in rows
            )
            count = len(rows)
        if not count:
            return 0
        return int(size * total / count)

    @api.model
    def _resolve_field_paths(self, model_name, paths, include_binary=False):
        """Check every requested path hop by hop; return the columns.

        Raises ``AccessError`` when a hop is a field the current user may not
        read (field groups, unreadable comodel) or a secret -- even when the
        request comes by RPC, nothing is silently exported or dropped --
        and ``UserError`` for unknown fields.
        """
        root = self._get_export_model(model_name)
        columns = []
        denied = []
        for path in paths:
            try:
                parts = check_path_syntax(path)
            except ValueError as exc:
                raise UserError(str(exc)) from exc
            Model = root
            chain = []
            labels = []
            field = None
            for index, part in enumerate(parts):
                field = Model._fields.get(part)
                if field is None:
                    raise UserError(
                        self.env._(
                            "Field %(field)s does not exist on %(model)s "
                            "(path %(path)s).",
                            field=part,
                            model=Model._name,
                            path=path,
                        )
                    )
                last = index == len(parts) - 1
                if not self._is_field_exportable(
                    Model, field, include_binary=include_binary and last
                ):
                    denied.append(path)
                    break
                if not last and field.type not in RELATIONAL_TYPES:
                    raise UserError(
                        self.env._(
                            "%(path)s: %(field)s is not a relation.",
                            path=path,
                            field=part,
                        )
                    )
                chain.append((Model._name, field))
                labels.append(field._description_string(Model.env))
                if not last:
                    Model = Model.env[field.comodel_name]
            else:
                if parts == ["id"]:
                    field = None
                columns.append(Column(path, parts, chain, field, " / ".join(labels)))
        if denied:
            _logger.info(
                "Export denied: uid %s may not export %s on %s",
                self.env.uid,
                ", ".join(denied),
                model_name,
            )
            raise AccessError(
                self.env._(
                    "You may not export these fields of %(model)s: %(fields)s "
                    "(restricted to other groups, computed from records you "
                    "may not read, or secret).",
                    model=model_name,
                    fields=", ".join(denied),
                )
            )
        return columns

    # ------------------------------------------------------------------
    # Record selection
    # ------------------------------------------------------------------
    @api.model
    def _domain_variables(self):
        """Values of the names a typed domain may use (``lib.domain.VARIABLES``)."""
        today = fields.Date.context_today(self)
        return {
            "uid": self.env.uid,
            "user_id": self.env.uid,
            "company_id": self.env.company.id,
            "company_ids": self.env.companies.ids,
            "today": fields.Date.to_string(today),
            "now": fields.Datetime.to_string(fields.Datetime.now()),
        }

    @api.model
    def _domain_error_message(self, exc):
        """The translated message of a ``lib.domain.DomainError``."""
        kinds = {
            "attribute": self.env._("Attribute access"),
            "call": self.env._("A function call"),
            "subscript": self.env._("A subscript"),
            "lambda": self.env._("A lambda"),
            "comprehension": self.env._("A comprehension"),
            "fstring": self.env._("An f-string"),
            "dunder": self.env._("A dunder name"),
            "expression": self.env._("An operator expression"),
            "dict": self.env._("A dictionary"),
            "set": self.env._("A set"),
            "bytes": self.env._("A bytes literal"),
            "starred": self.env._("Unpacking"),
            "other": self.env._("This syntax"),
        }
        params = dict(exc.params, kind=kinds.get(exc.detail, exc.detail))
        templates = {
            "type": self.env._("A domain is text, not %(part)s.", **params),
            "too_long": self.env._(
                "The domain is too long: %(size)s characters, at most %(limit)s.",
                **params,
            ),
            "too_deep": self.env._(
                "The domain is nested too deeply (at most %(limit)s levels): %(part)s",
                **params,
            ),
            "syntax": self.env._(
                "The domain is not a literal list (%(detail)s): %(part)s", **params
            ),
            "not_a_list": self.env._(
                "A domain is a list of terms, not %(part)s", **params
            ),
            "single_term": self.env._(
                "A domain is a list of terms: write [%(part)s]", **params
            ),
            "forbidden": self.env._(
                "%(kind)s is not allowed in a domain: %(part)s", **params
            ),
            "unknown_name": self.env._(
                "Unknown name in a domain: %(part)s (allowed: %(detail)s)", **params
            ),
            "bad_item": self.env._(
                "A domain item is '&', '|', '!' or a term, not %(part)s", **params
            ),
            "bad_term": self.env._(
                "A domain term is (field, operator, value), not %(part)s", **params
            ),
            "bad_path": self.env._(
                "Invalid field path in a domain: %(part)s", **params
            ),
            "bad_operator": self.env._(
                "Unknown operator in a domain term: %(part)s", **params
            ),
            "bad_value": self.env._(
                "Invalid value in a domain term (%(detail)s): %(part)s", **params
            ),
            "arity": self.env._(
                "The domain's '&', '|' and '!' do not match its terms "
                "(%(detail)s): %(part)s",
                **params,
            ),
        }
        return templates.get(exc.code, str(exc))

    @api.model
    def _parse_domain(self, domain_text, model_name=None):
        """The domain typed by a user, as data: never evaluated.

        ``lib.domain`` reads the text as literal data (names such as ``uid``
        are resolved for the current user); with ``model_name`` every field
        path is then checked hop by hop against what the current user may
        read (field groups, secrets, comodel rights), and Odoo builds the
        query without running it. Raises ``ValidationError`` (``AccessError``
        for a field the user may not filter on) naming the offending part.
        """
        if not domain_text:
            return []
        try:
            domain = parse_domain(domain_text, self._domain_variables())
        except DomainError as exc:
            raise ValidationError(self._domain_error_message(exc)) from None
        if not domain:
            return []
        try:
            domain = expression.normalize_domain(domain)
        except ValueError as exc:
            raise ValidationError(
                self.env._(
                    "Invalid domain %(domain)s: %(error)s",
                    domain=domain_text[:200],
                    error=exc,
                )
            ) from None
        if model_name:
            Model = self._get_export_model(model_name)
            self._check_domain_fields(Model, domain)
            try:
                # Odoo's own parser: operators, values and paths become SQL
                # (not executed here); record rules apply as for the export.
                Model._search(domain)
            except (ValueError, TypeError, KeyError) as exc:
                raise ValidationError(
                    self.env._(
                        "Invalid domain for %(model)s: %(error)s",
                        model=model_name,
                        error=exc,
                    )
                ) from None
        return domain

    @api.model
    def _check_domain_fields(self, Model, domain):
        """Every path of ``domain`` exists and the current user may filter on it.

        A filter is an oracle: filtering on a field reveals its values, so a
        hop must be a field the user may export (readable, not withheld by the
        secret rule or ``groups=``, comodel readable); ``any`` sub-domains are
        checked on their comodel.
        """
        for item in domain:
            if not isinstance(item, tuple) or not isinstance(item[0], str):
                continue  # '&', '|', '!' and the constant terms
            path, operator, value = item
            Current = Model
            parts = path.split(".")
            for index, name in enumerate(parts):
                field = Current._fields.get(name)
                if field is None:
                    raise ValidationError(
                        self.env._(
                            "Field %(field)s does not exist on %(model)s (domain term "
                            "%(term)s).",
                            field=name,
                            model=Current._name,
                            term=item,
                        )
                    )
                if not self._is_field_exportable(Current, field):
                    raise AccessError(
                        self.env._(
                            "You may not filter on %(path)s (domain term %(term)s): "
                            "the field is restricted to other groups, computed from "
                            "records you may not read, or secret.",
                            path=path,
                            term=item,
                        )
                    )
                if not (field.store or field.search or name == "id"):
                    raise ValidationError(
                        self.env._(
                            "%(path)s cannot be searched (domain term %(term)s).",
                            path=path,
                            term=item,
                        )
                    )
                last = index == len(parts) - 1
                traverses = not last or operator in ("any", "not any")
                if traverses and not field.relational:
                    raise ValidationError(
                        self.env._(
                            "%(path)s: %(field)s is not a relation (domain term "
                            "%(term)s).",
                            path=path,
                            field=name,
                            term=item,
                        )
                    )
                if field.relational:
                    Comodel = Current.env[field.comodel_name]
                    if last and operator in ("any", "not any"):
                        self._check_domain_fields(Comodel, value)
                    Current = Comodel

    @api.model
    def _build_domain(
        self,
        model_name,
        domain_text="[]",
        date_field=None,
        date_from=None,
        date_to=None,
        state_values=None,
    ):
        """Domain of the records to export (record rules apply on search)."""
        Model = self.env[model_name]
        domain = self._parse_domain(domain_text, model_name)
        if date_field and (date_from or date_to):
            field = Model._fields.get(date_field)
            if field is None or field.type not in ("date", "datetime"):
                raise UserError(
                    self.env._(
                        "%(field)s is not a date field of %(model)s.",
                        field=date_field,
                        model=model_name,
                    )
                )
            if not self._is_field_exportable(Model, field):
                raise AccessError(
                    self.env._("You may not filter on %(field)s.", field=date_field)
                )
            if field.type == "date":
                if date_from:
                    domain = expression.AND([domain, [(date_field, ">=", date_from)]])
                if date_to:
                    domain = expression.AND([domain, [(date_field, "<=", date_to)]])
            else:
                # Whole days in the user's time zone, compared in UTC.
                zone = get_zone(self.env.context.get("tz") or self.env.user.tz)

                def utc(day):
                    start = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
                    return start.astimezone(dt.UTC).replace(tzinfo=None)

                if date_from:
                    domain = expression.AND(
                        [domain, [(date_field, ">=", utc(date_from))]]
                    )
                if date_to:
                    domain = expression.AND(
                        [domain, [(date_field, "<", utc(date_to + dt.timedelta(1)))]]
                    )
        states = [s.strip() for s in (state_values or "").split(",") if s.strip()]
        if states:
            field = Model._fields.get("state")
            if field is None:
                raise UserError(
                    self.env._("%(model)s has no state field.", model=model_name)
                )
            if field.type == "selection":
                allowed = {v for v, _label in field._description_selection(self.env)}
                unknown = [s for s in states if s not in allowed]
                if unknown:
                    raise UserError(
                        self.env._(
                            "Unknown states for %(model)s: %(states)s",
                            model=model_name,
                            states=", ".join(unknown),
                        )
                    )
            domain = expression.AND([domain, [("state", "in", states)]])
        return domain

    @api.model
    def _iter_record_batches(self, Model, domain, batch_size=1000):
        """Yield recordsets of at most ``batch_size`` records, by id.

        Keyset pagination (``id > last``) keeps memory flat: the full id list
        is never loaded. The cache is emptied after each batch.
        """
        last_id = 0
        while True:
            batch = Model.search(
                expression.AND([domain, [("id", ">", last_id)]]),
                order="id",
                limit=batch_size,
            )
            if not batch:
                return
            last_id = batch.ids[-1]
            yield batch.with_context(prefetch_fields=False)
            Model.env.invalidate_all()

    # ------------------------------------------------------------------
    # Values
    # ------------------------------------------------------------------
    def _selection_labels(self, column_field, env):
        if column_field is not None and column_field.type == "selection":
            return dict(column_field._description_selection(env))
        return None

    @api.model
    def _tabular_rows(self, records, columns):
        """Rows (lists of Python values) for CSV/XLSX, one per record.

        Relations give display names (x2many: comma separated), selections
        their labels, dates stay dates (the writer formats them).
        """
        direct = []
        for column in columns:
            name = column.parts[0]
            if len(column.parts) == 1 and name != "id" and name not in direct:
                direct.append(name)
        data = (
            {row["id"]: row for row in self._read_rows(records, direct)}
            if direct
            else {}
        )
        names = self._display_names_for(records, columns, data)
        labels = [self._selection_labels(c.field, records.env) for c in columns]
        for record in records:
            row = data.get(record.id, {"id": record.id})
            values = []
            for column, label_map in zip(columns, labels, strict=True):
                if column.parts == ["id"]:
                    values.append(record.id)
                    continue
                if len(column.parts) == 1:
                    value = row[column.parts[0]]
                else:
                    value = self._path_value(record, column)
                values.append(
                    self._tabular_value(column.field, value, label_map, names)
                )
            yield values

    @api.model
    def _is_sql_readable(self, field):
        """Whether ``field`` can be read straight from its column.

        Plain stored columns (no translation, no company-dependent value)
        are read with one SQL query per batch, built by the ORM's own
        ``_search`` (so record rules and multi-company rules apply) after
        the field access was checked; the rest goes through the ORM.
        """
        return (
            field.name != "id"
            and field.store
            and bool(field.column_type)
            and not field.translate
            and not field.company_dependent
            and field.type in SQL_READABLE_TYPES
        )

    @api.model
    def _iter_table_batches(self, Model, domain, columns, batch_size=1000):
        """Yield lists of rows (CSV/XLSX values) of at most ``batch_size``.

        Runs in the environment of ``Model`` (the requesting user): the rows
        are those ``_search`` returns for that user, in id order (keyset
        pagination, constant memory).
        """
        fast = {}
        for column in columns:
            if (
                len(column.parts) == 1
                and column.field is not None
                and (self._is_sql_readable(column.field))
            ):
                fast[column.parts[0]] = column.field
        names = list(fast)
        if names:
            Model.check_field_access_rights("read", names)
            Model.flush_model(names)
        slow = [c for c in columns if c.parts != ["id"] and c.path not in fast]
        slow_pos = {c.path: i for i, c in enumerate(slow)}
        labels = [self._selection_labels(c.field, Model.env) for c in columns]
        selects = [SQL.identifier(Model._table, "id")] + [
            SQL.identifier(Model._table, name) for name in names
        ]
        cr = Model.env.cr
        last_id = 0
        while True:
            query = Model._search(
                expression.AND([domain, [("id", ">", last_id)]]),
                order="id",
                limit=batch_size,
            )
            cr.execute(query.select(*selects))
            fetched = cr.fetchall()
            if not fetched:
                return
            last_id = fetched[-1][0]
            ids = [row[0] for row in fetched]
            values = {
                name: [row[i + 1] for row in fetched] for i, name in enumerate(names)
            }
            display = {
                name: self._display_name_map(
                    Model.env[field.comodel_name], values[name]
                )
                for name, field in fast.items()
                if field.type == "many2one"
            }
            slow_rows = []
            if slow:
                records = Model.browse(ids).with_context(prefetch_fields=False)
                slow_rows = list(self._tabular_rows(records, slow))
            rows = []
            for index, record_id in enumerate(ids):
                row = []
                for column, label_map in zip(columns, labels, strict=True):
                    if column.parts == ["id"]:
                        row.append(record_id)
                    elif column.path in fast:
                        row.append(
                            self._sql_cell(
                                column.field,
                                values[column.path][index],
                                label_map,
                                display.get(column.path),
                            )
                        )
                    else:
                        row.append(slow_rows[index][slow_pos[column.path]])
                rows.append(row)
            yield rows
            Model.env.invalidate_all()

    def _display_name_map(self, Comodel, ids):
        """{id: display_name} of the related records the user may read."""
        unique = {i for i in ids if i}
        if not unique:
            return {}
        readable = Comodel.browse(sorted(unique))._filtered_access("read")
        return {rec.id: self._record_label(rec) for rec in readable}

    @api.model
    def _record_label(self, record):
        """What a cell shows for a related record: its display name, or
        "<model description> #<id>" when it has none (e.g. a mail message
        without subject)."""
        return record.display_name or self.env._(
            "%(model)s #%(id)s", model=record._description, id=record.id
        )

    def _sql_cell(self, field, raw, label_map, names):
        if field.type == "boolean":
            return bool(raw)
        if raw is None:
            return None
        if field.type == "many2one":
            return names.get(raw)
        if field.type == "selection" and label_map is not None:
            return label_map.get(raw, raw)
        if field.type in ("float", "monetary"):
            return float(raw)
        return raw

    @api.model
    def _readable_related(self, corecords, active_test):
        """The related records the user may read (active ones unless archived
        records are exported): another company's records are left out
        instead of failing the export."""
        if not corecords:
            return corecords
        readable = corecords._filtered_access("read")
        if active_test and readable._active_name:
            readable = readable.filtered(readable._active_name)
        return readable

    @api.model
    def _read_rows(self, records, names, load="_classic_read"):
        """``records.read(names)`` where x2many values keep only the related
        records the user may read.

        Odoo's read filters archived related records by reading their
        ``active`` field, which raises ``AccessError`` when one belongs to a
        company the user is not in (e.g. an administrator's companies, read
        by a user of another company). The values are read without that
        filter, then filtered here.
        """
        active_test = records.env.context.get("active_test", True)
        rows = records.with_context(active_test=False).read(names, load=load)
        for name in names:
            field = records._fields[name]
            if field.type not in ("one2many", "many2many"):
                continue
            ids = sorted({i for row in rows for i in row[name]})
            keep = set(
                self._readable_related(
                    records.env[field.comodel_name].browse(ids), active_test
                ).ids
            )
            for row in rows:
                row[name] = [i for i in row[name] if i in keep]
        return rows

    @api.model
    def _follow_path(self, record, parts):
        """``record.mapped(".".join(parts))``, keeping at each relational hop
        only the related records the user may read (see ``_read_rows``)."""
        active_test = record.env.context.get("active_test", True)
        current = record
        for index, name in enumerate(parts):
            last = index == len(parts) - 1
            field = current._fields[name]
            if field.relational:
                values = current.with_context(active_test=False).mapped(name)
                current = self._readable_related(
                    values.with_env(record.env),
                    active_test and field.type != "many2one",
                )
                if last:
                    return current
            else:
                return current.mapped(name)
        return current

    def _path_value(self, record, column):
        """Value of a related path: a recordset for relations, else a scalar
        (several values joined by ", " when an x2many is crossed)."""
        value = self._follow_path(record, column.parts)
        if isinstance(value, models.BaseModel):
            return value
        value = [v for v in value if v is not False and v is not None]
        if not value:
            return False
        if len(value) == 1:
            return value[0]
        return ", ".join(str(v) for v in value)

    def _display_names_for(self, records, columns, data):
        """{(comodel, id): display_name} for x2many ids of the direct columns."""
        wanted = {}
        for column in columns:
            field = column.field
            if (
                len(column.parts) == 1
                and field is not None
                and field.type in ("one2many", "many2many")
            ):
                ids = wanted.setdefault(field.comodel_name, set())
                for row in data.values():
                    ids.update(row[field.name])
        names = {}
        for comodel, ids in wanted.items():
            if ids:
                for rec in records.env[comodel].browse(sorted(ids)):
                    names[(comodel, rec.id)] = self._record_label(rec)
        return names

    def _tabular_value(self, field, value, label_map, names):
        if field is None:
            return value
        if isinstance(value, models.BaseModel):
            return ", ".join(self._record_label(rec) for rec in value) or None
        if field.type == "boolean":
            return bool(value)
        if value is False or value is None:
            return None
        if field.type == "many2one":
            return value[1] if isinstance(value, tuple | list) else value
        if field.type in ("one2many", "many2many"):
            if isinstance(value, list | tuple):
                return (
                    ", ".join(
                        names.get((field.comodel_name, rid), str(rid)) for rid in value
                    )
                    or None
                )
            return value
        if field.type == "selection" and label_map is not None:
            return label_map.get(value, value)
        return value

    @api.model
    def _serialize_records(self, records, field_names, depth=0):
        """JSON-ready dicts of ``records`` for ``field_names`` (paths allowed).

        Runs with the records' environment (its user, record rules, field
        groups): an unreadable or secret field raises ``AccessError``.
        Datetimes are ISO 8601 with the offset of the user's time zone,
        relations ``{"id", "display_name"}`` (``depth`` > 0: the related
        records expanded with their exportable fields, one level less deep).
        """
        if not records:
            return []
        depth = max(0, min(int(depth or 0), MAX_JSON_DEPTH))
        profile = self.with_env(records.env)
        columns = profile._resolve_field_paths(records._name, list(field_names))
        zone = get_zone(records.env.context.get("tz") or records.env.user.tz)
        direct = [
            c.parts[0] for c in columns if len(c.parts) == 1 and c.parts[0] != "id"
        ]
        # read([]) would read every field: only ask for the requested ones.
        data = (
            {row["id"]: row for row in self._read_rows(records, direct, load=None)}
            if direct
            else self._ids_only(records)
        )
        # Related records, fetched once per field for the whole batch.
        related = {}
        for column in columns:
            field = column.field
            if len(column.parts) == 1 and field is not None and field.relational:
                ids = set()
                for row in data.values():
                    value = row[field.name]
                    if field.type == "many2one":
                        if value:
                            ids.add(value)
                    else:
                        ids.update(value)
                related[field.name] = profile._related_values(
                    records.env[field.comodel_name], sorted(ids), depth
                )
        result = []
        for record in records:
            row = data[record.id]
            item = {}
            for column in columns:
                field = column.field
                if column.parts == ["id"]:
                    item["id"] = record.id
                elif len(column.parts) == 1:
                    value = row[field.name]
                    if field.type == "many2one":
                        item[column.path] = (
                            related[field.name].get(value) if value else None
                        )
                    elif field.type in ("one2many", "many2many"):
                        item[column.path] = [
                            related[field.name][rid]
                            for rid in value
                            if rid in related[field.name]
                        ]
                    elif field.type == "boolean":
                        item[column.path] = bool(value)
                    else:
                        item[column.path] = json_value(value, zone)
                else:
                    value = self._follow_path(record, column.parts)
                    item[column.path] = self._json_path_value(column.field, value, zone)
            result.append(item)
        return result

    def _ids_only(self, records):
        """{id: {"id": id}} of ``records``, access-checked like a read."""
        records.check_access("read")
        return {record_id: {"id": record_id} for record_id in records.ids}

    def _related_values(self, Comodel, ids, depth):
        """{id: {id, display_name[, fields...]}} for related records."""
        if not ids:
            return {}
        records = Comodel.browse(ids)
        # Only records the user may read (record rules of the comodel).
        readable = records._filtered_access("read")
        values = {
            rec.id: {"id": rec.id, "display_name": rec.display_name} for rec in readable
        }
        if depth > 0 and readable:
            names = self._exportable_fields(Comodel._name)
            for item in self._serialize_records(readable, names, depth - 1):
                values[item["id"]].update(item)
        return values

    def _json_path_value(self, field, value, zone):
        if isinstance(value, models.BaseModel):
            items = [{"id": r.id, "display_name": r.display_name} for r in value]
            if field is not None and field.type == "many2one":
                return items[0] if items else None
            return items
        values = [
            v.isoformat()
            if isinstance(v, dt.date) and not isinstance(v, dt.datetime)
            else iso_datetime(v, zone)
            if isinstance(v, dt.datetime)
            else v
            for v in value
        ]
        if field is not None and field.type == "boolean":
            return bool(values and values[0])
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    # ------------------------------------------------------------------
    # Ready-made profiles
    # ------------------------------------------------------------------
    @api.model
    def _ready_made_specs(self):
        """Definitions of the shipped profiles (hook: extend the list).

        Each: key, name, model, candidate fields (kept when they exist),
        and optional domain, date field, include_archived, requires (a field
        that must exist, e.g. qty_available needs the Inventory app).
        """
        address = ["street", "street2", "zip", "city", "state_id", "country_id"]
        return [
            {
                "key": "customers",
                "name": "Customers",
                "model": "res.partner",
                "fields": [
                    "id",
                    "name",
                    "phone",
                    "mobile",
                    "email",
                    *address,
                    "total_invoiced",
                    "export_last_activity_date",
                ],
                "date_field": "create_date",
            },
            {
                "key": "users",
                "name": "Users",
                "model": "res.users",
                "fields": [
                    "id",
                    "login",
                    "name",
                    "groups_id",
                    "active",
                    "login_date",
                    "company_id",
                ],
                "include_archived": True,
                "date_field": "login_date",
            },
            {
                "key": "invoices",
                "name": "Invoices",
                "model": "account.move",
                "fields": [
                    "id",
                    "name",
                    "move_type",
                    "partner_id",
                    "invoice_date",
                    "invoice_date_due",
                    "amount_untaxed",
                    "amount_tax",
                    "amount_total",
                    "amount_residual",
                    "currency_id",
                    "state",
                    "payment_state",
                    "invoice_origin",
                ],
                "domain": "[('move_type', 'in', ('out_invoice', 'out_refund', "
                "'in_invoice', 'in_refund'))]",
                "date_field": "invoice_date",
            },
            {
                "key": "inventory",
                "name": "Inventory",
                "model": "product.product",
                "fields": [
                    "id",
                    "default_code",
                    "name",
                    "barcode",
                    "categ_id",
                    "qty_available",
                    "virtual_available",
                    "uom_id",
                    "list_price",
                    "standard_price",
                ],
                "requires": "qty_available",
            },
            {
                "key": "payments",
                "name": "Transactions: Payments",
                "model": "account.payment",
                "fields": [
                    "id",
                    "name",
                    "date",
                    "partner_id",
                    "amount",
                    "currency_id",
                    "payment_type",
                    "journal_id",
                    "state",
                ],
                "date_field": "date",
            },
            {
                "key": "sales",
                "name": "Transactions: Sales Orders",
                "model": "sale.order",
                "fields": [
                    "id",
                    "name",
                    "date_order",
                    "partner_id",
                    "user_id",
                    "amount_total",
                    "currency_id",
                    "state",
                ],
                "date_field": "date_order",
            },
            {
                "key": "pos_orders",
                "name": "Transactions: Point of Sale Orders",
                "model": "pos.order",
                "fields": [
                    "id",
                    "name",
                    "date_order",
                    "partner_id",
                    "session_id",
                    "amount_total",
                    "amount_paid",
                    "state",
                ],
                "date_field": "date_order",
            },
            {
                "key": "helpdesk_tickets",
                "name": "Tickets: Helpdesk",
                "model": "helpdesk.ticket",
                "fields": [
                    "id",
                    "name",
                    "partner_id",
                    "team_id",
                    "user_id",
                    "stage_id",
                    "priority",
                    "create_date",
                    "write_date",
                    "close_date",
                ],
                "date_field": "create_date",
            },
            {
                "key": "project_tasks",
                "name": "Tickets: Project Tasks",
                "model": "project.task",
                "fields": [
                    "id",
                    "name",
                    "project_id",
                    "partner_id",
                    "user_ids",
                    "stage_id",
                    "state",
                    "create_date",
                    "write_date",
                    "date_deadline",
                ],
                "date_field": "create_date",
            },
            {
                "key": "repair_orders",
                "name": "Tickets: Repair Orders",
                "model": "repair.order",
                "fields": [
                    "id",
                    "name",
                    "partner_id",
                    "product_id",
                    "user_id",
                    "state",
                    "create_date",
                    "write_date",
                    "schedule_date",
                ],
                "date_field": "create_date",
            },
        ]

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

    @api.model
    def _setup_ready_made_profiles(self):
        """Create the ready-made profiles (and list actions) for the apps present.

        Idempotent: an existing profile keeps what the administrator edited;
        one whose columns are still those this method generated follows the
        fields now present (e.g. Customers gains the lifetime spend once
        accounting is installed). Profiles of uninstalled apps disappear with
        their model (cascade). Returns the profiles created.
        """
        Profile = self.sudo().with_context(active_test=False)
        existing = {
            profile.ready_made_key: profile
            for profile in Profile.search([("ready_made_key", "!=", False)])
        }
        IrModel = self.env["ir.model"].sudo()
        created = self.browse()
        for sequence, spec in enumerate(self._ready_made_specs(), start=1):
            if spec["model"] not in self.env:
                continue
            Model = self.env[spec["model"]]
            if spec.get("requires") and spec["requires"] not in Model._fields:
                continue
            self._ensure_list_action(spec["model"])
            paths = "\n".join(f for f in spec["fields"] if f in Model._fields)
            profile = existing.get(spec["key"])
            if profile:
                if (
                    profile.ready_made_paths
                    and profile.field_paths == profile.ready_made_paths
                    and profile.field_paths != paths
                ):
                    profile.write({"field_paths": paths, "ready_made_paths": paths})
                continue
            date_field = spec.get("date_field")
            date_field_rec = (
                self.env["ir.model.fields"].sudo()._get(spec["model"], date_field)
                if date_field and date_field in Model._fields
                else self.env["ir.model.fields"]
            )
            created |= Profile.create(
                {
                    "name": spec["name"],
                    "sequence": sequence,
                    "ready_made_key": spec["key"],
                    "user_id": False,
                    "model_id": IrModel._get_id(spec["model"]),
                    "field_paths": paths,
                    "ready_made_paths": paths,
                    "domain": spec.get("domain", "[]"),
                    "date_field_id": date_field_rec.id,
                    "include_archived": spec.get("include_archived", False),
                }
            )
        return created

    @api.model
    def _ensure_list_action(self, model_name):
        """An "Export (suite)" entry in the Action menu of ``model_name`` lists.

        A server action bound to the model (binding type ``action``, list
        views only) is the JS-free Odoo way; restricted to the export group.
        """
        xmlid_name = "list_action_export_%s" % model_name.replace(".", "_")
        # The xml id may outlive its action: uninstalling the app deletes the
        # action with its model (database cascade), not this addon's xml id.
        xmlid = (
            self.env["ir.model.data"]
            .sudo()
            .search(
                [("module", "=", "data_export_suite"), ("name", "=", xmlid_name)],
                limit=1,
            )
        )
        if xmlid:
            existing = (
                self.env["ir.actions.server"].sudo().browse(xmlid.res_id).exists()
            )
            if existing:
                return existing
        action = (
            self.env["ir.actions.server"]
            .sudo()
            .create(
                {
                    "name": self.env._("Export (suite)"),
                    "model_id": self.env["ir.model"]._get_id(model_name),
                    "binding_model_id": self.env["ir.model"]._get_id(model_name),
                    "binding_view_types": "list",
                    "state": "code",
                    "code": "action = env['data.export.wizard']"
                    "._action_open_for_records(model._name, records.ids)",
                    "groups_id": [
                        (4, self.env.ref("data_export_suite.export_group_user").id)
                    ],
                }
            )
        )
        if xmlid:
            xmlid.write({"model": "ir.actions.server", "res_id": action.id})
            # xml id lookups read the table directly (and cache the answer).
            xmlid.flush_recordset()
            return action
        self.env["ir.model.data"].sudo().create(
            {
                "module": "data_export_suite",
                "name": xmlid_name,
                "model": "ir.actions.server",
                "res_id": action.id,
                "noupdate": True,
            }
        )
        return action

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
