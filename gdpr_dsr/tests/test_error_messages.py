import os
from unittest.mock import patch

from odoo.exceptions import UserError
from odoo.tests import tagged

from odoo.addons.audit_export.tests.common import translated_terms
from odoo.addons.audit_export.tools.suite_errors import suite_error_message

from suite_core import keyring as suite_keyring

from ..lib.erasure_register import ErasureRegister, ErasureRegisterError
from .common import SUBJECT_EMAIL, DsrCase, make_verified_request

REGISTER_MESSAGE = (
    "The erasure register cannot be read or written (the register is locked). "
    "Check the folder of the server option dsr_erasure_register_dir: it must "
    "exist and be writable by Odoo; then try again."
)
ZIP_SOURCE = (
    "The ZIP file cannot be made (%(detail)s). A ZIP password needs at least "
    "%(length)s characters; then try again."
)


@tagged("post_install", "-at_install")
class TestDsrErrorMessages(DsrCase):
    def test_register_error_has_its_message(self):
        exc = ErasureRegisterError("the register is locked")
        self.assertEqual(suite_error_message(self.env, exc), REGISTER_MESSAGE)
        self.assertNotEqual(suite_error_message(self.env, exc), str(exc))

    def test_a_register_failure_refuses_the_erasure_with_its_message(self):
        request = make_verified_request(self.officer_env(), "erasure")
        request.action_discover()
        with (
            patch.object(
                ErasureRegister,
                "append",
                side_effect=ErasureRegisterError("the register is locked"),
            ),
            self.assertRaises(UserError) as caught,
        ):
            request._erase(SUBJECT_EMAIL)
        self.assertEqual(str(caught.exception), REGISTER_MESSAGE)
        self.assertNotEqual(request.state, "done")

    def test_a_refused_zip_password_is_said_in_the_officers_language(self):
        with translated_terms(
            self.env,
            "data_export_suite",
            {ZIP_SOURCE: "ZIP impossible (%(detail)s) : %(length)s caractères."},
        ) as env:
            request = make_verified_request(env(user=self.officer), "access")
            with self.assertRaises(UserError) as caught:
                request._generate_package(password="short")
        self.assertEqual(
            str(caught.exception),
            "ZIP impossible (The ZIP password must have at least 8 characters.) "
            ": 8 caractères.",
        )

    def test_no_keyring_gives_the_keyrings_message(self):
        request = make_verified_request(self.officer_env(), "access")
        environ = {
            k: v for k, v in os.environ.items() if k != suite_keyring.ENV_KEYRING
        }
        with (
            patch.dict(os.environ, environ, clear=True),
            self.assertRaises(UserError) as caught,
        ):
            request._queue_package()
        self.assertIn(
            "be encrypted at rest: The server keyring is missing or cannot be "
            "read: no keyring configured",
            str(caught.exception),
        )
