from odoo.exceptions import AccessError
from odoo.tests import tagged

from .common import BackupCase, manifest_of


@tagged("post_install", "-at_install")
class TestAccess(BackupCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.backup_run = cls.env["db.backup.run"].create(
            {
                "kind": "manual",
                "state": "done",
                "label": "manual",
                "name": "%s/%s_manual_20260101T000000Z.tar.zst.enc"
                % (cls.env.cr.dbname, cls.env.cr.dbname),
                "manifest_json": manifest_of(cls.env),
            }
        )

    def test_plain_user_sees_nothing(self):
        Run = self.env["db.backup.run"].with_user(self.plain)
        with self.assertRaises(AccessError):
            Run.search([])
        with self.assertRaises(AccessError):
            Run.action_backup_now()
        with self.assertRaises(AccessError):
            self.env["db.backup.dashboard"].with_user(self.plain).create({})
        with self.assertRaises(AccessError):
            self.env["db.backup.destination"].with_user(self.plain).search([])

    def test_operator_sees_list_but_cannot_restore(self):
        run = self.backup_run.with_user(self.operator)
        self.assertIn(run, run.search([]))
        with self.assertRaises(AccessError):
            run.action_open_restore_wizard()
        with self.assertRaises(AccessError):
            self.env["db.backup.restore.wizard"].with_user(self.operator).create(
                {"run_id": self.backup_run.id}
            )
        with self.assertRaises(AccessError):
            run.action_open_download_wizard()
        # Even a wizard made by someone else cannot be driven by the operator.
        wizard = (
            self.env["db.backup.restore.wizard"]
            .with_user(self.restorer)
            .create({"run_id": self.backup_run.id})
        )
        with self.assertRaises(AccessError):
            wizard.with_user(self.operator).action_restore()
        with self.assertRaises(AccessError):
            wizard.with_user(self.operator)._restore_now()
        # Destinations and schedules are for administrators.
        with self.assertRaises(AccessError):
            self.env["db.backup.destination"].with_user(self.operator).search([])
        with self.assertRaises(AccessError):
            self.env["db.backup.schedule"].with_user(self.operator).search([])
        with self.assertRaises(AccessError):
            run.action_delete_archive()

    def test_restore_user_opens_the_wizard(self):
        action = self.backup_run.with_user(self.restorer).action_open_restore_wizard()
        wizard = self.env["db.backup.restore.wizard"].browse(action["res_id"])
        self.assertEqual(wizard.archive_name, self.backup_run.name)
        self.assertTrue(wizard.compatible)
        self.assertFalse(wizard.name_matches)
        wizard.confirm_name = self.env.cr.dbname + "x"
        self.assertFalse(wizard.name_matches)
        wizard.confirm_name = self.env.cr.dbname
        self.assertTrue(wizard.name_matches)

    def test_other_major_version_is_refused(self):
        self.backup_run.manifest_json = manifest_of(
            self.env, odoo_version="17.0", modules={"base": "17.0"}
        )
        wizard = (
            self.env["db.backup.restore.wizard"]
            .with_user(self.restorer)
            .create({"run_id": self.backup_run.id, "confirm_name": self.env.cr.dbname})
        )
        self.assertFalse(wizard.compatible)
        self.assertIn("17.0", wizard.incompatibility)
        self.assertFalse(wizard.name_matches)
        with self.assertRaisesRegex(Exception, "17.0"):
            wizard.action_restore()

    def test_wrong_name_is_refused_by_the_server(self):
        wizard = (
            self.env["db.backup.restore.wizard"]
            .with_user(self.restorer)
            .create({"run_id": self.backup_run.id, "confirm_name": "not-the-name"})
        )
        with self.assertRaisesRegex(Exception, "exactly"):
            wizard.action_restore()

    def test_secrets_are_write_only(self):
        dest = self.env["db.backup.destination"].create(
            {
                "name": "S3",
                "dest_type": "s3",
                "s3_bucket": "b",
                "s3_access_key": "AK",
                "s3_secret_key": "very-secret-value",
            }
        )
        dest.invalidate_recordset()
        self.assertFalse(dest.s3_secret_key)
        self.assertEqual(dest.secret_names, "s3_secret_key")
        self.assertNotIn("very-secret-value", dest.secrets_encrypted)
        self.assertEqual(dest._sink_config()["secret_key"], "very-secret-value")
        data = dest.read(["s3_secret_key", "secret_names"])[0]
        self.assertFalse(data["s3_secret_key"])
        # Writing nothing keeps the stored secret.
        dest.write({"s3_secret_key": False, "s3_bucket": "c"})
        self.assertEqual(dest._sink_config()["secret_key"], "very-secret-value")

    def test_sandbox_names(self):
        Sandbox = self.env["db.backup.sandbox"]
        from datetime import date

        name = Sandbox._unique_name("shop", date(2026, 5, 4))
        self.assertEqual(name, "shop-sandbox-20260504")
        Sandbox.create({"name": name})
        self.assertEqual(
            Sandbox._unique_name("shop", date(2026, 5, 4)), "shop-sandbox-20260504-2"
        )
        long_name = Sandbox._unique_name("x" * 60, date(2026, 5, 4))
        self.assertLessEqual(len(long_name + "_pre_restore_20260504000000"), 63)
        self.assertTrue(long_name.endswith("-sandbox-20260504"))
