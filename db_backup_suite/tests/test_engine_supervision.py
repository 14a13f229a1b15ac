"""Engine jobs outlive the Odoo process that supervises them.

The backup child reports to its own event file; when its supervisor dies
(here: the test spawns the child the way the supervisor does, then drops
it, holding no supervision lock) the watchdog re-attaches it and records
its result, or fails the run when the child was killed. Claiming a queued
run is atomic, so no trigger of the cron runs one twice.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

from odoo import SUPERUSER_ID, api, fields
from odoo.tests import tagged
from odoo.tools import SQL, mute_logger

from ..models import db_backup_run as run_module
from ..service import backup_engine
from .common import BackupCase

RUN_LOGGER = "odoo.addons.db_backup_suite.models.db_backup_run"


def _files_under(directory):
    found = []
    for root, _dirs, files in os.walk(directory):
        found.extend(os.path.join(root, name) for name in files)
    return found


@tagged("post_install", "-at_install")
class TestEngineSupervision(BackupCase):
    def _claimed(self):
        Run = self.env["db.backup.run"]
        run = Run._queue_backup(kind="manual")
        self.assertTrue(run)
        claimed = Run._claim_queued()
        self.assertEqual(claimed, run)
        self.assertEqual(claimed.state, "running")
        # claimed once: a second claim finds nothing
        self.assertFalse(Run._claim_queued())
        return claimed

    def _orphan(self, run):
        """Start the run's engine child as its supervisor does, then lose
        the supervisor: no supervision lock is held, no handle kept."""
        proc = run._start_job()
        self.assertTrue(proc)
        run.invalidate_recordset()
        self.assertEqual(run.pid, proc.pid)
        path = run._events_path()
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(path + ".log").st_mode & 0o777, 0o600)
        self.assertEqual(os.path.dirname(path), backup_engine.jobs_dir())
        return proc.pid

    def _watch_until_ended(self, run, timeout=300):
        Run = self.env["db.backup.run"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            Run._cron_watchdog()
            run.invalidate_recordset()
            if run.state != "running":
                return
        self.fail("the watchdog did not record the run within %ss" % timeout)

    def test_watchdog_cron_every_minute(self):
        cron = self.env.ref(run_module.WATCHDOG_CRON)
        self.assertTrue(cron.active)
        self.assertEqual((cron.interval_number, cron.interval_type), (1, "minutes"))
        self.assertEqual(cron.code.strip(), "model._cron_watchdog()")

    def test_restart_mid_backup_reattaches_and_records_done(self):
        run = self._claimed()
        pid = self._orphan(run)
        self.assertTrue(backup_engine.job_alive(pid))
        # the server restarts: the watchdog finds the run, nobody follows it
        self._watch_until_ended(run)
        self.assertEqual(run.state, "done", run.error)
        self.assertEqual(run.progress, 100.0)
        copy = run.copy_ids
        self.assertEqual(copy.mapped("state"), ["done"])
        archive = os.path.join(self.local_dir, copy.object_name)
        self.assertTrue(os.path.isfile(archive), archive)
        self.assertEqual(os.path.getsize(archive), run.size)
        # the job's files are gone, the child too
        self.assertFalse(os.path.exists(run._events_path()))
        self.assertFalse(os.path.exists(run._events_path() + ".log"))
        deadline = time.monotonic() + 60  # it exits right after its result
        while backup_engine.job_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse(backup_engine.job_alive(pid))
        events = self.env["audit.event"].search(
            [("res_model", "=", "db.backup.run"), ("res_id", "=", run.id)]
        )
        self.assertEqual(events.mapped("result"), ["success"])

    def test_followed_run_is_left_to_its_supervisor(self):
        run = self._claimed()
        with run_module._supervision(self.env.cr.dbname, run.id) as mine:
            self.assertTrue(mine)
            pid = self._orphan(run)
            # its supervisor lives (the lock is held): the watchdog keeps off
            self.assertFalse(run._reattach(follow=0))
            self.env["db.backup.run"]._cron_watchdog()
            run.invalidate_recordset()
            self.assertEqual(run.state, "running")
            deadline = time.monotonic() + 300
            while backup_engine.job_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        # the supervisor died without recording it: the next pass does
        self._watch_until_ended(run)
        self.assertEqual(run.state, "done", run.error)

    def test_killed_child_fails_within_watchdog_and_next_run_cleans(self):
        # enough data that the archive is still being written when killed
        folder = os.path.join(
            backup_engine.filestore_dir(self.env.cr.dbname), "h1_supervision"
        )
        os.makedirs(folder, exist_ok=True)
        self.addCleanup(shutil.rmtree, folder, True)
        with open(os.path.join(folder, "blob"), "wb") as handle:
            for _i in range(48):
                handle.write(os.urandom(1 << 20))
        run = self._claimed()
        pid = self._orphan(run)
        deadline = time.monotonic() + 120
        leftover = []
        while time.monotonic() < deadline and not leftover:
            leftover = [
                p
                for p in _files_under(self.local_dir)
                if os.path.basename(p).startswith(".dbbs-") and os.path.getsize(p)
            ]
            if not leftover:
                time.sleep(0.02)
        self.assertTrue(leftover, "the archive never started")
        os.kill(pid, signal.SIGKILL)
        events = backup_engine.read_events(run._events_path())
        self.assertFalse(
            [e for e in events if e.get("event") in backup_engine.FINAL_EVENTS],
            "the job ended before it was killed",
        )
        # the watchdog's pass (at most a minute later) fails it
        with mute_logger(RUN_LOGGER):
            self.env["db.backup.run"]._cron_watchdog()
        run.invalidate_recordset()
        self.assertEqual(run.state, "failed")
        self.assertIn(str(pid), run.error)
        self.assertIn("stopped without a result", run.error)
        self.assertFalse(os.path.exists(run._events_path()))
        self.assertTrue(
            self.env["mail.mail"].search([("subject", "like", "Backup failed")])
        )
        self.assertTrue(any(os.path.exists(p) for p in leftover))
        # Backup Now is free again; the next run removes what the killed left
        Run = self.env["db.backup.run"]
        following = Run._queue_backup(kind="manual")
        self.assertTrue(following)
        Run._run_queued()
        following.invalidate_recordset()
        self.assertEqual(following.state, "done", following.error)
        self.assertFalse([p for p in leftover if os.path.exists(p)])
        # nothing but complete archives: no hidden temporary file anywhere
        files = _files_under(self.local_dir)
        self.assertIn(
            os.path.join(self.local_dir, following.copy_ids.object_name), files
        )
        self.assertFalse([p for p in files if os.path.basename(p).startswith(".")])

    def test_engine_child_survives_a_broken_stdout(self):
        """The old protocol's pipe: its parent's end is closed (the parent
        died) before the child writes anything; the child goes on and
        writes its result to its event file."""
        run = self.env["db.backup.run"]._queue_backup(kind="manual")
        payload = run._backup_payload()
        payload.pop("unusable", None)
        path = backup_engine.job_events_path("test", self.env.cr.dbname, run.id)
        self.addCleanup(backup_engine.remove_job_files, path)
        payload["events_path"] = path
        proc = subprocess.Popen(
            [sys.executable, "-m", "db_backup_suite.service.engine_job"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(backup_engine.ADDONS_PARENT),
            env=backup_engine.child_env(),
            start_new_session=True,
        )
        proc.stdout.close()
        proc.stderr.close()
        proc.stdin.write(json.dumps(payload).encode())
        proc.stdin.close()
        self.assertEqual(proc.wait(timeout=300), 0)
        events = backup_engine.read_events(path)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(events[-1]["event"], "result", events[-1:])
        self.assertEqual(events[-1]["state"], "done")
        stored = events[-1]["copies"][0]
        self.assertTrue(stored["ok"])
        self.assertTrue(os.path.isfile(os.path.join(self.local_dir, stored["name"])))

    def test_dead_process_without_events_fails_the_run(self):
        proc = subprocess.Popen(["sleep", "0"])
        proc.wait()
        run = self._claimed()
        run._write_detached({"pid": proc.pid})
        with mute_logger(RUN_LOGGER):
            self.env["db.backup.run"]._cron_watchdog()
        run.invalidate_recordset()
        self.assertEqual(run.state, "failed")
        self.assertIn(str(proc.pid), run.error)

    def test_job_started_under_the_former_module_name_is_alive(self):
        # a job started before an upgrade moved the child (``cli.engine_job``)
        # still runs and reports: the watchdog must not fail its run
        former = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import time; time.sleep(30)",
                "db_backup_suite.cli.engine_job",
            ]
        )
        self.addCleanup(former.wait)
        self.addCleanup(former.kill)
        self.assertTrue(backup_engine.job_alive(former.pid))

    def test_pid_of_another_program_is_not_the_job(self):
        # a pid reused by something else after a restart is not the job
        other = subprocess.Popen(["sleep", "30"])
        self.addCleanup(other.wait)
        self.addCleanup(other.kill)
        self.assertFalse(backup_engine.job_alive(other.pid))

    def test_claim_just_made_is_not_failed(self):
        run = self._claimed()
        self.env["db.backup.run"]._cron_watchdog()
        run.invalidate_recordset()
        self.assertEqual(run.state, "running")
        self.env.cr.execute(
            SQL(
                "UPDATE db_backup_run SET started_at = %s WHERE id = %s",
                fields.Datetime.now() - timedelta(minutes=5),
                run.id,
            )
        )
        run.invalidate_recordset()
        with mute_logger(RUN_LOGGER):
            self.env["db.backup.run"]._cron_watchdog()
        run.invalidate_recordset()
        self.assertEqual(run.state, "failed")

    def test_registry_load_wakes_the_watchdog(self):
        cron = self.env.ref(run_module.WATCHDOG_CRON)
        Trigger = self.env["ir.cron.trigger"].sudo()
        before = Trigger.search_count([("cron_id", "=", cron.id)])
        self.env["db.backup.run"]._register_hook()
        self.assertEqual(Trigger.search_count([("cron_id", "=", cron.id)]), before)
        self._claimed()
        self.env["db.backup.run"]._register_hook()
        self.assertEqual(Trigger.search_count([("cron_id", "=", cron.id)]), before + 1)

    def test_dead_sandbox_creation_is_failed(self):
        Sandbox = self.env["db.backup.sandbox"].sudo()
        sandbox = Sandbox.create(
            {"name": Sandbox._unique_name(self.env.cr.dbname), "archive_name": "x"}
        )
        fresh = Sandbox.create(
            {"name": Sandbox._unique_name(self.env.cr.dbname), "archive_name": "y"}
        )
        for record, age in ((sandbox, 10), (fresh, 0)):
            self.env.cr.execute(
                SQL(
                    "UPDATE db_backup_sandbox SET write_date = %s WHERE id = %s",
                    fields.Datetime.now() - timedelta(minutes=age),
                    record.id,
                )
            )
        refresh = self.env["db.backup.run"].create(
            {
                "kind": "sandbox_refresh",
                "state": "running",
                "label": "sandbox",
                "started_at": fields.Datetime.now() - timedelta(minutes=10),
            }
        )
        # a restore job of this server runs: it may be theirs, left alone
        fake = subprocess.Popen(
            [
                "python3",
                "-c",
                "import time; time.sleep(60)",
                "db_backup",
                "restore-job",
                "--data-dir=%s" % backup_engine.data_dir(),
            ]
        )
        try:
            self.env["db.backup.run"]._watch_restores()
            sandbox.invalidate_recordset()
            self.assertEqual(sandbox.state, "creating")
        finally:
            fake.kill()
            fake.wait()
        # a refresh holding its lock: left alone as well
        with run_module._supervision(self.env.cr.dbname, run_module.REFRESH_KEY):
            self.env["db.backup.run"]._cron_watchdog()
        sandbox.invalidate_recordset()
        refresh.invalidate_recordset()
        self.assertEqual((sandbox.state, refresh.state), ("creating", "running"))
        with mute_logger(RUN_LOGGER):
            self.env["db.backup.run"]._cron_watchdog()
        (sandbox | fresh).invalidate_recordset()
        refresh.invalidate_recordset()
        self.assertEqual(sandbox.state, "failed")
        self.assertIn("stopped without a result", sandbox.error)
        self.assertEqual(fresh.state, "creating")  # started a moment ago
        self.assertEqual(refresh.state, "failed")

    def test_run_manually_twice_executes_once(self):
        Run = self.env["db.backup.run"]
        ended = [("state", "in", ("done", "partial", "failed"))]
        before = Run.search_count(ended)
        run = Run._queue_backup(kind="manual")
        cron = self.env.ref("db_backup_suite.ir_cron_db_backup_process")
        admin_cron = cron.with_user(self.admin)
        self.assertTrue(admin_cron.method_direct_trigger())
        self.assertTrue(admin_cron.method_direct_trigger())
        run.invalidate_recordset()
        self.assertEqual(run.state, "done", run.error)
        self.assertEqual(len(run.copy_ids), 1)
        self.assertEqual(Run.search_count(ended), before + 1)
        events = self.env["audit.event"].search(
            [("res_model", "=", "db.backup.run"), ("res_id", "=", run.id)]
        )
        self.assertEqual(events.mapped("result"), ["success"])
        self.assertFalse(
            self.env["mail.mail"].search([("subject", "like", "Backup failed")])
        )

    def test_run_manually_never_commits_the_cron_transaction(self):
        """``method_direct_trigger`` locks the cron's row in the caller's
        transaction: the cron method must not commit it (the lock would be
        released half-way, the cron worker could run the same job and the
        trigger's last write fail with "This cron task is currently being
        executed"). Out of test mode the method gets real cursors for what
        it commits, and this test's cursor refuses any commit."""
        cron = self.env.ref("db_backup_suite.ir_cron_db_backup_process")
        self.registry.leave_test_mode()
        try:
            self.assertTrue(cron.with_user(self.admin).method_direct_trigger())
        finally:
            self.registry.enter_test_mode(self.cr)

    def test_concurrent_claims_take_a_run_once(self):
        """Two processes claim at the same moment (real, committed
        transactions): one gets the run, the other nothing. The registry
        gives real cursors meanwhile (the registry lock stays the test's
        dummy one: the threads make environments)."""
        test_cr, self.registry.test_cr = self.registry.test_cr, None
        made = []
        try:
            for _round in range(3):
                with self.registry.cursor() as cr:
                    env = api.Environment(cr, SUPERUSER_ID, {})
                    run = env["db.backup.run"].create(
                        {"kind": "manual", "state": "queued", "label": "claim-test"}
                    )
                    made.append(run.id)
                barrier = threading.Barrier(2)
                claims, errors = [], []

                def claim(claims, errors, barrier):
                    try:
                        with self.registry.cursor() as cr:
                            env = api.Environment(cr, SUPERUSER_ID, {})
                            barrier.wait(timeout=30)
                            claims.append(env["db.backup.run"]._claim_queued().ids)
                    except Exception as exc:  # told to the test below
                        errors.append(repr(exc))

                threads = [
                    threading.Thread(target=claim, args=(claims, errors, barrier))
                    for _i in range(2)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(timeout=60)
                self.assertFalse([t for t in threads if t.is_alive()])
                self.assertFalse(errors)
                self.assertEqual(sorted(claims), [[], [made[-1]]])
                with self.registry.cursor() as cr:
                    cr.execute(
                        SQL("SELECT state FROM db_backup_run WHERE id = %s", made[-1])
                    )
                    self.assertEqual(cr.fetchone()[0], "running")
                    # the next round's run may be queued (one active at a time)
                    cr.execute(
                        SQL(
                            "UPDATE db_backup_run SET state = 'failed' WHERE id = %s",
                            made[-1],
                        )
                    )
        finally:
            if made:
                with self.registry.cursor() as cr:
                    cr.execute(
                        SQL("DELETE FROM db_backup_run WHERE id IN %s", tuple(made))
                    )
            self.registry.test_cr = test_cr

    def test_run_manually_while_a_worker_runs_it_says_so(self):
        """A cron worker holds the backup cron's row (it is running it):
        Run Manually tells so instead of "This cron task is currently being
        executed", and starts nothing; users who may not write crons are
        refused first."""
        import psycopg2

        from odoo import sql_db
        from odoo.exceptions import AccessError

        run = self.env["db.backup.run"]._queue_backup(kind="manual")
        cron = self.env.ref("db_backup_suite.ir_cron_db_backup_process")
        with self.assertRaises(AccessError):
            cron.with_user(self.operator).method_direct_trigger()
        _name, info = sql_db.connection_info_for(self.env.cr.dbname)
        worker = psycopg2.connect(**info)
        try:
            with worker.cursor() as wcr:
                wcr.execute(
                    "SELECT id FROM ir_cron WHERE id = %s FOR NO KEY UPDATE",
                    [cron.id],
                )
                action = cron.with_user(self.admin).method_direct_trigger()
        finally:
            worker.rollback()
            worker.close()
        self.assertEqual(action["tag"], "display_notification")
        self.assertIn("running right now", action["params"]["message"])
        run.invalidate_recordset()
        self.assertEqual(run.state, "queued")
        # the worker is done: Run Manually runs it
        self.assertTrue(cron.with_user(self.admin).method_direct_trigger())
        run.invalidate_recordset()
        self.assertEqual(run.state, "done", run.error)
