"""Capture of create / update / delete on the models selected by audit rules.

Instead of patching model classes at load time (OCA ``auditlog``), the
capture is an ordinary override of ``create``/``write``/``unlink`` on the
``base`` model, which every model inherits through the registry. For models
without a rule it costs one cached dictionary lookup; rules take effect (or
stop) at once when they change, on every worker (ormcache invalidation),
models installed later are covered, and nothing has to be undone on
uninstall.

Old values are read in ONE ``read`` per batch before the change, new values
once after (mostly from the cache); events go to a precommit buffer and are
inserted in bulk when the transaction commits (or when the log is searched).
"""

import re

from odoo import api, models

from ..lib import chain
from .audit_rule import NEVER_AUDITED

# Secrets are never stored, only the fact they changed: by name ...
SECRET_NAME_RE = re.compile(
    r"passw|secret|token|api_?key|private_key|totp|credential|signup_|"
    r"(^|_)otp($|_)|(^|_)pin$|_key$|^key_|^hash$|_hash$|oauth",
    re.IGNORECASE,
)
# ... and by type (content not logged: size and privacy).
REDACTED_TYPES = frozenset({"binary"})
# Field types whose cached value is recorded as is (no ``read`` formatting).
PLAIN_TYPES = frozenset(
    {
        "boolean",
        "char",
        "date",
        "datetime",
        "float",
        "integer",
        "monetary",
        "selection",
        "text",
    }
)


def is_secret_field(field):
    """True when ``field``'s value must never be written to the audit log."""
    return bool(SECRET_NAME_RE.search(field.name)) or field.type in REDACTED_TYPES


