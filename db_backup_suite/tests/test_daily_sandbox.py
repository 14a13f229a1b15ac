"""Daily sandbox refresh: a schedule kind that restores the newest archive of
the database into ``<db>-sandbox-daily`` every day, replacing yesterday's
only once today's succeeded.

The test database's own transaction is never committed, so the row that
changes between the two backups is written through a separate connection
(committed, seen by ``pg_dump``) and removed at the end.
"""

import os
from datetime import datetime

from freezegun import freeze_time

from odoo.tests import tagged

from odoo.addons.db_backup_suite.lib import safety

from ..service import backup_engine
from .common import BackupCase, drop_test_databases

KEY = "db_backup_suite.test_daily_sandbox_value"


@tagged("post_install", "-at_install")
class TestDailySandbox(BackupCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        dbname = cls.env.cr.dbname
        cls.daily = safety.daily_sandbox_name(dbname)
        # A long database name is cut differently for the daily name and the
        # dated ones: one prefix each, both ending in "-sandbox-" (never the
        # test database itself).
        cls.prefixes = sorted(
            {
                cls.daily[: -len("daily")],
                safety.sandbox_name(dbname, "20261201")[: -len("20261201")],
            }
        )
        cls._drop_sandboxes()
        cls.addClassCleanup(cls._drop_sandboxes)
        cls.addClassCleanup(cls._set_value, None)

    @classmethod
    def _drop_sandboxes(cls):
        for prefix in cls.prefixes:
            drop_test_databases(prefix)

    def setUp(self):
        super().setUp()
        # the databases are real (a test's rows are rolled back, they are not)
        self._drop_sandboxes()
        self.addCleanup(self._drop_sandboxes)

    @classmethod
    def _set_value(cls, value):
        """Write (committed, outside the test transaction) the row the
        backups carry; None removes it."""
        conn = backup_engine.pg_params().connect(cls.env.cr.dbname, autocommit=True)
        try:
            with conn.cursor() as cr:
                cr.execute("DELETE FROM ir_config_parameter WHERE key = %s", [KEY])
                if value is not None:
                    cr.execute(
                        "INSERT INTO ir_config_parameter (key, value) VALUES (%s, %s)",
                        [KEY, value],
                    )
        finally:
            conn.close()

    def _backup_with(self, value):
        self._set_value(value)
        run = self.env["db.backup.run"]._queue_backup(kind="manual")
        self.env["db.backup.run"]._run_queued()
        run.invalidate_recordset()
        self.assertEqual(run.state, "done", run.error)
        return run

    def _schedule(self):
        with freeze_time("2026-12-01 01:00:00"):
            schedule = self.env["db.backup.schedule"].create(
                {
                    "name": "Sandbox",
                    "kind": "sandbox_refresh",
                    "hour": 2,
                    "destination_ids": self.local_dest.ids,
                }
            )
        self.assertEqual(schedule.next_run, datetime(2026, 12, 1, 2, 0))
        return schedule

    def _refresh_at(self, when):
        with freeze_time(when, tick=True):
            runs = self.env["db.backup.schedule"]._run_due_refreshes()
        self.assertEqual(len(runs), 1)
        runs.invalidate_recordset()
        return runs

    def _sandbox_databases(self):
        return sorted(
            {name for p in self.prefixes for name in backup_engine.list_databases(p)}
        )

    def test_refreshed_twice_leaves_one_sandbox_with_the_newest_data(self):
        schedule = self._schedule()
        first = self._backup_with("day one")
        run1 = self._refresh_at("2026-12-01 02:05:00")
        self.assertEqual(run1.state, "done", run1.error)
        self.assertEqual(run1.kind, "sandbox_refresh")
        self.assertEqual(self._sandbox_databases(), [self.daily])
        self.assertEqual(backup_engine.config_parameter_of(self.daily, KEY), "day one")
        self.assertIn(first.name, run1.progress_message)
        self.assertFalse(run1.warning)
        self.assertTrue(schedule.last_proven_restorable)
        # neutralized like every sandbox, and marked as the suite's
        neutralized = backup_engine.config_parameter_of(
            self.daily, "database.is_neutralized"
        )
        self.assertEqual(str(neutralized).lower(), "true")
        sandbox1 = schedule.sandbox_id
        self.assertEqual((sandbox1.name, sandbox1.state), (self.daily, "ready"))
        # the restore's audit event (in the sandbox) keeps what the hooks said
        conn = backup_engine.pg_params().connect(self.daily)
        try:
            with conn.cursor() as cr:
                cr.execute(
                    "SELECT details FROM audit_event WHERE action = 'sandbox' "
                    "AND details->>'operation' = 'restored' ORDER BY id DESC LIMIT 1"
                )
                details = cr.fetchone()[0]
        finally:
            conn.close()
        self.assertIn("hooks", details)
        self.assertIsInstance(details["hooks"], dict)
        self.assertEqual(details["archive"], first.name)
        self.assertEqual(
            backup_engine.sandbox_marker_of(self.daily), sandbox1.sudo().marker
        )
        # one day past the next refresh
        self.assertEqual(sandbox1.expires_at, datetime(2026, 12, 3, 2, 0))
        self.assertEqual(schedule.next_run, datetime(2026, 12, 2, 2, 0))

        second = self._backup_with("day two")
        self.assertNotEqual(first.name, second.name)
        run2 = self._refresh_at("2026-12-02 02:05:00")
        self.assertEqual(run2.state, "done", run2.error)
        self.assertEqual(self._sandbox_databases(), [self.daily])
        self.assertEqual(backup_engine.config_parameter_of(self.daily, KEY), "day two")
        self.assertIn(second.name, run2.progress_message)
        self.assertFalse(run2.warning)
        sandbox2 = schedule.sandbox_id
        self.assertNotEqual(sandbox1, sandbox2)
        sandbox1.invalidate_recordset()
        self.assertEqual(sandbox1.state, "dropped")
        self.assertEqual((sandbox2.name, sandbox2.state), (self.daily, "ready"))
        live = self.env["db.backup.sandbox"].search([("state", "=", "ready")])
        self.assertEqual(live.mapped("name"), [self.daily])
        # the panel's "last proven restorable" moved to the second refresh
        self.assertEqual(
            schedule.last_proven_restorable.date(), datetime(2026, 12, 2).date()
        )
        panel = self.env["db.backup.dashboard"].create({})
        self.assertEqual(panel.last_proven_restorable, schedule.last_proven_restorable)
        # the refreshes are no backups: the panel's last backup is the second
        self.assertEqual(panel.last_success_date, second.date)

    def test_broken_archive_keeps_yesterdays_sandbox_and_alerts(self):
        schedule = self._schedule()
        self._backup_with("day one")
        run1 = self._refresh_at("2026-12-01 02:05:00")
        self.assertEqual(run1.state, "done", run1.error)
        proven = schedule.last_proven_restorable
        sandbox1 = schedule.sandbox_id

        second = self._backup_with("day two")
        path = os.path.join(self.local_dir, second.copy_ids.object_name)
        size = os.path.getsize(path)
        with open(path, "r+b") as handle:
            handle.truncate(size // 2)
        mails_before = self.env["mail.mail"].search_count([])
        run2 = self._refresh_at("2026-12-02 02:05:00")
        self.assertEqual(run2.state, "failed")
        self.assertIn(second.name, run2.error)
        self.assertIn("yesterday's sandbox is kept", run2.error)
        # yesterday's sandbox is there, whole, with yesterday's data
        self.assertEqual(self._sandbox_databases(), [self.daily])
        self.assertEqual(backup_engine.config_parameter_of(self.daily, KEY), "day one")
        sandbox1.invalidate_recordset()
        self.assertEqual((sandbox1.name, sandbox1.state), (self.daily, "ready"))
        self.assertEqual(schedule.sandbox_id, sandbox1)
        self.assertEqual(schedule.last_proven_restorable, proven)
        # alerted like a failed backup
        alert = self.env["mail.mail"].search(
            [("subject", "like", "Backup failed (sandbox)")]
        )
        self.assertEqual(len(alert), 1)
        self.assertIn("yesterday", alert.body_html)
        self.assertGreater(self.env["mail.mail"].search_count([]), mails_before)

    def test_run_now_asks_the_cron_for_a_refresh_not_a_backup(self):
        schedule = self._schedule()
        runs_before = self.env["db.backup.run"].search_count([])
        with freeze_time("2026-12-01 01:30:00"):
            schedule.action_run_now()
        self.assertEqual(schedule.next_run, datetime(2026, 12, 1, 1, 30))
        # nothing queued as a backup
        self.assertEqual(self.env["db.backup.run"].search_count([]), runs_before)
        self.assertEqual(
            self.env["db.backup.run"]._queue_due_schedules(
                now=datetime(2026, 12, 1, 1, 31)
            ),
            self.env["db.backup.run"],
        )
