import os
from unittest.mock import patch

from odoo.exceptions import UserError
from odoo.tests import tagged

from odoo.addons.audit_export.tests.common import TEST_LANG, translated_terms
from odoo.addons.audit_export.tools.suite_errors import suite_error_message

from ..lib import domain, zipper
from .common import ExportCase

KEYRING_MESSAGE = "The server keyring is missing or cannot be read: %(detail)s"


@tagged("post_install", "-at_install")
class TestExportErrorMessages(ExportCase):
    def test_domain_and_zip_errors_have_their_messages(self):
        exc = domain.DomainError("bad_path", "partner_id..name")
        source = "Invalid field path in a domain: %(part)s"
        with translated_terms(
            self.env, "data_export_suite", {source: "Chemin invalide : %(part)s"}
        ) as env:
            self.assertEqual(
                suite_error_message(env, exc), "Chemin invalide : partner_id..name"
            )
        self.assertEqual(
            suite_error_message(self.env, zipper.ZipperError("too short")),
            "The ZIP file cannot be made (too short). A ZIP password needs at "
            "least 8 characters; then try again.",
        )
        self.assertNotEqual(
            suite_error_message(self.env, zipper.ZipperError("too short")),
            str(zipper.ZipperError("too short")),
        )

    def test_invalid_field_path_is_translated(self):
        source = "Invalid field path: %(path)s"
        with (
            translated_terms(
                self.env, "data_export_suite", {source: "Chemin invalide : %(path)s"}
            ) as env,
            self.assertRaisesRegex(UserError, "^Chemin invalide : 'name..x'$"),
        ):
            env["data.export.profile"]._resolve_field_paths("res.partner", ["name..x"])

    def test_export_without_keyring_says_why_in_the_users_language(self):
        with translated_terms(
            self.env,
            "audit_export",
            {KEYRING_MESSAGE: "Trousseau illisible : %(detail)s"},
        ) as env:
            self.exporter.lang = TEST_LANG
            environ = {k: v for k, v in os.environ.items() if "SUITE_KEYRING" not in k}
            with (
                patch.dict(os.environ, environ, clear=True),
                self.assertRaises(UserError) as caught,
            ):
                job = (
                    env["data.export.job"]
                    .with_user(self.exporter)
                    .create(
                        {
                            "model_name": "res.partner",
                            "domain": self.partner_domain,
                            "field_paths": "id\nname",
                        }
                    )
                )
                job._launch()
        message = str(caught.exception)
        self.assertIn("Trousseau illisible : no keyring configured", message)
        self.assertNotIn("The server keyring is missing", message)