class Base(models.AbstractModel):
    _inherit = "base"

    @api.model_create_multi
    def create(self, vals_list):
        records = super().create(vals_list)
        rule = records._audit_rule("create") if records else None
        if rule:
            fnames = {name for vals in vals_list for name in vals}
            records._audit_capture_create(rule, fnames)
        return records

    def write(self, vals):
        rule = self._audit_rule("write") if self else None
        if not rule:
            return super().write(vals)
        readable, secret = self._audit_split_fields(vals, rule)
        old = self._audit_read(readable)
        res = super().write(vals)
        new = self._audit_read(readable, fetch=False)
        self._audit_capture_write(old, new, secret)
        return res

    def unlink(self):
        rule = self._audit_rule("unlink") if self else None
        if not rule:
            return super().unlink()
        readable, _secret = self._audit_split_fields(
            [name for name, field in self._fields.items() if field.store], rule
        )
        old = self._audit_read(readable)
        names = self._audit_names()
        res = super().unlink()
        self._audit_capture_unlink(old, names)
        return res

    # -- helpers (hook points) ---------------------------------------------

    def _audit_rule(self, operation):
        """The rule dict if ``operation`` is audited on this model, else None."""
        if (
            self._name in NEVER_AUDITED
            or self._transient
            or not getattr(self.pool, "_audit_capture_ready", False)
        ):
            return None
        rule = self.env["audit.rule"]._rules_by_model().get(self._name)
        return rule if rule and rule[operation] else None

    def _audit_split_fields(self, names, rule):
        """``(readable, secret)`` field names among ``names``."""
        readable, secret = [], []
        for name in names:
            field = self._fields.get(name)
            if (
                field is None
                or name in rule["excluded"]
                or name in models.MAGIC_COLUMNS
            ):
                continue
            if field.type in ("one2many",) or (
                field.compute and not field.store and not field.inverse
            ):
                continue
            (secret if self._audit_is_secret(field) else readable).append(name)
        return readable, secret

    def _audit_is_secret(self, field):
        return is_secret_field(field)

    def _audit_read(self, fnames, fetch=True):
        """``{id: {field: value}}`` of this recordset, as recorded in events.

        Plain columns come straight from the cache (one query per batch when
        ``fetch``, none after a write); relational fields go through
        ``read`` (``[id, name]`` pairs, lists of ids). Odoo's empty value
        (False) is recorded as null, except for booleans.
        """
        if not fnames:
            return {record_id: {} for record_id in self._ids}
        # Values are JSON-normal (see lib/chain.NormalizedDetails).
        records = self.sudo().with_context(active_test=False)
        plain = [name for name in fnames if self._fields[name].type in PLAIN_TYPES]
        columns = []
        if plain:
            if fetch:
                records.fetch(plain)
            for name in plain:
                field = self._fields[name]
                values = field.mapped(records)
                if field.type in ("date", "datetime"):
                    # As a JSON round trip writes them (``default=str``).
                    values = [str(value) if value else None for value in values]
                elif field.type != "boolean":
                    values = [None if value is False else value for value in values]
                columns.append(values)
        result = {
            record_id: dict(zip(plain, row, strict=True))
            for record_id, row in zip(
                self._ids,
                zip(*columns, strict=True) if columns else [()] * len(self),
                strict=True,
            )
        }
        others = [name for name in fnames if name not in plain]
        if others:
            for row in records.read(others):
                values = result[row.pop("id")]
                for name, value in row.items():
                    values[name] = (
                        None if value is False else chain.normalize_details(value)
                    )
        return result

    def _audit_names(self):
        """``{id: name}``: the stored ``_rec_name`` column when there is one
        (read from the cache), else the display name."""
        records = self.sudo().with_context(active_test=False)
        field = self._fields.get(self._rec_name or "")
        if field is not None and field.store and field.type in ("char", "text"):
            return dict(zip(self._ids, field.mapped(records), strict=True))
        return {record.id: record.display_name for record in records}

    def _audit_secret_names(self, record_id, values):
        """Hook: names among ``values`` that are secret for this record."""
        return set()

    def _audit_base_vals(self, action):
        events = self.env["audit.event"]
        # One time stamp per batch: the time of the change, not of the commit.
        return events._prepare_event_vals(
            action,
            res_model=self._name,
            timestamp=events._normalize_timestamp(None),
        )

    def _audit_capture_create(self, rule, fnames):
        readable, secret = self._audit_split_fields(fnames, rule)
        new = self._audit_read(readable)
        names = self._audit_names()
        base = self._audit_base_vals("create")
        secret_changes = {name: {"changed": True} for name in secret}
        events = []
        for record_id in self._ids:
            values = new[record_id]
            hidden = self._audit_secret_names(record_id, values)
            changes = {
                name: {"changed": True} if name in hidden else {"new": value}
                for name, value in values.items()
            }
            changes.update(secret_changes)
            events.append(self._audit_event_vals(base, record_id, names, changes))
        self.env["audit.event"]._buffer_events(events)

    def _audit_capture_write(self, old, new, secret):
        names = self._audit_names()
        base = self._audit_base_vals("update")
        secret_changes = {name: {"changed": True} for name in secret}
        events = []
        for record_id in self._ids:
            before = old.get(record_id, {})
            after = new.get(record_id, {})
            changes = {
                name: {"old": before.get(name), "new": value}
                for name, value in after.items()
                if before.get(name) != value
            }
            if changes:
                hidden = self._audit_secret_names(record_id, {**before, **after})
                for name in hidden.intersection(changes):
                    changes[name] = {"changed": True}
            changes.update(secret_changes)
            if changes:
                events.append(self._audit_event_vals(base, record_id, names, changes))
        self.env["audit.event"]._buffer_events(events)

    def _audit_capture_unlink(self, old, names):
        base = self._audit_base_vals("delete")
        events = []
        for record_id, values in old.items():
            hidden = self._audit_secret_names(record_id, values)
            changes = {
                name: {"redacted": True} if name in hidden else {"old": value}
                for name, value in values.items()
            }
            events.append(self._audit_event_vals(base, record_id, names, changes))
        self.env["audit.event"]._buffer_events(events)

    def _audit_event_vals(self, base, record_id, names, changes):
        return {
            **base,
            "res_id": record_id,
            "res_name": names.get(record_id),
            "details": chain.NormalizedDetails(fields=changes),
        }
