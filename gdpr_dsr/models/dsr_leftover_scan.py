import json
import logging
import time

import psycopg2

from odoo import api, models
from odoo.tools import SQL

from ..lib.leftovers import REPLACEMENT, SubjectIdentifiers, parse_json_text
from ..lib.leftovers import scan_result_text as _result_text

_logger = logging.getLogger(__name__)

# Column types read by the scan (Odoo stores Char, Text, Html, Selection in
# varchar/text, translated fields and Json/properties in jsonb).
TEXT_TYPES = ("text", "varchar", "bpchar", "citext", "json", "jsonb")
COLUMNS_PER_QUERY = 40
ROWS_PER_BATCH = 1000
# Occurrences listed one by one in the certificate (beyond: counted only).
LISTED_MAX = 500

AUDIT_BASIS = (
    "Security audit trail (GDPR Art. 6(1)(c) and (f), Art. 32): the "
    "tamper-evident log is changed only by its own redaction, which erased "
    "the values it recognises"
)
HASHED_BASIS = (
    "the journal entry is secured by an inalterability hash that covers this "
    "value (statutory inalterability of accounting records)"
)
HOMONYM_BASIS = (
    "another contact bears this name: not the data subject's data (Art. 17 "
    "covers the subject only); review it if it is the same person"
)
# Where a contact's own name is stored: a homonym's name is never redacted.
PARTNER_NAME_COLUMNS = frozenset(
    {"name", "complete_name", "display_name", "commercial_company_name", "company_name"}
)
REVIEW_NOTE = (
    "configuration or security record: never changed by an erasure (review it by hand)"
)
# Protected models whose text an erasure may still redact: the suite's own
# register of requests, and file metadata.
REDACTABLE_PROTECTED = frozenset({"dsr.request", "dsr.request.line", "ir.attachment"})
# Free-text fields of records kept for accounting that do not carry a
# mandatory particular: anonymised in place, unless a hash covers them.
RETAINED_REDACTABLE = {
    "account.move": ("ref", "payment_reference", "narration", "invoice_origin"),
    "account.move.line": ("name", "ref"),
    "account.payment": ("memo", "payment_reference"),
}
# Outgoing emails not sent yet: deleted, never sent.
UNSENT_MAIL_STATES = ("outgoing", "exception", "cancel")


