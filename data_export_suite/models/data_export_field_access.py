"""Field access: what the CURRENT user may export.

Field groups, the suite's secret rule (``suite_core.sensitive``),
readable comodels and computations the user can run decide which fields a
user may export or filter on, and what the export wizard offers (business
models, the field tree). Inherited by ``data.export.profile``.
"""

import logging
from collections import namedtuple

from odoo import api, models, tools
from odoo.exceptions import AccessError, UserError
from odoo.tools import SQL

from suite_core.sensitive import SECRET_MODELS, is_withheld

from ..lib.serialize import check_path_syntax

_logger = logging.getLogger(__name__)

#: Field types never exported (no portable value).
UNEXPORTABLE_TYPES = frozenset({"properties", "properties_definition"})
RELATIONAL_TYPES = frozenset({"many2one", "one2many", "many2many"})
#: Types read straight from their column by the tabular fast path.
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


class DataExportFieldAccess(models.AbstractModel):
    _name = "data.export.field.access"
    _description = "Export Field Access"

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
                raise UserError(
                    self.env._("Invalid field path: %(path)s", path=repr(path))
                ) from exc
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
