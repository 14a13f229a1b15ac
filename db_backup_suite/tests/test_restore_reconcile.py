"""A true history after a restore: runs reconciled, every database listed.

Real components throughout: the engine backs up and restores in child
processes, a second database (``rcn_*``) made from the test database's
archive is backed up through its own run model (so its archive holds its
own run in state ``running``), gets a sandbox through the wizard's job,
then is restored over from that archive through the real restore job.
After it: exactly one done row for the archive (no "process stopped"
row), the earlier sandbox and the safety copy listed from the registry
outside the database, both droppable by the right role only.

The test database's own rows are checked over real HTTP JSON-RPC: a
Backup Operator cannot drop (AccessError, nothing changed), a Backup
Restore user drops a sandbox but not a safety copy, an administrator
drops the safety copy.
"""

import os
import uuid

from odoo import SUPERUSER_ID, api
from odoo.exceptions import AccessError
from odoo.modules.registry import Registry
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tools import SQL, config, mute_logger

from odoo.addons.audit_export.tests.common import RpcMixin

from ..service import backup_engine, restore_job
from .common import KeyringMixin, drop_derived_databases, drop_test_databases


def _registry():
    from ..lib import registry

    return registry


@tagged("post_install", "-at_install")
class TestRestoreReconcile(RpcMixin, KeyringMixin, HttpCase):
    rpc_timeout = 180  # a DROP DATABASE waits for a checkpoint

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        cls.dbname = cls.env.cr.dbname
        cls.dest = cls.setup_local_destination()
        groups = "base.group_user,db_backup_suite.backup_group_"
        cls.operator = new_test_user(
            cls.env, login="rcn_operator", groups=groups + "operator"
        )
        cls.restorer = new_test_user(
            cls.env, login="rcn_restorer", groups=groups + "restore"
        )
        cls.admin = new_test_user(
            cls.env,
            login="rcn_admin",
            groups="base.group_user,base.group_system," + groups + "restore",
        )
        cls.second = "rcn_%s" % uuid.uuid4().hex[:8]
        cls.addClassCleanup(drop_test_databases, cls.second)
        cls.addClassCleanup(drop_derived_databases, cls.dbname)
        cls.addClassCleanup(cls._prune_registry)
        # an archive of the test database (engine, child process)
        cls.base = backup_engine.run_job(
            {
                "action": "backup",
                "db": backup_engine.db_params(cls.dbname),
                "filestore": backup_engine.filestore_dir(cls.dbname),
                "archive_label": "manual",
                "sinks": [
                    {"destination_id": cls.dest.id, "config": cls.dest._sink_config()}
                ],
            }
        )
        assert cls.base["copies"][0]["ok"], cls.base

    @classmethod
    def _prune_registry(cls):
        _registry().prune(backup_engine.data_dir(), backup_engine.database_exists)

    # helpers ---------------------------------------------------------------
    def _job(self, dbname, archive, target="production", **extra):
        job = {
            "database": dbname,
            "target": target,
            "requested_by": "reconcile test",
            "archive_name": archive,
            "db": backup_engine.db_params(dbname),
            "data_dir": config["data_dir"],
            "pre_restore_sinks": [
                {"destination_id": self.dest.id, "config": self.dest._sink_config()}
            ],
            "source": {"sink": self.dest._sink_config(), "name": archive},
        }
        job.update(extra)
        return job

    def _on(self, dbname, func):
        with Registry(dbname).cursor() as cr:
            return func(api.Environment(cr, SUPERUSER_ID, {}))

    def _uuid(self, dbname):
        return backup_engine.config_parameter_of(dbname, "database.uuid")

    # the restore ---------------------------------------------------------------
    def test_production_restore_reconciles_runs_and_sandboxes(self):
        second, registry = self.second, _registry()
        made = restore_job.run_job(
            self._job(
                second,
                self.base["name"],
                "sandbox",
                sandbox_name=second,
                expected_uuid=self._uuid(self.dbname),
            )
        )
        self.assertTrue(made["ok"], made["message"])

        def prepare(env):
            env["db.backup.destination"].create(
                {"name": "Local", "dest_type": "local", "local_path": self.local_dir}
            )
            admin = new_test_user(
                env,
                login="rcn_admin",
                groups="base.group_user,base.group_system,"
                "db_backup_suite.backup_group_restore",
            )
            new_test_user(
                env,
                login="rcn_operator",
                groups="base.group_user,db_backup_suite.backup_group_operator",
            )
            new_test_user(
                env,
                login="rcn_restorer",
                groups="base.group_user,db_backup_suite.backup_group_restore",
            )
            failed = env["db.backup.run"].search_count([("state", "=", "failed")])
            run = env["db.backup.run"]._queue_backup(kind="manual", user=admin)
            return run.id, failed

        run_id, failed_before = self._on(second, prepare)
        # 1. a backup through the second database's own run model: its
        #    archive holds this run in state "running"
        self._on(
            second, lambda env: env["db.backup.run"].browse(run_id)._execute_backup()
        )

        def archive_of(env):
            run = env["db.backup.run"].browse(run_id)
            self.assertEqual(run.state, "done", run.error)
            return run.name, run.size, run.archive_created_at

        archive, size, archive_date = self._on(second, archive_of)

        # 2. a sandbox made after it (the wizard's job: a row, then the engine)
        def sandbox_row(env):
            Sandbox = env["db.backup.sandbox"]
            row = Sandbox.create(
                {
                    "name": Sandbox._unique_name(env.cr.dbname),
                    "archive_name": archive,
                    "requested_by_id": env.ref("base.user_admin").id,
                }
            )
            return row.id, row.name, row.marker

        sandbox_id, sandbox_name, sandbox_marker = self._on(second, sandbox_row)
        created = restore_job.run_job(
            self._job(
                second,
                archive,
                "sandbox",
                sandbox_name=sandbox_name,
                sandbox_id=sandbox_id,
                sandbox_marker=sandbox_marker,
            )
        )
        self.assertTrue(created["ok"], created["message"])
        entry = registry.get(backup_engine.data_dir(), sandbox_name)
        self.assertEqual((entry.kind, entry.production_db), ("sandbox", second))
        self.assertEqual(entry.creator, "admin")
        # 3. the production restore from the archive, through the real job
        result = restore_job.run_job(self._job(second, archive))
        self.assertTrue(result["ok"], result["message"])
        pre_restore = result["pre_restore"]["name"]

        def runs_reconciled(env):
            Run = env["db.backup.run"]
            own = Run.search([("name", "=", archive)])
            self.assertEqual(len(own), 1, "one row for the archive")
            self.assertEqual(own.id, run_id, "the archive's own run, settled")
            self.assertEqual(own.state, "done")
            self.assertEqual(own.size, size)
            self.assertEqual(own.archive_created_at, archive_date)
            self.assertEqual(own.copy_ids.mapped("state"), ["done"])
            self.assertEqual(own.copy_ids.object_name, archive)
            self.assertTrue(own.manifest_json)
            self.assertFalse(Run.search([("state", "in", ("queued", "running"))]))
            self.assertEqual(
                Run.search_count([("state", "=", "failed")]), failed_before
            )
            self.assertEqual(
                Run.search([("name", "=", pre_restore)]).kind, "pre_restore"
            )
            # the reaper finds nothing left to call "stopped"
            Run._reap_stale_runs()
            self.assertEqual(
                Run.search_count([("state", "=", "failed")]), failed_before
            )
            # a second listing adds no row
            self.assertFalse(Run._sync_from_destinations())

        self._on(second, runs_reconciled)

        def listed(env):
            rows = env["db.backup.sandbox"].search([])
            earlier = rows.filtered(lambda r: r.name == sandbox_name)
            self.assertEqual(len(earlier), 1, rows.mapped("name"))
            self.assertEqual((earlier.state, earlier.kind), ("ready", "sandbox"))
            self.assertEqual(
                backup_engine.sandbox_marker_of(sandbox_name), earlier.marker
            )
            safety = rows.filtered(lambda r: r.kind == "safety_copy")
            self.assertEqual(len(safety), 1, rows.mapped("name"))
            self.assertTrue(safety.name.startswith(second + "_pre_restore_"))
            self.assertEqual(safety.state, "ready")
            self.assertEqual(
                backup_engine.sandbox_marker_of(safety.name), safety.marker
            )
            self.assertTrue(safety.expires_at)
            return earlier.id, safety.id, safety.name

        earlier_id, safety_id, safety_name = self._on(second, listed)
        entries = registry.entries_for(backup_engine.data_dir(), second)
        self.assertEqual(
            {(e.name, e.kind) for e in entries},
            {(sandbox_name, "sandbox"), (safety_name, "safety_copy")},
        )
        # the file is whole (other tests' entries may be in it too) and
        # every entry of this database names a database that exists
        self.assertGreaterEqual(registry.check(backup_engine.data_dir()), 2)
        for entry in entries:
            self.assertTrue(backup_engine.database_exists(entry.name), entry.name)
            self.assertEqual(
                entry.filestore,
                os.path.join(config["data_dir"], "filestore", entry.name),
            )

        # 4. the right roles drop them; the others change nothing
        def refused(env):
            Sandbox = env["db.backup.sandbox"]
            operator = env["res.users"].search([("login", "=", "rcn_operator")])
            restorer = env["res.users"].search([("login", "=", "rcn_restorer")])
            with self.assertRaises(AccessError):
                Sandbox.with_user(operator).browse(earlier_id).action_drop()
            with self.assertRaises(AccessError):
                Sandbox.with_user(restorer).browse(safety_id).action_drop()

        self._on(second, refused)
        for name in (sandbox_name, safety_name):
            self.assertTrue(backup_engine.database_exists(name), name)

        def dropped(env):
            Sandbox = env["db.backup.sandbox"]
            restorer = env["res.users"].search([("login", "=", "rcn_restorer")])
            admin = env["res.users"].search([("login", "=", "rcn_admin")])
            Sandbox.with_user(restorer).browse(earlier_id).action_drop()
            Sandbox.with_user(admin).browse(safety_id).action_drop()

        self._on(second, dropped)
        # (a new transaction: the drops committed their outcome in their own)
        states = self._on(
            second,
            lambda env: (
                env["db.backup.sandbox"].browse([earlier_id, safety_id]).mapped("state")
            ),
        )
        self.assertEqual(states, ["dropped", "dropped"])
        for name in (sandbox_name, safety_name):
            self.assertFalse(backup_engine.database_exists(name), name)
            self.assertFalse(
                os.path.exists(os.path.join(config["data_dir"], "filestore", name))
            )
        self.assertEqual(registry.entries_for(backup_engine.data_dir(), second), [])

    # the rows of THIS database, over HTTP ----------------------------------------
    def _real_sandbox(self):
        """A sandbox of the test database made by the wizard's job, whose
        row then vanishes as a restore of this database would make it."""
        Sandbox = self.env["db.backup.sandbox"]
        row = Sandbox.create(
            {"name": Sandbox._unique_name(self.dbname), "archive_name": "x"}
        )
        made = restore_job.run_job(
            self._job(
                self.dbname,
                self.base["name"],
                "sandbox",
                sandbox_name=row.name,
                sandbox_id=row.id,
                sandbox_marker=row.marker,
            )
        )
        self.assertTrue(made["ok"], made["message"])
        name = row.name
        self.env.cr.execute(SQL("DELETE FROM db_backup_sandbox WHERE id = %s", row.id))
        self.env.invalidate_all()
        return name

    def _real_safety_copy(self):
        """A database under this database's safety-copy name, marked and
        registered by the restore job's own step (``_mark_safety_copy``)."""
        from ..lib import safety

        name = safety.derived_name(self.dbname, "pre_restore_20260101000000")
        made = restore_job.run_job(
            self._job(
                name,
                self.base["name"],
                "sandbox",
                sandbox_name=name,
                expected_uuid=self._uuid(self.dbname),
            )
        )
        self.assertTrue(made["ok"], made["message"])
        restore_job._mark_safety_copy(self.dbname, {"safety_database": name})
        return name

    def test_registry_lists_and_guards_drops_over_rpc(self):
        registry = _registry()
        sandbox_name = self._real_sandbox()
        safety_name = self._real_safety_copy()
        Sandbox = self.env["db.backup.sandbox"]
        self.assertFalse(Sandbox.search([("name", "in", [sandbox_name, safety_name])]))
        # the expiry cron lists again what the registry holds (nothing expired)
        Sandbox._cron_drop_expired()
        rows = Sandbox.search([("name", "in", [sandbox_name, safety_name])])
        kinds = {row.name: (row.kind, row.state) for row in rows}
        self.assertEqual(
            kinds,
            {
                sandbox_name: ("sandbox", "ready"),
                safety_name: ("safety_copy", "ready"),
            },
        )
        by_name = {row.name: row for row in rows}
        sandbox, safety_copy = by_name[sandbox_name], by_name[safety_name]
        self.assertEqual(backup_engine.sandbox_marker_of(sandbox_name), sandbox.marker)
        self.assertEqual(
            backup_engine.sandbox_marker_of(safety_name), safety_copy.sudo().marker
        )
        before = {row.id: (row.state, row.drop_error) for row in rows}
        # a Backup Operator cannot drop either; nothing changes
        for row in rows:
            self.assertRpcError(
                self.rpc_as(
                    "rcn_operator", "db.backup.sandbox", "action_drop", [row.id]
                )
            )
        # a Backup Restore user cannot drop the safety copy (administrators)
        self.assertRpcError(
            self.rpc_as(
                "rcn_restorer", "db.backup.sandbox", "action_drop", [safety_copy.id]
            )
        )
        self.assertRpcError(
            self.rpc_as(
                "rcn_restorer",
                "db.backup.sandbox",
                "action_drop",
                [sandbox.id, safety_copy.id],
            )
        )
        self.env.invalidate_all()
        self.assertEqual({row.id: (row.state, row.drop_error) for row in rows}, before)
        for name in (sandbox_name, safety_name):
            self.assertTrue(backup_engine.database_exists(name), name)
        # (other tests of this database may have left entries of rows their
        # rolled-back transactions made: the registry is outside the database)
        self.assertLessEqual(
            {sandbox_name, safety_name},
            {
                e.name
                for e in registry.entries_for(backup_engine.data_dir(), self.dbname)
            },
        )
        # the restorer drops the sandbox, an administrator the safety copy
        response = self.rpc_as(
            "rcn_restorer", "db.backup.sandbox", "action_drop", [sandbox.id]
        )
        self.assertTrue(response.get("result"), response)
        response = self.rpc_as(
            "rcn_admin", "db.backup.sandbox", "action_drop", [safety_copy.id]
        )
        self.assertTrue(response.get("result"), response)
        self.env.invalidate_all()
        self.assertEqual(rows.mapped("state"), ["dropped", "dropped"])
        for name in (sandbox_name, safety_name):
            self.assertFalse(backup_engine.database_exists(name), name)
        left = registry.entries_for(backup_engine.data_dir(), self.dbname)
        self.assertFalse({e.name for e in left} & {sandbox_name, safety_name})

    def test_unregistered_lookalike_is_never_dropped(self):
        """A database named like this database's safety copy but absent from
        the registry (a row forged in the table) is refused, and the
        registry's entry of another database lists nothing here."""
        from ..lib import pgtools, safety

        name = safety.derived_name(self.dbname, "pre_restore_20250101000000")
        self.addCleanup(drop_test_databases, name)
        pgtools.create_database(backup_engine.pg_params(), name)
        row = (
            self.env["db.backup.sandbox"]
            .sudo()
            .create({"name": name, "kind": "safety_copy", "state": "ready"})
        )
        self.assertIsNone(_registry().get(backup_engine.data_dir(), name))
        with mute_logger("odoo.addons.db_backup_suite.models.db_backup_sandbox"):
            failures = row._drop()
        self.assertEqual(len(failures), 1)
        self.assertIn("registry does not list", failures[0][1])
        self.assertTrue(backup_engine.database_exists(name))
        self.assertEqual(row.state, "ready")