class DsrLeftoverScan(models.AbstractModel):
    """After an erasure, search the whole database for the subject.

    Every text, varchar, json and jsonb column of every table of the current
    schema is read with one regular expression of the subject's identifiers
    (see lib/leftovers.py), in batches. Each occurrence is then deleted (a
    wizard, a queued notification or email), anonymised in place (any other
    text: the identifier is replaced by ``[erased]``; in records the law makes
    the company keep, only in fields that carry no mandatory particular), or
    kept and listed with the legal basis for keeping it. A second scan states
    what is left: that is the result the certificate carries.

    Columns and tables an administrator excludes (Discovery exclusions whose
    scope includes the scan) are not read and are listed as such. Runs as
    superuser, from the erasure only.
    """

    _name = "dsr.leftover.scan"
    _description = "Data Subject Request: leftover scan"

    # -- identifiers -----------------------------------------------------------
    @api.model
    def _collect_identifiers(
        self, partner_ids, user_ids=(), emails=(), names=(), phones=()
    ):
        """The subject's identifiers, read before anything is erased."""
        identifiers = SubjectIdentifiers()
        for email in emails:
            identifiers.add("email", email)
        for name in names:
            identifiers.add("name", name)
        for phone in phones:
            identifiers.add("phone", phone)
        partners = (
            self.env["res.partner"]
            .sudo()
            .with_context(active_test=False)
            .browse(sorted(set(partner_ids)))
            .exists()
        )
        for partner in partners:
            identifiers.add("email", partner.email)
            identifiers.add("email", partner.email_normalized)
            identifiers.add("name", partner.name)
            for fname in ("phone", "mobile"):
                if fname in partner._fields:
                    identifiers.add("phone", partner[fname])
            identifiers.add("vat", partner.vat)
        users = (
            self.env["res.users"]
            .sudo()
            .with_context(active_test=False)
            .search([("partner_id", "in", partners.ids)])
        ) | self.env["res.users"].sudo().browse(list(user_ids)).exists()
        for user in users:
            identifiers.add("login", user.login)
        banks = (
            self.env["res.partner.bank"]
            .sudo()
            .with_context(active_test=False)
            .search([("partner_id", "in", partners.ids)])
        )
        for bank in banks:
            identifiers.add("iban", bank.acc_number)
            identifiers.add("iban", bank.sanitized_acc_number)
        return identifiers

    # -- what is read ---------------------------------------------------------
    @api.model
    def _table_models(self):
        """``{table: model}`` of every model stored in a table of its own."""
        tables = {}
        for name in sorted(self.env.registry):
            model = self.env[name]
            if model._abstract or model._table_query or not model._table:
                continue
            tables.setdefault(model._table, model)
        return tables

    @api.model
    def _scan_exclusions(self):
        """``{(table, column or None): reason}`` from the exclusion list."""
        excluded = {}
        exclusions = self.env["dsr.discovery.exclusion"].sudo()._get_scan_exclusions()
        for model_name, field_name, reason in exclusions:
            if model_name in self.env:
                model = self.env[model_name]
                table = model._table
                field = model._fields.get(field_name) if field_name else None
                column = field.name if field is not None else field_name
            else:
                table, column = model_name, field_name
            excluded[(table, column or None)] = reason
        return excluded

    @api.model
    def _text_columns(self):
        """``(tables, excluded)``: ``tables`` is a list of ``(table, has_id,
        [(column, type, not null)])`` to read; ``excluded`` the columns left out."""
        exclusions = self._scan_exclusions()
        self.env.cr.execute(
            SQL(
                """SELECT c.relname, a.attname, t.typname, a.attnotnull
                     FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     JOIN pg_attribute a ON a.attrelid = c.oid
                     JOIN pg_type t ON t.oid = a.atttypid
                    WHERE c.relkind = 'r' AND n.nspname = current_schema()
                      AND a.attnum > 0 AND NOT a.attisdropped
                      AND (t.typname = ANY(%s) OR a.attname = 'id')
                    ORDER BY c.relname, a.attnum""",
                list(TEXT_TYPES),
            )
        )
        by_table, has_id, excluded = {}, set(), []
        for table, column, typname, notnull in self.env.cr.fetchall():
            if column == "id" and typname in ("int4", "int8"):
                has_id.add(table)
            if typname not in TEXT_TYPES:
                continue
            reason = exclusions.get((table, None)) or exclusions.get((table, column))
            if reason:
                excluded.append({"table": table, "column": column, "reason": reason})
                continue
            by_table.setdefault(table, []).append((column, typname, notnull))
        tables = [
            (table, table in has_id, columns)
            for table, columns in sorted(by_table.items())
        ]
        return tables, excluded

    # -- scan -----------------------------------------------------------------
    @api.model
    def _scan(self, identifiers):
        """Every occurrence of ``identifiers``: a list of dicts ``{table,
        column, ctype, res_id, ctid, model, kinds, value}`` (``value`` is the
        column's text: personal data, kept in memory only)."""
        self.env.flush_all()
        events = self.env["audit.event"].sudo()
        if hasattr(events, "_flush_capture_buffer"):
            # changes captured by the audit trail are inserted at commit:
            # insert them now, so that the scan reads them too
            events._flush_capture_buffer()
        stats = {"tables": 0, "columns": 0, "seconds": 0.0}
        if not identifiers:
            return [], stats
        started = time.monotonic()
        pattern = identifiers.sql_pattern()
        tables, _excluded = self._text_columns()
        models_by_table = self._table_models()
        occurrences = []
        for table, has_id, columns in tables:
            stats["tables"] += 1
            stats["columns"] += len(columns)
            model = models_by_table.get(table)
            for start in range(0, len(columns), COLUMNS_PER_QUERY):
                chunk = columns[start : start + COLUMNS_PER_QUERY]
                for row_key, ctid, found in self._scan_columns(
                    table, has_id, chunk, pattern
                ):
                    for (column, ctype, notnull), value in zip(
                        chunk, found, strict=True
                    ):
                        if value is None:
                            continue
                        json_value = (
                            parse_json_text(value)
                            if ctype in ("json", "jsonb")
                            else None
                        )
                        occurrences.append(
                            {
                                "table": table,
                                "column": column,
                                "ctype": ctype,
                                "notnull": notnull,
                                "res_id": row_key,
                                "ctid": ctid,
                                "model": model._name if model is not None else None,
                                "kinds": identifiers.kinds_in(
                                    json_value if json_value is not None else value
                                ),
                                "value": value,
                            }
                        )
        stats["seconds"] = round(time.monotonic() - started, 3)
        return occurrences, stats

    @api.model
    def _scan_columns(self, table, has_id, columns, pattern):
        """Yield ``(id or None, ctid, [text or None per column])`` for every
        row of ``table`` where a column of ``columns`` matches ``pattern``;
        batches of ``ROWS_PER_BATCH`` rows, in id order."""
        cr = self.env.cr
        json_as_jsonb = True
        last_id = 0
        while True:
            texts = [
                self._column_text(column, ctype, json_as_jsonb)
                for column, ctype, _notnull in columns
            ]
            matches = [SQL("(%s ~* %s)", text, pattern) for text in texts]
            selected = SQL(", ").join(
                SQL("CASE WHEN %s THEN %s END", match, text)
                for match, text in zip(matches, texts, strict=True)
            )
            where = SQL(" OR ").join(matches)
            if has_id:
                query = SQL(
                    "SELECT id, ctid::text, %s FROM %s WHERE id > %s AND (%s) "
                    "ORDER BY id LIMIT %s",
                    selected,
                    SQL.identifier(table),
                    last_id,
                    where,
                    ROWS_PER_BATCH,
                )
            else:
                query = SQL(
                    "SELECT NULL, ctid::text, %s FROM %s WHERE %s",
                    selected,
                    SQL.identifier(table),
                    where,
                )
            try:
                with cr.savepoint(flush=False):
                    cr.execute(query)
                    rows = cr.fetchall()
            except psycopg2.Error as exc:
                if json_as_jsonb:
                    # e.g. a json value PostgreSQL cannot cast to jsonb
                    json_as_jsonb = False
                    continue
                _logger.warning(
                    "DSR leftover scan: %s could not be read (%s)", table, exc
                )
                raise
            for row in rows:
                yield row[0], row[1], list(row[2:])
            if not has_id or len(rows) < ROWS_PER_BATCH:
                return
            last_id = rows[-1][0]

    @api.model
    def _column_text(self, column, ctype, json_as_jsonb=True):
        ident = SQL.identifier(column)
        if ctype == "json" and json_as_jsonb:
            # jsonb's text has no \\u escapes of non-ASCII letters
            return SQL("%s::jsonb::text", ident)
        if ctype in ("json", "jsonb"):
            return SQL("%s::text", ident)
        return ident

    # -- what to do with an occurrence --------------------------------------
    @api.model
    def _occurrence_policy(self, occurrence, context):
        """``(action, basis)`` for one occurrence: ``delete`` the row,
        ``redact`` the value in place, or ``keep`` it (``basis``: the legal
        basis, or None when a person must review it). Hook."""
        model_name = occurrence["model"]
        if occurrence["table"] == "audit_event" or (
            model_name and model_name.startswith("audit.")
        ):
            return "keep", AUDIT_BASIS
        if not model_name or occurrence["res_id"] is None:
            return "redact", None
        model = self.env[model_name]
        record = (
            model.sudo().with_context(active_test=False).browse(occurrence["res_id"])
        )
        if model._transient:
            return "delete", None
        if model_name == "bus.bus":
            return "delete", None
        if (
            model_name == "mail.mail"
            and record.exists()
            and record.state in UNSENT_MAIL_STATES
        ):
            return "delete", None
        if (
            model_name == "res.partner"
            and occurrence["column"] in PARTNER_NAME_COLUMNS
            and occurrence["kinds"] == ["name"]
            and occurrence["res_id"] not in context.get("partner_ids", ())
        ):
            # someone else with the same name: their name stays theirs
            return "keep", HOMONYM_BASIS
        key = (model_name, occurrence["res_id"])
        if key in context.get("kept", {}):
            return "keep", context["kept"][key]
        erasure = self.env["dsr.erasure"].sudo()
        if not record.exists():
            return "redact", None
        reason = erasure._retention_reason(record)
        if reason:
            return self._retained_policy(record, occurrence["column"], reason)
        if model_name == "ir.attachment" and record.res_model in self.env:
            owner = (
                self.env[record.res_model]
                .sudo()
                .with_context(active_test=False)
                .browse(record.res_id)
                .exists()
            )
            owner_reason = owner and erasure._retention_reason(owner)
            if owner_reason:
                return "keep", owner_reason
        if erasure._is_protected_model(model_name) and (
            model_name not in REDACTABLE_PROTECTED
        ):
            return "keep", None
        return "redact", None

    @api.model
    def _retained_policy(self, record, column, reason):
        """A value in a record kept for a legal obligation: anonymised in
        place where the law allows (free text, not covered by a hash),
        otherwise kept with its basis."""
        if column not in RETAINED_REDACTABLE.get(record._name, ()):
            return "keep", reason
        move = (
            record.move_id
            if record._name == "account.move.line"
            else record
            if record._name == "account.move"
            else None
        )
        if move is not None and "inalterable_hash" in move._fields:
            hashed = move.inalterable_hash and column in (
                record._get_integrity_hash_fields()
            )
            if hashed:
                return "keep", f"{reason}; {HASHED_BASIS}"
        return "redact", reason

    # -- treatment ------------------------------------------------------------
    @api.model
    def _treat(self, occurrences, identifiers, context):
        """Apply the policy to every occurrence; return the list of what was
        done (``{table, record_id, column, action, basis}``)."""
        done, modified = [], {}
        deleted = set()
        for occurrence in occurrences:
            action, basis = self._occurrence_policy(occurrence, context)
            key = (occurrence["table"], occurrence["res_id"] or occurrence["ctid"])
            if action == "keep" or key in deleted:
                continue
            if action == "delete":
                if self._delete_row(occurrence):
                    deleted.add(key)
                    done.append(self._public(occurrence, "deleted", basis))
                continue
            if self._redact_value(occurrence, identifiers):
                done.append(self._public(occurrence, "anonymised in place", basis))
                if occurrence["model"] and occurrence["res_id"]:
                    modified.setdefault(occurrence["model"], {}).setdefault(
                        occurrence["res_id"], set()
                    ).add(occurrence["column"])
        self.env.invalidate_all()
        for model_name, by_id in modified.items():
            model = self.env[model_name].sudo().with_context(active_test=False)
            for res_id, columns in by_id.items():
                fnames = [
                    fname
                    for fname in columns
                    if fname in model._fields and model._fields[fname].store
                ]
                record = model.browse(res_id).exists()
                if record and fnames:
                    # stored fields computed from the redacted ones follow
                    record.modified(fnames)
        self.env.flush_all()
        return done

    @api.model
    def _public(self, occurrence, action, basis=None):
        """What the certificate says of an occurrence (never its value)."""
        return {
            "table": occurrence["table"],
            "record_id": occurrence["res_id"],
            "column": occurrence["column"],
            "model": occurrence["model"],
            "kinds": occurrence["kinds"],
            "action": action,
            "basis": basis,
        }

    @api.model
    def _delete_row(self, occurrence):
        model_name, res_id = occurrence["model"], occurrence["res_id"]
        try:
            with self.env.cr.savepoint():
                if model_name and res_id:
                    record = self.env[model_name].sudo().browse(res_id).exists()
                    record.unlink()
                else:
                    self.env.cr.execute(
                        SQL(
                            "DELETE FROM %s WHERE ctid = %s::tid",
                            SQL.identifier(occurrence["table"]),
                            occurrence["ctid"],
                        )
                    )
                self.env.flush_all()
        except Exception as exc:
            self.env.invalidate_all()
            _logger.warning(
                "DSR leftover scan: %s #%s not deleted (%s)",
                occurrence["table"],
                res_id or occurrence["ctid"],
                str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            )
            return False
        return True

    @api.model
    def _redact_value(self, occurrence, identifiers):
        """Replace every identifier in the stored value (SQL: no tracking,
        no mail, no audit capture of the old value)."""
        ctype = occurrence["ctype"]
        if ctype in ("json", "jsonb"):
            value = parse_json_text(occurrence["value"])
            if value is None:
                return False
            new, count = identifiers.redact_json(value, REPLACEMENT)
            text = json.dumps(new, ensure_ascii=False)
            new_param = (
                SQL("%s::jsonb", text) if ctype == "jsonb" else SQL("%s::json", text)
            )
        else:
            new, count = identifiers.redact(occurrence["value"], REPLACEMENT)
            if new.strip() == REPLACEMENT and not occurrence.get("notnull"):
                new = None  # the whole value was the identifier: emptied
            new_param = SQL("%s", new)
        if not count:
            return False
        where = (
            SQL("id = %s", occurrence["res_id"])
            if occurrence["res_id"] is not None
            else SQL("ctid = %s::tid", occurrence["ctid"])
        )
        try:
            with self.env.cr.savepoint(flush=False):
                self.env.cr.execute(
                    SQL(
                        "UPDATE %s SET %s = %s WHERE %s",
                        SQL.identifier(occurrence["table"]),
                        SQL.identifier(occurrence["column"]),
                        new_param,
                        where,
                    )
                )
                if not self.env.cr.rowcount:
                    return False  # the row went with another (e.g. cascade)
        except psycopg2.Error as exc:
            _logger.warning(
                "DSR leftover scan: %s.%s #%s not anonymised (%s)",
                occurrence["table"],
                occurrence["column"],
                occurrence["res_id"] or occurrence["ctid"],
                str(exc).splitlines()[0][:200],
            )
            return False
        return True

    # -- the whole step ---------------------------------------------------------
    @api.model
    def _run(self, identifiers, context):
        """Scan, treat, redact the audit trail, scan again; return the
        result the certificate carries (no personal data in it).

        ``context``: ``label`` (the request reference), ``partner_ids``,
        ``user_ids``, ``kept`` (``{(model, id): reason}`` of the records the
        officer decided to keep).
        """
        first, first_stats = self._scan(identifiers)
        treated = self._treat(first, identifiers, context)
        audit_redacted = self._redact_audit(identifiers, context)
        final, stats = self._scan(identifiers)
        remaining = []
        for occurrence in final:
            action, basis = self._occurrence_policy(occurrence, context)
            entry = self._public(occurrence, "kept", basis)
            if action == "keep" and basis is None:
                entry["note"] = REVIEW_NOTE
            elif action != "keep":
                entry["action"] = "left"
                entry["basis"] = None
                entry["note"] = "could not be anonymised (see the server log)"
            remaining.append(entry)
        _tables, excluded = self._text_columns()
        result = {
            "result": _result_text(remaining),
            "clean": all(entry["basis"] for entry in remaining),
            "identifiers_searched": identifiers.counts(),
            "identifiers_not_searched": dict(sorted(identifiers.skipped.items())),
            "tables": stats["tables"],
            "columns": stats["columns"],
            "seconds": round(first_stats["seconds"] + stats["seconds"], 3),
            "found_first": len(first),
            "treated_count": len(treated),
            "treated": treated[:LISTED_MAX],
            "audit_events_redacted": audit_redacted,
            "remaining_count": len(remaining),
            "remaining": remaining[:LISTED_MAX],
            "excluded": excluded,
            "replacement": REPLACEMENT,
        }
        return result

    @api.model
    def _redact_audit(self, identifiers, context):
        """Erase the subject's values from the audit trail (its own
        redaction keeps the chain verifiable). Returns the events changed."""
        events = self.env["audit.event"].sudo()
        if not hasattr(events, "_redact_subject"):
            _logger.warning("DSR: the audit trail has no redaction; events kept")
            return 0
        return events._redact_subject(
            identifiers.for_audit(
                context.get("partner_ids", ()), context.get("user_ids", ())
            ),
            context.get("label") or "erasure",
        )
