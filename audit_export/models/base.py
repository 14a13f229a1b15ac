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

Secrets follow the suite's one rule (``lib/sensitive.is_withheld``), judged
for the role that reads the log, the Auditor: a secret by name or type, or
a field whose ``groups=`` the Auditor group (with what it implies) does not
satisfy, is WITHHELD: recorded as ``{"changed": true}``, and its value is
never read by the capture (the capture reads as superuser, so it must not
read past ``groups=``). Which fields are withheld is decided once per model
(see ``audit.rule._rules_by_model``); a model can withhold more per record
(``_audit_record_withheld``, e.g. system parameters by their key).
"""

from odoo import api, models

from suite_core.sensitive import is_withheld

from ..lib import chain
from .audit_rule import NEVER_AUDITED

# Field types whose content is never logged whatever the field (size and
# privacy, not secrecy): recorded as "changed".
CONTENT_TYPES = frozenset({"binary"})
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
        readable, withheld = self._audit_split_fields(vals, rule)
        by_record = self._audit_record_withheld(readable, vals)
        old = self._audit_read(readable, by_record)
        res = super().write(vals)
        new = self._audit_read(readable, by_record, fetch=False)
        self._audit_capture_write(rule, old, new, withheld, by_record)
        return res

    def unlink(self):
        rule = self._audit_rule("unlink") if self else None
        if not rule:
            return super().unlink()
        readable, _withheld = self._audit_split_fields(
            [name for name, field in self._fields.items() if field.store], rule
        )
        by_record = self._audit_record_withheld(readable)
        old = self._audit_read(readable, by_record)
        names = self._audit_names(rule)
        res = super().unlink()
        self._audit_capture_unlink(old, names, by_record)
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

    @api.model
    def _audit_field_withheld(self, field, has_group):
        """Hook: True when the capture must record only that ``field`` changed.

        The suite's one rule for secrets (names, types, ``groups=``) for the
        reading role described by ``has_group(xmlid)``, plus content types
        that are never logged.
        """
        return field.type in CONTENT_TYPES or is_withheld(
            self._name, field.name, field.type, field.groups, has_group
        )

    def _audit_record_withheld(self, fnames, vals=None):
        """Hook: ``{record_id: set of names}`` among ``fnames`` withheld for
        single records of ``self``, decided before any of their values is read
        (``vals``: the values being written, when writing)."""
        return {}

    def _audit_split_fields(self, names, rule):
        """``(readable, withheld)`` field names among ``names``."""
        readable, withheld = [], []
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
            (withheld if name in rule["withheld"] else readable).append(name)
        return readable, withheld

    def _audit_read(self, fnames, by_record=None, fetch=True):
        """``{id: {field: value}}`` of this recordset, as recorded in events.

        Only ``fnames`` are read, less the names ``by_record`` withholds for
        a record: a withheld value is never read. Records are read in groups
        sharing the same withheld names (one group for most models).
        """
        if not by_record:
            return self._audit_read_values(fnames, fetch=fetch)
        groups = {}
        for record_id in self._ids:
            hidden = frozenset(by_record.get(record_id, ()))
            groups.setdefault(hidden, []).append(record_id)
        result = {}
        for hidden, ids in groups.items():
            names = [name for name in fnames if name not in hidden]
            result.update(self.browse(ids)._audit_read_values(names, fetch=fetch))
        return result

    def _audit_read_values(self, fnames, fetch=True):
        """``{id: {field: value}}`` for ``fnames``, none of them withheld.

        Plain columns come straight from the cache (one query per batch when
        ``fetch``, none after a write); relational fields go through
        ``read`` (``[id, name]`` pairs, lists of ids). Odoo's empty value
        (False) is recorded as null, except for booleans.
        """
        if not fnames:
            return {record_id: {} for record_id in self._ids}
        # Values are JSON-normal (see lib/chain.NormalizedDetails). As
        # superuser: the change is recorded whatever the writer may read;
        # withheld fields never reach this method.
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

    def _audit_names(self, rule):
        """``{id: name}``: the stored ``_rec_name`` column when there is one
        (read from the cache), else the display name; nothing when the name
        field is withheld."""
        records = self.sudo().with_context(active_test=False)
        field = self._fields.get(self._rec_name or "")
        if field is not None and field.name in rule["withheld"]:
            return {}
        if field is not None and field.store and field.type in ("char", "text"):
            return dict(zip(self._ids, field.mapped(records), strict=True))
        return {record.id: record.display_name for record in records}

    def _audit_base_vals(self, action):
        events = self.env["audit.event"]
        # One time stamp per batch: the time of the change, not of the commit.
        return events._prepare_event_vals(
            action,
            res_model=self._name,
            timestamp=events._normalize_timestamp(None),
        )

    def _audit_capture_create(self, rule, fnames):
        readable, withheld = self._audit_split_fields(fnames, rule)
        by_record = self._audit_record_withheld(readable)
        new = self._audit_read(readable, by_record)
        names = self._audit_names(rule)
        base = self._audit_base_vals("create")
        events = []
        for record_id in self._ids:
            changes = {name: {"new": value} for name, value in new[record_id].items()}
            for name in (*withheld, *by_record.get(record_id, ())):
                changes[name] = {"changed": True}
            events.append(self._audit_event_vals(base, record_id, names, changes))
        self.env["audit.event"]._buffer_events(events)

    def _audit_capture_write(self, rule, old, new, withheld, by_record):
        names = self._audit_names(rule)
        base = self._audit_base_vals("update")
        events = []
        for record_id in self._ids:
            before = old.get(record_id, {})
            after = new.get(record_id, {})
            changes = {
                name: {"old": before.get(name), "new": value}
                for name, value in after.items()
                if before.get(name) != value
            }
            # Withheld values were not read: written counts as changed.
            for name in (*withheld, *by_record.get(record_id, ())):
                changes[name] = {"changed": True}
            if changes:
                events.append(self._audit_event_vals(base, record_id, names, changes))
        self.env["audit.event"]._buffer_events(events)

    def _audit_capture_unlink(self, old, names, by_record):
        base = self._audit_base_vals("delete")
        events = []
        for record_id, values in old.items():
            changes = {name: {"old": value} for name, value in values.items()}
            for name in by_record.get(record_id, ()):
                changes[name] = {"redacted": True}
            events.append(self._audit_event_vals(base, record_id, names, changes))
        self.env["audit.event"]._buffer_events(events)

    def _audit_event_vals(self, base, record_id, names, changes):
        return {
            **base,
            "res_id": record_id,
            "res_name": names.get(record_id),
            "details": chain.NormalizedDetails(fields=changes),
        }
