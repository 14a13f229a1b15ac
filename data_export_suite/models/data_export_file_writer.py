"""Export file writer: an export job's file in its format.

CSV, Excel and JSON through ``suite_core.writers`` (the header row:
technical names or labels as on screen), invoices as the Invoicing app's PDF
report (one PDF, or a ZIP of them). The bytes go to an encrypted file of the
store (``data.export.file.store``). Inherited by ``data.export.job``: reads
the job's format options.
"""

import logging

from odoo import api, models

from suite_core.writers import open_writer

from ..lib.serialize import safe_filename
from ..lib.zipper import write_zip

_logger = logging.getLogger(__name__)

MIMETYPES = {
    "csv": "text/csv",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
    "zip": "application/zip",
}
#: Invoice PDFs: the report of the Invoicing app.
INVOICE_REPORT = "account.account_invoices"


class DataExportFileWriter(models.AbstractModel):
    _name = "data.export.file.writer"
    _description = "Export File Writer"

    def _file_type(self, total):
        fmt = self.export_format
        zipped = self.password_protected or (fmt == "pdf" and total != 1)
        ext = "zip" if zipped else fmt
        return ext, MIMETYPES[ext]

    def _write_table(
        self, Profile, Model, domain, columns, paths, payload, batch_size, report
    ):
        job = self.sudo()
        user_tz = Profile.env.context.get("tz") or None
        options = {"tz": user_tz}
        if job.export_format == "csv":
            options.update(delimiter=job.csv_delimiter or ",", bom=job.csv_bom)
        elif job.export_format == "xlsx":
            options["sheet_title"] = job.profile_id.name or job.model_name
        header = None
        if job.export_format != "json":
            header = (
                [c.path for c in columns]
                if job.header_style == "names"
                else self._column_labels(columns)
            )
        try:
            writer = open_writer(job.export_format, payload, header, **options)
        except ValueError as exc:
            # e.g. an unknown user time zone: fall back to UTC, say so in the log
            _logger.warning(
                "Export writer options %s refused (%s): using UTC", options, exc
            )
            options["tz"] = None
            writer = open_writer(job.export_format, payload, header, **options)
        if job.export_format == "json":
            for batch in Profile._iter_record_batches(Model, domain, batch_size):
                for item in Profile._serialize_records(batch, paths, job.json_depth):
                    writer.write(item)
                report(len(batch))
        else:
            for rows in Profile._iter_table_batches(Model, domain, columns, batch_size):
                for row in rows:
                    writer.writerow(row)
                report(len(rows))
        writer.close()

    @api.model
    def _column_labels(self, columns):
        """Header labels as on screen ("Country / Country Name"); a label
        two columns share gets its technical path in brackets."""
        labels = [column.label or column.path for column in columns]
        seen = {}
        for label in labels:
            seen[label] = seen.get(label, 0) + 1
        return [
            label if seen[label] == 1 else f"{label} ({column.path})"
            for label, column in zip(labels, columns, strict=True)
        ]

    def _write_pdf(
        self, Profile, Model, domain, encrypted, password, total, batch_size, report
    ):
        Report = Profile.env["ir.actions.report"]

        def render(invoice):
            content, _kind = Report._render_qweb_pdf(
                INVOICE_REPORT, res_ids=invoice.ids
            )
            return content

        if total == 1 and not password:
            for batch in Profile._iter_record_batches(Model, domain, batch_size):
                encrypted.write(render(batch))
                report(len(batch))
            return

        def members():
            for batch in Profile._iter_record_batches(Model, domain, batch_size):
                for invoice in batch:
                    name = safe_filename(invoice.name or f"invoice-{invoice.id}")
                    yield f"{name}-{invoice.id}.pdf", render(invoice)
                report(len(batch))

        write_zip(encrypted, members(), password=password)
