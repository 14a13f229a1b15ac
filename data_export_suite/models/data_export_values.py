"""Values: reading and serialising what an export writes.

Tabular rows (CSV/XLSX) through the ORM or, for plain stored columns, one SQL
query per batch built by the ORM's own ``_search`` (record rules apply);
JSON-ready dicts with relations expanded to a depth. Every path is resolved
by the field access rules first. Inherited by ``data.export.profile``.
"""

import datetime as dt
import json

from odoo import api, models
from odoo.osv import expression
from odoo.tools import SQL

from ..lib.serialize import get_zone, iso_datetime, json_value

#: JSON exports expand related records at most this many levels deep.
MAX_JSON_DEPTH = 3
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


class DataExportValues(models.AbstractModel):
    _name = "data.export.values"
    _inherit = ["data.export.field.access"]
    _description = "Export Values"

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
