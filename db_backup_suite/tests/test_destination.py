from odoo.tests import tagged

from .common import BackupCase


@tagged("post_install", "-at_install")
class TestDestination(BackupCase):
    def test_local_test_connection(self):
        action = self.local_dest.action_test_connection()
        self.assertEqual(action["params"]["type"], "success")
        self.assertTrue(self.local_dest.last_test_ok)

    def test_unreachable_sftp_reports_failure(self):
        dest = self.unreachable_sftp_destination()
        action = dest.action_test_connection()
        self.assertEqual(action["params"]["type"], "danger")
        self.assertFalse(dest.last_test_ok)
        self.assertNotIn("pw-123456789", dest.last_test_result)

    def test_unconfirmed_host_key_blocks_sftp(self):
        dest = self.env["db.backup.destination"].create(
            {
                "name": "Unconfirmed",
                "dest_type": "sftp",
                "sftp_host": "127.0.0.1",
                "sftp_username": "nobody",
                "sftp_password": "pw-123456789",
            }
        )
        with self.assertRaisesRegex(Exception, "host key"):
            dest._sink_config()

    def test_settings_changes_are_audited(self):
        self.local_dest.name = "Renamed"
        events = self.env["audit.event"].search(
            [
                ("action", "=", "settings"),
                ("res_model", "=", "db.backup.destination"),
                ("res_id", "=", self.local_dest.id),
            ]
        )
        self.assertEqual(len(events), 2)  # create + rename
        renamed = events.sorted("id")[-1]
        self.assertEqual(renamed.message, "Backup destination Renamed: write")
        self.assertEqual(renamed.details, {"operation": "write", "fields": ["name"]})
