"""Restore drills: a schedule's newest archive restored into a temporary
database, its row counts checked against the manifest, the database dropped
whatever happens, the result on the schedule and the status panel.

Real components: the engine backs the test database up (child process) to a
local folder, the drill restores it with the engine into a real
``<db>_drill_<stamp>`` database. The test transaction is never committed:
the drill runs in-process (``detach=False``, or the cron in test mode).
"""

import json
import os
from datetime import datetime

from freezegun import freeze_time

from odoo.exceptions import UserError
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tools import config, mute_logger

from odoo.addons.audit_export.tests.common import RpcMixin

from ..lib import pgtools, registry, safety
from ..service import backup_engine
from .common import BackupCase, KeyringMixin, drop_test_databases


def drill_prefix(dbname):
    return (dbname + "_drill_")[:40]


@tagged("post_install", "-at_install")
class TestRestoreDrill(BackupCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.prefix = drill_prefix(cls.env.cr.dbname)
        drop_test_databases(cls.prefix)
        cls.addClassCleanup(drop_test_databases, cls.prefix)
        with freeze_time("2026-12-01 03:00:00"):
            cls.schedule = cls.env["db.backup.schedule"].create(
                {
                    "name": "Nightly",
                    "frequency": "24h",
                    "hour": 2,
                    "destination_ids": cls.local_dest.ids,
                    "alert_partner_ids": [(6, 0, cls.admin.partner_id.ids)],
                }
            )

    def _backup(self):
        run = self.env["db.backup.run"]._queue_backup(
            schedule=self.schedule, kind="scheduled"
        )
        self.env["db.backup.run"]._run_queued()
        run.invalidate_recordset()
        self.assertEqual(run.state, "done", run.error)
        return run

    def _leftovers(self):
        """Drill databases, filestores and registry entries of this database."""
        dbname = self.env.cr.dbname
        filestores = [
            name
            for name in os.listdir(os.path.join(config["data_dir"], "filestore"))
            if name.startswith(self.prefix)
        ]
        listed = [
            e.name
            for e in registry.entries_for(config["data_dir"], dbname)
            if e.kind == "drill"
        ]
        return backup_engine.list_databases(self.prefix) + filestores + listed

    def _drill_mails(self):
        return self.env["mail.mail"].search(
            [("subject", "like", "Restore drill failed")]
        )

    def test_drill_due_weekly_restores_checks_and_drops(self):
        schedule = self.schedule
        # weekly by default: due 7 days after the schedule was made
        self.assertEqual(schedule.drill_interval_days, 7)
        self.assertEqual(schedule.next_drill_at, datetime(2026, 12, 8, 3, 0))
        Schedule = self.env["db.backup.schedule"]
        self.assertFalse(Schedule._due_drills(datetime(2026, 12, 8, 2, 59)))
        self.assertEqual(Schedule._due_drills(datetime(2026, 12, 8, 3, 0)), schedule)
        backup = self._backup()
        runs_before = self.env["db.backup.run"].search_count([("kind", "=", "drill")])
        with freeze_time("2026-12-07 12:00:00", tick=True):
            self.assertFalse(Schedule._cron_run_drills())
        self.assertEqual(
            self.env["db.backup.run"].search_count([("kind", "=", "drill")]),
            runs_before,
        )
        self.assertFalse(schedule.last_proven_restorable)

        with freeze_time("2026-12-08 03:10:00", tick=True):
            drill = Schedule._cron_run_drills()
        drill.invalidate_recordset()
        schedule.invalidate_recordset()
        self.assertEqual(drill.kind, "drill")
        self.assertEqual(drill.schedule_id, schedule)
        self.assertEqual(drill.state, "done", drill.error)
        self.assertEqual(drill.progress, 100.0)
        self.assertIn(backup.name, drill.progress_message)
        self.assertIn("rows match the manifest", drill.progress_message)
        self.assertEqual(schedule.last_drill_state, "ok")
        self.assertEqual(schedule.last_drill_at.date(), datetime(2026, 12, 8).date())
        self.assertEqual(
            schedule.last_proven_restorable.date(), datetime(2026, 12, 8).date()
        )
        self.assertFalse(schedule.drill_database)
        self.assertFalse(schedule.drill_alarm)
        # next one a week after this one
        self.assertEqual(schedule.next_drill_at.date(), datetime(2026, 12, 15).date())
        # the counts were checked: every table of the manifest, rows > 0
        event = self.env["audit.event"].search(
            [("res_model", "=", "db.backup.run"), ("res_id", "=", drill.id)],
            limit=1,
            order="id desc",
        )
        details = event.details
        manifest = json.loads(backup.manifest_json)
        self.assertEqual(details["tables"], len(manifest["row_counts"]))
        self.assertEqual(details["rows"], sum(manifest["row_counts"].values()))
        self.assertGreater(details["rows"], 0)
        # the temporary database, its filestore and its registry entry: gone
        self.assertEqual(self._leftovers(), [])
        self.assertFalse(backup_engine.database_exists(details["drill_database"]))
        # a drill is no backup: the panel's last backup is the backup
        panel = self.env["db.backup.dashboard"].create({})
        self.assertEqual(panel.last_success_date, backup.date)
        self.assertIn("Last proven restorable", panel.drill_status)
        self.assertIn("o_db_backup_drill_ok", panel.drill_status)
        self.assertNotIn("text-danger", panel.drill_status)
        self.assertEqual(panel.drill_alarm_count, 0)
        # the late alert does not take the drill for a backup of the schedule
        self.assertEqual(schedule._last_success(), backup)

    def test_broken_archive_fails_loudly_and_leaves_nothing(self):
        schedule = self.schedule
        backup = self._backup()
        path = os.path.join(self.local_dir, backup.copy_ids.object_name)
        with open(path, "r+b") as handle:
            handle.truncate(os.path.getsize(path) // 2)
        mails_before = self._drill_mails()
        with mute_logger("odoo.addons.db_backup_suite.service.restore_drill"):
            drill = schedule._start_drill(detach=False)
        schedule.invalidate_recordset()
        self.assertEqual(drill.state, "failed")
        self.assertIn(backup.name, drill.error)
        self.assertEqual(schedule.last_drill_state, "failed")
        self.assertIn(backup.name, schedule.last_drill_message)
        self.assertFalse(schedule.last_proven_restorable)
        self.assertTrue(schedule.drill_alarm)
        self.assertEqual(self._leftovers(), [])
        # alerted with the reason, to the schedule's recipients
        mail = self._drill_mails() - mails_before
        self.assertEqual(len(mail), 1)
        self.assertIn(backup.name, mail.body_html)
        self.assertEqual(mail.recipient_ids, self.admin.partner_id)
        reason = drill.error.split(": ", 1)[1][:40]
        self.assertIn(reason, mail.body_html)
        # red on the status panel, with the reason
        panel = self.env["db.backup.dashboard"].create({})
        self.assertIn("text-danger", panel.drill_status)
        self.assertEqual(panel.drill_alarm_count, 1)
        self.assertIn(drill, panel.problem_ids)

    def test_counts_that_disagree_fail_and_keep_the_last_proof(self):
        schedule = self.schedule
        backup = self._backup()
        ok = schedule._start_drill(detach=False)
        self.assertEqual(ok.state, "done", ok.error)
        proven = schedule.last_proven_restorable
        self.assertTrue(proven)
        # the counts recorded when the backup was taken disagree with the
        # restored copy (one partner more than the archive holds)
        manifest = json.loads(backup.manifest_json)
        manifest["row_counts"]["res_partner"] += 1
        backup.sudo().manifest_json = json.dumps(manifest)
        with (
            freeze_time("2026-12-20 03:00:00", tick=True),
            mute_logger("odoo.addons.db_backup_suite.service.restore_drill"),
        ):
            drill = schedule._start_drill(detach=False)
        schedule.invalidate_recordset()
        self.assertEqual(drill.state, "failed")
        self.assertIn("res_partner", drill.error)
        self.assertIn("recorded when the backup was taken", drill.error)
        self.assertEqual(schedule.last_proven_restorable, proven)
        self.assertEqual(schedule.last_drill_state, "failed")
        self.assertEqual(self._leftovers(), [])
        mail = self._drill_mails()
        self.assertEqual(len(mail), 1)
        self.assertIn("res_partner", mail.body_html)

    def test_no_archive_fails_and_run_now_refused_while_busy(self):
        schedule = self.schedule
        mails_before = self._drill_mails()
        drill = schedule._start_drill(detach=False)
        self.assertEqual(drill.state, "failed")
        self.assertIn("No stored archive", drill.error)
        self.assertEqual(len(self._drill_mails() - mails_before), 1)
        # another drill of this database running: Run drill now is refused
        self.env["db.backup.run"].sudo().create(
            {"kind": "drill", "label": "drill", "state": "running"}
        )
        runs = self.env["db.backup.run"].search_count([])
        with self.assertRaises(UserError):
            schedule.with_user(self.admin).action_run_drill()
        self.assertEqual(self.env["db.backup.run"].search_count([]), runs)
        # a sandbox refresh schedule proves itself daily: no separate drill
        refresh = self.env["db.backup.schedule"].create(
            {"kind": "sandbox_refresh", "destination_ids": self.local_dest.ids}
        )
        self.assertFalse(refresh.next_drill_at)
        with self.assertRaises(UserError):
            refresh.action_run_drill()
        # 0 turns the drill off
        schedule.drill_interval_days = 0
        self.assertFalse(schedule.next_drill_at)
        self.assertNotIn(schedule, schedule._due_drills(datetime(2030, 1, 1)))

    def test_killed_drill_leftovers_are_removed(self):
        """What a killed drill left (its database, filestore and registry
        entry) goes at the next cron pass; a live database is never touched."""
        dbname = self.env.cr.dbname
        left = safety.drill_name(dbname, "20261201030000")
        pg = backup_engine.pg_params()
        pgtools.create_database(pg, left)
        os.makedirs(os.path.join(config["data_dir"], "filestore", left))
        registry.register(config["data_dir"], left, "drill", dbname)
        self.assertTrue(self._leftovers())
        result = self.env["db.backup.schedule"]._clean_drill_leftovers()
        self.assertIn(left, result["removed"])
        self.assertEqual(self._leftovers(), [])
        self.assertTrue(backup_engine.database_exists(dbname))

    def test_lookalike_drill_databases_survive_the_cron(self):
        """Databases someone else made under a drill name (and its staging
        name), with data, not in the registry: the cron leaves them alone,
        says so in the audit log, drops nothing."""
        dbname = self.env.cr.dbname
        fake = safety.drill_name(dbname, "20250101000000")
        fake_staging = safety.derived_name(fake, "restoring_20250101000001")
        pg = backup_engine.pg_params()
        try:
            for name in (fake, fake_staging):
                pgtools.create_database(pg, name)
                conn = pg.connect(name)
                try:
                    with conn.cursor() as cr:
                        cr.execute("CREATE TABLE precious AS SELECT 1 AS v")
                    conn.commit()
                finally:
                    conn.close()
            with mute_logger("odoo.addons.db_backup_suite.lib.drill"):
                result = self.env["db.backup.schedule"]._clean_drill_leftovers()
            self.assertEqual(result["removed"], [])
            self.assertEqual(
                sorted(item.split(" ")[0] for item in result["left_alone"]),
                sorted([fake, fake_staging]),
            )
            for name in (fake, fake_staging):
                self.assertTrue(backup_engine.database_exists(name))
            event = self.env["audit.event"].sudo().search([], order="id desc", limit=1)
            self.assertIn("2 look-alike(s)", event.message)
        finally:
            for name in (fake, fake_staging):
                pgtools.drop_database(pg, name)


@tagged("post_install", "-at_install")
class TestRestoreDrillRpc(RpcMixin, KeyringMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        dest = cls.setup_local_destination()
        cls.schedule = cls.env["db.backup.schedule"].create(
            {"name": "Nightly", "destination_ids": dest.ids}
        )
        groups = "base.group_user,db_backup_suite.backup_group_"
        cls.operator = new_test_user(
            cls.env, login="drill_operator", groups=groups + "operator"
        )
        cls.restorer = new_test_user(
            cls.env, login="drill_restorer", groups=groups + "restore"
        )

    def test_operator_and_restorer_cannot_run_a_drill(self):
        before = (
            self.schedule.last_drill_at,
            self.schedule.next_drill_at,
            self.env["db.backup.run"].search_count([]),
            self.env["mail.mail"].search_count([]),
        )
        for login in ("drill_operator", "drill_restorer"):
            for method in ("action_run_drill", "_start_drill", "_cron_run_drills"):
                args = [] if method == "_cron_run_drills" else [[self.schedule.id]]
                with self.subTest(login=login, method=method), mute_logger("odoo.http"):
                    self.assertRpcError(
                        self.rpc_as(login, "db.backup.schedule", method, *args)
                    )
        self.schedule.invalidate_recordset()
        self.assertEqual(
            (
                self.schedule.last_drill_at,
                self.schedule.next_drill_at,
                self.env["db.backup.run"].search_count([]),
                self.env["mail.mail"].search_count([]),
            ),
            before,
        )
