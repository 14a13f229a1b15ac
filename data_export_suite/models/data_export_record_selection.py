"""Record selection: which records an export reads.

Typed domains are parsed as data (``lib.domain``), never evaluated, and every
path is checked against what the user may read; date ranges (whole days in
the user's time zone) and states complete the domain. Record rules apply on
search. Inherited by ``data.export.profile``.
"""

import datetime as dt

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.osv import expression

from ..lib.domain import DomainError, parse_domain
from ..lib.serialize import get_zone


class DataExportRecordSelection(models.AbstractModel):
    _name = "data.export.record.selection"
    _inherit = ["data.export.field.access"]
    _description = "Export Record Selection"

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
