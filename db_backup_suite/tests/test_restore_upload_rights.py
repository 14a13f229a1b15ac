"""Who may restore an uploaded archive over production, and whose upload a
user may touch: attacks over real HTTP sessions (chunked upload routes and
JSON-RPC), as each role.

The archive of the attack is crafted the way a Backup Restore user could:
a copy of this database (same uuid) where the internal users are Settings
administrators, backed up with the open command line in PASSWORD mode
(``python3 -m db_backup_suite.lib backup --password-file``). Its content is
the user's, not the server's: over production only a Settings administrator
may restore it; the Backup Restore user may restore it into a sandbox.

Also: another user's upload cannot be taken (nor removed) through a context
default or a replaced ``upload_id``; unfinished uploads are capped per user;
the legacy one-request ``upload_file`` honours the size limit and leaves no
file behind when it is refused.
"""

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from unittest.mock import patch

import odoo
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tools import SQL, mute_logger

from odoo.addons.audit_export.tests.common import RpcMixin

from ..lib import uploads
from ..service import backup_engine, restore_job
from .common import KeyringMixin, drop_derived_databases, drop_test_databases

USER = "odoo.exceptions.UserError"
PASSWORD = "Crafted-Copy-42-horse!"
WIZARD = "db.backup.restore.wizard"
ADDONS = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@tagged("post_install", "-at_install")
class TestRestoreUploadRights(RpcMixin, KeyringMixin, HttpCase):
    rpc_timeout = 300

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        cls.dbname = cls.env.cr.dbname
        cls.uuid = cls.env["ir.config_parameter"].get_param("database.uuid")
        cls.dest = cls.setup_local_destination()
        restore = "base.group_user,db_backup_suite.backup_group_restore"
        cls.restorer = new_test_user(cls.env, login="fx1_restorer", groups=restore)
        cls.restorer2 = new_test_user(cls.env, login="fx1_restorer2", groups=restore)
        cls.admin = new_test_user(
            cls.env, login="fx1_admin", groups=restore + ",base.group_system"
        )
        # this database's own backup (keyring, engine in a child process)
        cls.backup_run = cls.env["db.backup.run"]._queue_backup(kind="manual")
        cls.env["db.backup.run"]._run_queued()
        cls.backup_run.invalidate_recordset()
        assert cls.backup_run.state == "done", cls.backup_run.error
        cls.keyring_path_of_run = os.path.join(cls.local_dir, cls.backup_run.name)
        cls.addClassCleanup(drop_derived_databases, cls.dbname)
        cls.crafted = cls._craft_admin_copy()
        cls.base = backup_engine.jobs_dir()
        cls.folder = uploads.upload_dir(cls.base)

    @classmethod
    def _craft_admin_copy(cls):
        """The attacker's archive: a copy of this database keeping its uuid,
        every internal user a Settings administrator, backed up with the
        command line in password mode. Its bytes."""
        copy_db = "fx1_copy_%s" % uuid.uuid4().hex[:8]
        cls.addClassCleanup(drop_test_databases, copy_db)
        made = restore_job.run_job(
            {
                "database": cls.dbname,
                "target": "sandbox",
                "sandbox_name": copy_db,
                "expected_uuid": cls.uuid,
                "archive_name": cls.backup_run.name,
                "db": backup_engine.db_params(cls.dbname),
                "data_dir": backup_engine.data_dir(),
                "source": {
                    "sink": cls.dest._sink_config(),
                    "name": cls.backup_run.name,
                },
            }
        )
        assert made["ok"], made["message"]
        db = odoo.sql_db.db_connect(copy_db)
        with db.cursor() as cr:
            cr.execute(
                SQL(
                    "UPDATE ir_config_parameter SET value = %s "
                    "WHERE key = 'database.uuid'",
                    cls.uuid,
                )
            )
            cr.execute(
                SQL(
                    "INSERT INTO res_groups_users_rel (gid, uid) "
                    "SELECT s.res_id, r.uid FROM res_groups_users_rel r, "
                    "ir_model_data s, ir_model_data u "
                    "WHERE s.module = 'base' AND s.name = 'group_system' "
                    "AND u.module = 'base' AND u.name = 'group_user' "
                    "AND r.gid = u.res_id ON CONFLICT DO NOTHING"
                )
            )
            cr.commit()  # pylint: disable=invalid-commit
        odoo.sql_db.close_db(copy_db)
        out = os.path.join(cls.tmp_dir, "crafted")
        os.makedirs(out)
        secret = os.path.join(cls.tmp_dir, "password.txt")
        with open(secret, "w") as handle:
            handle.write(PASSWORD)
        params = backup_engine.db_params(copy_db)
        env = dict(os.environ, PYTHONPATH=ADDONS)
        env.pop("SUITE_KEYRING_FILE", None)
        env.pop("SUITE_KEYRING", None)
        if params.get("password"):
            env["PGPASSWORD"] = params["password"]
        command = [sys.executable, "-m", "db_backup_suite.lib", "backup", copy_db]
        for option in ("host", "port", "user"):
            if params.get(option):
                command += ["--%s" % option, str(params[option])]
        command += ["--password-file", secret, "--to", "local:" + out]
        command += ["--no-filestore"]
        done = subprocess.run(
            command, cwd=ADDONS, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr
        (path,) = [
            os.path.join(folder, name)
            for folder, _dirs, names in os.walk(out)
            for name in names
        ]
        with open(path, "rb") as handle:
            return handle.read()

    def setUp(self):
        super().setUp()
        # A production restore the gates let through would replace THIS
        # database in a detached process: record it instead.
        self.spawned = []
        self.startPatcher(
            patch.object(restore_job, "spawn_detached", self.spawned.append)
        )
        self.addCleanup(self._remove_uploads_of_this_test, set(self.files()))

    def _remove_uploads_of_this_test(self, before):
        for name in set(self.files()) - before:
            stem = name.partition(".")[0]
            if uploads.ID_RE.match(stem):
                uploads.remove(self.base, stem)

    # -- helpers -----------------------------------------------------------
    def files(self):
        return sorted(os.listdir(uploads.upload_dir(backup_engine.jobs_dir())))

    def login(self, user):
        self.authenticate(user.login, user.login)
        page = self.url_open("/odoo").text
        self.csrf = re.search(r'csrf_token: "([0-9a-fo]+)"', page).group(1)

    def post(self, path, body=None, content_type="application/json"):
        if body is None or isinstance(body, dict):
            body = json.dumps(body or {}).encode()
        headers = {"Content-Type": content_type, "X-CSRF-Token": self.csrf}
        return self.url_open(path, data=body, headers=headers, timeout=120)

    def upload(self, user, data):
        """The chunked upload routes, as ``user``: the finished upload's id."""
        self.login(user)
        answer = self.post(
            "/db_backup_suite/upload/open",
            {
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "filename": "copy.tar.zst.enc",
            },
        )
        self.assertEqual(answer.status_code, 200, answer.text)
        upload_id = answer.json()["id"]
        piece = len(data) // 2 + 1
        for offset in range(0, len(data), piece):
            answer = self.post(
                "/db_backup_suite/upload/%s/chunk?offset=%s" % (upload_id, offset),
                data[offset : offset + piece],
                content_type="application/octet-stream",
            )
            self.assertEqual(answer.status_code, 200, answer.text)
        answer = self.post("/db_backup_suite/upload/%s/finish" % upload_id)
        self.assertEqual(answer.status_code, 200, answer.text)
        return upload_id

    def rpc_wizard(self, user, method, *args, context=None, **kwargs):
        """``WIZARD.method`` over JSON-RPC as ``user``; the decoded reply."""
        if context is not None:
            kwargs["context"] = context
        return self.rpc_as(user.login, WIZARD, method, *args, **kwargs)

    def restore_requests(self):
        return self.env["audit.event"].search_count(
            [("action", "in", ("restore", "sandbox"))]
        )

    def system_users(self):
        return self.env.ref("base.group_system").sudo().users

    def crafted_wizard(self, user, target="production"):
        upload_id = self.upload(user, self.crafted)
        wizard_id = self.assertRpcOk(
            self.rpc_wizard(
                user,
                "create",
                {
                    "source": "upload",
                    "upload_id": upload_id,
                    "upload_password": PASSWORD,
                    "target": target,
                },
            )
        )
        return upload_id, wizard_id

    # -- F1: an archive a user wrote, over production ------------------------
    def test_restorer_cannot_restore_own_archive_over_production(self):
        admins = self.system_users()
        before = self.restore_requests()
        upload_id, wizard_id = self.crafted_wizard(self.restorer)
        shown = self.assertRpcOk(
            self.rpc_wizard(
                self.restorer,
                "read",
                [wizard_id],
                ["foreign", "archive_trusted", "compatible", "production_refusal"],
            )
        )[0]
        # the copy keeps production's uuid: not foreign, but not the server's
        self.assertFalse(shown["foreign"])
        self.assertTrue(shown["compatible"])
        self.assertFalse(shown["archive_trusted"])
        self.assertIn("Only a Settings administrator", shown["production_refusal"])
        # the server-owned flag cannot be set by the user
        self.assertRpcError(
            self.rpc_wizard(
                self.restorer, "write", [wizard_id], {"archive_trusted": True}
            )
        )
        self.assertRpcOk(
            self.rpc_wizard(
                self.restorer, "write", [wizard_id], {"confirm_name": self.dbname}
            )
        )
        message = self.assertRpcError(
            self.rpc_wizard(self.restorer, "action_restore", [wizard_id])
        )
        self.assertIn("Only a Settings administrator", message)
        # nothing changed: no job, no request, the user is no administrator
        self.assertEqual(self.spawned, [])
        self.assertEqual(self.restore_requests(), before)
        wizard = self.env[WIZARD].browse(wizard_id)
        self.assertEqual(wizard.state, "draft")
        self.assertTrue(wizard.sudo().upload_password_sealed, "kept to retry")
        self.assertEqual(self.system_users(), admins)
        self.assertFalse(self.restorer.has_group("base.group_system"))
        self.assertEqual(
            self.env["ir.config_parameter"].get_param("database.uuid"), self.uuid
        )
        self.assertIn(upload_id + ".part", self.files())

        # the same archive into a sandbox: allowed, and it is restored
        self.assertRpcOk(
            self.rpc_wizard(self.restorer, "write", [wizard_id], {"target": "sandbox"})
        )
        self.assertRpcOk(self.rpc_wizard(self.restorer, "action_restore", [wizard_id]))
        (job,) = self.spawned
        self.assertEqual(job["target"], "sandbox")
        result = restore_job.run_job(job)
        self.assertTrue(result["ok"], result["message"])
        wizard.invalidate_recordset()
        self.assertEqual(wizard.sandbox_id.state, "ready")
        self.assertTrue(backup_engine.database_exists(wizard.sandbox_id.name))
        self.assertNotIn(upload_id + ".part", self.files())
        self.assertEqual(self.system_users(), admins)

    def test_restore_job_rechecks_the_requester_at_run_time(self):
        """The job itself (detached process): a production restore of an
        archive the keyring does not authenticate, requested by a Backup
        Restore user, is refused before anything; by an administrator, or of
        a keyring archive of this database, it passes the check."""
        upload_id, wizard_id = self.crafted_wizard(self.admin)
        self.assertRpcOk(
            self.rpc_wizard(
                self.admin, "write", [wizard_id], {"confirm_name": self.dbname}
            )
        )
        self.assertRpcOk(self.rpc_wizard(self.admin, "action_restore", [wizard_id]))
        (job,) = self.spawned
        self.assertEqual(job["target"], "production")
        self.assertEqual(job["requested_by_id"], self.admin.id)
        self.assertEqual(job["source"]["password"], PASSWORD)
        restore_job._check_job(job)  # the administrator: allowed
        forged = dict(job, requested_by_id=self.restorer.id)
        with self.assertRaisesRegex(PermissionError, "Settings administrator"):
            restore_job._check_job(forged)
        # a keyring archive of this database: today's rules for the restorer
        trusted = dict(
            forged,
            source={"path": self.keyring_path_of_run, "password": None},
        )
        restore_job._check_job(trusted)
        self.assertIn(upload_id + ".part", self.files(), "the job was not run")

    def test_admin_may_restore_own_archive_over_production(self):
        before = self.restore_requests()
        _upload_id, wizard_id = self.crafted_wizard(self.admin)
        shown = self.assertRpcOk(
            self.rpc_wizard(
                self.admin,
                "read",
                [wizard_id],
                ["archive_trusted", "production_refusal"],
            )
        )[0]
        self.assertFalse(shown["archive_trusted"])
        self.assertFalse(shown["production_refusal"])
        self.assertRpcOk(
            self.rpc_wizard(
                self.admin, "write", [wizard_id], {"confirm_name": self.dbname}
            )
        )
        self.assertRpcOk(self.rpc_wizard(self.admin, "action_restore", [wizard_id]))
        self.assertEqual(len(self.spawned), 1)
        self.assertEqual(self.spawned[0]["target"], "production")
        self.assertEqual(self.restore_requests(), before + 1)
        self.assertEqual(self.env[WIZARD].browse(wizard_id).state, "started")

    def test_keyring_archive_of_this_database_keeps_todays_rules(self):
        with open(self.keyring_path_of_run, "rb") as handle:
            data = handle.read()
        upload_id = self.upload(self.restorer, data)
        wizard_id = self.assertRpcOk(
            self.rpc_wizard(
                self.restorer,
                "create",
                {"source": "upload", "upload_id": upload_id, "target": "production"},
            )
        )
        shown = self.assertRpcOk(
            self.rpc_wizard(
                self.restorer,
                "read",
                [wizard_id],
                ["archive_trusted", "production_refusal"],
            )
        )[0]
        self.assertTrue(shown["archive_trusted"])
        self.assertFalse(shown["production_refusal"])
        self.assertRpcOk(
            self.rpc_wizard(
                self.restorer, "write", [wizard_id], {"confirm_name": self.dbname}
            )
        )
        self.assertRpcOk(self.rpc_wizard(self.restorer, "action_restore", [wizard_id]))
        (job,) = self.spawned
        self.assertEqual(job["target"], "production")
        restore_job._check_job(job)

    # -- F6: another user's upload -------------------------------------------
    def test_other_users_upload_cannot_be_taken_or_removed(self):
        victim = self.upload(self.restorer2, b"victim's archive bytes")
        victim_files = {victim + ".part", victim + ".json"}
        self.assertLessEqual(victim_files, set(self.files()))
        # through a context default: refused, nothing created
        count = self.env[WIZARD].sudo().search_count([])
        message = self.assertRpcError(
            self.rpc_wizard(
                self.restorer,
                "create",
                {"run_id": self.backup_run.id, "target": "sandbox"},
                context={"default_upload_id": victim},
            ),
            USER,
        )
        self.assertIn("not yours", message)
        self.assertEqual(self.env[WIZARD].sudo().search_count([]), count)
        self.assertLessEqual(victim_files, set(self.files()))
        # a wizard that holds it anyway (written behind the server's back):
        # replacing it removes nothing of another user
        wizard_id = self.assertRpcOk(
            self.rpc_wizard(
                self.restorer,
                "create",
                {"run_id": self.backup_run.id, "target": "sandbox"},
            )
        )
        self.env.cr.execute(
            SQL(
                "UPDATE db_backup_restore_wizard SET upload_id = %s WHERE id = %s",
                victim,
                wizard_id,
            )
        )
        self.env.invalidate_all()
        self.assertRpcOk(
            self.rpc_wizard(self.restorer, "write", [wizard_id], {"upload_id": False})
        )
        self.assertLessEqual(victim_files, set(self.files()))
        meta = uploads.read_meta(
            self.base, victim, database=self.dbname, uid=self.restorer2.id
        )
        self.assertTrue(meta["finished"])
        # the owner's own replaced upload is removed
        mine = self.upload(self.restorer, b"my first file")
        self.env.cr.execute(
            SQL(
                "UPDATE db_backup_restore_wizard SET upload_id = %s WHERE id = %s",
                mine,
                wizard_id,
            )
        )
        self.env.invalidate_all()
        self.assertRpcOk(
            self.rpc_wizard(self.restorer, "write", [wizard_id], {"upload_id": False})
        )
        self.assertNotIn(mine + ".part", self.files())

    # -- F5: limits -------------------------------------------------------------
    def test_unfinished_uploads_capped_per_user(self):
        self.login(self.restorer)
        opened = []
        for _ in range(uploads.MAX_OPEN_PER_USER):
            answer = self.post("/db_backup_suite/upload/open", {"size": 10})
            self.assertEqual(answer.status_code, 200, answer.text)
            opened.append(answer.json()["id"])
        before = self.files()
        answer = self.post("/db_backup_suite/upload/open", {"size": 10})
        self.assertEqual(answer.status_code, 429)
        self.assertIn("unfinished uploads already", answer.json()["error"])
        self.assertEqual(self.files(), before)
        # another user is not blocked by them
        self.login(self.restorer2)
        answer = self.post("/db_backup_suite/upload/open", {"size": 10})
        self.assertEqual(answer.status_code, 200, answer.text)

    def test_legacy_upload_file_honours_limit_and_leaves_nothing(self):
        self.env["ir.config_parameter"].set_param(
            "db_backup_suite.upload_max_bytes", "1000"
        )
        before = self.files()
        message = self.assertRpcError(
            self.rpc_wizard(
                self.restorer,
                "create",
                {
                    "source": "upload",
                    "upload_file": base64.b64encode(b"x" * 2000).decode(),
                    "upload_filename": "big.tar.zst.enc",
                    "target": "sandbox",
                },
            ),
            USER,
        )
        self.assertIn("larger than the largest upload allowed", message)
        self.assertEqual(self.files(), before)
        # under the limit but not an archive: refused, the file removed
        with mute_logger(
            "odoo.addons.db_backup_suite.wizards.db_backup_restore_wizard"
        ):
            message = self.assertRpcError(
                self.rpc_wizard(
                    self.restorer,
                    "create",
                    {
                        "source": "upload",
                        "upload_file": base64.b64encode(b"not an archive").decode(),
                        "upload_filename": "junk.bin",
                        "target": "sandbox",
                    },
                ),
                USER,
            )
        self.assertIn("cannot be read", message)
        self.assertEqual(self.files(), before)
        self.assertFalse(
            self.env[WIZARD].sudo().search([("create_uid", "=", self.restorer.id)])
        )
