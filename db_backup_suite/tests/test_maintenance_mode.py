"""Maintenance mode during a production restore, over real HTTP sessions.

Before: a writer inserting every 50 ms during a production restore saw its
rows end in the ``<db>_pre_restore_*`` safety copy, not in the restored
database, with no sign to the user. Now, from the pre-restore backup to the
swap, every write of a user is refused with a clear message (reads work),
nothing lands in the safety copy after the maintenance started, and writes
work again once the restore ended (done or failed).

The test's own database cannot be swapped under its running transaction
(nor made read-only: its transaction is the test's), so, like
``test_restore.TestRestoreEndToEnd``, the test makes a second database
from an archive of it, logs a normal user into that database over the
test's HTTP server (the database is exposed by ``db_name`` for the test)
and restores over it with the real job.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import xmlrpc.client
from unittest.mock import patch

import psycopg2
import requests

from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry
from odoo.tests import HttpCase, tagged
from odoo.tools import config, mute_logger

from ..models import maintenance_guard
from ..service import backup_engine, restore_job
from .common import KeyringMixin, drop_test_databases

_logger = logging.getLogger(__name__)

PASSWORD = "Maint-Mode-pw-2026"
PREFIX = "MT writer"


def _lib():
    from ..lib import maintenance

    return maintenance


def _state(pid):
    """The state of process ``pid`` (``/proc/<pid>/stat`` field 3)."""
    with open("/proc/%d/stat" % pid, "rb") as handle:
        data = handle.read()
    return data[data.rfind(b")") + 2 :].split()[0]


@tagged("post_install", "-at_install")
class TestMaintenanceMode(KeyringMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        cls.local_dir = os.path.join(cls.tmp_dir, "local-dest")
        os.makedirs(cls.local_dir)
        cls.local_dest = cls.env["db.backup.destination"].create(
            {"name": "Local disk", "dest_type": "local", "local_path": cls.local_dir}
        )
        cls.second = "mt_%s" % uuid.uuid4().hex[:8]
        cls.addClassCleanup(drop_test_databases, cls.second)
        # the second database is served by this test's HTTP server
        cls.startClassPatcher(
            patch.dict(
                config.options,
                {"db_name": "%s,%s" % (config["db_name"], cls.second)},
            )
        )
        base = cls._backup(cls.env.cr.dbname)
        created = restore_job.run_job(
            cls._job(
                cls.second,
                base,
                target="sandbox",
                sandbox_name=cls.second,
                expected_uuid=backup_engine.config_parameter_of(
                    cls.env.cr.dbname, "database.uuid"
                ),
            )
        )
        assert created["ok"], created["message"]

        def prepare(env):
            env["db.backup.destination"].create(
                {"name": "Local", "dest_type": "local", "local_path": cls.local_dir}
            )
            user = (
                env["res.users"]
                .with_context(no_reset_password=True)
                .create(
                    {
                        "name": "Maintenance User",
                        "login": "mt_user",
                        "password": PASSWORD,
                        "groups_id": [
                            (
                                6,
                                0,
                                [
                                    env.ref("base.group_user").id,
                                    env.ref("base.group_partner_manager").id,
                                ],
                            )
                        ],
                    }
                )
            )
            env["res.partner"].create({"name": "MT in the archive"})
            return user.id

        cls.user_id = cls._on(cls.second, prepare)
        # the archive the production restores put back (the user is in it)
        cls.archive = cls._backup(cls.second)

    # helpers ---------------------------------------------------------------
    @classmethod
    def _backup(cls, dbname):
        result = backup_engine.run_job(
            {
                "action": "backup",
                "db": backup_engine.db_params(dbname),
                "filestore": backup_engine.filestore_dir(dbname),
                "archive_label": "manual",
                "sinks": [
                    {
                        "destination_id": cls.local_dest.id,
                        "config": cls.local_dest._sink_config(),
                    }
                ],
            }
        )
        assert result["copies"][0]["ok"], result
        return result

    @classmethod
    def _job(cls, dbname, archive, target="production", **extra):
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
                    "destination_id": cls.local_dest.id,
                    "config": cls.local_dest._sink_config(),
                }
            ],
            "source": {"sink": cls.local_dest._sink_config(), "name": archive["name"]},
        }
        job.update(extra)
        return job

    @classmethod
    def _on(cls, dbname, func):
        with Registry(dbname).cursor() as cr:
            return func(api.Environment(cr, SUPERUSER_ID, {}))

    def _names(self, dbname, prefix=PREFIX):
        """Partner names like ``prefix%`` in ``dbname`` (own connection)."""
        params = backup_engine.db_params(dbname)
        conn = psycopg2.connect(**{k: v for k, v in params.items() if v is not None})
        try:
            with conn.cursor() as cr:
                cr.execute(
                    "SELECT name FROM res_partner WHERE name LIKE %s", (prefix + "%",)
                )
                return {row[0] for row in cr.fetchall()}
        finally:
            conn.close()

    def _announced(self, dbname):
        """The payloads of the maintenance messages sent on ``dbname``'s bus
        to the internal users' channel (what their open tabs receive),
        oldest first; none ever goes to the ``broadcast`` channel every
        visitor (portal, public) receives, none names the archive."""
        params = backup_engine.db_params(dbname)
        conn = psycopg2.connect(**{k: v for k, v in params.items() if v is not None})

        def payloads(channel):
            cr.execute(
                "SELECT message FROM bus_bus WHERE channel = %s ORDER BY id",
                (json.dumps(channel, separators=(",", ":")),),
            )
            return [
                message["payload"]
                for message in (json.loads(row[0]) for row in cr.fetchall())
                if message.get("type") == maintenance_guard.BUS_MAINTENANCE
            ]

        try:
            with conn.cursor() as cr:
                cr.execute(
                    "SELECT res_id FROM ir_model_data "
                    "WHERE module = 'base' AND name = 'group_user'"
                )
                group_id = cr.fetchone()[0]
                # sent on the live database's bus (the name it had then)
                self.assertEqual(payloads([self.second, "broadcast"]), [])
                announced = payloads([self.second, "res.groups", group_id])
        finally:
            conn.close()
        for payload in announced:
            self.assertNotIn("archive", payload)
        return announced

    def _login(self):
        """A real session of the normal user on the second database; its
        session id (the writer thread uses it from its own HTTP client)."""
        result = self.make_jsonrpc_request(
            "/web/session/authenticate",
            {"db": self.second, "login": "mt_user", "password": PASSWORD},
        )
        self.assertEqual(result["uid"], self.user_id)
        return self.opener.cookies["session_id"]

    def _call(self, session_id, model, method, args, kwargs=None):
        """JSON-RPC ``call_kw`` with this session: ``("ok", result)`` or
        ``("error", message)``."""
        response = requests.post(
            "%s/web/dataset/call_kw/%s/%s" % (self.base_url(), model, method),
            json={
                "jsonrpc": "2.0",
                "method": "call",
                "id": 1,
                "params": {
                    "model": model,
                    "method": method,
                    "args": args,
                    "kwargs": kwargs or {},
                },
            },
            cookies={"session_id": session_id},
            timeout=60,
        )
        data = response.json()
        if "result" in data:
            return "ok", data["result"]
        return "error", data["error"]["data"]["message"]

    def _assert_refused(self, outcome, archive):
        status, message = outcome
        self.assertEqual(status, "error")
        self.assertIn("The database is being restored from %s since" % archive, message)
        self.assertIn("changes are refused until it ends", message)

    def _writable(self, dbname=None):
        maintenance = _lib()
        conn = psycopg2.connect(
            **{
                k: v
                for k, v in backup_engine.db_params("postgres").items()
                if v is not None
            }
        )
        try:
            with conn.cursor() as cr:
                return not maintenance.read_only_setting(cr, dbname or self.second)
        finally:
            conn.close()

    # maintenance held by a live process ------------------------------------
    def test_writes_refused_reads_work(self):
        maintenance = _lib()
        sid = self._login()
        before = self._names(self.second, "MT ")
        held = maintenance.enter(
            backup_engine.pg_params(), config["data_dir"], self.second, "x.dbbs"
        )
        try:
            # reads work
            status, rows = self._call(
                sid,
                "res.partner",
                "search_read",
                [[["name", "like", "MT "]]],
                {"fields": ["name"]},
            )
            self.assertEqual(status, "ok")
            self.assertEqual({row["name"] for row in rows}, before)
            # the banner's data
            info = self.make_jsonrpc_request("/web/session/get_session_info")
            self.assertEqual(info["db_backup_maintenance"]["archive"], "x.dbbs")
            self.assertIn("x.dbbs", info["db_backup_maintenance"]["message"])
            # writes are refused with the message, whatever the call
            self._assert_refused(
                self._call(sid, "res.partner", "create", [{"name": "MT refused"}]),
                "x.dbbs",
            )
            partner_id = min(
                self._on(
                    self.second,
                    lambda env: (
                        env["res.partner"]
                        .search([("name", "=", "MT in the archive")])
                        .ids
                    ),
                )
            )
            self._assert_refused(
                self._call(
                    sid, "res.partner", "write", [[partner_id], {"name": "MT renamed"}]
                ),
                "x.dbbs",
            )
            self._assert_refused(
                self._call(sid, "res.partner", "unlink", [[partner_id]]), "x.dbbs"
            )
            # the external API too (its own cursor: held by the ORM guard)
            proxy = xmlrpc.client.ServerProxy("%s/xmlrpc/2/object" % self.base_url())
            with self.assertRaises(xmlrpc.client.Fault) as fault:
                proxy.execute_kw(
                    self.second,
                    self.user_id,
                    PASSWORD,
                    "res.partner",
                    "create",
                    [{"name": "MT refused over XML-RPC"}],
                )
            self.assertIn(
                "changes are refused until it ends", fault.exception.faultString
            )
            # a login is a change too (last login, audit): refused with the
            # message, the session already open keeps working
            response = requests.post(
                "%s/web/session/authenticate" % self.base_url(),
                json={
                    "jsonrpc": "2.0",
                    "method": "call",
                    "id": 1,
                    "params": {
                        "db": self.second,
                        "login": "mt_user",
                        "password": PASSWORD,
                    },
                },
                timeout=60,
            )
            self.assertIn(
                "changes are refused until it ends",
                response.json()["error"]["data"]["message"],
            )
            # nothing changed
            self.assertEqual(self._names(self.second, "MT "), before)
            self.assertFalse(self._writable())
        finally:
            maintenance.leave(
                backup_engine.pg_params(), config["data_dir"], self.second
            )
        self.assertTrue(self._writable())
        status, _id = self._call(sid, "res.partner", "create", [{"name": "MT after"}])
        self.assertEqual(status, "ok")
        self.assertIn("MT after", self._names(self.second, "MT "))
        info = self.make_jsonrpc_request("/web/session/get_session_info")
        self.assertFalse(info["db_backup_maintenance"])
        self.assertEqual(held["archive"], "x.dbbs")

    def test_stale_marker_cannot_lock_the_database(self):
        """A restore process killed in maintenance: the next write clears its
        marker and the database setting, and goes through."""
        maintenance = _lib()
        sid = self._login()
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        maintenance.enter(
            backup_engine.pg_params(),
            config["data_dir"],
            self.second,
            "killed.dbbs",
            pid=dead.pid,
        )
        self.assertFalse(self._writable())
        status, _id = self._call(sid, "res.partner", "create", [{"name": "MT stale"}])
        self.assertEqual(status, "ok")
        self.assertIn("MT stale", self._names(self.second, "MT "))
        self.assertTrue(self._writable())
        self.assertIsNone(maintenance.read(config["data_dir"], self.second))

    def test_killed_restore_zombie_cannot_lock_the_database(self):
        """A restore process killed by SIGKILL while the Odoo server that
        spawned it does not wait for it is a zombie (``kill(pid, 0)`` still
        succeeds, its start time still matches): the next write clears its
        marker and goes through, no restart needed. And the suite's
        spawners wait for their children: a killed job is no zombie."""
        maintenance = _lib()
        sid = self._login()
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            maintenance.enter(
                backup_engine.pg_params(),
                config["data_dir"],
                self.second,
                "zombie.dbbs",
                pid=child.pid,
            )
            self._assert_refused(
                self._call(sid, "res.partner", "create", [{"name": "MT live"}]),
                "zombie.dbbs",
            )
            os.kill(child.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _state(child.pid) != b"Z" and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertEqual(_state(child.pid), b"Z")
            self.assertFalse(self._writable())
            status, _id = self._call(
                sid, "res.partner", "create", [{"name": "MT after zombie"}]
            )
            self.assertEqual(status, "ok", _id)
            self.assertIn("MT after zombie", self._names(self.second, "MT "))
            self.assertTrue(self._writable())
            self.assertIsNone(maintenance.read(config["data_dir"], self.second))
            self.assertNotIn("MT live", self._names(self.second, "MT "))
        finally:
            child.kill()
            child.wait()
        # what the spawners do (spawn_job, spawn_detached, the download
        # preparation): the child, killed, is reaped at once
        reaped = backup_engine.reap_when_done(
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        )
        os.kill(reaped.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while os.path.exists("/proc/%d" % reaped.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertFalse(os.path.exists("/proc/%d" % reaped.pid), "left a zombie")
        self.assertEqual(reaped.wait(), -signal.SIGKILL)

    def _sequence(self, implementation):
        def make(env):
            return (
                env["ir.sequence"]
                .create(
                    {
                        "name": "MT %s" % implementation,
                        "code": "mt.%s" % implementation,
                        "implementation": implementation,
                        "padding": 3,
                    }
                )
                .id
            )

        return self._on(self.second, make)

    def _number_next(self, sequence_id):
        return self._on(
            self.second,
            lambda env: env["ir.sequence"].browse(sequence_id).number_next_actual,
        )

    def _jsonrpc_object(self, *args):
        """``/jsonrpc`` object ``execute_kw`` as the user: ``("ok", result)``
        or ``("error", message)``."""
        response = requests.post(
            "%s/jsonrpc" % self.base_url(),
            json={
                "jsonrpc": "2.0",
                "method": "call",
                "id": 1,
                "params": {
                    "service": "object",
                    "method": "execute_kw",
                    "args": [self.second, self.user_id, PASSWORD, *args],
                },
            },
            timeout=60,
        )
        data = response.json()
        if "result" in data:
            return "ok", data["result"]
        return "error", data["error"]["data"]["message"]

    def _xmlrpc_object(self, *args):
        proxy = xmlrpc.client.ServerProxy("%s/xmlrpc/2/object" % self.base_url())
        try:
            return "ok", proxy.execute_kw(self.second, self.user_id, PASSWORD, *args)
        except xmlrpc.client.Fault as fault:
            return "error", fault.faultString

    def test_external_api_is_read_only(self):
        """XML-RPC and ``/jsonrpc`` run their own cursor: during the
        maintenance a method writing through raw SQL (a sequence's number:
        ``nextval``, or an ``UPDATE`` for a no-gap one) is refused by
        PostgreSQL with the message, like the ORM writes; reads work."""
        standard = self._sequence("standard")
        no_gap = self._sequence("no_gap")
        calls = (self._xmlrpc_object, self._jsonrpc_object)
        for call in calls:
            for code in ("mt.standard", "mt.no_gap"):
                status, _number = call("ir.sequence", "next_by_code", [code])
                self.assertEqual(status, "ok", _number)
        before = (self._number_next(standard), self._number_next(no_gap))
        partners = self._names(self.second, "MT ")
        maintenance = _lib()
        maintenance.enter(
            backup_engine.pg_params(), config["data_dir"], self.second, "rpc.dbbs"
        )
        try:
            with mute_logger("odoo.http", "odoo.sql_db"):
                for call in calls:
                    for code in ("mt.standard", "mt.no_gap"):
                        self._assert_refused(
                            call("ir.sequence", "next_by_code", [code]), "rpc.dbbs"
                        )
                    self._assert_refused(
                        call("res.partner", "create", [{"name": "MT over RPC"}]),
                        "rpc.dbbs",
                    )
                    status, rows = call(
                        "res.partner",
                        "search_read",
                        [[["name", "like", "MT "]]],
                        {"fields": ["name"]},
                    )
                    self.assertEqual(status, "ok", rows)
                    self.assertEqual({row["name"] for row in rows}, partners)
                    status, count = call("res.partner", "search_count", [[]])
                    self.assertEqual(status, "ok", count)
            # nothing changed, in the database that stays
            self.assertEqual(
                (self._number_next(standard), self._number_next(no_gap)), before
            )
            self.assertEqual(self._names(self.second, "MT "), partners)
        finally:
            maintenance.leave(
                backup_engine.pg_params(), config["data_dir"], self.second
            )
        for call in calls:
            for code in ("mt.standard", "mt.no_gap"):
                status, _number = call("ir.sequence", "next_by_code", [code])
                self.assertEqual(status, "ok", _number)
        self.assertEqual(
            (self._number_next(standard), self._number_next(no_gap)),
            (before[0] + 2, before[1] + 2),
        )

    def test_portal_users_learn_nothing_of_the_archive(self):
        """The banner's data (session info) and the refusal's message name
        the archive to internal users only."""

        def make_portal(env):
            return (
                env["res.users"]
                .with_context(no_reset_password=True)
                .create(
                    {
                        "name": "MT Portal",
                        "login": "mt_portal",
                        "password": PASSWORD,
                        "groups_id": [(6, 0, [env.ref("base.group_portal").id])],
                    }
                )
                .id
            )

        portal_id = self._on(self.second, make_portal)
        maintenance = _lib()
        maintenance.enter(
            backup_engine.pg_params(), config["data_dir"], self.second, "secret.dbbs"
        )
        try:

            def check(env):
                internal = env(user=self.user_id)
                portal = env(user=portal_id)
                marker = maintenance_guard.active_marker(self.second)
                info = maintenance_guard.maintenance_info(internal)
                self.assertEqual(info["archive"], "secret.dbbs")
                self.assertFalse(maintenance_guard.maintenance_info(portal))
                message = maintenance_guard.maintenance_message(portal, marker)
                self.assertNotIn("secret.dbbs", message)
                self.assertIn("changes are refused until it ends", message)

            self._on(self.second, check)
        finally:
            maintenance.leave(
                backup_engine.pg_params(), config["data_dir"], self.second
            )

    def test_detached_job_logs_are_private_and_removed(self):
        """The output logs of detached restores and download preparations
        are 0600 and removed by the daily cleanup after a day."""
        directory = backup_engine.jobs_dir()
        fd = backup_engine.private_log(os.path.join(directory, "restore-mt.json.log"))
        os.close(fd)
        names = ("restore-mt.json.log", "download-mt.json.log", "restore-mt2.json")
        for name in names[1:]:
            with open(os.path.join(directory, name), "w") as handle:
                handle.write("x")
        fresh = os.path.join(directory, "restore-mt-fresh.json.log")
        os.close(backup_engine.private_log(fresh))
        self.addCleanup(
            lambda: [
                os.path.exists(os.path.join(directory, n))
                and os.unlink(os.path.join(directory, n))
                for n in (*names, "restore-mt-fresh.json.log")
            ]
        )
        mode = os.stat(os.path.join(directory, names[0])).st_mode & 0o777
        self.assertEqual(mode, 0o600)
        old = time.time() - 2 * 24 * 3600
        for name in names:
            os.utime(os.path.join(directory, name), (old, old))
        self.env["db.backup.download.wizard"]._remove_stale_files()
        self.assertFalse(os.path.exists(os.path.join(directory, names[0])))
        self.assertFalse(os.path.exists(os.path.join(directory, names[1])))
        # not a log of a detached job: left alone; a fresh log stays
        self.assertTrue(os.path.exists(os.path.join(directory, names[2])))
        self.assertTrue(os.path.exists(fresh))

    def test_guard_lets_only_the_restore_cursor_write(self):
        maintenance = _lib()
        maintenance.enter(
            backup_engine.pg_params(), config["data_dir"], self.second, "g.dbbs"
        )
        try:
            with (
                mute_logger("odoo.sql_db"),
                self.assertRaises(Exception) as refused,
                Registry(self.second).cursor() as cr,
            ):
                env = api.Environment(cr, SUPERUSER_ID, {})
                env["res.partner"].create({"name": "MT server side"})
            self.assertIn("changes are refused", str(refused.exception))
            with maintenance_guard.restore_writer_cursor(self.second) as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                env["res.partner"].create({"name": "MT restore's own"})
        finally:
            maintenance.leave(
                backup_engine.pg_params(), config["data_dir"], self.second
            )
        self.assertEqual(
            self._names(self.second, "MT ") & {"MT server side", "MT restore's own"},
            {"MT restore's own"},
        )

    def test_crons_wait_for_the_end_of_the_restore(self):
        """A scheduled action due during the maintenance does not run (its
        changes would be diverted); it runs at the first pass after."""

        def make_cron(env):
            return (
                env["ir.cron"]
                .create(
                    {
                        "name": "MT cron",
                        "model_id": env.ref("base.model_res_partner").id,
                        "state": "code",
                        "code": "model.create({'name': 'MT cron ran'})",
                        "interval_number": 1,
                        "interval_type": "days",
                        "nextcall": "2020-01-01 00:00:00",
                        "user_id": SUPERUSER_ID,
                    }
                )
                .id
            )

        cron_id = self._on(self.second, make_cron)
        maintenance = _lib()
        thread = threading.current_thread()
        saved = getattr(thread, "dbname", None)
        IrCron = Registry(self.second)["ir.cron"]
        try:
            maintenance.enter(
                backup_engine.pg_params(), config["data_dir"], self.second, "c.dbbs"
            )
            try:
                IrCron._process_jobs(self.second)
            finally:
                maintenance.leave(
                    backup_engine.pg_params(), config["data_dir"], self.second
                )
            self.assertNotIn("MT cron ran", self._names(self.second, "MT "))
            IrCron._process_jobs(self.second)
            self.assertIn("MT cron ran", self._names(self.second, "MT "))
        finally:
            if saved is not None:
                thread.dbname = saved
            self._on(self.second, lambda env: env["ir.cron"].browse(cron_id).unlink())

    # real production restores with a concurrent writer ----------------------
    def _run_with_writer(self, job, tag):
        """Run ``job`` as the restore wizard does (a detached ``restore-job``
        process) while a normal user's session creates a partner every 50
        ms. Returns ``(returncode, output, log, window, sid)``: log entries
        ``(status, name, t0, message)``; ``window``: when the maintenance
        was enforced and when its marker went away, as seen from here."""
        maintenance = _lib()
        sid = self._login()
        stop = threading.Event()
        log = []
        window = {}

        def writer():
            i = 0
            while not stop.is_set():
                name = "%s %s %04d" % (PREFIX, tag, i)
                t0 = time.time()
                try:
                    status, message = self._call(
                        sid, "res.partner", "create", [{"name": name}]
                    )
                except Exception as exc:  # the server swapping databases
                    status, message = "error", str(exc)
                log.append((status, name, t0, message))
                i += 1
                time.sleep(0.05)

        def watcher(proc):
            while proc.poll() is None:
                marker = maintenance.read(config["data_dir"], self.second)
                if marker and marker.get("enforced_at"):
                    window.setdefault("enforced_at", marker["enforced_at"])
                    window["pid"] = marker["pid"]
                elif window.get("enforced_at") and "ended" not in window:
                    window["ended"] = time.time()
                time.sleep(0.01)

        threads = [threading.Thread(target=writer, daemon=True)]
        path = restore_job.write_job_file(job)
        try:
            threads[0].start()
            time.sleep(1.0)  # a few writes before the restore starts
            with mute_logger("odoo.http", "odoo.sql_db"):
                proc = subprocess.Popen(
                    restore_job.job_command("restore-job", "--job-file", path),
                    env=backup_engine.child_env(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                threads.append(
                    threading.Thread(target=watcher, args=(proc,), daemon=True)
                )
                threads[1].start()
                output, _err = proc.communicate(timeout=900)
                time.sleep(1.5)  # a few writes after it ended
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        self.assertEqual(window.get("pid"), proc.pid, "the job held the marker")
        before = [e for e in log if e[2] < window.get("enforced_at", 0)]
        after = [e for e in log if e[2] > window.get("ended", time.time())]
        _logger.info(
            "writer (%s): %d writes before the maintenance (%d done), %d during "
            "(%d refused with the message, %d other errors, %d done), %d after "
            "(%d done); maintenance %.1f s",
            tag,
            len(before),
            sum(e[0] == "ok" for e in before),
            len(log) - len(before) - len(after),
            sum(e[0] == "error" and "refused" in e[3] for e in log),
            sum(
                e[0] == "error" and "refused" not in e[3]
                for e in log
                if e not in before and e not in after
            ),
            sum(e[0] == "ok" for e in log if e not in before and e not in after),
            len(after),
            sum(e[0] == "ok" for e in after),
            window.get("ended", 0) - window.get("enforced_at", 0),
        )
        return proc.returncode, output, log, window, sid

    def test_production_restore_refuses_concurrent_writes(self):
        code, output, log, window, sid = self._run_with_writer(
            self._job(self.second, self.archive), "ok"
        )
        self.assertEqual(code, 0, output[-3000:])
        self.assertTrue(window.get("enforced_at") and window.get("ended"), window)
        restored = self._names(self.second)
        safety = self._safety_copy()
        self.assertTrue(safety)
        in_safety = self._names(safety)
        refused = [e for e in log if e[0] == "error" and "refused" in e[3]]
        self.assertTrue(refused, "no write was tried during the maintenance")
        for _status, _name, _t0, message in refused:
            self.assertIn(self.archive["name"], message)
        for status, name, t0, message in log:
            if t0 >= window["enforced_at"]:
                # nothing begun in the maintenance or after lands in the
                # safety copy; a write that succeeded is in the restored db
                self.assertNotIn(name, in_safety, (status, message))
                if status == "ok":
                    self.assertIn(name, restored, message)
        # what was written before the maintenance is in the safety copy
        # (and in the pre-restore backup), not silently lost
        early = {e[1] for e in log if e[0] == "ok" and e[2] < window["enforced_at"]}
        self.assertTrue(early)
        self.assertLessEqual(early, in_safety)
        # after the restore: nothing read-only, writes work
        self.assertTrue(
            [e for e in log if e[0] == "ok" and e[2] > window["ended"]],
            "no write succeeded after the restore",
        )
        self.assertTrue(self._writable())
        self.assertTrue(self._writable(safety))
        # the open tabs were told when it started (on the replaced database)
        announced = self._announced(safety)
        self.assertTrue(announced and announced[-1]["active"])
        self.assertIsNone(_lib().read(config["data_dir"], self.second))
        status, _id = self._call(
            sid, "res.partner", "create", [{"name": "%s ok after" % PREFIX}]
        )
        self.assertEqual(status, "ok", _id)
        self.assertIn("%s ok after" % PREFIX, self._names(self.second))

    def _safety_copy(self):
        names = backup_engine.list_databases(self.second + "_pre_restore_")
        return sorted(names)[-1] if names else None

    def test_failed_restore_ends_the_maintenance(self):
        # a damaged copy of the archive: the engine refuses it after the
        # pre-restore backup, during the maintenance
        folder, base = os.path.split(self.archive["name"])
        damaged = os.path.join(folder, "damaged-" + base)
        with open(os.path.join(self.local_dir, self.archive["name"]), "rb") as src:
            data = bytearray(src.read())
        data[len(data) // 2] ^= 0xFF
        with open(os.path.join(self.local_dir, damaged), "wb") as dst:
            dst.write(data)
        before = self._names(self.second)
        code, output, log, window, sid = self._run_with_writer(
            self._job(self.second, {"name": damaged}), "failed"
        )
        self.assertEqual(code, 1, output[-3000:])
        self.assertTrue(window.get("enforced_at") and window.get("ended"), window)
        refused = [e for e in log if e[0] == "error" and "refused" in e[3]]
        self.assertTrue(refused, "no write was tried during the maintenance")
        live = self._names(self.second)
        for status, name, _t0, message in log:
            # the live database stays: every write that succeeded is in it,
            # every refused one is not
            if status == "ok":
                self.assertIn(name, live, message)
            elif "refused" in message:
                self.assertNotIn(name, live)
        self.assertLessEqual(before, live)
        # the open tabs were told when it started and when it ended
        announced = self._announced(self.second)
        self.assertEqual([a["active"] for a in announced[-2:]], [True, False])
        self.assertTrue(
            [e for e in log if e[0] == "ok" and e[2] > window["ended"]],
            "no write succeeded after the failed restore",
        )
        self.assertTrue(self._writable())
        self.assertIsNone(_lib().read(config["data_dir"], self.second))
        status, _id = self._call(
            sid, "res.partner", "create", [{"name": "%s failed after" % PREFIX}]
        )
        self.assertEqual(status, "ok", _id)
