import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta, timezone
from unittest.mock import patch

from odoo.tests import BaseCase, tagged
from odoo.tools import config

from ..service import backup_engine, restore_job
from .common import BackupCase


@tagged("post_install", "-at_install")
class TestRunStates(BackupCase):
    """What a run records: the audit head in its manifest, ``partial`` with
    each destination's reason, the daily cleanup of killed runs, the hooks'
    results for the restore's audit event."""

    def _backup(self, schedule=None):
        run = self.env["db.backup.run"]._queue_backup(
            schedule=schedule, kind="scheduled" if schedule else "manual"
        )
        self.env["db.backup.run"]._run_queued()
        run.invalidate_recordset()
        return run

    def test_manifest_carries_the_witnessed_audit_head(self):
        from suite_core import witness

        directory = tempfile.mkdtemp(prefix="h_daily_witness_")
        self.addCleanup(shutil.rmtree, directory, True)
        record = witness.make_record(
            "head",
            key=b"k" * 32,
            key_id="kr:test",
            db=self.env.cr.dbname,
            uuid="uuid-of-test",
            sequence=41,
            chain_hash="a" * 64,
            sealed_at="2026-01-01 00:00:00",
        )
        witness.append(witness.witness_path(directory, self.env.cr.dbname), record)
        with patch.dict(config.options, {"audit_witness_dir": directory}):
            run = self._backup()
        self.assertEqual(run.state, "done", run.error)
        manifest = json.loads(run.manifest_json)
        self.assertEqual(manifest["audit_head"]["sequence"], 41)
        self.assertEqual(manifest["audit_head"]["chain_hash"], "a" * 64)
        self.assertEqual(manifest["audit_head"]["mac"], record["mac"])

    def test_manifest_without_witness_says_none(self):
        empty = tempfile.mkdtemp(prefix="h_daily_witness_")
        self.addCleanup(shutil.rmtree, empty, True)
        with patch.dict(config.options, {"audit_witness_dir": empty}):
            run = self._backup()
        self.assertEqual(run.state, "done", run.error)
        manifest = json.loads(run.manifest_json)
        self.assertIn("audit_head", manifest)
        self.assertIsNone(manifest["audit_head"])

    def test_one_failing_destination_is_partial_with_its_reason(self):
        broken = self.env["db.backup.destination"].create(
            {
                "name": "Closed SFTP port",
                "dest_type": "sftp",
                "sftp_host": "127.0.0.1",
                "sftp_port": 1,
                "sftp_username": "nobody",
                "sftp_path": "/tmp/h_daily_nowhere",
                "sftp_auth": "password",
                "sftp_password": "not-a-real-password",
            }
        )
        # and one the engine cannot reach (refused mid-run, not in Odoo)
        refused = self.env["db.backup.destination"].create(
            {
                "name": "Closed S3 port",
                "dest_type": "s3",
                "s3_bucket": "nowhere",
                "s3_endpoint_url": "http://127.0.0.1:1",
                "s3_region": "us-east-1",
                "s3_access_key": "key",
                "s3_secret_key": "secret",
            }
        )
        partner = self.env["res.partner"].create(
            {"name": "Backup watcher", "email": "watch@example.com"}
        )
        schedule = self.env["db.backup.schedule"].create(
            {
                "frequency": "24h",
                "destination_ids": (self.local_dest | broken | refused).ids,
                "alert_partner_ids": partner.ids,
                "alert_size_mb": 10000,
            }
        )
        run = self._backup(schedule)
        self.assertEqual(run.state, "partial", run.error)
        good = run.copy_ids.filtered(lambda c: c.destination_id == self.local_dest)
        bad = run.copy_ids.filtered(lambda c: c.destination_id == broken)
        self.assertEqual((good.state, bad.state), ("done", "failed"))
        s3_copy = run.copy_ids.filtered(lambda c: c.destination_id == refused)
        self.assertEqual(s3_copy.state, "failed")
        self.assertTrue(s3_copy.error and s3_copy.error.strip())
        self.assertIn("Closed S3 port", run.warning)
        self.assertIn("2 of 3 destinations failed", run.warning)
        # the archive is at the good destination, whole
        path = os.path.join(self.local_dir, good.object_name)
        self.assertTrue(os.path.isfile(path), path)
        self.assertEqual(os.path.getsize(path), run.size)
        # the broken one says why, on its copy, in the run and in the mail
        self.assertTrue(bad.error and bad.error.strip())
        self.assertIn("Closed SFTP port", run.warning)
        self.assertIn(bad.error.splitlines()[0], run.warning)
        self.assertIn("Closed SFTP port", run.summary or run.warning)
        mail = self.env["mail.mail"].search(
            [("subject", "like", "Backup failed"), ("recipient_ids", "in", partner.ids)]
        )
        self.assertEqual(len(mail), 1)
        self.assertIn("Closed SFTP port", mail.body_html)
        self.assertIn("Closed S3 port", mail.body_html)
        # still a stored archive: it can be restored and downloaded
        action = run.with_user(self.restorer).action_open_restore_wizard()
        self.assertEqual(action["res_model"], "db.backup.restore.wizard")

    def test_daily_cron_removes_what_a_killed_run_left(self):
        run = self._backup()
        self.assertEqual(run.state, "done", run.error)
        stored = run.copy_ids.object_name
        folder, final = os.path.split(os.path.join(self.local_dir, stored))
        leftover = os.path.join(folder, ".dbbs-%s.0123456789ab.tmp" % final)
        foreign = os.path.join(folder, ".not-ours.tmp")
        for path in (leftover, foreign):
            with open(path, "wb") as handle:
                handle.write(b"x" * 1000)
            old = time.time() - 7200
            os.utime(path, (old, old))
        cron = self.env.ref("db_backup_suite.ir_cron_db_backup_clean_leftovers")
        self.assertEqual((cron.interval_number, cron.interval_type), (1, "days"))
        summary = self.env["db.backup.run"]._cron_clean_leftovers()
        self.assertFalse(os.path.exists(leftover), summary)
        self.assertTrue(os.path.exists(foreign))
        self.assertTrue(os.path.isfile(os.path.join(self.local_dir, stored)))
        self.assertEqual(summary["removed"], 1, summary)
        event = self.env["audit.event"].search(
            [("res_model", "=", "db.backup.run")], order="id desc", limit=1
        )
        self.assertIn("Leftovers of killed runs: 1 removed", event.message)

    def test_hook_results_kept(self):
        Partner = type(self.env["res.partner"])

        def hook(model, info):
            return {"seen_head": (info.get("audit_head") or {}).get("sequence")}

        results, failures = {}, []
        with patch.object(Partner, "_on_database_restored", hook, create=True):
            restore_job.call_restore_hooks(
                self.env,
                {
                    "target": "sandbox",
                    "archive_name": "x",
                    "archive_created_at": None,
                    "audit_head": {"sequence": 7},
                },
                failures,
                results=results,
            )
        self.assertEqual(results["res.partner"], {"seen_head": 7})
        self.assertFalse(failures)


@tagged("post_install", "-at_install")
class TestArchiveDates(BaseCase):
    """The engine's ISO dates as the runs, restores and drills record them
    (``backup_engine.naive_utc``: Odoo's naive UTC; ``aware_utc``)."""

    def test_naive_utc(self):
        naive_utc = backup_engine.naive_utc
        expected = datetime(2026, 1, 1, 0, 30)
        self.assertEqual(naive_utc("2026-01-01T00:30:00Z"), expected)
        self.assertEqual(naive_utc("2026-01-01T01:30:00+01:00"), expected)
        self.assertEqual(naive_utc("2026-01-01T00:30:00"), expected)
        brussels = timezone(timedelta(hours=1))
        self.assertEqual(
            naive_utc(datetime(2026, 1, 1, 1, 30, tzinfo=brussels)), expected
        )
        self.assertEqual(naive_utc(expected), expected)
        self.assertIs(naive_utc(None), False)
        self.assertIs(naive_utc(""), False)

    def test_aware_utc(self):
        self.assertEqual(
            backup_engine.aware_utc("2026-01-01T01:30:00+01:00"),
            datetime(2026, 1, 1, 0, 30, tzinfo=UTC),
        )
        self.assertIsNone(backup_engine.aware_utc(False))
