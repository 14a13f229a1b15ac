"""Attacks on the backup suite over real HTTP JSON-RPC, as each role.

Roles: Backup Operator, Backup Restore, a Settings administrator, a plain
internal user and a portal user. Every attack must end in an AccessError,
ValidationError or UserError AND leave its object as it was: the database
still there, the directory still there, the record unchanged, nothing
restored, no password or token readable or replayable.

Real components: the engine backs the test database up (child process) to
a local folder; a second database (``h_sec_*``) is made from that archive
as a sandbox, so it is ANOTHER database (its own uuid) whose archive is
foreign here, and whose own restore refuses this database's archive.
"""

import base64
import json
import os
import uuid
from unittest.mock import patch

from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tools import SQL, config

from odoo.addons.audit_export.tests.common import RpcMixin

from ..service import backup_engine, restore_job
from .common import KeyringMixin, drop_derived_databases, drop_test_databases
from .test_chunked_upload import rpc_prepared_download_action

USER = "odoo.exceptions.UserError"
VALIDATION = "odoo.exceptions.ValidationError"
PASSWORD = "Tr0ub4dor&3-Horse-Staple"
VICTIM_PARTNER = "H-SEC victim data"


@tagged("post_install", "-at_install")
class TestSecurityRpc(RpcMixin, KeyringMixin, HttpCase):
    rpc_timeout = 120

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        cls.dbname = cls.env.cr.dbname
        cls.uuid = cls.env["ir.config_parameter"].get_param("database.uuid")
        cls.dest = cls.setup_local_destination()
        groups = "base.group_user,db_backup_suite.backup_group_"
        cls.operator = new_test_user(
            cls.env, login="h_sec_operator", groups=groups + "operator"
        )
        cls.restorer = new_test_user(
            cls.env, login="h_sec_restorer", groups=groups + "restore"
        )
        cls.restorer2 = new_test_user(
            cls.env, login="h_sec_restorer2", groups=groups + "restore"
        )
        cls.admin = new_test_user(
            cls.env, login="h_sec_admin", groups="base.group_user,base.group_system"
        )
        cls.plain = new_test_user(
            cls.env, login="h_sec_plain", groups="base.group_user"
        )
        cls.portal = new_test_user(
            cls.env, login="h_sec_portal", groups="base.group_portal"
        )
        # A real backup of this database (engine, child process).
        cls.backup_run = cls.env["db.backup.run"]._queue_backup(kind="manual")
        cls.env["db.backup.run"]._run_queued()
        cls.backup_run.invalidate_recordset()
        assert cls.backup_run.state == "done", cls.backup_run.error
        # Another database, made from it: a sandbox has its own uuid.
        cls.victim = "h_sec_%s" % uuid.uuid4().hex[:8]
        cls.addClassCleanup(drop_test_databases, cls.victim)
        cls.addClassCleanup(drop_derived_databases, cls.dbname)
        made = restore_job.run_job(
            cls._job(cls.victim, cls.backup_run.name, "sandbox", expected_uuid=cls.uuid)
        )
        assert made["ok"], made["message"]
        with Registry(cls.victim).cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["res.partner"].create({"name": VICTIM_PARTNER})
        cls.victim_uuid = backup_engine.config_parameter_of(cls.victim, "database.uuid")
        assert cls.victim_uuid and cls.victim_uuid != cls.uuid
        # The victim's own archive: a FOREIGN archive for this database.
        cls.foreign = backup_engine.run_job(
            {
                "action": "backup",
                "db": backup_engine.db_params(cls.victim),
                "filestore": backup_engine.filestore_dir(cls.victim),
                "archive_label": "manual",
                "sinks": [
                    {"destination_id": cls.dest.id, "config": cls.dest._sink_config()}
                ],
            }
        )
        cls.foreign_run = cls.env["db.backup.run"].create(
            {
                "kind": "found",
                "state": "done",
                "label": "manual",
                "name": cls.foreign["name"],
                "manifest_json": json.dumps(cls.foreign["manifest"]),
            }
        )
        cls.env["db.backup.copy"].create(
            {
                "run_id": cls.foreign_run.id,
                "destination_id": cls.dest.id,
                "destination_name": "Local",
                "state": "done",
                "object_name": cls.foreign["name"],
            }
        )

    def setUp(self):
        super().setUp()
        # A restore the gates let through would replace THIS database in a
        # detached process: record it instead, so a regression fails the
        # test without destroying the database the tests run in.
        self.spawned = []
        self.startPatcher(
            patch.object(restore_job, "spawn_detached", self.spawned.append)
        )

    @classmethod
    def _job(cls, dbname, archive, target="production", **extra):
        job = {
            "database": dbname,
            "target": target,
            "requested_by": "h_sec test",
            "archive_name": archive,
            "db": backup_engine.db_params(dbname),
            "data_dir": config["data_dir"],
            "pre_restore_sinks": [
                {"destination_id": cls.dest.id, "config": cls.dest._sink_config()}
            ],
            "source": {"sink": cls.dest._sink_config(), "name": archive},
        }
        if target == "sandbox":
            job.setdefault("sandbox_name", dbname)
        job.update(extra)
        return job

    # -- helpers -------------------------------------------------------------
    def forge_sandbox(self, name, **vals):
        """A sandbox row pointing at ``name``, as if rewritten in the database
        behind the server's back (a user cannot: see the write tests)."""
        self.env.cr.execute(
            SQL(
                "INSERT INTO db_backup_sandbox (name, state, expires_at, marker, "
                "create_uid, write_uid, create_date, write_date) VALUES "
                "(%s, %s, '2000-01-01', %s, 1, 1, now(), now()) RETURNING id",
                name,
                vals.get("state", "ready"),
                vals.get("marker", "forged-marker"),
            )
        )
        return self.env["db.backup.sandbox"].browse(self.env.cr.fetchone()[0])

    def victim_partners(self):
        with Registry(self.victim).cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            return env["res.partner"].search_count([("name", "=", VICTIM_PARTNER)])

    def restore_requests(self):
        return self.env["audit.event"].search_count(
            [("action", "in", ("restore", "sandbox"))]
        )

    # -- roles ------------------------------------------------------------------
    def test_roles_reach_only_their_job(self):
        run_id = self.backup_run.id
        for login in ("h_sec_plain", "h_sec_portal"):
            self.assertRpcError(
                self.rpc_as(login, "db.backup.run", "search_read", [], ["name"])
            )
            self.assertRpcError(
                self.rpc_as(login, "db.backup.run", "action_backup_now")
            )
            self.assertRpcError(
                self.rpc_as(
                    login,
                    "db.backup.restore.wizard",
                    "create",
                    {"run_id": run_id, "target": "sandbox"},
                )
            )
            self.assertRpcError(
                self.rpc_as(login, "db.backup.sandbox", "action_drop", [1])
            )
        # the operator: the list and Backup Now, nothing else
        self.assertTrue(
            self.assertRpcOk(
                self.rpc_as("h_sec_operator", "db.backup.run", "search_read", [])
            )
        )
        for model, method, args in (
            ("db.backup.run", "action_open_restore_wizard", [[run_id]]),
            ("db.backup.run", "action_open_download_wizard", [[run_id]]),
            ("db.backup.run", "action_delete_archive", [[run_id]]),
            ("db.backup.run", "action_sync_from_destinations", []),
            ("db.backup.restore.wizard", "create", [{"run_id": run_id}]),
            ("db.backup.download.wizard", "create", [{"run_id": run_id}]),
            ("db.backup.sandbox", "action_drop", [[1]]),
            ("db.backup.schedule", "search_read", [[]]),
        ):
            self.assertRpcError(self.rpc_as("h_sec_operator", model, method, *args))
        # the restorer cannot delete archives nor rescan (administrators)
        self.assertRpcError(
            self.rpc_as(
                "h_sec_restorer", "db.backup.run", "action_delete_archive", [run_id]
            )
        )
        self.assertEqual(self.backup_run.state, "done")
        self.assertTrue(
            os.path.exists(os.path.join(self.local_dir, self.backup_run.name))
        )
        # helpers are private: no RPC reaches them, whoever calls
        wizard_id = self.assertRpcOk(
            self.rpc_as(
                "h_sec_restorer",
                "db.backup.restore.wizard",
                "create",
                {"run_id": run_id, "target": "sandbox"},
            )
        )
        for model, method, args in (
            ("db.backup.restore.wizard", "_restore_now", [[wizard_id]]),
            ("db.backup.restore.wizard", "_build_job", [[wizard_id]]),
            ("db.backup.sandbox", "_drop", [[1]]),
            ("db.backup.sandbox", "_cron_drop_expired", []),
            ("db.backup.run", "_queue_backup", []),
            ("db.backup.run", "_delete_archives", [[run_id]]),
            ("db.backup.run", "init", []),
        ):
            message = self.assertRpcError(
                self.rpc_as("h_sec_admin", model, method, *args)
            )
            self.assertIn("Private methods", message)
        self.assertFalse(self.env["db.backup.sandbox"].search([]))

    # -- forged states ----------------------------------------------------------
    def test_server_owned_fields_refused(self):
        failed = self.env["db.backup.run"].create(
            {"kind": "manual", "state": "failed", "label": "manual"}
        )
        sandbox = self.env["db.backup.sandbox"].create(
            {"name": self.dbname + "-sandbox-20200102", "state": "dropped"}
        )
        copy = self.backup_run.copy_ids[:1]
        for login in ("h_sec_admin", "h_sec_restorer"):
            # runs and copies: created and written by the server only
            self.assertRpcError(
                self.rpc_as(
                    login,
                    "db.backup.run",
                    "create",
                    {"kind": "manual", "state": "done", "name": "../../etc/passwd"},
                )
            )
            self.assertRpcError(
                self.rpc_as(
                    login, "db.backup.run", "write", [failed.id], {"state": "done"}
                )
            )
            self.assertRpcError(
                self.rpc_as(
                    login,
                    "db.backup.copy",
                    "write",
                    [copy.id],
                    {"object_name": "../other/archive"},
                )
            )
            # sandboxes: a drop's object is never a user's value
            for vals in (
                {"name": self.dbname},
                {"name": "postgres"},
                {"state": "ready"},
                {"expires_at": "2000-01-01 00:00:00"},
            ):
                self.assertRpcError(
                    self.rpc_as(login, "db.backup.sandbox", "write", [sandbox.id], vals)
                )
            self.assertRpcError(
                self.rpc_as(
                    login,
                    "db.backup.sandbox",
                    "create",
                    {"name": self.dbname, "state": "ready"},
                )
            )
            # a context default cannot smuggle a value in either
            self.assertRpcError(
                self.rpc_as(
                    login,
                    "db.backup.sandbox",
                    "create",
                    {},
                    context={"default_name": "postgres", "default_state": "ready"},
                )
            )
            self.assertRpcError(
                self.rpc_as(login, "db.backup.run", "copy", [self.backup_run.id])
            )
        # administrators' settings: the scheduler's and the host key's fields
        schedule = self.env["db.backup.schedule"].create(
            {"frequency": "24h", "destination_ids": self.dest.ids}
        )
        next_run = schedule.next_run
        self.assertRpcError(
            self.rpc_as(
                "h_sec_admin",
                "db.backup.schedule",
                "write",
                [schedule.id],
                {"next_run": "2000-01-01 00:00:00"},
            )
        )
        self.assertRpcError(
            self.rpc_as(
                "h_sec_admin",
                "db.backup.destination",
                "write",
                [self.dest.id],
                {"sftp_known_hosts": "evil.example ssh-ed25519 AAAA"},
            )
        )
        # nothing changed
        self.env.invalidate_all()
        self.assertEqual(failed.state, "failed")
        self.assertEqual(copy.object_name, self.backup_run.name)
        self.assertEqual(
            (sandbox.name, sandbox.state),
            (self.dbname + "-sandbox-20200102", "dropped"),
        )
        self.assertEqual(
            self.env["db.backup.sandbox"].search_count([]), 1, "no sandbox created"
        )
        self.assertEqual(self.env["db.backup.run"].search_count([]), 3)
        self.assertEqual(schedule.next_run, next_run)
        self.assertFalse(self.dest.sftp_known_hosts)

    def test_restore_wizard_flags_are_the_servers(self):
        wizard_id = self.assertRpcOk(
            self.rpc_as(
                "h_sec_restorer",
                "db.backup.restore.wizard",
                "create",
                {"run_id": self.foreign_run.id, "target": "sandbox"},
            )
        )
        for vals in (
            {"foreign": False},
            {"source_db_uuid": self.uuid},
            {"compatible": True},
            {"state": "draft"},
            {"run_id": self.backup_run.id},
        ):
            self.assertRpcError(
                self.rpc_as(
                    "h_sec_restorer",
                    "db.backup.restore.wizard",
                    "write",
                    [wizard_id],
                    vals,
                )
            )
        # a wizard is its opener's
        self.assertRpcError(
            self.rpc_as(
                "h_sec_restorer2",
                "db.backup.restore.wizard",
                "write",
                [wizard_id],
                {"confirm_name": self.dbname},
            )
        )
        self.assertRpcError(
            self.rpc_as(
                "h_sec_restorer2",
                "db.backup.restore.wizard",
                "action_restore",
                [wizard_id],
            )
        )
        # a failed or deleted run cannot be restored, even named directly
        failed = self.env["db.backup.run"].create(
            {"kind": "manual", "state": "failed", "label": "manual"}
        )
        self.assertRpcError(
            self.rpc_as(
                "h_sec_restorer",
                "db.backup.restore.wizard",
                "create",
                {"run_id": failed.id},
            ),
            USER,
        )
        wizard = self.env["db.backup.restore.wizard"].browse(wizard_id)
        self.assertTrue(wizard.foreign)
        self.assertEqual(wizard.state, "draft")
        self.assertEqual(wizard.run_id, self.foreign_run)
        self.assertEqual(self.spawned, [])

    # -- foreign archives -----------------------------------------------------
    def test_foreign_archive_needs_its_own_confirmation(self):
        before = self.restore_requests()
        wizard_id = self.assertRpcOk(
            self.rpc_as(
                "h_sec_restorer",
                "db.backup.restore.wizard",
                "create",
                {"run_id": self.foreign_run.id, "confirm_name": self.dbname},
            )
        )
        shown = self.assertRpcOk(
            self.rpc_as(
                "h_sec_restorer",
                "db.backup.restore.wizard",
                "read",
                [wizard_id],
                ["foreign", "source_db_name", "source_db_uuid", "foreign_warning"],
            )
        )[0]
        self.assertTrue(shown["foreign"])
        self.assertEqual(shown["source_db_name"], self.victim)
        self.assertEqual(shown["source_db_uuid"], self.victim_uuid)
        self.assertIn(self.victim, shown["foreign_warning"])
        self.assertIn(self.dbname, shown["foreign_warning"])
        # the database name alone does not restore another database's archive
        message = self.assertRpcError(
            self.rpc_as(
                "h_sec_restorer",
                "db.backup.restore.wizard",
                "action_restore",
                [wizard_id],
            ),
            USER,
        )
        self.assertIn(self.victim_uuid, message)
        # nor the box without the source name, nor this database's name
        for vals in (
            {"confirm_foreign": True},
            {"confirm_foreign": True, "confirm_foreign_name": self.dbname},
            {"confirm_foreign": False, "confirm_foreign_name": self.victim},
        ):
            self.assertRpcOk(
                self.rpc_as(
                    "h_sec_restorer",
                    "db.backup.restore.wizard",
                    "write",
                    [wizard_id],
                    vals,
                )
            )
            self.assertRpcError(
                self.rpc_as(
                    "h_sec_restorer",
                    "db.backup.restore.wizard",
                    "action_restore",
                    [wizard_id],
                ),
                USER,
            )
        # a sandbox of it too
        self.assertRpcOk(
            self.rpc_as(
                "h_sec_restorer",
                "db.backup.restore.wizard",
                "write",
                [wizard_id],
                {"target": "sandbox", "confirm_foreign": False},
            )
        )
        self.assertRpcError(
            self.rpc_as(
                "h_sec_restorer",
                "db.backup.restore.wizard",
                "action_restore",
                [wizard_id],
            ),
            USER,
        )
        wizard = self.env["db.backup.restore.wizard"].browse(wizard_id)
        self.assertEqual(wizard.state, "draft")
        self.assertFalse(wizard.sandbox_id)
        self.assertFalse(self.env["db.backup.sandbox"].search([]))
        self.assertEqual(self.restore_requests(), before, "no restore was requested")
        self.assertEqual(self.spawned, [])

    def test_foreign_upload_needs_its_own_confirmation(self):
        with open(os.path.join(self.local_dir, self.foreign["name"]), "rb") as handle:
            content = base64.b64encode(handle.read()).decode()
        before = self.restore_requests()
        wizard_id = self.assertRpcOk(
            self.rpc_as(
                "h_sec_restorer",
                "db.backup.restore.wizard",
                "create",
                {
                    "source": "upload",
                    "upload_file": content,
                    "upload_filename": "other.tar.zst.enc",
                    "target": "production",
                    "confirm_name": self.dbname,
                },
            )
        )
        wizard = self.env["db.backup.restore.wizard"].browse(wizard_id)
        self.assertTrue(wizard.foreign)
        self.assertEqual(wizard.source_db_uuid, self.victim_uuid)
        self.assertRpcError(
            self.rpc_as(
                "h_sec_restorer",
                "db.backup.restore.wizard",
                "action_restore",
                [wizard_id],
            ),
            USER,
        )
        self.assertEqual(wizard.state, "draft")
        self.assertEqual(self.restore_requests(), before)
        self.assertEqual(self.spawned, [])

    def test_engine_refuses_foreign_archive_target_unchanged(self):
        """The restore job itself: this database's archive over the other
        database, without ``allow_foreign``: refused before anything, the
        other database keeps its data and uuid."""
        before = self.victim_partners()
        self.assertEqual(before, 1)
        result = restore_job.run_job(self._job(self.victim, self.backup_run.name))
        self.assertFalse(result["ok"])
        self.assertIn("backup of database", result["message"])
        self.assertEqual(self.victim_partners(), before)
        self.assertEqual(
            backup_engine.config_parameter_of(self.victim, "database.uuid"),
            self.victim_uuid,
        )
        # allow_foreign names the archive confirmed: another one is refused
        result = restore_job.run_job(
            self._job(
                self.victim,
                self.backup_run.name,
                allow_foreign=True,
                foreign_source_uuid=str(uuid.uuid4()),
            )
        )
        self.assertFalse(result["ok"])
        self.assertIn("not the one confirmed", result["message"])
        self.assertEqual(self.victim_partners(), before)

    def test_confirmed_foreign_sandbox_then_dropped(self):
        """With the confirmation naming both databases, the foreign archive
        restores to a sandbox (its own uuid), which its Drop removes."""
        wizard = (
            self.env["db.backup.restore.wizard"]
            .with_user(self.restorer)
            .create(
                {
                    "run_id": self.foreign_run.id,
                    "target": "sandbox",
                    "confirm_foreign": True,
                    "confirm_foreign_name": self.victim,
                }
            )
        )
        result = wizard._restore_now()
        self.assertTrue(result["ok"], result["message"])
        sandbox = wizard.sandbox_id
        self.assertEqual(sandbox.state, "ready")
        name = sandbox.name
        self.assertTrue(backup_engine.database_exists(name))
        with Registry(name).cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            self.assertEqual(
                env["res.partner"].search_count([("name", "=", VICTIM_PARTNER)]), 1
            )
            sandbox_uuid = env["ir.config_parameter"].get_param("database.uuid")
        self.assertNotIn(sandbox_uuid, (self.uuid, self.victim_uuid))
        event = self.env["audit.event"].search(
            [("action", "=", "sandbox"), ("message", "like", "another database")]
        )
        self.assertTrue(event)
        # the restorer drops it over RPC: the one legitimate drop
        self.assertRpcOk(
            self.rpc_as(
                "h_sec_restorer", "db.backup.sandbox", "action_drop", [sandbox.id]
            )
        )
        sandbox.invalidate_recordset()
        self.assertEqual(sandbox.state, "dropped")
        self.assertFalse(backup_engine.database_exists(name))
        self.assertFalse(
            os.path.exists(os.path.join(config["data_dir"], "filestore", name))
        )

    # -- drops -------------------------------------------------------------------
    def test_drop_refuses_what_the_suite_did_not_make(self):
        from ..lib import pgtools

        pg = backup_engine.pg_params()
        # a database named exactly like one of our sandboxes, not made by us
        lookalike = self.dbname + "-sandbox-20200101"
        self.addCleanup(drop_test_databases, lookalike)
        pgtools.create_database(pg, lookalike)
        # a directory beside the filestore
        outside = os.path.join(config["data_dir"], "x")
        os.makedirs(outside, exist_ok=True)
        self.addCleanup(lambda: os.path.isdir(outside) and os.rmdir(outside))
        with open(os.path.join(outside, "keep.txt"), "w") as handle:
            handle.write("keep")
        self.addCleanup(os.unlink, os.path.join(outside, "keep.txt"))
        rows = {
            name: self.forge_sandbox(name)
            for name in (
                self.dbname,
                "postgres",
                "template1",
                "../x",
                self.victim,
                self.victim + "-sandbox-20200101",
                lookalike,
            )
        }
        # the expiry cron, unattended: every row refused, each refusal kept
        self.env["db.backup.sandbox"]._cron_drop_expired()
        self.env.invalidate_all()
        for name, row in rows.items():
            self.assertEqual(row.state, "ready", name)
            self.assertTrue(row.drop_error, name)
        refusals = self.env["audit.event"].search_count(
            [("action", "=", "sandbox"), ("result", "=", "failure")]
        )
        self.assertEqual(refusals, len(rows))
        # the Drop button over RPC: the same checks, a UserError for each
        self.env.cr.execute(SQL("UPDATE db_backup_sandbox SET drop_error = NULL"))
        for name, row in rows.items():
            message = self.assertRpcError(
                self.rpc_as(
                    "h_sec_restorer", "db.backup.sandbox", "action_drop", [row.id]
                ),
                USER,
            )
            self.assertIn("Not dropped", message, name)
        self.env.invalidate_all()
        for name, row in rows.items():
            self.assertEqual(row.state, "ready", name)
        for name in (self.dbname, "postgres", "template1", self.victim, lookalike):
            self.assertTrue(backup_engine.database_exists(name), name)
        self.assertTrue(os.path.exists(os.path.join(outside, "keep.txt")))
        self.assertTrue(
            os.path.isdir(os.path.join(config["data_dir"], "filestore", self.dbname))
        )
        self.assertEqual(self.victim_partners(), 1)

    # -- download password and token -----------------------------------------
    def test_download_password_never_readable(self):
        wizard_id = self.assertRpcOk(
            self.rpc_as(
                "h_sec_restorer",
                "db.backup.download.wizard",
                "create",
                {
                    "run_id": self.backup_run.id,
                    "password": PASSWORD,
                    "password_confirm": PASSWORD,
                },
            )
        )
        read = self.rpc_as(
            "h_sec_restorer",
            "db.backup.download.wizard",
            "read",
            [wizard_id],
            ["password", "password_confirm", "password_set"],
        )
        self.assertEqual(
            self.assertRpcOk(read)[0],
            {
                "id": wizard_id,
                "password": False,
                "password_confirm": False,
                "password_set": True,
            },
        )
        every = self.rpc_as(
            "h_sec_restorer", "db.backup.download.wizard", "search_read", []
        )
        self.assertNotIn(PASSWORD, json.dumps(self.assertRpcOk(every)))
        for field in ("password_sealed", "token_digest"):
            self.assertRpcError(
                self.rpc_as(
                    "h_sec_restorer",
                    "db.backup.download.wizard",
                    "read",
                    [wizard_id],
                    [field],
                )
            )
        # another restore user does not even see the wizard
        self.assertRpcError(
            self.rpc_as(
                "h_sec_restorer2",
                "db.backup.download.wizard",
                "read",
                [wizard_id],
                ["run_id"],
            )
        )
        # not in the database either, in any column
        self.env.cr.execute(
            SQL("SELECT row_to_json(w)::text FROM db_backup_download_wizard w")
        )
        rows = [row[0] for row in self.env.cr.fetchall()]
        self.assertTrue(rows)
        for row in rows:
            self.assertNotIn(PASSWORD, row)
        # and not writable as a sealed blob or token by the user
        self.assertRpcError(
            self.rpc_as(
                "h_sec_restorer",
                "db.backup.download.wizard",
                "write",
                [wizard_id],
                {"token_digest": "0" * 64, "token_expires": "2999-01-01 00:00:00"},
            )
        )

    def test_download_token_single_use(self):
        from ..lib import crypto

        wizard_id = self.assertRpcOk(
            self.rpc_as(
                "h_sec_restorer",
                "db.backup.download.wizard",
                "create",
                {
                    "run_id": self.backup_run.id,
                    "password": PASSWORD,
                    "password_confirm": PASSWORD,
                },
            )
        )
        action = rpc_prepared_download_action(self, "h_sec_restorer", wizard_id)
        url = action["url"]
        token = url.split("token=", 1)[1]
        self.env.cr.execute(
            SQL("SELECT row_to_json(w)::text FROM db_backup_download_wizard w")
        )
        self.assertNotIn(token, " ".join(r[0] for r in self.env.cr.fetchall()))
        # another restore user with the link (e.g. from an access log) fails
        # and does not consume it
        self.authenticate("h_sec_restorer2", "h_sec_restorer2")
        self.assertEqual(self.url_open(url).status_code, 403)
        # its owner downloads once
        self.authenticate("h_sec_restorer", "h_sec_restorer")
        response = self.url_open(url, timeout=120)
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response.content.startswith(crypto.MAGIC))
        # a replay of the same URL, by the owner, fails
        self.assertEqual(self.url_open(url).status_code, 403)
        wizard = self.env["db.backup.download.wizard"].browse(wizard_id).sudo()
        wizard.invalidate_recordset()
        self.assertFalse(wizard.password_sealed)
        self.assertFalse(wizard.token_digest)
        downloads = self.env["audit.event"].search_count([("action", "=", "download")])
        self.assertEqual(downloads, 1)
        # an expired link fails too
        self.assertRpcOk(
            self.rpc_as(
                "h_sec_restorer",
                "db.backup.download.wizard",
                "write",
                [wizard_id],
                {"password": PASSWORD, "password_confirm": PASSWORD},
            )
        )
        action = rpc_prepared_download_action(self, "h_sec_restorer", wizard_id)
        self.env.cr.execute(
            SQL(
                "UPDATE db_backup_download_wizard SET token_expires = %s WHERE id = %s",
                "2000-01-01 00:00:00",
                wizard_id,
            )
        )
        self.authenticate("h_sec_restorer", "h_sec_restorer")
        self.assertEqual(self.url_open(action["url"]).status_code, 403)
        self.assertEqual(
            self.env["audit.event"].search_count([("action", "=", "download")]), 1
        )
