from odoo.exceptions import UserError
from odoo.tests import tagged
from odoo.tools import config

from odoo.addons.audit_export.tests.common import translated_terms
from odoo.addons.audit_export.tools.suite_errors import suite_error_message

from ..lib import errors, registry, uploads
from ..lib.fanout import DestinationOutcome
from ..lib.repository.repo import RepositoryLockedError
from .common import BackupCase

DETAIL = "library detail"
UNREACHABLE = (
    "The backup destination cannot be reached or refused the connection "
    "(%(detail)s). Check its host, port and credentials with Test connection, "
    "then try again."
)
KEYRING = "The server keyring is missing or cannot be read: %(detail)s"


@tagged("post_install", "-at_install")
class TestEngineErrorMessages(BackupCase):
    def msg(self, exc):
        return suite_error_message(self.env, exc)

    def test_each_engine_error_has_its_message(self):
        expected = {
            errors.SinkUnreachableError: UNREACHABLE % {"detail": DETAIL},
            errors.ArchiveNotFoundError: (
                "The archive file does not exist (library detail); nothing was "
                "restored. Choose an archive that is still there."
            ),
            errors.SinkObjectNotFound: (
                "The archive is not at the backup destination (library detail): "
                "it was removed or moved there. Choose another archive."
            ),
            errors.SinkError: (
                "The backup destination failed (library detail). Check that it is "
                "reachable and has free space (Test connection), then try again."
            ),
            errors.BackupLockedError: (
                "Another backup of this database is running (library detail): "
                "wait for it to finish, then try again."
            ),
            errors.DumpError: (
                "The database or its filestore could not be read for the backup "
                "(library detail); no archive was made. Check the server log, "
                "then run the backup again."
            ),
            errors.RestoreError: (
                "The restore failed (library detail); the live database and its "
                "filestore are unchanged."
            ),
            errors.VerificationError: (
                "The restored copy does not match the archive's manifest (library "
                "detail): it was not used and nothing was replaced. Restore "
                "another archive."
            ),
            errors.InvalidDatabaseNameError: (
                "Not a valid database name (library detail); nothing was changed. "
                "Use letters, digits, '_', '.' and '-' only, starting with a "
                "letter or digit."
            ),
            errors.NotSuiteDatabaseError: (
                "Refused: this database is not a sandbox, safety copy or scratch "
                "database the backup suite made for this database (library "
                "detail); nothing was dropped or changed."
            ),
            errors.UnsafePathError: (
                "Refused: the path leaves the database's filestore (library "
                "detail); nothing was removed or changed."
            ),
            errors.SafetyError: (
                "Refused to remove something the backup suite did not create "
                "(library detail); nothing was changed."
            ),
            registry.RegistryCorruptError: (
                "The registry of sandboxes and safety copies is damaged (library "
                "detail). Repair or move that file away, then try again."
            ),
            registry.RegistryError: (
                "The registry of sandboxes and safety copies cannot be used "
                "(library detail)."
            ),
        }
        for cls, message in expected.items():
            with self.subTest(cls=cls.__name__):
                self.assertEqual(self.msg(cls(DETAIL)), message)
        # the repository's lock is a backup lock
        self.assertEqual(
            self.msg(RepositoryLockedError(DETAIL)),
            expected[errors.BackupLockedError],
        )

    def test_errors_with_attributes_take_their_details_from_them(self):
        failed = errors.DestinationsFailedError(
            [
                DestinationOutcome("S3 bucket", state="failed", error="refused"),
                DestinationOutcome("SFTP box", state="failed", error="disk full"),
            ]
        )
        self.assertEqual(
            self.msg(failed),
            "No backup destination stored the archive (2 failed: S3 bucket: "
            "refused; SFTP box: disk full). Test each destination, fix what it "
            "reports, then run the backup again.",
        )
        foreign = errors.ForeignArchiveError(
            source_name="acme",
            source_uuid="u-1",
            created_at="2026-01-01",
            expected_uuid="u-2",
            target="prod",
        )
        self.assertEqual(
            self.msg(foreign),
            "This archive is a backup of database acme (uuid u-1, taken "
            "2026-01-01), not of database prod (uuid u-2); nothing was restored. "
            "Restoring it would replace the data with another database's: "
            "confirm that explicitly to go on.",
        )
        self.assertNotEqual(self.msg(foreign), str(foreign))
        self.assertEqual(
            self.msg(uploads.UploadError("finished", "this upload is finished")),
            "This upload is complete already.",
        )
        missing = errors.MissingKeyError(kind="destination", name="Cloud", key_id="k1")
        self.assertIn("The credentials of destination Cloud", self.msg(missing))
        self.assertIn("k1", self.msg(missing))

    def test_a_failed_connection_test_shows_the_translated_message(self):
        dest = self.unreachable_sftp_destination()
        action = dest.action_test_connection()
        prefix = "The backup destination cannot be reached or refused the connection"
        self.assertTrue(dest.last_test_result.startswith(prefix + " (SFTP host"))
        self.assertTrue(dest.last_test_result.endswith("then try again."))
        self.assertEqual(
            action["params"]["message"], "Connection failed: " + dest.last_test_result
        )
        with translated_terms(
            self.env, "db_backup_suite", {UNREACHABLE: "Injoignable : %(detail)s"}
        ) as env:
            dest.with_env(env).action_test_connection()
        self.assertTrue(dest.last_test_result.startswith("Injoignable : SFTP host"))

    def test_an_unreadable_keyring_is_said_in_the_users_language(self):
        missing = self.tmp_dir + "/no-such-keyring"
        saved = config.get("suite_keyring_file")
        config["suite_keyring_file"] = missing
        self.addCleanup(config.__setitem__, "suite_keyring_file", saved)
        with translated_terms(
            self.env, "audit_export", {KEYRING: "Trousseau illisible : %(detail)s"}
        ) as env:
            wizard = env["db.backup.key.rotation"].create({})
            self.assertEqual(
                wizard.keyring_problem,
                "Trousseau illisible : keyring file %s does not exist" % missing,
            )
        with self.assertRaises(UserError) as caught:
            wizard.with_env(self.env).action_rotate()
        self.assertEqual(
            str(caught.exception),
            "The server keyring cannot be read: The server keyring is missing or "
            "cannot be read: keyring file %s does not exist" % missing,
        )
