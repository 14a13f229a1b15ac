"""Exports with the Invoicing app installed (skipped without it).

Run with ``python3 scripts/odoo_tests.py --with account data_export_suite``.
"""

import csv
import datetime as dt
import io
import json
import os
import zipfile
from unittest import SkipTest
from unittest.mock import patch

from odoo import Command
from odoo.exceptions import AccessError
from odoo.tests import HttpCase, new_test_user, tagged

from suite_core.keyring import generate_key_line

from .common import ExportCase

PDF_MAGIC = b"%PDF"


def setup_invoicing(cls, alice, bob):
    """A minimal chart, an accountant, 2 posted invoices of ``alice``, a
    draft of ``bob`` and a posted customer payment of ``alice``."""
    company = cls.env.company
    if not company.chart_template:
        # The minimal chart Odoo's own accounting tests use without a
        # localization: journals, receivable/income accounts, taxes.
        cls.env["account.chart.template"].try_loading(
            "generic_coa", company=company, install_demo=False
        )
    cls.accountant = new_test_user(
        cls.env,
        login="h12_accountant",
        tz="Europe/Brussels",
        groups="base.group_user,account.group_account_invoice,"
        "data_export_suite.export_group_user",
    )
    cls.alice, cls.bob = alice, bob
    Move = cls.env["account.move"]

    def invoice(partner, day, lines):
        return Move.create(
            {
                "move_type": "out_invoice",
                "partner_id": partner.id,
                "invoice_date": day,
                "invoice_line_ids": [
                    Command.create(
                        {
                            "name": name,
                            "quantity": qty,
                            "price_unit": price,
                            "tax_ids": [],
                        }
                    )
                    for name, qty, price in lines
                ],
            }
        )

    cls.inv_alice_1 = invoice(cls.alice, "2024-02-10", [("Consulting", 2, 150.0)])
    cls.inv_alice_2 = invoice(
        cls.alice, "2024-05-20", [("Audit", 1, 120.0), ("Travel", 1, 80.0)]
    )
    cls.inv_bob_draft = invoice(cls.bob, "2024-06-01", [("Draft", 1, 999.0)])
    (cls.inv_alice_1 | cls.inv_alice_2).action_post()
    cls.posted = cls.inv_alice_1 | cls.inv_alice_2
    cls.invoices = cls.posted | cls.inv_bob_draft
    bank = cls.env["account.journal"].search(
        [("type", "=", "bank"), ("company_id", "=", company.id)], limit=1
    )
    cls.payment = cls.env["account.payment"].create(
        {
            "payment_type": "inbound",
            "partner_type": "customer",
            "partner_id": cls.alice.id,
            "amount": 250.0,
            "date": "2024-05-25",
            "journal_id": bank.id,
        }
    )
    cls.payment.action_post()


