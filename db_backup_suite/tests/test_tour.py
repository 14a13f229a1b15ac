from odoo.tests import HttpCase, new_test_user, tagged

from .common import KeyringMixin, manifest_of


@tagged("post_install", "-at_install")
class TestBackupTours(KeyringMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        cls.env["db.backup.destination"].create(
            {"name": "Local", "dest_type": "local", "local_path": cls.tmp_dir}
        )
        cls.operator = new_test_user(
            cls.env,
            login="tour_operator",
            groups="base.group_user,db_backup_suite.backup_group_operator",
        )
        cls.restorer = new_test_user(
            cls.env,
            login="tour_restorer",
            groups="base.group_user,db_backup_suite.backup_group_restore",
        )
        db = cls.env.cr.dbname
        cls.env["db.backup.run"].create(
            {
                "kind": "manual",
                "state": "done",
                "label": "manual",
                "name": "%s/%s_manual_20260101T000000Z.tar.zst.enc" % (db, db),
                "size": 2048,
                "encryption": "encrypted",
                "manifest_json": manifest_of(cls.env),
            }
        )
        cls.env["db.backup.run"].create(
            {
                "kind": "found",
                "state": "done",
                "label": "manual",
                "name": "h7otherdb/h7otherdb_manual_20260102T000000Z.tar.zst.enc",
                "size": 4096,
                "encryption": "encrypted",
                "manifest_json": manifest_of(
                    cls.env, database="h7otherdb", uuid="h7-other-uuid"
                ),
            }
        )

    def test_operator_backup_now(self):
        self.start_tour(
            "/odoo/action-db_backup_suite.db_backup_dashboard_action",
            "db_backup_suite_backup_now",
            login="tour_operator",
        )
        run = self.env["db.backup.run"].search([("state", "=", "queued")])
        self.assertEqual(run.label, "manual")

    def test_restore_gate(self):
        self.start_tour(
            "/odoo/action-db_backup_suite.db_backup_dashboard_action",
            "db_backup_suite_restore_gate",
            login="tour_restorer",
        )
        # The tour never pressed the button: nothing was restored or queued.
        self.assertFalse(self.env["db.backup.sandbox"].search([]))

    def test_foreign_gate(self):
        self.start_tour(
            "/odoo/action-db_backup_suite.db_backup_dashboard_action",
            "db_backup_suite_foreign_gate",
            # another database's archive goes over production only by a
            # Settings administrator (a Backup Restore user: sandboxes only)
            login="admin",
        )
        # The tour never pressed the button: nothing was restored or queued.
        self.assertFalse(self.env["db.backup.sandbox"].search([]))
        self.assertFalse(
            self.env["audit.event"].search([("action", "in", ("restore", "sandbox"))])
        )
