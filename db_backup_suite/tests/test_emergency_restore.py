"""The emergency restore page (``/db_backup/emergency``), over real HTTP.

Off by default (404 everywhere); the master password compared as Odoo does,
rate limited per address (429) with every attempt logged to the server log
and to the 0600 attempt file; the archives of a real engine backup listed
from the server's destinations file; a damaged database restored by the
engine in a detached process (tables and row counts back as the manifest
says, the damaged one kept as the pre-restore safety copy); an archive of
another database refused without the separate confirmation.

The restore cannot swap the test's own database under its transaction: as
in test_restore, the test database is backed up with the engine and
restored into a second database (``h_emerg_*``) that the page then repairs.
"""

import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import uuid
from unittest.mock import patch

from odoo import http
from odoo.exceptions import UserError
from odoo.tests import BaseCase, HttpCase, new_test_user, tagged
from odoo.tools import config, file_open, mute_logger
from odoo.tools.config import crypt_context

from odoo.addons.audit_export.tests.common import RpcMixin

from ..controllers import emergency as page
from ..lib import emergency as em
from ..lib import pgtools
from ..service import backup_engine, restore_job
from .common import KeyringMixin, drop_test_databases

BASE = page.BASE
MASTER = "h-emergency-master-9Tq"
ROUTES = ("/login", "/list", "/prepare", "/restore", "/status")
LOGGER = "odoo.addons.db_backup_suite.controllers.emergency"
#: What the post-restore steps add to a restored database (hooks' audit
#: event, the safety copy's sandbox row, the replay cursor, the mail).
POST_RESTORE_TABLES = {
    "audit_event",
    "db_backup_sandbox",
    "ir_config_parameter",
    "mail_mail",
    "mail_mail_res_partner_rel",
    "mail_message",
}


def engine_backup(dbname, directory):
    """A real engine backup of ``dbname`` to the local ``directory``."""
    result = backup_engine.run_job(
        {
            "action": "backup",
            "db": backup_engine.db_params(dbname),
            "filestore": backup_engine.filestore_dir(dbname),
            "archive_label": "manual",
            "sinks": [{"config": {"type": "local", "path": directory}}],
        }
    )
    if not result["copies"][0]["ok"]:
        raise AssertionError("backup of %s failed: %s" % (dbname, result))
    return result


def _field(html, name):
    match = re.search(r'name="%s"[^>]*value="([^"]*)"' % re.escape(name), html)
    return match.group(1) if match else None