@tagged("post_install", "-at_install")
class TestExportAccounting(ExportCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if "account.move" not in cls.env:
            raise SkipTest("the Invoicing app (account) is not installed")
        setup_invoicing(cls, cls.partners[0], cls.partners[1])

    # -- helpers ----------------------------------------------------------
    def profile(self, key):
        profile = self.env["data.export.profile"].search([("ready_made_key", "=", key)])
        self.assertEqual(len(profile), 1, key)
        return profile

    def export_profile(self, user, key, domain, export_format="csv", **extra):
        """Export a ready-made profile through the wizard, as ``user``."""
        Wizard = self.env["data.export.wizard"].with_user(user)
        wizard = Wizard.new({"profile_id": self.profile(key).id})
        wizard._onchange_profile_id()
        values = {
            "profile_id": wizard.profile_id.id,
            "model_name": wizard.model_name,
            "field_paths": wizard.field_paths,
            "domain": domain,
            "export_format": export_format,
            # technical column names: the rows below are read by field name
            "header_style": "names",
            **extra,
        }
        wizard = Wizard.create(values)
        wizard.action_export()
        job = self.env["data.export.job"].search(
            [("user_id", "=", user.id)], order="id desc", limit=1
        )
        self.assertEqual(job.state, "done", job.error_message)
        return job

    @staticmethod
    def csv_rows(job):
        rows = list(csv.DictReader(io.StringIO(job._read_file().decode("utf-8"))))
        return {int(row["id"]): row for row in rows}

    # -- ready-made profiles ----------------------------------------------
    def test_invoices_profile_csv(self):
        job = self.export_profile(
            self.accountant, "invoices", repr([("id", "in", self.invoices.ids)])
        )
        rows = self.csv_rows(job)
        self.assertEqual(set(rows), set(self.invoices.ids))
        for move in self.invoices:
            row = rows[move.id]
            self.assertEqual(row["partner_id"], move.partner_id.display_name)
            self.assertEqual(row["invoice_date"], move.invoice_date.isoformat())
            self.assertEqual(row["invoice_date_due"], move.invoice_date_due.isoformat())
            self.assertAlmostEqual(float(row["amount_total"]), move.amount_total)
            self.assertAlmostEqual(float(row["amount_untaxed"]), move.amount_untaxed)
            self.assertAlmostEqual(float(row["amount_residual"]), move.amount_residual)
            self.assertEqual(row["currency_id"], move.currency_id.display_name)
            self.assertEqual(row["move_type"], "Customer Invoice")
        first, second = rows[self.inv_alice_1.id], rows[self.inv_alice_2.id]
        self.assertEqual(float(first["amount_total"]), 300.0)
        self.assertEqual(float(second["amount_total"]), 200.0)
        self.assertEqual(first["invoice_date"], "2024-02-10")
        self.assertEqual(first["partner_id"], "Alice Export")
        self.assertEqual(first["name"], self.inv_alice_1.name)
        self.assertNotIn(first["name"], ("", "/"))
        self.assertEqual(first["state"], "Posted")
        self.assertEqual(rows[self.inv_bob_draft.id]["state"], "Draft")
        self.assertAlmostEqual(
            float(rows[self.inv_bob_draft.id]["amount_total"]), 999.0
        )

    def test_invoices_profile_state_and_date_filters(self):
        job = self.export_profile(
            self.accountant,
            "invoices",
            repr([("id", "in", self.invoices.ids)]),
            state_values="posted",
            date_field="invoice_date",
            date_from=dt.date(2024, 5, 1),
            date_to=dt.date(2024, 5, 31),
        )
        self.assertEqual(list(self.csv_rows(job)), self.inv_alice_2.ids)

    def test_transactions_payments_profile_csv(self):
        job = self.export_profile(
            self.accountant, "payments", repr([("id", "=", self.payment.id)])
        )
        rows = self.csv_rows(job)
        self.assertEqual(list(rows), self.payment.ids)
        row = rows[self.payment.id]
        self.assertEqual(float(row["amount"]), 250.0)
        self.assertEqual(row["date"], "2024-05-25")
        self.assertEqual(row["partner_id"], "Alice Export")
        self.assertEqual(row["payment_type"], "Receive")
        self.assertEqual(row["journal_id"], self.payment.journal_id.display_name)
        state_labels = dict(
            self.payment._fields["state"]._description_selection(self.env)
        )
        self.assertEqual(row["state"], state_labels[self.payment.state])
        self.assertNotEqual(self.payment.state, "draft")
        self.assertEqual(row["name"], self.payment.name)

    def test_customers_lifetime_spend_and_last_invoice_date(self):
        paths = self.profile("customers").field_paths.split("\n")
        self.assertIn("total_invoiced", paths)
        domain = repr([("id", "in", (self.alice | self.bob).ids)])
        job = self.export_profile(self.accountant, "customers", domain)
        rows = self.csv_rows(job)
        alice, bob = rows[self.alice.id], rows[self.bob.id]
        self.assertEqual(float(alice["total_invoiced"]), 500.0)
        self.assertEqual(alice["export_last_activity_date"], "2024-05-20")
        # Bob has only a draft invoice: no spend, no activity.
        self.assertIn(bob["total_invoiced"], ("0.0", "0", ""))
        self.assertEqual(bob["export_last_activity_date"], "")
        # An exporter without accounting rights gets neither the spend
        # (field groups: not offered) nor a date from invoices they may not
        # read.
        job = self.export_profile(self.exporter, "customers", domain)
        rows = self.csv_rows(job)
        self.assertNotIn("total_invoiced", rows[self.alice.id])
        self.assertEqual(rows[self.alice.id]["export_last_activity_date"], "")

    # -- access to computed fields ----------------------------------------
    def test_field_computed_from_unreadable_records_is_withheld(self):
        Profile = self.env["data.export.profile"]
        self.assertFalse(
            self.env["account.move"].with_user(self.exporter).has_access("read")
        )
        for model in ("res.partner", "res.users"):  # res.users inherits it
            names = Profile.with_user(self.exporter)._exportable_fields(model)
            self.assertNotIn("days_sales_outstanding", names, model)
            self.assertIn("email", names, model)
        # Asked for anyway (RPC): a clear access error, nothing exported.
        with self.assertRaisesRegex(AccessError, "days_sales_outstanding"):
            self.export(self.exporter, field_paths="id\ndays_sales_outstanding")
        with self.assertRaisesRegex(AccessError, "days_sales_outstanding"):
            self.export(
                self.exporter, field_paths="id\nparent_id.days_sales_outstanding"
            )
        with self.assertRaisesRegex(AccessError, "days_sales_outstanding"):
            Profile.with_user(self.exporter)._serialize_records(
                self.partners.with_user(self.exporter),
                ["id", "days_sales_outstanding"],
            )
        # JSON with metadata expanded (create_uid -> res.users) works.
        job = self.export(
            self.exporter, field_paths="id\nname", export_format="json", json_depth=1
        )
        items = json.loads(job._read_file())
        self.assertNotIn("days_sales_outstanding", items[0]["create_uid"])
        # An accountant may read invoices: the field is offered and exported.
        names = Profile.with_user(self.accountant)._exportable_fields("res.partner")
        self.assertIn("days_sales_outstanding", names)
        job = self.export(
            self.accountant,
            field_paths="id\ndays_sales_outstanding",
            export_format="json",
        )
        items = {item["id"]: item for item in json.loads(job._read_file())}
        for partner in self.partners.with_user(self.accountant):
            self.assertAlmostEqual(
                items[partner.id]["days_sales_outstanding"],
                partner.days_sales_outstanding,
            )


@tagged("post_install", "-at_install")
class TestExportInvoicePdf(HttpCase):
    """The invoice report rendered for real by wkhtmltopdf.

    An ``HttpCase``: wkhtmltopdf fetches the report's assets from this Odoo
    over HTTP, which only the HTTP test mode serves while a test runs.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if "account.move" not in cls.env:
            raise SkipTest("the Invoicing app (account) is not installed")
        environ = {k: v for k, v in os.environ.items() if "SUITE_KEYRING" not in k}
        environ["SUITE_KEYRING"] = generate_key_line("h12pdf")
        cls.startClassPatcher(patch.dict(os.environ, environ, clear=True))
        cls.exporter = new_test_user(
            cls.env,
            login="h12_pdf_exporter",
            groups="base.group_user,data_export_suite.export_group_user",
        )
        alice, bob = cls.env["res.partner"].create(
            [{"name": "Alice Pdf"}, {"name": "Bob Pdf"}]
        )
        setup_invoicing(cls, alice, bob)

    def export(self, user, **values):
        job = (
            self.env["data.export.job"]
            .with_user(user)
            .create(
                {
                    "model_name": "account.move",
                    "field_paths": "id",
                    "export_format": "pdf",
                    **values,
                }
            )
        )
        # Under --test-enable Odoo renders reports as HTML unless asked.
        job.with_context(force_report_rendering=True)._launch()
        return job

    def test_pdf_export_of_invoices(self):
        job = self.export(self.accountant, domain=repr([("id", "in", self.posted.ids)]))
        self.assertEqual(job.state, "done", job.error_message)
        self.assertTrue(job.file_name.endswith(".zip"))
        with zipfile.ZipFile(io.BytesIO(job._read_file())) as archive:
            names = archive.namelist()
            self.assertEqual(len(names), 2)
            for move in self.posted:
                member = next(n for n in names if n.endswith(f"-{move.id}.pdf"))
                self.assertTrue(archive.read(member).startswith(PDF_MAGIC))
        # One invoice: the PDF itself.
        job = self.export(
            self.accountant, domain=repr([("id", "=", self.inv_alice_1.id)])
        )
        self.assertEqual(job.state, "done", job.error_message)
        self.assertEqual(job.file_mimetype, "application/pdf")
        self.assertTrue(job.file_name.endswith(".pdf"))
        self.assertTrue(job._read_file().startswith(PDF_MAGIC))
        # Someone who may not read invoices gets no PDF.
        with self.assertRaises(AccessError):
            self.export(self.exporter, domain=repr([("id", "in", self.posted.ids)]))
