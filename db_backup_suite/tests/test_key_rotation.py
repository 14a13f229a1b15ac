"""Key rotation ("Rotate key" in Settings, Database Backups).

A real keyring file holding key A seals the credentials of an SFTP
destination (a real OpenSSH server) and of an S3 one; key B is added at the
top; Rotate key seals them again with B, in one transaction, audited; A is
taken out of the keyring: the credentials still open, the SFTP connection
test passes and a backup still runs. Without the rotation, taking A out
gives an error naming the destination and the key id. Over real JSON-RPC a
Backup Operator and a plain user cannot rotate, and nothing changes.
"""

import json
import os

from odoo.exceptions import UserError
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tools import mute_logger

from odoo.addons.audit_export.tests.common import RpcMixin

from suite_core import keyring as keyring_lib

from .common import KeyringMixin

S3_SECRET = "s3-secret-of-the-rotation-test"


@tagged("post_install", "-at_install")
class TestKeyRotation(RpcMixin, KeyringMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        from tests.fixtures.sftp_server import start_sshd

        cls.line_a = keyring_lib.generate_key_line("rot-a")
        cls.line_b = keyring_lib.generate_key_line("rot-b")
        cls.write_keyring(cls.line_a)
        cls.sshd = start_sshd()
        cls.addClassCleanup(cls.sshd.cleanup)
        cls.local_dir = os.path.join(cls.tmp_dir, "local-dest")
        os.makedirs(cls.local_dir)
        Destination = cls.env["db.backup.destination"]
        cls.local_dest = Destination.create(
            {
                "name": "Rotation local",
                "dest_type": "local",
                "local_path": cls.local_dir,
            }
        )
        cls.sftp_dest = Destination.create(
            {
                "name": "Rotation SFTP",
                "dest_type": "sftp",
                "sftp_host": cls.sshd.host,
                "sftp_port": cls.sshd.port,
                "sftp_username": cls.sshd.username,
                "sftp_path": cls.sshd.new_dir(),
                "sftp_auth": "key",
                "sftp_private_key": cls.sshd.private_key,
                # the archive itself is checked at the SFTP server
                "storage_mode": "full",
            }
        )
        cls.sftp_dest.action_fetch_host_key()
        cls.sftp_dest.action_confirm_host_key()
        # Archived (no S3 server here): its credentials are rotated too.
        cls.s3_dest = Destination.create(
            {
                "name": "Rotation S3",
                "dest_type": "s3",
                "s3_bucket": "rotation-bucket",
                "s3_access_key": "AKROTATION",
                "s3_secret_key": S3_SECRET,
                "active": False,
            }
        )
        groups = "base.group_user,db_backup_suite.backup_group_"
        cls.operator = new_test_user(
            cls.env, login="h_rot_operator", groups=groups + "operator"
        )
        cls.plain = new_test_user(
            cls.env, login="h_rot_plain", groups="base.group_user"
        )

    @classmethod
    def write_keyring(cls, *lines):
        fd = os.open(cls.keyring_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("# rotation test\n" + "\n".join(lines) + "\n")

    def setUp(self):
        super().setUp()
        self.write_keyring(self.line_a)

    def key_ids(self):
        dests = (self.sftp_dest | self.s3_dest).sudo()
        dests.invalidate_recordset()
        return {d.name: d._secrets_key_id() for d in dests}

    def rotate(self):
        wizard = self.env["db.backup.key.rotation"].create({})
        wizard.action_rotate()
        return wizard

    # -- the rotation ------------------------------------------------------
    def test_rotation_keeps_destinations_working(self):
        self.assertEqual(
            self.key_ids(), {"Rotation SFTP": "rot-a", "Rotation S3": "rot-a"}
        )
        # passwords waiting for a job, sealed with A: an upload's password
        # (restore dialog) and an export's ZIP password (export dialog)
        upload = (
            self.env["db.backup.restore.wizard"].sudo().create({"source": "upload"})
        )
        upload._seal_password("Upload-Password-42")
        Job = self.env["data.export.job"].sudo()
        export = (
            self.env["data.export.wizard"]
            .sudo()
            .create({"model_name": "res.partner", "field_paths": "id"})
        )
        export.password_sealed = Job._seal_password("Export-Password-42")
        self.write_keyring(self.line_b, self.line_a)
        wizard = self.env["db.backup.key.rotation"].create({})
        self.assertIn("rot-b", wizard.active_key_id)
        self.assertEqual(wizard.keyring_ids, "rot-b, rot-a")
        # before: the report says the credentials need key A
        self.assertIn("rot-a", wizard.usage_html)
        self.assertIn("Rotation SFTP", wizard.usage_html)
        wizard.action_rotate()
        self.assertEqual(wizard.state, "done")
        self.assertIn("Rotation SFTP", wizard.result_html)
        self.assertEqual(
            self.key_ids(), {"Rotation SFTP": "rot-b", "Rotation S3": "rot-b"}
        )
        event = self.env["audit.event"].search(
            [("res_name", "=", "Server key rotation")], limit=1, order="id desc"
        )
        self.assertTrue(event)
        self.assertEqual(event.action, "settings")
        self.assertEqual(event.details["active_key"], "rot-b")
        self.assertEqual(
            sorted(d["name"] for d in event.details["destinations"]),
            ["Rotation S3", "Rotation SFTP"],
        )
        self.assertNotIn(S3_SECRET, json.dumps(event.details))
        # A leaves the keyring: everything still opens
        self.write_keyring(self.line_b)
        self.assertEqual(self.s3_dest._read_secrets()["s3_secret_key"], S3_SECRET)
        self.assertEqual(
            self.sftp_dest._read_secrets()["sftp_private_key"], self.sshd.private_key
        )
        upload.invalidate_recordset()
        export.invalidate_recordset()
        self.assertEqual(upload._unsealed_password(), "Upload-Password-42")
        self.assertEqual(
            Job._open_sealed_password(export.password_sealed), "Export-Password-42"
        )
        self.assertEqual(event.details["passwords"], 2)
        result = self.sftp_dest.action_test_connection()
        self.assertEqual(result["params"]["type"], "success", result)
        # a backup to the local and the SFTP destination, with key B
        run = self.env["db.backup.run"]._queue_backup(kind="manual")
        self.env["db.backup.run"]._run_queued()
        run.invalidate_recordset()
        self.assertEqual(run.state, "done", run.error)
        self.assertEqual(run.key_id, "rot-b")
        self.assertTrue(os.path.exists(os.path.join(self.local_dir, run.name)))
        self.assertTrue(
            os.path.exists(os.path.join(self.sftp_dest.sftp_path, run.name))
        )
        # the report: that archive needs B; nothing left on A but the events
        # the audit trail signed with it
        usage = self.env["db.backup.key.rotation"]._key_usage()
        self.assertIn(run.name, usage["rot-b"]["Backup archives"][1])
        self.assertNotIn("Destination credentials", usage.get("rot-a", {}))
        # rotating again changes nothing
        before = self.sftp_dest.sudo().secrets_encrypted
        self.rotate()
        self.sftp_dest.invalidate_recordset()
        self.assertEqual(self.sftp_dest.sudo().secrets_encrypted, before)

    def test_removed_key_without_rotation_names_the_destination(self):
        self.write_keyring(self.line_b)  # A removed, nothing rotated
        with self.assertRaises(UserError) as caught:
            self.sftp_dest._read_secrets()
        message = str(caught.exception)
        self.assertIn('destination "Rotation SFTP"', message)
        self.assertIn("rot-a", message)
        self.assertIn("rot-b", message)  # what the keyring holds
        self.assertNotIn("archive", message)
        with mute_logger("odoo.addons.db_backup_suite.models.db_backup_destination"):
            result = self.sftp_dest.action_test_connection()
        self.assertEqual(result["params"]["type"], "danger")
        self.assertIn('destination "Rotation SFTP"', result["params"]["message"])
        self.assertIn("rot-a", result["params"]["message"])
        # the rotation refuses too, naming it, and changes nothing
        before = self.sftp_dest.sudo().secrets_encrypted
        with self.assertRaisesRegex(UserError, "rot-a"):
            self.rotate()
        self.sftp_dest.invalidate_recordset()
        self.assertEqual(self.sftp_dest.sudo().secrets_encrypted, before)

    def test_removed_key_names_the_export_and_the_report_keeps_it(self):
        partner = self.env["res.partner"].create({"name": "Rotation export row"})
        admin = self.env.ref("base.user_admin")
        job = (
            self.env["data.export.job"]
            .with_user(admin)
            .create(
                {
                    "model_name": "res.partner",
                    "domain": repr([("id", "=", partner.id)]),
                    "field_paths": "name",
                }
            )
        )
        job._launch()
        self.assertEqual(job.state, "done", job.error_message)
        self.write_keyring(self.line_b, self.line_a)
        self.rotate()
        # an export file cannot be re-encrypted in place: listed under A
        usage = self.env["db.backup.key.rotation"]._key_usage()
        self.assertIn(job.file_name, usage["rot-a"]["Export files"][1])
        self.assertIn(b"Rotation export row", job._read_file())
        self.write_keyring(self.line_b)
        with self.assertRaises(UserError) as caught:
            job._read_file()
        message = str(caught.exception)
        self.assertIn('Export "%s"' % job.file_name, message)
        self.assertIn("rot-a", message)
        self.assertNotIn("archive", message)

    def test_rotate_key_from_the_settings_screen(self):
        new_test_user(
            self.env,
            login="h_rot_admin",
            groups="base.group_user,base.group_system",
        )
        self.write_keyring(self.line_b, self.line_a)
        self.start_tour(
            "/odoo/action-db_backup_suite.db_backup_config_settings_action",
            "db_backup_suite_key_rotation",
            login="h_rot_admin",
        )
        self.assertEqual(
            self.key_ids(), {"Rotation SFTP": "rot-b", "Rotation S3": "rot-b"}
        )

    # -- who may rotate ----------------------------------------------------
    def test_only_settings_administrators_rotate(self):
        self.write_keyring(self.line_b, self.line_a)
        before = self.key_ids()
        admin_wizard = self.env["db.backup.key.rotation"].create({})
        model = "db.backup.key.rotation"
        for login in ("h_rot_operator", "h_rot_plain"):
            with self.subTest(login=login), mute_logger("odoo.http"):
                self.assertRpcError(self.rpc_as(login, model, "create", {}))
                self.assertRpcError(self.rpc_as(login, model, "action_rotate", []))
                self.assertRpcError(
                    self.rpc_as(login, model, "action_rotate", [admin_wizard.id])
                )
                self.assertRpcError(
                    self.rpc_as(
                        login,
                        model,
                        "web_read",
                        [admin_wizard.id],
                        {"usage_html": {}, "state": {}},
                    )
                )
                self.assertRpcError(
                    self.rpc_as(login, "db.backup.destination", "_reseal_secrets", [])
                )
                self.assertRpcError(
                    self.rpc_as(
                        login, "res.config.settings", "action_open_key_rotation", []
                    )
                )
        self.assertEqual(self.key_ids(), before)
        self.assertEqual(admin_wizard.state, "draft")
        self.assertEqual(
            self.env["audit.event"].search([("res_name", "=", "Server key rotation")]),
            self.env["audit.event"],
        )
