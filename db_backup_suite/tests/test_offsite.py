import base64
import io

from odoo.exceptions import UserError
from odoo.tests import HttpCase, new_test_user, tagged

from ..service import backup_engine
from ..wizards.db_backup_download_wizard import password_problems
from .common import KeyringMixin, drop_derived_databases
from .test_chunked_upload import prepared_download_action

PASSWORD = "Correct-Horse-42-battery!"


@tagged("post_install", "-at_install")
class TestOffsiteCopies(KeyringMixin, HttpCase):
    """Download re-encrypted with a password, then upload and restore it."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        cls.env["db.backup.destination"].create(
            {"name": "Local", "dest_type": "local", "local_path": cls.tmp_dir}
        )
        cls.restorer = new_test_user(
            cls.env,
            login="h7_off_restorer",
            groups="base.group_user,db_backup_suite.backup_group_restore",
        )
        cls.backup_run = cls.env["db.backup.run"]._queue_backup(kind="manual")
        cls.env["db.backup.run"]._run_queued()
        cls.backup_run.invalidate_recordset()
        cls.addClassCleanup(drop_derived_databases, cls.env.cr.dbname)

    def test_password_strength(self):
        self.assertTrue(password_problems("short"))
        self.assertTrue(password_problems("aaaaaaaaaaaaaaaa"))
        self.assertTrue(password_problems("alllowercaseletters"))
        self.assertFalse(password_problems(PASSWORD))

    def test_download_and_upload_round_trip(self):
        from ..lib import crypto, errors

        self.assertEqual(self.backup_run.state, "done", self.backup_run.error)
        self.authenticate("h7_off_restorer", "h7_off_restorer")
        Wizard = self.env["db.backup.download.wizard"].with_user(self.restorer)
        with self.assertRaisesRegex(UserError, "12 characters"):
            Wizard.create(
                {
                    "run_id": self.backup_run.id,
                    "password": "short1A!",
                    "password_confirm": "short1A!",
                }
            )
        with self.assertRaisesRegex(UserError, "differ"):
            Wizard.create(
                {
                    "run_id": self.backup_run.id,
                    "password": PASSWORD,
                    "password_confirm": PASSWORD + "x",
                }
            )
        wizard = Wizard.create(
            {
                "run_id": self.backup_run.id,
                "password": PASSWORD,
                "password_confirm": PASSWORD,
            }
        )
        # prepared by a detached process, then a one-time link
        action = prepared_download_action(wizard)
        response = self.url_open(action["url"], timeout=60)
        self.assertEqual(response.status_code, 200)
        content = response.content
        self.assertTrue(content.startswith(crypto.MAGIC))
        # the link works once; the password is gone from the wizard
        self.assertFalse(wizard.password)
        wizard.invalidate_recordset()
        self.assertFalse(wizard.sudo().password_sealed)
        self.assertFalse(wizard.sudo().token_digest)
        self.assertEqual(self.url_open(action["url"]).status_code, 403)
        # the password opens it; the server key alone does not
        uuid = self.env["ir.config_parameter"].get_param("database.uuid")
        check = crypto.verify_archive(
            io.BytesIO(content), password=PASSWORD, tenant=uuid
        )
        self.assertTrue(check.encrypted)
        # bound to this database: the header names it
        self.assertEqual(check.header.tenant, uuid)
        with self.assertRaises(errors.StreamCryptError):
            crypto.verify_archive(
                io.BytesIO(content), password=PASSWORD + "x", tenant=uuid
            )
        events = self.env["audit.event"].search([("action", "=", "download")])
        self.assertTrue(events)

        # Upload it back into the gated wizard and restore it to a sandbox.
        upload = (
            self.env["db.backup.restore.wizard"]
            .with_user(self.restorer)
            .create(
                {
                    "source": "upload",
                    "upload_file": base64.b64encode(content),
                    "upload_filename": "offsite.tar.zst.enc",
                    "upload_password": PASSWORD,
                    "target": "sandbox",
                }
            )
        )
        self.assertTrue(upload.archive_encrypted)
        self.assertTrue(upload.compatible, upload.incompatibility)
        self.assertTrue(upload.archive_odoo_version.startswith("18."))
        self.assertTrue(self.env["audit.event"].search([("action", "=", "upload")]))
        self.assertFalse(upload.foreign, upload.foreign_warning)
        self.assertEqual(upload.source_db_name, self.env.cr.dbname)
        self.assertTrue(upload.sudo().upload_password_sealed)
        self.assertNotIn(PASSWORD, upload.sudo().upload_password_sealed)
        result = upload._restore_now()
        self.assertTrue(result["ok"], result["message"])
        self.assertEqual(upload.sandbox_id.state, "ready")
        self.assertIn("-sandbox-", upload.sandbox_id.name)
        self.assertEqual(upload.sandbox_url, "/web?db=%s" % upload.sandbox_id.name)
        self.assertTrue(backup_engine.database_exists(upload.sandbox_id.name))
        # the password was erased when the restore started
        self.assertFalse(upload.sudo().upload_password_sealed)
        # the sandbox carries its row's marker; a new uuid of its own
        sandbox = upload.sandbox_id.sudo()
        self.assertEqual(backup_engine.sandbox_marker_of(sandbox.name), sandbox.marker)
        self.assertNotEqual(
            backup_engine.config_parameter_of(sandbox.name, "database.uuid"),
            self.env["ir.config_parameter"].get_param("database.uuid"),
        )
        # expiry: the cron drops it
        upload.sandbox_id.sudo().expires_at = "2000-01-01 00:00:00"
        dropped = self.env["db.backup.sandbox"]._cron_drop_expired()
        self.assertEqual(dropped, upload.sandbox_id)
        self.assertEqual(upload.sandbox_id.state, "dropped")
        self.assertFalse(backup_engine.database_exists(upload.sandbox_id.name))

    def test_wrong_upload_password_is_a_clear_error(self):
        path_content = b"not an archive at all"
        with self.assertRaisesRegex(UserError, "cannot be read"):
            self.env["db.backup.restore.wizard"].with_user(self.restorer).create(
                {
                    "source": "upload",
                    "upload_file": base64.b64encode(path_content),
                    "upload_filename": "junk.bin",
                }
            )
