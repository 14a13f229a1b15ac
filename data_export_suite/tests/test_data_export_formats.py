import csv
import datetime as dt
import io
import json
from zoneinfo import ZoneInfo

import openpyxl

from odoo.exceptions import AccessError
from odoo.tests import tagged

from suite_core.writers import neutralize

from .common import ExportCase

BRUSSELS = ZoneInfo("Europe/Brussels")


@tagged("post_install", "-at_install")
class TestExportFormats(ExportCase):
    FIELDS = "id\nname\nemail\nphone\nstreet\ncity\ncountry_id\ncreate_date"

    def _partners_as_exporter(self):
        return self.partners.with_user(self.exporter).sorted("id")

    def test_csv_round_trip_field_by_field(self):
        job = self.export(self.exporter, field_paths=self.FIELDS, export_format="csv")
        self.assertEqual(job.state, "done")
        self.assertEqual(job.records_done, 3)
        text = job._read_file().decode("utf-8")
        self.assertFalse(text.startswith("\ufeff"))
        rows = list(csv.reader(io.StringIO(text, newline="")))
        self.assertEqual(rows[0], self.FIELDS.split("\n"))
        self.assertEqual(len(rows), 4)
        for row, partner in zip(rows[1:], self._partners_as_exporter(), strict=True):
            self.assertEqual(int(row[0]), partner.id)
            self.assertEqual(row[2], neutralize(partner.email))
            # "+32 ..." starts like a formula: the writer prefixes a quote.
            self.assertEqual(row[3], neutralize(partner.phone) or "")
            self.assertEqual(row[4], partner.street or "")
            self.assertEqual(row[5], partner.city or "")
            self.assertEqual(row[6], partner.country_id.display_name or "")
            created = dt.datetime.fromisoformat(row[7])
            self.assertIsNotNone(created.utcoffset())
            self.assertEqual(
                created.astimezone(dt.UTC).replace(tzinfo=None), partner.create_date
            )
        self.assertEqual(rows[1][1], "Alice Export")
        self.assertIn('"Rue ""Haute"", 1\nbox 2"', text)  # RFC 4180 quoting

    def test_csv_delimiter_and_bom(self):
        job = self.export(
            self.exporter,
            field_paths="id\nname",
            export_format="csv",
            csv_delimiter=";",
            csv_bom=True,
        )
        data = job._read_file()
        self.assertTrue(data.startswith(b"\xef\xbb\xbf"))
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
        self.assertEqual(rows[0], ["id", "name"])
        self.assertEqual([int(r[0]) for r in rows[1:]], sorted(self.partners.ids))

    def test_related_paths(self):
        job = self.export(
            self.exporter,
            field_paths="id\ncountry_id.code\ncountry_id.name",
            export_format="csv",
        )
        rows = list(csv.reader(io.StringIO(job._read_file().decode())))
        self.assertEqual(rows[0], ["id", "country_id.code", "country_id.name"])
        alice = next(r for r in rows[1:] if int(r[0]) == self.partners[0].id)
        self.assertEqual(alice[1:], ["BE", "Belgium"])
        bob = next(r for r in rows[1:] if int(r[0]) == self.partners[1].id)
        self.assertEqual(bob[1:], ["", ""])

    def test_json_round_trip_nested_and_metadata(self):
        job = self.export(
            self.exporter,
            field_paths="id\nname\ncountry_id",
            export_format="json",
            json_depth=1,
        )
        items = json.loads(job._read_file())
        self.assertEqual(len(items), 3)
        for item, partner in zip(items, self._partners_as_exporter(), strict=True):
            self.assertEqual(item["id"], partner.id)
            self.assertEqual(item["name"], partner.name)
            # Metadata: create/write date (ISO 8601 with the user's offset)
            # and users as {id, display_name}.
            created = dt.datetime.fromisoformat(item["create_date"])
            self.assertEqual(
                created.utcoffset(),
                partner.create_date.replace(tzinfo=dt.UTC)
                .astimezone(BRUSSELS)
                .utcoffset(),
            )
            self.assertEqual(
                created.astimezone(dt.UTC).replace(tzinfo=None), partner.create_date
            )
            self.assertEqual(item["create_uid"]["id"], partner.create_uid.id)
            self.assertIn("write_date", item)
            if partner.country_id:
                # depth 1: the related record expanded with its own fields.
                self.assertEqual(item["country_id"]["id"], self.belgium.id)
                self.assertEqual(item["country_id"]["display_name"], "Belgium")
                self.assertEqual(item["country_id"]["code"], "BE")
            else:
                self.assertIsNone(item["country_id"])

    def test_serialize_records_api(self):
        Profile = self.env["data.export.profile"].with_user(self.exporter)
        partners = self._partners_as_exporter()
        items = Profile._serialize_records(
            partners, ["id", "country_id", "category_id"]
        )
        self.assertEqual(
            items[0]["country_id"], {"id": self.belgium.id, "display_name": "Belgium"}
        )
        self.assertEqual(items[0]["category_id"], [])
        names = Profile._exportable_fields("res.partner")
        self.assertEqual(names[0], "id")
        self.assertIn("email", names)
        self.assertNotIn("image_1920", names)  # binary only on request

    def test_serialize_records_reads_only_the_requested_fields(self):
        Profile = self.env["data.export.profile"].with_user(self.exporter)
        partners = self._partners_as_exporter()
        partners.invalidate_recordset()
        items = Profile._serialize_records(partners, ["id"])
        self.assertEqual(items, [{"id": p.id} for p in partners])
        # Nothing else was read: read([]) would have computed every field,
        # non-stored ones included (with Invoicing, even fields computed
        # from invoices the exporter may not read: an AccessError).
        cache = self.env.cache
        for fname in ("display_name", "contact_address", "export_last_activity_date"):
            field = partners._fields[fname]
            self.assertFalse(any(cache.contains(p, field) for p in partners), fname)
        items = Profile._serialize_records(partners, ["id", "email"])
        self.assertEqual([set(item) for item in items], [{"id", "email"}] * 3)
        self.assertEqual([i["email"] for i in items], partners.mapped("email"))
        # Ids alone are still access-checked like a read.
        company = self.env["res.company"].create({"name": "H12 Hidden Co"})
        hidden = self.env["res.partner"].create(
            {"name": "H12 Hidden", "company_id": company.id}
        )
        with self.assertRaises(AccessError):
            Profile._serialize_records(hidden.with_user(self.exporter), ["id"])

    def test_xlsx_typed_cells(self):
        job = self.export(
            self.exporter, field_paths="id\nname\ncreate_date", export_format="xlsx"
        )
        self.assertEqual(
            job.file_mimetype,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
        book = openpyxl.load_workbook(io.BytesIO(job._read_file()))
        rows = list(book.active.iter_rows(values_only=True))
        self.assertEqual(list(rows[0]), ["id", "name", "create_date"])
        for row, partner in zip(rows[1:], self._partners_as_exporter(), strict=True):
            self.assertIsInstance(row[0], int)
            self.assertEqual(row[0], partner.id)
            self.assertEqual(row[1], partner.name)
            self.assertIsInstance(row[2], dt.datetime)  # a real date-time cell
            local = partner.create_date.replace(tzinfo=dt.UTC).astimezone(BRUSSELS)
            self.assertLess(
                abs(row[2] - local.replace(tzinfo=None)), dt.timedelta(milliseconds=1)
            )
        # Dates and floats are typed cells too.
        job = self.export(
            self.exporter,
            model_name="res.currency.rate",
            domain=self.rate_domain,
            field_paths="id\nname\nrate",
            export_format="xlsx",
        )
        rows = list(
            openpyxl.load_workbook(io.BytesIO(job._read_file())).active.iter_rows(
                values_only=True
            )
        )
        self.assertEqual(len(rows), 4)
        for row, rate in zip(rows[1:], self.rates.sorted("id"), strict=True):
            self.assertEqual(row[0], rate.id)
            self.assertIsInstance(row[1], dt.datetime)  # a date cell
            self.assertEqual(row[1].date(), rate.name)
            self.assertIsInstance(row[2], float)
            self.assertAlmostEqual(row[2], rate.rate)

    def test_formula_injection_is_neutralized(self):
        evil = self.partners[2]
        job = self.export(
            self.exporter, field_paths="id\nname\nemail", export_format="csv"
        )
        rows = list(csv.reader(io.StringIO(job._read_file().decode())))
        row = next(r for r in rows if r[0] == str(evil.id))
        self.assertEqual(row[1], "'" + evil.name)
        self.assertEqual(row[2], "'+cmd@example.com")
        job = self.export(self.exporter, field_paths="id\nname", export_format="xlsx")
        sheet = openpyxl.load_workbook(io.BytesIO(job._read_file())).active
        cell = next(c[1] for c in sheet.iter_rows() if c[0].value == evil.id)
        self.assertEqual(cell.data_type, "s")  # text, never a formula
        self.assertEqual(cell.value, evil.name)
        self.assertTrue(cell.quotePrefix)

    def test_filters_and_date_range(self):
        # Date range on a date field: only the rate of 2024-03-01 in Feb..Jun 29.
        rate_values = {
            "model_name": "res.currency.rate",
            "domain": self.rate_domain,
            "field_paths": "id",
            "export_format": "csv",
            "date_field": "name",
            "date_from": dt.date(2024, 2, 1),
        }
        job = self.export(self.exporter, date_to=dt.date(2024, 6, 29), **rate_values)
        ids = [
            int(r[0])
            for r in csv.reader(io.StringIO(job._read_file().decode()))
            if r[0] != "id"
        ]
        self.assertEqual(ids, [self.rates[1].id])
        # The upper bound is inclusive.
        job = self.export(self.exporter, date_to=dt.date(2024, 6, 30), **rate_values)
        self.assertEqual(job.records_done, 2)
        # A domain filter.
        job = self.export(
            self.exporter,
            field_paths="id",
            export_format="json",
            domain=repr([("id", "in", self.partners.ids), ("city", "=", "Ghent")]),
        )
        self.assertEqual(
            [i["id"] for i in json.loads(job._read_file())], [self.partners[1].id]
        )
        # A datetime field range uses whole days of the user's time zone.
        today = dt.date.today()
        job = self.export(
            self.exporter,
            field_paths="id",
            export_format="json",
            date_field="create_date",
            date_from=today - dt.timedelta(1),
            date_to=today + dt.timedelta(1),
        )
        self.assertEqual(job.records_done, 3)
        job = self.export(
            self.exporter,
            field_paths="id",
            export_format="json",
            date_field="create_date",
            date_to=today - dt.timedelta(2),
        )
        self.assertEqual(job.records_done, 0)

    def test_state_filter(self):
        admin = self.env.ref("base.user_admin")
        job = self.export(
            admin,
            model_name="ir.module.module",
            domain="[]",
            field_paths="id\nname\nstate",
            export_format="json",
            state_values="installed",
        )
        names = {i["name"] for i in json.loads(job._read_file())}
        self.assertIn("data_export_suite", names)
        self.assertEqual(
            {i["state"] for i in json.loads(job._read_file())}, {"installed"}
        )
        expected = self.env["ir.module.module"].search_count(
            [("state", "=", "installed")]
        )
        self.assertEqual(job.records_done, expected)
        with self.assertRaises(Exception) as caught:
            self.export(
                self.env.ref("base.user_admin"),
                model_name="ir.module.module",
                domain="[]",
                field_paths="id",
                state_values="bogus",
            )
        self.assertIn("bogus", str(caught.exception))
