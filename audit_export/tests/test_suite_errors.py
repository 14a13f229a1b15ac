import re
from pathlib import Path

from odoo.tests import TransactionCase, tagged

from odoo.addons.audit_export.tools.suite_errors import (
    MESSAGES,
    register,
    suite_error_message,
)

from suite_core import keyring, passwords, streamcrypt, witness, writers

from .common import translated_terms

#: the suite's addons (beside this one in the repository)
ADDONS_ROOT = Path(__file__).resolve().parents[2]
SUITE_ADDONS = ("audit_export", "data_export_suite", "db_backup_suite", "gdpr_dsr")
#: the Odoo layer of an addon (its ``lib/`` and tests are not)
ODOO_LAYER = ("models", "wizards", "controllers", "report", "service")
#: an Odoo exception built from a caught error's own (English) text
RAW_ERROR_TEXT = re.compile(
    r"\b(UserError|ValidationError|AccessError|RedirectWarning)\(\s*str\(exc\)"
)


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
        # what the header says (another database's, another kind of archive)
        # stays in the wrong-key and format messages
        self.assertEqual(
            msg(streamcrypt.FormatError("a 'backup' archive")),
            "This file is not an archive of the suite, or of a format version "
            "this server does not read (a 'backup' archive).",
        )
        self.assertEqual(
            msg(streamcrypt.WrongKeyError("made for database 'other'")),
            "The archive cannot be decrypted with the server keyring's keys: it "
            "was encrypted with another key or a password (made for database "
            "'other').",
        )
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
        # a writer's refusal says what to check, with the library's detail
        self.assertEqual(
            msg(writers.WriterError("'x' cannot be a CSV delimiter")),
            "The export file cannot be written ('x' cannot be a CSV delimiter). "
            "Check the export's settings (CSV delimiter, time zone), then run it "
            "again.",
        )
        # a class of no listed family keeps the library's message
        self.assertEqual(msg(keyring.SuiteError("plain")), "plain")

    def test_messages_are_in_the_users_language(self):
        source = "The server keyring is missing or cannot be read: %(detail)s"
        with translated_terms(
            self.env, "audit_export", {source: "Trousseau illisible : %(detail)s"}
        ) as env:
            self.assertEqual(
                suite_error_message(env, keyring.KeyringError("no file")),
                "Trousseau illisible : no file",
            )
        # in English, the same error
        self.assertEqual(
            suite_error_message(self.env, keyring.KeyringError("no file")),
            "The server keyring is missing or cannot be read: no file",
        )

    def test_register_keeps_subclasses_first(self):
        saved = list(MESSAGES)
        self.addCleanup(MESSAGES.__setitem__, slice(None), saved)

        class AddonError(keyring.SuiteError):
            pass

        class NarrowerError(AddonError):
            pass

        class FormatVariant(streamcrypt.FormatError):
            pass

        register(AddonError, lambda env, exc: "addon")
        register(NarrowerError, lambda env, exc: "narrower")
        register(FormatVariant, lambda env, exc: "variant")
        self.assertEqual(suite_error_message(self.env, AddonError("x")), "addon")
        self.assertEqual(suite_error_message(self.env, NarrowerError("x")), "narrower")
        # a subclass of a class of the base table goes before it
        self.assertEqual(suite_error_message(self.env, FormatVariant("x")), "variant")
        self.assertIn(
            "not an archive",
            suite_error_message(self.env, streamcrypt.FormatError("x")),
        )
        # registered again: replaced, not listed twice
        register(AddonError, lambda env, exc: "addon, again")
        self.assertEqual(suite_error_message(self.env, AddonError("x")), "addon, again")
        classes = [cls for cls, _build in MESSAGES]
        self.assertEqual(classes.count(AddonError), 1)
        self.test_the_table_lists_subclasses_before_their_bases()

    def test_no_odoo_layer_file_shows_a_caught_errors_raw_text(self):
        """A caught error reaches the user through ``suite_error_message``
        (or a sentence of the Odoo layer), never as ``UserError(str(exc))``."""
        offenders = []
        for addon in SUITE_ADDONS:
            for layer in ODOO_LAYER:
                folder = ADDONS_ROOT / addon / layer
                for path in sorted(folder.rglob("*.py")) if folder.is_dir() else ():
                    text = path.read_text(encoding="utf-8")
                    for match in RAW_ERROR_TEXT.finditer(text):
                        line = text.count("\n", 0, match.start()) + 1
                        offenders.append(f"{path.relative_to(ADDONS_ROOT)}:{line}")
        self.assertTrue((ADDONS_ROOT / "audit_export" / "models").is_dir())
        self.assertEqual(offenders, [])

    def test_the_table_lists_subclasses_before_their_bases(self):
        classes = [cls for cls, _build in MESSAGES]
        for i, cls in enumerate(classes):
            for later in classes[i + 1 :]:
                self.assertFalse(
                    issubclass(later, cls) and later is not cls,
                    f"{later.__name__} is shadowed by {cls.__name__}",
                )
