"""Each backup role's main job in Chromium, from the home menu, by clicking
menus only, with the page following the job live through Odoo's bus
(``LiveBusMixin``; the work of a cron or a detached process runs in a
``JobThread`` of the test process: see ``audit_export/tests/live_bus.py``).
"""

import os
import threading
from unittest.mock import patch

from odoo.tests import HttpCase, new_test_user, tagged

from odoo.addons.audit_export.tests.live_bus import JobThread, LiveBusMixin

from ..lib import safety
from ..service import restore_job
from .common import KeyringMixin, drop_derived_databases


@tagged("post_install", "-at_install")
class TestOperatorTour(LiveBusMixin, KeyringMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        cls.enable_live_bus()
        cls.setup_local_destination()
        cls.env["db.backup.run"].search([]).sudo().unlink()
        new_test_user(
            cls.env,
            login="role_operator",
            groups="base.group_user,db_backup_suite.backup_group_operator",
        )

    def test_operator_backup_now_followed_to_done(self):
        Dashboard = type(self.env["db.backup.dashboard"])
        compute = Dashboard._compute_status
        shown = threading.Event()
        threads = []

        def compute_status(dashboards):
            compute(dashboards)
            if any(d.live_state == "queued" for d in dashboards):
                shown.set()  # the page shows the queued backup

        def trigger(cron, at=None):
            # the cron wakes up in another process; here: a thread that runs
            # the queued backup once the page has shown it queued
            if cron == self.env.ref("db_backup_suite.ir_cron_db_backup_process"):
                thread = JobThread(
                    self.registry,
                    lambda env: env["db.backup.run"]._run_queued(),
                    wait_for=shown,
                )
                threads.append(thread)
                thread.start()

        with (
            patch.object(Dashboard, "_compute_status", compute_status),
            patch.object(type(self.env["ir.cron"]), "_trigger", trigger),
        ):
            self.start_tour(
                "/odoo",
                "db_backup_suite_operator_tour",
                login="role_operator",
                timeout=180,
            )
        self.assertEqual(len(threads), 1, "Backup Now wakes the backup cron once")
        threads[0].join(60)
        self.assertIsNone(threads[0].error)
        self.env.invalidate_all()
        run = self.env["db.backup.run"].search([])
        self.assertEqual(len(run), 1)
        self.assertEqual(
            (run.state, run.kind, run.encryption), ("done", "manual", "encrypted")
        )
        self.assertEqual(run.requested_by_id.login, "role_operator")
        self.assertTrue(os.path.exists(os.path.join(self.local_dir, run.name)))


@tagged("post_install", "-at_install")
class TestRestoreTour(LiveBusMixin, KeyringMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        cls.enable_live_bus()
        cls.addClassCleanup(drop_derived_databases, cls.env.cr.dbname)
        cls.setup_local_destination()
        cls.env["db.backup.run"].search([]).sudo().unlink()
        # A real backup of this database (engine, child process).
        cls.backup_run = cls.env["db.backup.run"]._queue_backup(kind="manual")
        cls.env["db.backup.run"]._run_queued()
        cls.backup_run.invalidate_recordset()
        assert cls.backup_run.state == "done", cls.backup_run.error
        new_test_user(
            cls.env,
            login="role_restorer",
            groups="base.group_user,db_backup_suite.backup_group_restore",
        )

    def test_restore_user_gate_and_sandbox_followed_to_ready(self):
        threads = []

        def spawn_detached(job):
            # the detached restore process: run_job in a thread of this test
            thread = JobThread(
                self.registry, lambda: restore_job.run_job(job), with_env=False
            )
            threads.append(thread)
            thread.start()
            return "in-process"

        with patch.object(restore_job, "spawn_detached", spawn_detached):
            self.start_tour(
                "/odoo",
                "db_backup_suite_restore_tour",
                login="role_restorer",
                timeout=240,
            )
        self.assertEqual(len(threads), 1, "one restore started")
        threads[0].join(120)
        self.assertIsNone(threads[0].error)
        self.env.invalidate_all()
        sandbox = self.env["db.backup.sandbox"].search([])
        self.assertEqual(len(sandbox), 1)
        self.assertEqual(sandbox.state, "ready", sandbox.error)
        # one of this database's own sandbox names (a long database name is
        # cut so that the name and its safety copy fit PostgreSQL's 63 bytes)
        self.assertIn("-sandbox-", sandbox.name)
        safety.check_sandbox_name(sandbox.name, production_db=self.env.cr.dbname)
        wizard = (
            self.env["db.backup.restore.wizard"]
            .sudo()
            .search([("sandbox_id", "=", sandbox.id)])
        )
        self.assertEqual((wizard.state, wizard.target), ("done", "sandbox"))
        self.assertEqual(wizard.create_uid.login, "role_restorer")
        # the production database was not touched: still this test's
        self.assertTrue(self.env["db.backup.run"].browse(self.backup_run.id).exists())
