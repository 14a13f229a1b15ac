"""End to end: back up, change, restore over, check; pre-restore copy; sandbox.

The test's own database cannot be swapped under its running transaction, so
the test backs it up with the engine, restores that archive into a second
database (``e2e_*``), works on that one through its own registry, and
restores over it.
"""

import os
import uuid

from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry
from odoo.tests import tagged
from odoo.tools import config

from ..service import backup_engine, restore_job
from .common import BackupCase, drop_test_databases


@tagged("post_install", "-at_install")
class TestRestoreEndToEnd(BackupCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.second = "e2e_%s" % uuid.uuid4().hex[:8]
        cls.addClassCleanup(drop_test_databases, cls.second)

    # helpers ---------------------------------------------------------------
    def _backup(self, dbname, label="manual"):
        """Engine backup of ``dbname`` to the local destination (child process)."""
        result = backup_engine.run_job(
            {
                "action": "backup",
                "db": backup_engine.db_params(dbname),
                "filestore": backup_engine.filestore_dir(dbname),
                "archive_label": label,
                "sinks": [
                    {
                        "destination_id": self.local_dest.id,
                        "config": self.local_dest._sink_config(),
                    }
                ],
            }
        )
        self.assertTrue(result["copies"][0]["ok"])
        return result

    def _uuid(self, dbname):
        return backup_engine.config_parameter_of(dbname, "database.uuid")

    def _job(self, dbname, archive, target="production", source_db=None, **extra):
        """A restore job into ``dbname``; a new sandbox made from an archive
        of ``source_db`` expects that database's uuid (what the wizard
        sends: the live database's)."""
        job = {
            "database": dbname,
            "target": target,
            "requested_by": "test",
            "archive_name": archive["name"],
            "archive_created_at": archive.get("created_at"),
            "db": backup_engine.db_params(dbname),
            "data_dir": config["data_dir"],
            "pre_restore_sinks": [
                {
                    "destination_id": self.local_dest.id,
                    "config": self.local_dest._sink_config(),
                }
            ],
            "source": {"sink": self.local_dest._sink_config(), "name": archive["name"]},
        }
        if source_db:
            job["expected_uuid"] = self._uuid(source_db)
        job.update(extra)
        return job

    def _partners(self, dbname):
        with Registry(dbname).cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            return set(
                env["res.partner"]
                .with_context(active_test=False)
                .search([("name", "like", "H7 E2E")])
                .mapped("name")
            )

    def _on(self, dbname, func):
        with Registry(dbname).cursor() as cr:
            return func(api.Environment(cr, SUPERUSER_ID, {}))

    # the test ----------------------------------------------------------------
    def test_restore_over_a_database(self):
        base = self._backup(self.env.cr.dbname)
        # 1. a second database from the test database's archive
        created = restore_job.run_job(
            self._job(
                self.second,
                base,
                target="sandbox",
                sandbox_name=self.second,
                source_db=self.env.cr.dbname,
            )
        )
        self.assertTrue(created["ok"], created["message"])

        def prepare(env):
            env["res.partner"].create({"name": "H7 E2E old"})
            # the second database backs up to the same folder, as a real one would
            env["db.backup.destination"].create(
                {"name": "Local", "dest_type": "local", "local_path": self.local_dir}
            )

        self._on(self.second, prepare)
        # 2. the backup to restore later
        archive = self._backup(self.second)
        # 3. life goes on: one partner created, one deleted
        self._on(
            self.second, lambda env: env["res.partner"].create({"name": "H7 E2E new"})
        )
        self._on(
            self.second,
            lambda env: (
                env["res.partner"].search([("name", "=", "H7 E2E old")]).unlink()
            ),
        )
        self.assertEqual(self._partners(self.second), {"H7 E2E new"})
        # ...and audited work after the archive's date: the audit trail must
        # not lose it when the database is replaced
        marker = "H7 E2E audited after the backup %s" % uuid.uuid4().hex[:6]

        def audited(env):
            env["audit.event"].log_event(
                "settings", res_name=marker, message="changed after the backup"
            )
            env["audit.event"]._seal_pending()

        self._on(self.second, audited)
        # 4. restore over it (its own archive: no confirmation needed)
        second_uuid = self._uuid(self.second)
        result = restore_job.run_job(self._job(self.second, archive))
        self.assertTrue(result["ok"], result["message"])
        self.assertEqual(self._partners(self.second), {"H7 E2E old"})
        # the restored database was told (hooks) and lists the pre-restore copy
        pre_name = result["pre_restore"]["name"]
        self.assertIn("_pre-restore_", pre_name)

        def check_restored(env):
            run = env["db.backup.run"].search([("name", "=", pre_name)])
            self.assertEqual(run.kind, "pre_restore")
            self.assertTrue(run.keep_until)
            mail = env["mail.mail"].search([("subject", "like", "restored")])
            self.assertTrue(mail)
            event = env["audit.event"].search([("action", "=", "restore")])
            self.assertTrue(event)
            # the replaced database is kept as a safety copy that expires
            safety = env["db.backup.sandbox"].search(
                [("name", "=like", self.second + "_pre_restore_%")]
            )
            self.assertEqual(len(safety), 1)
            self.assertTrue(backup_engine.database_exists(safety.name))
            # the safety copy carries its row's marker (what its drop checks)
            self.assertEqual(
                backup_engine.sandbox_marker_of(safety.name), safety.marker
            )

        self.assertEqual(self._uuid(self.second), second_uuid)
        self.assertIsNone(backup_engine.sandbox_marker_of(self.second))

        self._on(self.second, check_restored)

        def audit_carried_over(env):
            Event = env["audit.event"]
            carried = Event.search([("res_name", "=", marker)])
            self.assertEqual(len(carried), 1, "the event vanished with the restore")
            self.assertTrue(carried.origin, "carried-over events say where from")
            report = Event._verify_chain_now()
            self.assertTrue(report["ok"], report.get("problem"))

        self._on(self.second, audit_carried_over)
        # 5. the pre-restore copy holds the state before the restore
        pre_db = self.second + "_pre"
        checked = restore_job.run_job(
            self._job(
                pre_db,
                {"name": pre_name},
                target="sandbox",
                sandbox_name=pre_db,
                source_db=self.second,
            )
        )
        self.assertTrue(checked["ok"], checked["message"])
        self.assertEqual(self._partners(pre_db), {"H7 E2E new"})

        # a sandbox is neutralized: no mail server, no crons
        def neutralized(env):
            return (
                env["ir.config_parameter"].get_param("database.is_neutralized"),
                env["ir.cron"].search_count([("active", "=", True)]),
            )

        flag, active_crons = self._on(pre_db, neutralized)
        self.assertTrue(flag)
        self.assertLessEqual(active_crons, 1)  # autovacuum only

    def test_command_line(self):
        """``odoo-bin db_backup``: the restore job file the wizard hands over,
        and ``archives`` listing a database's archives, in real processes."""
        import subprocess

        base = self._backup(self.env.cr.dbname)
        target = self.second + "_cli"
        job = self._job(
            target,
            base,
            target="sandbox",
            sandbox_name=target,
            source_db=self.env.cr.dbname,
        )
        path = restore_job.write_job_file(job)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        proc = subprocess.run(
            restore_job.job_command("restore-job", "--job-file", path),
            env=backup_engine.child_env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        self.assertFalse(os.path.exists(path), "the job file holds secrets")
        self.assertTrue(backup_engine.database_exists(target))
        self._on(
            target,
            lambda env: env["db.backup.destination"].create(
                {"name": "Local", "dest_type": "local", "local_path": self.local_dir}
            ),
        )
        mine = self._backup(target)
        proc = subprocess.run(
            restore_job.job_command("-d", target, "archives"),
            env=backup_engine.child_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        self.assertIn(mine["name"], proc.stdout)
        # only this database's archives: not the test database's
        self.assertNotIn(base["name"], proc.stdout)

    def test_failed_restore_leaves_database(self):
        base = self._backup(self.env.cr.dbname)
        target = self.second + "_f"
        created = restore_job.run_job(
            self._job(
                target,
                base,
                target="sandbox",
                sandbox_name=target,
                source_db=self.env.cr.dbname,
            )
        )
        self.assertTrue(created["ok"], created["message"])
        self._on(target, lambda env: env["res.partner"].create({"name": "H7 E2E keep"}))
        archive = self._backup(target)
        # damage one byte in the middle of the archive
        path = os.path.join(self.local_dir, archive["name"])
        with open(path, "r+b") as handle:
            handle.seek(os.path.getsize(path) // 2)
            byte = handle.read(1)
            handle.seek(-1, os.SEEK_CUR)
            handle.write(bytes([byte[0] ^ 0xFF]))
        self._on(
            target, lambda env: env["res.partner"].create({"name": "H7 E2E later"})
        )
        result = restore_job.run_job(self._job(target, archive))
        self.assertFalse(result["ok"])
        self.assertTrue(result["message"])
        self.assertEqual(self._partners(target), {"H7 E2E keep", "H7 E2E later"})
        failures = self._on(
            target,
            lambda env: env["audit.event"].search_count(
                [("action", "=", "restore"), ("result", "=", "failure")]
            ),
        )
        self.assertEqual(failures, 1)