# ---------------------------------------------------------------------------
# The pure parts
# ---------------------------------------------------------------------------
# post_install like every class here: an at_install class would run again
# inside the registry loads of the restored databases (test_enable is on).
@tagged("post_install", "-at_install")
class TestEmergencyLib(BaseCase):
    def test_switch_is_off_unless_explicit(self):
        for value in (None, "", "False", "0", "no", "off", "maybe", False, 1):
            self.assertFalse(em.is_enabled(value), value)
        for value in (True, "True", "true", " 1 ", "yes", "ON"):
            self.assertTrue(em.is_enabled(value), value)

    def test_client_address_and_key(self):
        self.assertEqual(em.client_address("10.0.0.1", "6.6.6.6", False), "10.0.0.1")
        # behind the proxy: the right-most entry, the one the proxy saw
        self.assertEqual(
            em.client_address("10.0.0.1", "6.6.6.6, 7.7.7.7", True), "7.7.7.7"
        )
        self.assertEqual(em.client_address("junk", "", False), "unknown")
        self.assertEqual(em.limiter_key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64")
        self.assertEqual(em.limiter_key("2001:db8:1:2::9"), "2001:db8:1:2::/64")
        self.assertEqual(em.limiter_key("::ffff:1.2.3.4"), "1.2.3.4")

    def test_rate_limiter_is_bounded(self):
        state = {"v": 1, "failures": {}, "noted": {}, "tokens": {}, "global": []}
        now = 1_000_000.0
        for i in range(em.LIMIT):
            self.assertFalse(em.blocked(state, "1.2.3.4", now + i))
            em.record_failure(state, "1.2.3.4", now + i)
        wait = em.blocked(state, "1.2.3.4", now + em.LIMIT)
        self.assertGreater(wait, 0)
        self.assertLessEqual(wait, em.WINDOW + 1)
        self.assertFalse(em.blocked(state, "1.2.3.5", now))
        # the window passes
        self.assertFalse(em.blocked(state, "1.2.3.4", now + em.WINDOW + em.LIMIT))
        # many addresses: bounded memory, and the global cap holds
        for i in range(em.MAX_KEYS + 50):
            em.record_failure(state, "k%d" % i, now + 10)
        self.assertLessEqual(len(state["failures"]), em.MAX_KEYS)
        self.assertLessEqual(len(state["global"]), em.GLOBAL_LIMIT)
        self.assertTrue(em.blocked(state, "never-seen", now + 11))

    def test_tokens_single_use_bound_to_address_and_chain(self):
        state = {"v": 1, "failures": {}, "noted": {}, "tokens": {}, "global": []}
        now = 5000.0
        first = em.issue_token(state, "select", "1.1.1.1", now, database="db1")
        record = em.take_token(state, first, "select", "1.1.1.1", now)
        chain = record["chain"]
        a = em.issue_token(state, "restore", "1.1.1.1", now, chain=chain)
        b = em.issue_token(state, "select", "1.1.1.1", now, chain=chain)
        # wrong step, other address, expired: refused and not consumed
        self.assertIsNone(em.take_token(state, a, "select", "1.1.1.1", now))
        self.assertIsNone(em.take_token(state, a, "restore", "1.1.1.2", now))
        self.assertIsNone(
            em.take_token(state, a, "restore", "1.1.1.1", now + em.TOKEN_TTL)
        )
        self.assertEqual(
            em.take_token(state, a, "restore", "1.1.1.1", now)["chain"], chain
        )
        # used once: it and its sibling of the same login are gone
        self.assertIsNone(em.take_token(state, a, "restore", "1.1.1.1", now))
        self.assertIsNone(em.take_token(state, b, "select", "1.1.1.1", now))
        self.assertIsNone(em.take_token(state, first, "select", "1.1.1.1", now))
        # only digests are stored
        token = em.issue_token(state, "select", "1.1.1.1", now)
        self.assertNotIn(token, json.dumps(state))
        for i in range(em.MAX_TOKENS + 10):
            em.issue_token(state, "select", "1.1.1.1", now + i)
        self.assertLessEqual(len(state["tokens"]), em.MAX_TOKENS)

    def test_csrf(self):
        secret = b"s" * 32
        token = em.make_csrf(secret, "cookie-1", "1.1.1.1", 1000)
        self.assertTrue(em.check_csrf(secret, token, "cookie-1", "1.1.1.1", 1001))
        self.assertFalse(em.check_csrf(secret, token, "cookie-2", "1.1.1.1", 1001))
        self.assertFalse(em.check_csrf(secret, token, "cookie-1", "1.1.1.2", 1001))
        self.assertFalse(em.check_csrf(b"t" * 32, token, "cookie-1", "1.1.1.1", 1001))
        self.assertFalse(
            em.check_csrf(secret, token, "cookie-1", "1.1.1.1", 1000 + em.CSRF_TTL + 1)
        )
        self.assertFalse(em.check_csrf(secret, "", "cookie-1", "1.1.1.1", 1001))
        self.assertFalse(em.check_csrf(secret, token, "", "1.1.1.1", 1001))

    def test_destinations_file(self):
        tmp = tempfile.mkdtemp(prefix="h_emerg_dest_")
        self.addCleanup(shutil.rmtree, tmp, True)
        secret_file = os.path.join(tmp, "sftp-password")
        with open(secret_file, "w") as handle:
            handle.write("from-a-file\n")
        path = os.path.join(tmp, "destinations.json")

        def write(data, mode=0o600):
            with open(path, "w") as handle:
                json.dump(data, handle)
            os.chmod(path, mode)

        write(
            {
                "destinations": [
                    "local:/srv/backups",
                    {"name": "nas", "type": "local", "path": "/mnt/nas"},
                    {
                        "name": "offsite",
                        "type": "s3",
                        "bucket": "b",
                        "access_key_env": "H_EMERG_KEY",
                        "secret_key_env": "H_EMERG_SECRET",
                    },
                    {
                        "type": "sftp",
                        "host": "h",
                        "username": "u",
                        "known_hosts": "h ssh-ed25519 AAAA",
                        "password_file": secret_file,
                    },
                ]
            }
        )
        environ = {"H_EMERG_KEY": "AK", "H_EMERG_SECRET": "SK"}
        dests = em.load_destinations(path, environ=environ)
        self.assertEqual(
            [d.name for d in dests],
            ["local:/srv/backups", "nas", "offsite", "sftp://u@h:22/"],
        )
        self.assertEqual(dests[0].config, {"type": "local", "path": "/srv/backups"})
        self.assertEqual(dests[2].config["secret_key"], "SK")
        self.assertNotIn("secret_key_env", dests[2].config)
        self.assertEqual(dests[3].config["password"], "from-a-file")
        self.assertNotIn("SK", repr(dests[2]))
        with self.assertRaisesRegex(em.EmergencyConfigError, "H_EMERG_SECRET"):
            em.load_destinations(path, environ={"H_EMERG_KEY": "AK"})
        # group-writable: whoever can write it decides what is restored
        os.chmod(path, 0o620)
        with self.assertRaisesRegex(em.EmergencyConfigError, "writable"):
            em.load_destinations(path, environ=environ)
        # an inline secret readable by everyone
        write([{"type": "s3", "bucket": "b", "secret_key": "inline"}], mode=0o644)
        with self.assertRaisesRegex(em.EmergencyConfigError, "inline secret"):
            em.load_destinations(path)
        write([{"type": "ftp"}])
        with self.assertRaisesRegex(em.EmergencyConfigError, "'type'"):
            em.load_destinations(path)
        with self.assertRaisesRegex(em.EmergencyConfigError, "no destinations file"):
            em.load_destinations(None)

    def test_attempt_log(self):
        tmp = tempfile.mkdtemp(prefix="h_emerg_log_")
        self.addCleanup(shutil.rmtree, tmp, True)
        log = em.AttemptLog(os.path.join(tmp, "attempts.jsonl"))
        one = log.append(
            "login_failed", result="failure", address="1.1.1.1", database="db1"
        )
        two = log.append(
            "login",
            result="success",
            address="1.1.1.1",
            database="db2",
            user_agent="x" * 5000,
        )
        log.append(
            "login_failed", result="failure", address="1.1.1.1", database="bad name;"
        )
        self.assertLess(one["seq"], two["seq"])
        self.assertEqual(stat.S_IMODE(os.stat(log.path).st_mode), 0o600)
        self.assertEqual([e["seq"] for e in log.entries(0, "db1")], [one["seq"]])
        self.assertEqual(log.entries(one["seq"], "db1"), [])
        self.assertEqual(len(log.entries(0)), 3)
        self.assertLessEqual(len(log.entries(0, "db2")[0]["user_agent"]), em.FIELD_MAX)
        self.assertIsNone(log.entries(two["seq"])[0]["database"])


# ---------------------------------------------------------------------------
# Over HTTP
# ---------------------------------------------------------------------------
@tagged("post_install", "-at_install")
class TestEmergencyDisabled(HttpCase):
    def test_every_route_is_404_when_off(self):
        for value in (None, "False", "0"):
            options = {em.ENABLE_OPTION: value} if value is not None else {}
            with patch.dict(config.options, options):
                if value is None:
                    config.options.pop(em.ENABLE_OPTION, None)
                response = self.url_open(BASE)
                self.assertEqual(response.status_code, 404, value)
                for route in ROUTES:
                    response = self.url_open(
                        BASE + route, data={"master_password": "admin"}
                    )
                    self.assertEqual(response.status_code, 404, (value, route))
        # and no link anywhere
        self.assertNotIn(BASE, self.url_open("/web/login").text)
        self.assertNotIn(BASE, self.url_open("/web/database/selector").text)

    def test_routes_work_without_a_database(self):
        """Served by the no-database routing map once the addon is in
        ``server_wide_modules`` (what the documentation asks)."""
        rules = {
            url
            for url, _endpoint in http._generate_routing_rules(
                ["", "base", "web", "db_backup_suite"], nodb_only=True
            )
        }
        self.assertIn(BASE, rules)
        for route in ROUTES:
            self.assertIn(BASE + route, rules)
        # and the page renders without any environment
        html = page.render_page(
            "emergency.login",
            {
                "csrf_token": "t",
                "insecure": False,
                "databases": ["a<b"],
                "database": "",
                "error": "<script>x</script>",
                "notice": None,
            },
        )
        self.assertIn('value="a&lt;b"', html)
        self.assertIn("&lt;script&gt;", html)
        self.assertNotIn("<script>x", html)


class EmergencyCase(KeyringMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        cls.archives_dir = os.path.join(cls.tmp_dir, "archives")
        os.makedirs(cls.archives_dir)
        cls.dest_file = os.path.join(cls.tmp_dir, "backup-destinations.json")
        fd = os.open(cls.dest_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(
                {
                    "destinations": [
                        {
                            "name": "Local disk",
                            "type": "local",
                            "path": cls.archives_dir,
                        }
                    ]
                },
                handle,
            )
        cls.master_hash = crypt_context.hash(MASTER)

    def setUp(self):
        super().setUp()
        self.enterContext(
            patch.dict(
                config.options,
                {
                    em.ENABLE_OPTION: "True",
                    em.DESTINATIONS_OPTION: self.dest_file,
                    "admin_passwd": self.master_hash,
                },
            )
        )
        page.state_store().clear()
        self.log_path = page.attempt_log().path
        previous = page.attempt_log().entries()
        self.log_start = previous[-1]["seq"] if previous else 0

    # helpers ---------------------------------------------------------------
    def _form(self):
        response = self.url_open(BASE)
        self.assertEqual(response.status_code, 200)
        token = _field(response.text, "csrf_token")
        self.assertTrue(token)
        return token

    def _post(self, route, **data):
        if "csrf_token" not in data:
            data["csrf_token"] = self._form()
        return self.url_open(BASE + route, data=data, timeout=60)

    def _login(self, database, password=MASTER):
        return self._post("/login", database=database, master_password=password)

    def _new_attempts(self):
        return page.attempt_log().entries(self.log_start)

    def _backup(self, dbname):
        return engine_backup(dbname, self.archives_dir)


@tagged("post_install", "-at_install")
class TestEmergencyLogin(EmergencyCase):
    def test_wrong_password_refused_then_rate_limited(self):
        db = self.env.cr.dbname
        with self.assertLogs(LOGGER, "WARNING") as logs:
            for _i in range(em.LIMIT):
                response = self._login(db, "not-the-master-password")
                self.assertEqual(response.status_code, 403)
                self.assertIn("Wrong master password", response.text)
                self.assertNotIn("not-the-master-password", response.text)
                self.assertIsNone(_field(response.text, "token"))
            # the limit is reached: even the right password is not checked
            response = self._login(db, MASTER)
            self.assertEqual(response.status_code, 429)
            self.assertIn("Too many failed attempts", response.text)
            self.assertGreater(int(response.headers["Retry-After"]), 0)
            self.assertNotIn('name="token"', response.text)
            response = self._login(db, MASTER)
            self.assertEqual(response.status_code, 429)
        self.assertEqual(
            sum("wrong master password" in line for line in logs.output), em.LIMIT
        )
        self.assertTrue(any("rate_limited" in line for line in logs.output))
        # the attempt file: 0600, every attempt, never the password
        self.assertEqual(stat.S_IMODE(os.stat(self.log_path).st_mode), 0o600)
        attempts = self._new_attempts()
        self.assertEqual(
            [a["event"] for a in attempts],
            ["login_failed"] * em.LIMIT + ["rate_limited"],
        )
        self.assertTrue(all(a["database"] == db for a in attempts))
        self.assertTrue(all(a["address"] == "127.0.0.1" for a in attempts))
        raw = self.log_path.read_text()
        self.assertNotIn("not-the-master-password", raw)
        self.assertNotIn(MASTER, raw)
        # another address is not limited
        with patch.dict(config.options, {"proxy_mode": True}):
            response = self.url_open(
                BASE + "/login",
                data={
                    "database": db,
                    "master_password": MASTER,
                    "csrf_token": self._form_from("10.9.8.7"),
                },
                headers={"X-Forwarded-For": "10.9.8.7"},
            )
        self.assertEqual(response.status_code, 200, response.text[:2000])

    def _form_from(self, address):
        with patch.dict(config.options, {"proxy_mode": True}):
            response = self.url_open(BASE, headers={"X-Forwarded-For": address})
        return _field(response.text, "csrf_token")

    def test_csrf_required(self):
        db = self.env.cr.dbname
        response = self.url_open(
            BASE + "/login", data={"database": db, "master_password": MASTER}
        )
        self.assertEqual(response.status_code, 400)
        self.assertNotIn('name="token"', response.text)
        # a token of another browser (cookie) does not pass either
        token = self._form()
        self.opener.cookies.clear()
        response = self.url_open(
            BASE + "/login",
            data={"database": db, "master_password": MASTER, "csrf_token": token},
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            [a["event"] for a in self._new_attempts()], ["csrf_failed", "csrf_failed"]
        )

    def test_default_master_password_refused(self):
        csrf = self._form()
        with patch.dict(config.options, {"admin_passwd": "admin"}):
            self.assertIn("default master password", self.url_open(BASE).text)
            response = self._post(
                "/login",
                database=self.env.cr.dbname,
                master_password="admin",
                csrf_token=csrf,
            )
        self.assertEqual(response.status_code, 403)
        self.assertNotIn('name="token"', response.text)

    def test_links_on_the_login_screen_and_the_selector(self):
        self.assertIn('href="%s"' % BASE, self.url_open("/web/login").text)
        self.assertIn('href="%s"' % BASE, self.url_open("/web/database/selector").text)

    def test_right_password_lists_the_archives(self):
        db = self.env.cr.dbname
        mine = self._backup(db)
        # an archive of another database in its own folder is not listed
        other = os.path.join(self.archives_dir, "zz_other")
        os.makedirs(other, exist_ok=True)
        with open(
            os.path.join(other, "zz_other_manual_20260101T000000Z.tar.zst.enc"), "wb"
        ) as handle:
            handle.write(b"x")
        with self.assertLogs(LOGGER, logging.INFO) as logs:
            response = self._login(db)
        self.assertEqual(response.status_code, 200, response.text[:3000])
        self.assertIn(mine["name"], response.text)
        self.assertNotIn("zz_other_manual", response.text)
        self.assertNotIn(MASTER, response.text)
        self.assertTrue(any("master password accepted" in line for line in logs.output))
        token = _field(response.text, "token")
        self.assertTrue(token)
        # the step token: the confirmation page of that archive, once
        response = self._post(
            "/prepare", token=token, destination="0", archive=mine["name"]
        )
        self.assertEqual(response.status_code, 200, response.text[:3000])
        self.assertIn("Type the database name", response.text)
        self.assertNotIn("FOREIGN ARCHIVE", response.text)  # its own archive
        self.assertIn(mine["name"], response.text)
        again = self._post(
            "/prepare", token=token, destination="0", archive=mine["name"]
        )
        self.assertEqual(again.status_code, 403)
        self.assertIn("expired", again.text)
        # the token is bound to the address it was given to
        fresh = _field(self._login(db).text, "token")
        with patch.dict(config.options, {"proxy_mode": True}):
            stolen = self.url_open(
                BASE + "/prepare",
                data={
                    "token": fresh,
                    "destination": "0",
                    "archive": mine["name"],
                    "csrf_token": self._form_from("10.1.1.1"),
                },
                headers={"X-Forwarded-For": "10.1.1.1"},
            )
        self.assertEqual(stolen.status_code, 403)
        events = [a["event"] for a in self._new_attempts()]
        self.assertEqual(
            events, ["login", "prepared", "token_invalid", "login", "token_invalid"]
        )

    def test_status_needs_a_status_token(self):
        login = self._login(self.env.cr.dbname)
        select_token = _field(login.text, "token")
        for token in ("", "made-up", select_token):
            response = self._post("/status", token=token, format="json")
            self.assertEqual(response.status_code, 403)
            self.assertEqual(response.json()["state"], "failed")
            self.assertNotIn("database", response.json())

    def test_other_major_version_refused(self):
        self.assertIsNone(page._incompatibility({"odoo_version": "18.0"}))
        self.assertIsNone(page._incompatibility({"odoo_version": "saas~18.2"}))
        self.assertIsNone(page._incompatibility({"odoo_version": None}))
        self.assertIn("17.0", page._incompatibility({"odoo_version": "17.0"}))

    def test_replay_into_the_audit_trail(self):
        db = self.env.cr.dbname
        self._login(db, "wrong-one")
        self._login("some_other_db", "wrong-two")
        written = page.replay_emergency_log(self.env)
        self.assertGreaterEqual(written, 1)
        events = self.env["audit.event"].search(
            [("details", "!=", False), ("res_name", "=", "Emergency restore page")]
        )
        mine = events.filtered(
            lambda e: (e.details or {}).get("operation") == "emergency-login_failed"
        )
        self.assertTrue(mine)
        self.assertTrue(all(e.details["database"] == db for e in events))
        self.assertEqual(mine[-1].action, "login_failed")
        self.assertEqual(mine[-1].result, "failure")
        # once only
        self.assertEqual(page.replay_emergency_log(self.env), 0)


@tagged("post_install", "-at_install")
class TestEmergencyRestore(EmergencyCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.victim = "h_emerg_%s" % uuid.uuid4().hex[:8]
        cls.addClassCleanup(drop_test_databases, cls.victim)
        base = engine_backup(cls.env.cr.dbname, cls.archives_dir)
        created = restore_job.run_job(
            {
                "database": cls.victim,
                "target": "sandbox",
                "sandbox_name": cls.victim,
                "requested_by": "test",
                "archive_name": base["name"],
                "db": backup_engine.db_params(cls.victim),
                "data_dir": config["data_dir"],
                "pre_restore_sinks": [],
                "source": {
                    "sink": {"type": "local", "path": cls.archives_dir},
                    "name": base["name"],
                },
                "expected_uuid": backup_engine.config_parameter_of(
                    cls.env.cr.dbname, "database.uuid"
                ),
            }
        )
        if not created["ok"]:
            raise AssertionError(created["message"])
        cls.base_archive = base
        cls.archive = engine_backup(cls.victim, cls.archives_dir)

    def _sql(self, dbname, query, params=None):
        conn = backup_engine.pg_params().connect(dbname)
        try:
            with conn.cursor() as cr:
                cr.execute(query, params)
                return cr.fetchall() if cr.description else None
        finally:
            conn.close()

    def _tables(self, dbname):
        return {
            row[0]
            for row in self._sql(
                dbname,
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
            )
        }

    def setUp(self):
        super().setUp()
        self.safety_before = self._safety_copies()

    def _safety_copies(self):
        return backup_engine.list_databases(self.victim + "_pre_restore_")

    def _prepare(self, archive_name, database=None):
        response = self._login(database or self.victim)
        self.assertEqual(response.status_code, 200, response.text[:3000])
        self.assertIn(archive_name, response.text)
        response = self._post(
            "/prepare",
            token=_field(response.text, "token"),
            destination="0",
            archive=archive_name,
        )
        self.assertEqual(response.status_code, 200, response.text[:3000])
        return response

    def _wait_for_restore(self):
        """Join the thread that reaps the restore process (no sleeping)."""
        for thread in threading.enumerate():
            if thread.name == "emergency-reaper":
                thread.join(600)
                self.assertFalse(thread.is_alive(), "the restore did not end")

    def test_foreign_archive_refused_without_confirmation(self):
        # the test database's archive, put in the folder of the victim (as
        # when a database was recreated under the same name: a new uuid)
        name = "%s/%s_manual_20200101T000000Z.tar.zst.enc" % (self.victim, self.victim)
        shutil.copy(
            os.path.join(self.archives_dir, self.base_archive["name"]),
            os.path.join(self.archives_dir, name),
        )
        self.addCleanup(os.unlink, os.path.join(self.archives_dir, name))
        tables = self._tables(self.victim)
        victim_uuid = backup_engine.config_parameter_of(self.victim, "database.uuid")
        response = self._prepare(name)
        self.assertIn("FOREIGN ARCHIVE", response.text)
        self.assertIn(self.env.cr.dbname, response.text)  # its source database
        # the name alone does not do
        response = self._post(
            "/restore", token=_field(response.text, "token"), confirm_name=self.victim
        )
        self.assertEqual(response.status_code, 409)
        self.assertIn("archive of another database", response.text)
        # a wrong source name with the box ticked does not either
        response = self._post(
            "/restore",
            token=_field(response.text, "token"),
            confirm_name=self.victim,
            confirm_foreign="1",
            confirm_foreign_name=self.victim,
        )
        self.assertEqual(response.status_code, 409)
        self.assertNotIn("o_emergency_status", response.text)
        # nothing changed, nothing started
        self.assertEqual(self._tables(self.victim), tables)
        self.assertEqual(
            backup_engine.config_parameter_of(self.victim, "database.uuid"),
            victim_uuid,
        )
        self.assertEqual(self._safety_copies(), self.safety_before)
        self.assertFalse(
            [t for t in threading.enumerate() if t.name == "emergency-reaper"]
        )
        self.assertEqual(
            [a["event"] for a in self._new_attempts()][-2:],
            ["restore_refused", "restore_refused"],
        )

    def test_damaged_database_restored(self):
        archive = self.archive["name"]
        manifest_counts = self.archive["manifest"]["row_counts"]
        victim_uuid = backup_engine.config_parameter_of(self.victim, "database.uuid")
        self.assertTrue(manifest_counts)
        # damage: tables dropped (the uuid is still readable)
        self._sql(
            self.victim,
            "DROP TABLE mail_message, res_partner_category CASCADE",
        )
        self.assertNotIn("mail_message", self._tables(self.victim))
        response = self._prepare(archive)
        self.assertNotIn("FOREIGN ARCHIVE", response.text)
        # the name gate
        response = self._post(
            "/restore", token=_field(response.text, "token"), confirm_name="wrong"
        )
        self.assertEqual(response.status_code, 409)
        self.assertIn("Type the database name", response.text)
        self.assertEqual(self._safety_copies(), self.safety_before)
        with self.assertLogs(LOGGER, logging.INFO):
            response = self._post(
                "/restore",
                token=_field(response.text, "token"),
                confirm_name=self.victim,
            )
        self.assertEqual(response.status_code, 200, response.text[:3000])
        self.assertIn("o_emergency_status", response.text)
        status_token = _field(response.text, "token") or re.search(
            r'data-token="([^"]+)"', response.text
        ).group(1)
        self._wait_for_restore()
        status = self._post("/status", token=status_token, format="json").json()
        self.assertEqual(status["state"], "done", status)
        self.assertIn("checked against the archive", status["message"])
        # the tables are back, every row count as the manifest says
        self.assertIn("mail_message", self._tables(self.victim))
        conn = backup_engine.pg_params().connect(self.victim)
        try:
            counts = pgtools.row_counts(conn)
        finally:
            conn.close()
        # every table as the manifest says, but those the post-restore steps
        # write to once the restore is checked and swapped in: the audit
        # trail, the safety copy's row, the replay cursor, the mail to the
        # administrators
        differ = {
            table: (count, counts.get(table))
            for table, count in manifest_counts.items()
            if counts.get(table) != count
        }
        self.assertLessEqual(set(differ), POST_RESTORE_TABLES, differ)
        for table, (count, restored) in differ.items():
            self.assertGreater(restored, count, table)
        self.assertEqual(
            counts["res_partner_category"], manifest_counts["res_partner_category"]
        )
        self.assertEqual(counts["mail_message"], manifest_counts["mail_message"] + 1)
        self.assertEqual(set(counts), set(manifest_counts))
        self.assertEqual(
            backup_engine.config_parameter_of(self.victim, "database.uuid"),
            victim_uuid,
        )
        # the damaged database is kept as the pre-restore safety copy
        safety = sorted(set(self._safety_copies()) - set(self.safety_before))
        self.assertEqual(len(safety), 1)
        self.assertNotIn("mail_message", self._tables(safety[0]))
        # the restored database's audit trail has the emergency attempts
        operations = {
            row[0]
            for row in self._sql(
                self.victim,
                "SELECT details->>'operation' FROM audit_event "
                "WHERE details->>'operation' LIKE 'emergency-%%'",
            )
        }
        self.assertTrue(
            {"emergency-login", "emergency-restore_requested", "emergency-restored"}
            <= operations,
            operations,
        )
        # the status token keeps answering; the other steps are used up
        again = self._post("/status", token=status_token, format="json")
        self.assertEqual(again.json()["state"], "done")

    def test_one_restore_at_a_time(self):
        response = self._prepare(self.archive["name"])
        tables = self._tables(self.victim)
        with em.locked(page.state_dir() / "restore.lock"):  # one is running
            response = self._post(
                "/restore",
                token=_field(response.text, "token"),
                confirm_name=self.victim,
            )
        self.assertEqual(response.status_code, 409)
        self.assertIn("Another emergency restore is running", response.text)
        self.assertNotIn("o_emergency_status", response.text)
        self.assertEqual(self._tables(self.victim), tables)
        self.assertEqual(self._safety_copies(), self.safety_before)

    def test_unreadable_uuid_needs_the_source_confirmation(self):
        """A database too damaged to tell its uuid: every archive is
        treated as another database's, and restores only once the source
        database is named."""
        broken = self.victim + "_b"
        pgtools.create_database(backup_engine.pg_params(), broken)  # no tables
        name = "%s/%s_manual_20200101T000000Z.tar.zst.enc" % (broken, broken)
        os.makedirs(os.path.join(self.archives_dir, broken), exist_ok=True)
        shutil.copy(
            os.path.join(self.archives_dir, self.archive["name"]),
            os.path.join(self.archives_dir, name),
        )
        response = self._prepare(name, database=broken)
        self.assertIn("FOREIGN ARCHIVE", response.text)
        self.assertIn("uuid cannot be read", response.text)
        response = self._post(
            "/restore", token=_field(response.text, "token"), confirm_name=broken
        )
        self.assertEqual(response.status_code, 409)
        self.assertEqual(self._tables(broken), set())
        self.assertEqual(backup_engine.list_databases(broken + "_pre_restore_"), [])
        # confirmed with the source database's name: restored
        response = self._post(
            "/restore",
            token=_field(response.text, "token"),
            confirm_name=broken,
            confirm_foreign="1",
            confirm_foreign_name=self.victim,
        )
        self.assertEqual(response.status_code, 200, response.text[:3000])
        token = _field(response.text, "token")
        self._wait_for_restore()
        status = self._post("/status", token=token, format="json").json()
        self.assertEqual(status["state"], "done", status)
        self.assertIn("res_partner", self._tables(broken))
        # its own identity could not be kept: it has the archive's
        self.assertEqual(
            backup_engine.config_parameter_of(broken, "database.uuid"),
            backup_engine.config_parameter_of(self.victim, "database.uuid"),
        )
        # the empty database is the safety copy
        (safety,) = backup_engine.list_databases(broken + "_pre_restore_")
        self.assertEqual(self._tables(safety), set())

    def test_chromium_tour(self):
        """The page in Chromium: wrong password, archives, name gate, and
        the progress followed by the page's script until the restore ends."""
        params = {
            "database": self.victim,
            "archive": self.archive["name"],
            "wrongPassword": "not-the-master-password",
            "password": MASTER,
        }
        with file_open("db_backup_suite/static/tests/emergency/emergency_tour.js") as f:
            script = f.read()
        self.browser_js(
            BASE,
            "window.EMERGENCY_TOUR = %s;\n%s" % (json.dumps(params), script),
            timeout=300,
        )
        self._wait_for_restore()
        self.assertEqual(len(self._safety_copies()), len(self.safety_before) + 1)
        events = [a["event"] for a in self._new_attempts()]
        self.assertEqual(
            events,
            [
                "login_failed",
                "login",
                "prepared",
                "restore_refused",
                "restore_requested",
                "restored",
            ],
        )


@tagged("post_install", "-at_install")
class TestEmergencyFiles(BaseCase):
    def test_state_dir_is_private(self):
        directory = page.state_dir()
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(directory.parent).st_mode), 0o700)


# ---------------------------------------------------------------------------
# The destinations file exported from the Settings screen
# ---------------------------------------------------------------------------
ACCESS = "odoo.exceptions.AccessError"
EXPORT_ROUTE = "/db_backup/emergency_destinations"
WIZARD = "db.backup.emergency.export"


@tagged("post_install", "-at_install")
class TestEmergencyDestinationsExport(RpcMixin, KeyringMixin, HttpCase):
    """Settings → Export emergency destinations file: Settings
    administrators only, after the password is asked again, downloaded once
    (no attachment), audited, and read back by the emergency page's own
    loader as the same destinations."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        Destination = cls.env["db.backup.destination"]
        cls.local = Destination.create(
            {
                "name": "Export local",
                "dest_type": "local",
                "local_path": os.path.join(cls.tmp_dir, "archives"),
            }
        )
        cls.s3 = Destination.create(
            {
                "name": "Export S3",
                "dest_type": "s3",
                "s3_bucket": "export-bucket",
                "s3_prefix": "prod",
                "s3_endpoint_url": "http://127.0.0.1:1",
                "s3_region": "eu-west-1",
                "s3_access_key": "AKEXPORT",
                "s3_secret_key": "export-s3-secret",
            }
        )
        cls.sftp = Destination.create(
            {
                "name": "Export SFTP",
                "dest_type": "sftp",
                "sftp_host": "files.example.com",
                "sftp_username": "backup",
                "sftp_path": "odoo",
                "sftp_password": "export-sftp-password",
            }
        )
        # as "Confirm host key" stores it (server-owned field)
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        host_key = (
            ed25519.Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            )
            .decode()
        )
        cls.sftp.sudo().write({"sftp_known_hosts": "files.example.com " + host_key})
        cls.archived = Destination.create(
            {
                "name": "Export archived",
                "dest_type": "local",
                "local_path": "/nowhere",
                "active": False,
            }
        )
        cls.admin_user = new_test_user(
            cls.env,
            login="h_emx_admin",
            groups="base.group_user,base.group_system",
        )
        cls.operator = new_test_user(
            cls.env,
            login="h_emx_operator",
            groups="base.group_user,db_backup_suite.backup_group_restore",
        )

    def _export_events(self):
        return self.env["audit.event"].search(
            [("res_name", "=", "Emergency destinations file")]
        )

    def _open_export_dialog(self):
        """Settings → Export emergency destinations file, over HTTP: the
        password dialog's id."""
        settings_id = self.rpc("res.config.settings", "create", {})["result"]
        answer = self.rpc(
            "res.config.settings",
            "action_export_emergency_destinations",
            [settings_id],
        )["result"]
        self.assertEqual(answer["type"], "ir.actions.act_window")
        self.assertEqual(answer["res_model"], WIZARD)
        self.assertEqual(answer["target"], "new")
        return answer["res_id"]

    def _download(self, wizard_id, password=None):
        """The dialog's Download button (the web client saves the typed
        password first): the action it answers."""
        if password is not None:
            saved = self.rpc(WIZARD, "write", [wizard_id], {"password": password})
            self.assertNotIn("error", saved)
        return self.rpc(WIZARD, "action_export", [wizard_id])["result"]

    def assertAskedAgain(self, action, wizard_id, refusal):
        """``action`` is the password dialog again, saying ``refusal``."""
        self.assertEqual(action["type"], "ir.actions.act_window", action)
        self.assertEqual((action["res_model"], action["res_id"]), (WIZARD, wizard_id))
        shown = self.rpc(WIZARD, "read", [wizard_id], ["refusal", "password"])
        self.assertRegex(shown["result"][0]["refusal"], refusal)
        self.assertFalse(shown["result"][0]["password"])

    def _stored_passwords(self):
        self.env.cr.execute(
            "SELECT count(*) FROM db_backup_emergency_export "
            "WHERE password IS NOT NULL AND password != ''"
        )
        return self.env.cr.fetchone()[0]

    def test_export_round_trips_through_the_loader(self):
        self.authenticate("h_emx_admin", "h_emx_admin")
        attachments = self.env["ir.attachment"].search_count([])
        # the password is asked first; without it, or wrong, nothing is issued
        wizard_id = self._open_export_dialog()
        self.assertAskedAgain(self._download(wizard_id), wizard_id, "password")
        with mute_logger("odoo.addons.base.models.res_users"):
            refused = self._download(wizard_id, "not-it")
        self.assertAskedAgain(refused, wizard_id, "Incorrect password")
        with mute_logger("odoo.http"):
            self.assertEqual(self.url_open(EXPORT_ROUTE + "?token=x").status_code, 403)
        failure = self._export_events()
        self.assertEqual(len(failure), 1)
        self.assertEqual((failure.action, failure.result), ("export", "failure"))
        self.assertEqual(failure.user_id, self.admin_user)
        self.assertNotIn("not-it", json.dumps(failure.details))
        self.assertEqual(self._stored_passwords(), 0)
        action = self._download(wizard_id, "h_emx_admin")
        self.assertEqual(self._stored_passwords(), 0, "the password is never stored")
        self.assertEqual(action["type"], "ir.actions.act_url")
        self.assertTrue(action["url"].startswith(EXPORT_ROUTE + "?token="))
        response = self.url_open(action["url"])
        self.assertEqual(response.status_code, 200, response.text[:500])
        self.assertIn("attachment", response.headers["Content-Disposition"])
        self.assertIn(
            "backup-destinations.json", response.headers["Content-Disposition"]
        )
        self.assertEqual(response.headers["Cache-Control"], "no-store")
        document = response.json()
        self.assertIn("0600", " ".join(document["comment"]))
        # the emergency page's loader reads the very same destinations
        tmp = tempfile.mkdtemp(prefix="h_emx_")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "backup-destinations.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(response.content)
        loaded = em.load_destinations(path, environ={})
        expected = {
            dest.name: {k: v for k, v in dest._sink_config().items() if v is not None}
            for dest in (self.local, self.s3, self.sftp)
        }
        self.assertEqual({d.name: d.config for d in loaded}, expected)
        self.assertEqual(loaded[1].config["secret_key"], "export-s3-secret")
        self.assertEqual(loaded[2].config["password"], "export-sftp-password")
        # each loads as a sink (no unknown option)
        from ..lib.sinks import make_sink

        for dest in loaded:
            make_sink(dest.config).close()
        # readable by everyone: the loader refuses the inline secrets
        os.chmod(path, 0o644)
        with self.assertRaisesRegex(em.EmergencyConfigError, "inline secret"):
            em.load_destinations(path, environ={})
        # the link works once; nothing stored; the download audited
        self.assertEqual(self.url_open(action["url"]).status_code, 403)
        self.assertEqual(self.env["ir.attachment"].search_count([]), attachments)
        event = self._export_events() - failure
        self.assertEqual(len(event), 1)
        self.assertEqual((event.action, event.result), ("export", "success"))
        self.assertEqual(event.user_id, self.admin_user)
        self.assertEqual(
            sorted(event.details["destinations"]),
            ["Export S3", "Export SFTP", "Export local"],
        )
        self.assertNotIn("export-s3-secret", json.dumps(event.details))
        self.assertNotIn("export-s3-secret", event.message or "")
        # the used dialog issues nothing more
        self.assertAskedAgain(self._download(wizard_id), wizard_id, "password")

    def test_every_export_asks_the_password(self):
        """Odoo's identity check trusts a password typed in the last ten
        minutes; this export asks it every time: a second export a minute
        after the first (same session) gets nothing without it."""
        self.authenticate("h_emx_admin", "h_emx_admin")
        first = self._download(self._open_export_dialog(), "h_emx_admin")
        self.assertEqual(first["type"], "ir.actions.act_url")
        self.assertEqual(self.url_open(first["url"]).status_code, 200)
        # a minute later, in the same session, the password typed a minute
        # ago: Odoo's identity check would not ask it (ten minutes' grace)
        self.session["identity-check-last"] = time.time() - 60
        http.root.session_store.save(self.session)
        wizard_id = self._open_export_dialog()
        self.assertAskedAgain(self._download(wizard_id), wizard_id, "password")
        with mute_logger("odoo.addons.base.models.res_users"):
            refused = self._download(wizard_id, "h_emx_operator")
        self.assertAskedAgain(refused, wizard_id, "Incorrect password")
        with mute_logger("odoo.http"):
            reused = self.url_open(first["url"])
            self.assertEqual(reused.status_code, 403)
            self.assertEqual(self.url_open(EXPORT_ROUTE).status_code, 403)
        second = self._download(wizard_id, "h_emx_admin")
        self.assertEqual(second["type"], "ir.actions.act_url")
        self.assertNotEqual(second["url"], first["url"])
        self.assertEqual(self.url_open(second["url"]).status_code, 200)
        events = self._export_events()
        self.assertEqual(
            sorted(events.mapped("result")), ["failure", "success", "success"]
        )

    def test_wrong_passwords_cool_down(self):
        """Wrong passwords count in Odoo's login cooldown: once it is on,
        even the right password is refused (and audited) for a while."""
        self.env["ir.config_parameter"].sudo().set_param(
            "base.login_cooldown_after", "2"
        )
        self.authenticate("h_emx_admin", "h_emx_admin")
        self.addCleanup(lambda: getattr(self.registry, "_login_failures", {}).clear())
        wizard_id = self._open_export_dialog()
        with mute_logger("odoo.addons.base.models.res_users"):
            for guess in ("guess-1", "guess-2"):
                refused = self._download(wizard_id, guess)
                self.assertAskedAgain(refused, wizard_id, "Incorrect password")
            refused = self._download(wizard_id, "h_emx_admin")
        self.assertAskedAgain(refused, wizard_id, "Too many")
        self.assertEqual(self._export_events().mapped("result"), ["failure"] * 3)

    def test_operator_gets_access_error(self):
        self.authenticate("h_emx_operator", "h_emx_operator")
        with mute_logger("odoo.http"):
            for method in (
                "action_export_emergency_destinations",
                "_export_emergency_destinations",
                "_emergency_destinations_document",
            ):
                answer = self.rpc("res.config.settings", method, [])
                self.assertIn("error", answer, method)
                self.assertEqual(answer["error"]["data"]["name"], ACCESS, method)
            answer = self.rpc(WIZARD, "create", {"password": "h_emx_operator"})
            self.assertEqual(answer["error"]["data"]["name"], ACCESS)
            response = self.url_open(EXPORT_ROUTE + "?token=guess")
        self.assertEqual(response.status_code, 403)
        self.assertNotIn("export-s3-secret", response.text)
        self.assertFalse(self._export_events())
        # an administrator without the token of a re-authenticated export
        self.authenticate("h_emx_admin", "h_emx_admin")
        with mute_logger("odoo.http"):
            response = self.url_open(EXPORT_ROUTE + "?token=guess")
            self.assertEqual(response.status_code, 403)
            # nor by the dialog's private steps
            wizard_id = self._open_export_dialog()
            for method in ("_verify_password", "_take_verification", "_reopen"):
                answer = self.rpc(WIZARD, method, [wizard_id], "h_emx_admin")
                self.assertEqual(answer["error"]["data"]["name"], ACCESS, method)
            # and the dialog issues nothing without the password
            self.assertAskedAgain(self._download(wizard_id), wizard_id, "password")
        self.assertFalse(self._export_events())

    def test_unusable_destination_is_named_before_the_password(self):
        self.sftp.sudo().write({"sftp_known_hosts": False})
        with self.assertRaisesRegex(UserError, "Export SFTP"):
            self.env["res.config.settings"].create(
                {}
            ).action_export_emergency_destinations()


@tagged("post_install", "-at_install")
class TestEmergencyReplayCron(EmergencyCase):
    def _replayed(self, seqs):
        events = self.env["audit.event"].search(
            [("res_name", "=", "Emergency restore page")]
        )
        return sorted(
            e.details["emergency_seq"]
            for e in events
            if e.details and e.details.get("emergency_seq") in seqs
        )

    def test_cron_replays_attempts_once(self):
        db = self.env.cr.dbname
        with mute_logger(LOGGER):
            self._login(db, "wrong-for-the-cron")
            self._login(db, "wrong-again")
            self._login("h_emerg_someone_else", "wrong-elsewhere")
        mine = [a["seq"] for a in self._new_attempts() if a["database"] == db]
        self.assertEqual(len(mine), 2)
        self.assertTrue(page.emergency_log_pending(self.env))
        cron = self.env.ref("db_backup_suite.ir_cron_db_backup_emergency_replay")
        cron.method_direct_trigger()
        self.assertEqual(self._replayed(mine), sorted(mine))
        self.assertFalse(page.emergency_log_pending(self.env))
        # again: nothing twice (the cursor is read from the table)
        cron.method_direct_trigger()
        self.env["res.config.settings"]._cron_replay_emergency_log()
        self.assertEqual(self._replayed(mine), sorted(mine))
        events = self.env["audit.event"].search(
            [("res_name", "=", "Emergency restore page")]
        )
        self.assertTrue(all(e.details["database"] == db for e in events))

    def test_admin_login_wakes_the_replay(self):
        db = self.env.cr.dbname
        cron = self.env.ref("db_backup_suite.ir_cron_db_backup_emergency_replay")
        Trigger = self.env["ir.cron.trigger"]
        with mute_logger(LOGGER):
            self._login(db, "wrong-before-login")
        self.assertTrue(page.emergency_log_pending(self.env))

        def web_login(login):
            form = self.url_open("/web/login").text
            return self.url_open(
                "/web/login",
                data={
                    "login": login,
                    "password": login,
                    "csrf_token": _field(form, "csrf_token"),
                },
                allow_redirects=False,
            )

        new_test_user(self.env, login="h_emr_user", groups="base.group_user")
        new_test_user(
            self.env, login="h_emr_admin", groups="base.group_user,base.group_system"
        )
        self.assertEqual(web_login("h_emr_user").status_code, 303)
        self.assertFalse(Trigger.search([("cron_id", "=", cron.id)]))
        self.url_open("/web/session/logout")
        self.assertEqual(web_login("h_emr_admin").status_code, 303)
        self.assertTrue(Trigger.search([("cron_id", "=", cron.id)]))
