from odoo.tests import TransactionCase, tagged

from odoo.addons.audit_export.tools.suite_errors import MESSAGES, suite_error_message

from suite_core import keyring, passwords, streamcrypt, witness


@tagged("post_install", "-at_install")
class TestSuiteErrorMessages(TransactionCase):
    def test_each_class_has_its_own_message_most_specific_first(self):
        def msg(exc):
            return suite_error_message(self.env, exc)

        secret = "library detail that must not replace the message"
        # a wrong password is a WrongKeyError: its own message wins
        self.assertIn("Wrong password", msg(streamcrypt.WrongPasswordError(secret)))
        wrong_key = msg(streamcrypt.WrongKeyError(secret))
        self.assertIn("server keyring's keys", wrong_key)
        self.assertNotIn("Wrong password", wrong_key)
        self.assertIn("altered or damaged", msg(streamcrypt.TamperedError(secret)))
        self.assertIn("incomplete", msg(streamcrypt.TruncatedError(secret)))
        self.assertIn("not an archive", msg(streamcrypt.FormatError(secret)))
        for exc in (
            streamcrypt.WrongPasswordError(secret),
            streamcrypt.TamperedError(secret),
        ):
            self.assertNotIn(secret, msg(exc))
        # a missing key names the key when the error knows it
        self.assertIn(
            "is not in the server keyring", msg(keyring.UnknownKeyError(secret))
        )
        # the keyring family and the witness give the library's detail
        self.assertIn("keyring is missing", msg(keyring.KeyringError("no file")))
        self.assertIn("no file", msg(keyring.KeyringError("no file")))
        self.assertIn("witness", msg(witness.WitnessError("not a regular file")))
        # the password policy speaks through the policy model's own messages
        verdict = passwords.check_new_password("", "")
        self.assertEqual(
            msg(passwords.PasswordPolicyError(verdict)),
            self.env["audit.password.policy"]._message(verdict),
        )
        # a class of no listed family keeps the library's message
        self.assertEqual(msg(keyring.SuiteError("plain")), "plain")

    def test_the_table_lists_subclasses_before_their_bases(self):
        classes = [cls for cls, _build in MESSAGES]
        for i, cls in enumerate(classes):
            for later in classes[i + 1 :]:
                self.assertFalse(
                    issubclass(later, cls) and later is not cls,
                    f"{later.__name__} is shadowed by {cls.__name__}",
                )
