"""Export of the audit log for auditors (CSV, JSON, XLSX), streamed."""

import datetime as dt

from odoo import _lt, api, fields, models
from odoo.exceptions import UserError

from suite_core import writers

from ..lib import chain

BATCH_SIZE = 1000
DELIMITERS = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}
MIMETYPES = {
    "csv": "text/csv",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# What an export reads of each event: the hashed fields and the chain link.
READ_FIELDS = [*chain.CANONICAL_FIELDS, "sequence", "chain_hash"]
TABULAR_HEADER = [
    _lt("Timestamp"),
    _lt("User"),
    _lt("Action"),
    _lt("Resource"),
    _lt("IP address"),
    _lt("Result"),
    _lt("Details"),
    _lt("User agent"),
    _lt("Message"),
    _lt("Event UUID"),
    _lt("Chain position"),
]


def _tz_names(_model=None):
    """Selection of time zones (Odoo calls it with the model when rendering)."""
    import pytz

    return [(name, name) for name in pytz.common_timezones]


class AuditExportWizard(models.TransientModel):
    _name = "audit.export.wizard"
    _description = "Export the Audit Log"

    date_from = fields.Datetime(string="From")
    date_to = fields.Datetime(string="To")
    action = fields.Selection(
        selection=lambda self: self.env["audit.event"]._fields["action"].selection,
    )
    user_ids = fields.Many2many("res.users", string="Users")
    result = fields.Selection([("success", "Success"), ("failure", "Failure")])
    file_format = fields.Selection(
        [("csv", "CSV"), ("json", "JSON"), ("xlsx", "Excel (XLSX)")],
        string="Format",
        required=True,
        default="csv",
    )
    delimiter = fields.Selection(
        [
            ("comma", "Comma (,)"),
            ("semicolon", "Semicolon (;)"),
            ("tab", "Tab"),
            ("pipe", "Pipe (|)"),
        ],
        default="comma",
        required=True,
    )
    bom = fields.Boolean(
        string="UTF-8 BOM (for Excel)",
        help="Start the CSV file with a byte order mark so Excel detects UTF-8.",
    )
    tz = fields.Selection(
        _tz_names,
        string="Time Zone",
        required=True,
        default=lambda self: self.env.user.tz or "UTC",
    )

    @api.constrains("date_from", "date_to")
    def _check_dates(self):
        for wizard in self:
            if (
                wizard.date_from
                and wizard.date_to
                and wizard.date_from > wizard.date_to
            ):
                raise UserError(self.env._("The start date is after the end date."))

    def _get_domain(self):
        """Hook: the events selected by the filters."""
        self.ensure_one()
        domain = []
        if self.date_from:
            domain.append(("timestamp", ">=", self.date_from))
        if self.date_to:
            domain.append(("timestamp", "<=", self.date_to))
        if self.action:
            domain.append(("action", "=", self.action))
        if self.user_ids:
            domain.append(("user_id", "in", self.user_ids.ids))
        if self.result:
            domain.append(("result", "=", self.result))
        return domain

    def _filename(self):
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"audit-log-{self.env.cr.dbname}-{stamp}.{self.file_format}"

    def action_export(self):
        self.ensure_one()
        self.check_access("write")  # the opener's own dialog only
        self.env["audit.event"].check_access("read")
        return {
            "type": "ir.actions.act_url",
            "url": f"/audit_export/download/{self.id}",
            "target": "download",
        }

    def _iter_batches(self):
        """Events as dicts, oldest first, ``BATCH_SIZE`` per query (id cursor).

        Runs as the requesting user (record rules apply), never sudo.
        """
        events = self.env["audit.event"]
        domain = self._get_domain()
        last_id = 0
        while True:
            batch = events.search(
                [*domain, ("id", ">", last_id)], order="id", limit=BATCH_SIZE
            )
            if not batch:
                return
            rows = batch.read(READ_FIELDS)
            last_id = batch[-1].id
            batch.invalidate_recordset()
            yield rows

    def _write_export(self, stream):
        """Write the selected events to ``stream``; returns the event count."""
        self.ensure_one()
        fmt = self.file_format
        labels = dict(
            self.env["audit.event"]._fields["action"]._description_selection(self.env)
        )
        results = {"success": self.env._("Success"), "failure": self.env._("Failure")}
        if fmt == "json":
            writer = writers.JsonArrayWriter(stream, tz=self.tz)
        else:
            header = [str(label) for label in TABULAR_HEADER]
            header[0] = f"{header[0]} ({self.tz})" if fmt == "xlsx" else header[0]
            options = {"tz": self.tz}
            if fmt == "csv":
                options.update(delimiter=DELIMITERS[self.delimiter], bom=self.bom)
            else:
                options["sheet_title"] = self.env._("Audit Log")
            writer = writers.open_writer(fmt, stream, header, **options)
        count = 0
        with writer:
            for rows in self._iter_batches():
                for row in rows:
                    if fmt == "json":
                        writer.write(self._json_item(row))
                    else:
                        writer.writerow(self._tabular_row(row, labels, results))
                    count += 1
        return count

    @staticmethod
    def _user_label(row):
        if row["user_name"] and row["login"] and row["user_name"] != row["login"]:
            return f"{row['user_name']} ({row['login']})"
        return row["user_name"] or row["login"] or ""

    @staticmethod
    def _resource_label(row):
        if not row["res_model"]:
            return row["res_name"] or ""
        ref = (
            f"{row['res_model']},{row['res_id']}" if row["res_id"] else row["res_model"]
        )
        return f"{row['res_name']} ({ref})" if row["res_name"] else ref

    def _tabular_row(self, row, labels, results):
        return [
            row["timestamp"],
            self._user_label(row),
            labels.get(row["action"], row["action"]),
            self._resource_label(row),
            row["ip_address"] or "",
            results.get(row["result"], row["result"]),
            row["details"] or "",
            row["user_agent"] or "",
            row["message"] or "",
            row["uuid"],
            row["sequence"] or None,
        ]

    @staticmethod
    def _json_item(row):
        return {
            "timestamp": row["timestamp"],
            "user": {
                "id": row["user_uid"] or None,
                "login": row["login"] or None,
                "name": row["user_name"] or None,
            },
            "action": row["action"],
            "result": row["result"],
            "resource": {
                "model": row["res_model"] or None,
                "id": row["res_id"] or None,
                "name": row["res_name"] or None,
            },
            "ip_address": row["ip_address"] or None,
            "user_agent": row["user_agent"] or None,
            "details": row["details"] or None,
            "message": row["message"] or None,
            "uuid": row["uuid"],
            "chain_position": row["sequence"] or None,
            "chain_hash": row["chain_hash"] or None,
        }

    def _log_export(self, count):
        self.env["audit.event"].log_event(
            "export",
            res_model="audit.event",
            res_name=self.env._("Audit log export"),
            details={
                "format": self.file_format,
                "events": count,
                "filters": {
                    "date_from": self.date_from,
                    "date_to": self.date_to,
                    "action": self.action or None,
                    "users": self.user_ids.ids,
                    "result": self.result or None,
                },
            },
        )
