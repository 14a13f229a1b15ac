import os
from unittest.mock import patch

from odoo.tests import new_test_user
from odoo.tests.common import TransactionCase

from suite_core.keyring import generate_key_line


class ExportCase(TransactionCase):
    """Users, a real server keyring (environment) and a few partners."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # A real keyring through the documented environment variable: the
        # files are really encrypted with AES-256-GCM in these tests.
        environ = {k: v for k, v in os.environ.items() if "SUITE_KEYRING" not in k}
        environ["SUITE_KEYRING"] = generate_key_line("h6test")
        cls.startClassPatcher(patch.dict(os.environ, environ, clear=True))
        cls.company = cls.env.company
        cls.exporter = new_test_user(
            cls.env,
            login="h6_exporter",
            tz="Europe/Brussels",
            groups="base.group_user,data_export_suite.export_group_user",
        )
        cls.other_exporter = new_test_user(
            cls.env,
            login="h6_other_exporter",
            groups="base.group_user,data_export_suite.export_group_user",
        )
        cls.auditor = new_test_user(
            cls.env,
            login="h6_auditor",
            groups="base.group_user,audit_export.audit_group_auditor",
        )
        cls.plain_user = new_test_user(
            cls.env, login="h6_plain", groups="base.group_user"
        )
        cls.belgium = cls.env.ref("base.be")
        Partner = cls.env["res.partner"]
        cls.partners = Partner.create(
            [
                {
                    "name": "Alice Export",
                    "email": "alice@example.com",
                    "phone": "+32 2 000 00 01",
                    "city": "Brussels",
                    "country_id": cls.belgium.id,
                    "street": 'Rue "Haute", 1\nbox 2',
                },
                {"name": "Bob Export", "email": "bob@example.com", "city": "Ghent"},
                {"name": '=HYPERLINK("http://evil")', "email": "+cmd@example.com"},
            ]
        )
        cls.partner_domain = repr([("id", "in", cls.partners.ids)])
        # Currency rates: a model with a Date field (res.partner has none).
        cls.rates = cls.env["res.currency.rate"].create(
            [
                {
                    "name": day,
                    "rate": rate,
                    "currency_id": cls.env.ref("base.USD").id,
                    "company_id": cls.company.id,
                }
                for day, rate in (
                    ("2024-01-15", 1.1),
                    ("2024-03-01", 1.25),
                    ("2024-06-30", 1.5),
                )
            ]
        )
        cls.rate_domain = repr([("id", "in", cls.rates.ids)])

    def export(self, user, launch=True, **values):
        values.setdefault("model_name", "res.partner")
        values.setdefault("domain", self.partner_domain)
        job = self.env["data.export.job"].with_user(user).create(values)
        if launch:
            job._launch()
        return job
