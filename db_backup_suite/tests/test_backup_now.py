import os

from freezegun import freeze_time

from odoo.tests import tagged
from odoo.tools import SQL

from .common import BackupCase


@tagged("post_install", "-at_install")
class TestBackupNow(BackupCase):
    """Backup Now and scheduled runs through the real engine, in child
    processes, to a local folder, SeaweedFS (S3) and OpenSSH (SFTP)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from tests.fixtures.s3_server import start_seaweedfs
        from tests.fixtures.sftp_server import start_sshd

        cls.s3 = start_seaweedfs()
        cls.addClassCleanup(cls.s3.cleanup)
        cls.sshd = start_sshd()
        cls.addClassCleanup(cls.sshd.cleanup)
        cls.bucket = cls.s3.new_bucket()
        cls.s3_dest = cls.env["db.backup.destination"].create(
            {
                "name": "SeaweedFS",
                "dest_type": "s3",
                "s3_bucket": cls.bucket,
                "s3_prefix": "odoo",
                "s3_endpoint_url": cls.s3.endpoint_url,
                "s3_region": cls.s3.region,
                "s3_access_key": cls.s3.access_key,
                "s3_secret_key": cls.s3.secret_key,
                "s3_checksum_when_required": True,
                # these tests check the archive itself at each destination
                "storage_mode": "full",
            }
        )
        cls.sftp_dest = cls.env["db.backup.destination"].create(
            {
                "name": "OpenSSH",
                "dest_type": "sftp",
                "sftp_host": cls.sshd.host,
                "sftp_port": cls.sshd.port,
                "sftp_username": cls.sshd.username,
                "sftp_path": cls.sshd.new_dir(),
                "sftp_auth": "key",
                "sftp_private_key": cls.sshd.private_key,
                "storage_mode": "full",
            }
        )

    def _confirm_host_key(self):
        self.sftp_dest.action_fetch_host_key()
        self.assertIn("SHA256:", self.sftp_dest.sftp_pending_fingerprint)
        self.assertFalse(self.sftp_dest.sftp_known_hosts)
        self.sftp_dest.action_confirm_host_key()
        self.assertEqual(
            self.sftp_dest.sftp_known_hosts.split()[1:],
            self.sshd.known_hosts.split()[1:],
        )

    def test_backup_now_twice_is_one_run(self):
        Run = self.env["db.backup.run"].with_user(self.operator)
        first = Run.action_backup_now()
        second = Run.action_backup_now()
        self.assertEqual(first["params"]["type"], "success")
        self.assertEqual(second["params"]["type"], "warning")
        runs = self.env["db.backup.run"].search(
            [("state", "in", ("queued", "running"))]
        )
        self.assertEqual(len(runs), 1)
        self.assertEqual(runs.label, "manual")
        self.assertEqual(runs.requested_by_id, self.operator)
        trigger = self.env["ir.cron.trigger"].search(
            [
                (
                    "cron_id",
                    "=",
                    self.env.ref("db_backup_suite.ir_cron_db_backup_process").id,
                )
            ]
        )
        self.assertTrue(
            trigger, "Backup Now must wake the cron, not work in the request"
        )

    def test_three_destinations(self):
        self._confirm_host_key()
        self.env["ir.config_parameter"].set_param("db_backup_suite.alert_size_mb", "0")
        run = self.env["db.backup.run"]._queue_backup(kind="manual", user=self.operator)
        self.env["db.backup.run"]._run_queued()
        run.invalidate_recordset()
        self.assertEqual(run.state, "done", run.error)
        self.assertEqual(run.encryption, "encrypted")
        self.assertTrue(
            run.name.startswith("%s/%s_manual_" % ((self.env.cr.dbname,) * 2))
        )
        self.assertEqual(len(run.copy_ids), 3)
        self.assertEqual(set(run.copy_ids.mapped("state")), {"done"})
        self.assertEqual(
            run.copy_ids.destination_id, self.local_dest | self.s3_dest | self.sftp_dest
        )
        self.assertTrue(run.odoo_version.startswith("18."))
        # Really there, same size, at each destination.
        self.assertEqual(
            os.path.getsize(os.path.join(self.local_dir, run.name)), run.size
        )
        head = self.s3.client().head_object(Bucket=self.bucket, Key="odoo/" + run.name)
        self.assertEqual(head["ContentLength"], run.size)
        self.assertEqual(
            os.path.getsize(os.path.join(self.sftp_dest.sftp_path, run.name)), run.size
        )
        # Size alert (threshold 0 MB) and an audit event.
        mails = self.env["mail.mail"].search([("subject", "like", "Large backup")])
        self.assertTrue(mails)
        events = self.env["audit.event"].search(
            [("res_model", "=", "db.backup.run"), ("res_id", "=", run.id)]
        )
        self.assertIn("success", events.mapped("result"))
        # Listing the destinations finds exactly this archive for this database.
        found = self.env["db.backup.run"]._find_archives(self.s3_dest)
        self.assertEqual(list(found), [run.name])

    def test_failed_destination_alerts(self):
        """A destination that fails does not lose the others; mail goes out."""
        broken = self.env["db.backup.destination"].create(
            {
                "name": "Unreachable S3",
                "dest_type": "s3",
                "s3_bucket": self.bucket,
                "s3_endpoint_url": "http://127.0.0.1:1",
                "s3_region": self.s3.region,
                "s3_access_key": self.s3.access_key,
                "s3_secret_key": self.s3.secret_key,
                "s3_checksum_when_required": True,
            }
        )
        partner = self.env["res.partner"].create(
            {"name": "Backup watcher", "email": "watch@example.com"}
        )
        schedule = self.env["db.backup.schedule"].create(
            {
                "frequency": "24h",
                "destination_ids": (self.local_dest | broken).ids,
                "alert_partner_ids": partner.ids,
                "alert_size_mb": 10000,
            }
        )
        run = self.env["db.backup.run"]._queue_backup(
            schedule=schedule, kind="scheduled"
        )
        self.env["db.backup.run"]._run_queued()
        run.invalidate_recordset()
        self.assertEqual(run.state, "partial")
        self.assertEqual(run.label, "24h")
        states = {c.destination_id: c.state for c in run.copy_ids}
        self.assertEqual(states, {self.local_dest: "done", broken: "failed"})
        self.assertIn("Unreachable S3", run.warning)
        mail = self.env["mail.mail"].search([("subject", "like", "Backup failed")])
        self.assertIn(partner, mail.recipient_ids)
        self.assertFalse(
            self.env["mail.mail"].search([("subject", "like", "Large backup")])
        )

    def test_all_destinations_failing_is_a_failed_run(self):
        self.local_dest.local_path = "/proc/h7-not-writable"
        # the only active destination (the others would store it: partial)
        (self.s3_dest | self.sftp_dest).active = False
        run = self.env["db.backup.run"]._queue_backup(kind="manual")
        self.env["db.backup.run"]._run_queued()
        run.invalidate_recordset()
        self.assertEqual(run.state, "failed")
        self.assertTrue(run.error)
        self.assertTrue(
            self.env["mail.mail"].search([("subject", "like", "Backup failed")])
        )
        events = self.env["audit.event"].search(
            [("res_model", "=", "db.backup.run"), ("res_id", "=", run.id)]
        )
        self.assertEqual(events.mapped("result"), ["failure"])

    def test_vanished_process_fails_the_run(self):
        import subprocess

        proc = subprocess.Popen(["true"])
        proc.wait()
        run = self.env["db.backup.run"]._queue_backup(kind="manual")
        run.write({"state": "running", "pid": proc.pid})
        self.env["db.backup.run"]._reap_stale_runs()
        run.invalidate_recordset()
        self.assertEqual(run.state, "failed")
        self.assertIn(str(proc.pid), run.error)

    def test_late_alert(self):
        partner = self.env["res.partner"].create(
            {"name": "Watcher", "email": "late@example.com"}
        )
        with freeze_time("2026-01-01 10:00:00"):
            schedule = self.env["db.backup.schedule"].create(
                {
                    "frequency": "24h",
                    "destination_ids": self.local_dest.ids,
                    "alert_partner_ids": partner.ids,
                }
            )
        self.env.cr.execute(
            SQL(
                "UPDATE db_backup_schedule SET create_date = %s WHERE id = %s",
                "2026-01-01 10:00:00",
                schedule.id,
            )
        )
        schedule.invalidate_recordset()
        with freeze_time("2026-01-02 11:59:00"):  # 24 h + 2 h not yet over
            self.assertFalse(schedule._check_late())
        with freeze_time("2026-01-02 12:01:00"):
            self.assertEqual(schedule._check_late(), schedule)
        mails = self.env["mail.mail"].search([("subject", "like", "No successful")])
        self.assertEqual(len(mails), 1)
        self.assertIn(partner, mails.recipient_ids)
        with freeze_time("2026-01-02 13:00:00"):  # told once per silence
            self.assertFalse(schedule._check_late())

    def test_missing_keyring_fails_scheduled_runs_loudly(self):
        from odoo.tools import config

        partner = self.env["res.partner"].create(
            {"name": "Keyring watcher", "email": "key@example.com"}
        )
        with freeze_time("2026-02-01 10:00:00"):
            schedule = self.env["db.backup.schedule"].create(
                {
                    "frequency": "hourly",
                    "destination_ids": self.local_dest.ids,
                    "alert_partner_ids": partner.ids,
                }
            )
        config["suite_keyring_file"] = os.path.join(self.tmp_dir, "absent")
        try:
            with freeze_time("2026-02-01 11:00:00"):
                self.assertFalse(self.env["db.backup.run"]._queue_due_schedules())
        finally:
            config["suite_keyring_file"] = self.keyring_path
        run = self.env["db.backup.run"].search([("schedule_id", "=", schedule.id)])
        self.assertEqual(run.state, "failed")
        self.assertIn("keyring", run.error)
        mail = self.env["mail.mail"].search([("subject", "like", "Backup failed")])
        self.assertIn(partner, mail.recipient_ids)
        self.assertEqual(str(schedule.next_run), "2026-02-01 12:00:00")

    def test_missing_keyring_refuses_backups(self):
        from odoo.tools import config

        config["suite_keyring_file"] = os.path.join(self.tmp_dir, "absent")
        try:
            with self.assertRaisesRegex(Exception, "keyring"):
                self.env["db.backup.run"].with_user(self.operator).action_backup_now()
            dashboard = (
                self.env["db.backup.dashboard"].with_user(self.operator).create({})
            )
            self.assertFalse(dashboard.keyring_ok)
        finally:
            config["suite_keyring_file"] = self.keyring_path
        dashboard = self.env["db.backup.dashboard"].with_user(self.operator).create({})
        self.assertTrue(dashboard.keyring_ok)
