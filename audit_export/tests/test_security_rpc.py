"""The audit log's trust boundary, over real HTTP.

Only the server writes the log (no RPC creates, edits or deletes events),
an anonymous client cannot flood it with failed logins, and the capture
stores no secret: every test calls the server the way a client would
(JSON-RPC, ``/web/login``) and checks the database afterwards.
"""

import json
import re
from unittest.mock import patch

from odoo.exceptions import AccessError
from odoo.tests import HttpCase, TransactionCase, new_test_user, tagged
from odoo.tools import SQL, config, mute_logger

from odoo.addons.audit_export.models import res_users as res_users_module
from odoo.addons.audit_export.models.res_users import (
    FAILED_LOGIN_PER_ADDRESS,
    FAILED_LOGIN_PER_LOGIN,
    LOGIN_MAX,
    TRUNCATED_MARKER,
    USER_AGENT_MAX,
    FailedLoginLimiter,
)

from .common import RpcMixin

ROLES = {
    "portal": "base.group_portal",
    "internal": "base.group_user",
    "auditor": "base.group_user,audit_export.audit_group_auditor",
    "manager": "base.group_user,audit_export.audit_group_manager",
    "admin": "base.group_user,base.group_system,audit_export.audit_group_manager",
}


class FakeClock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def _event_rows_containing(cr, needle):
    """Audit rows whose text (every column, cast as one) contains ``needle``."""
    cr.execute(
        SQL(
            "SELECT count(*) FROM audit_event e WHERE strpos(e::text, %s) > 0",
            needle,
        )
    )
    return cr.fetchone()[0]


@tagged("post_install", "-at_install")
class TestAuditRpcWrites(RpcMixin, HttpCase):
    """Nobody writes, edits or deletes audit events over RPC."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Event = cls.env["audit.event"]
        cls.users = {
            role: new_test_user(
                cls.env,
                login=f"h_sec_{role}",
                password=f"h_sec_{role}_pw1",
                groups=groups,
            )
            for role, groups in ROLES.items()
        }
        cls.event = cls.Event.log_event(
            "backup", res_model="db.backup.run", res_id=1, res_name="nightly"
        )

    def _login(self, role):
        # Logging in writes a login event: log in first, then count.
        self.authenticate(f"h_sec_{role}", f"h_sec_{role}_pw1")

    def _call(self, model, method, args, kwargs=None):
        """JSON-RPC ``call_kw`` in the current session; the decoded response."""
        with mute_logger("odoo.http"):
            return self.call_kw(model, method, args, kwargs)

    def _count(self):
        return self.Event.search_count([])

    def test_log_event_refused_for_every_role(self):
        for role in ROLES:
            with self.subTest(role=role):
                self._login(role)
                before = self._count()
                response = self._call(
                    "audit.event",
                    "log_event",
                    ["restore"],
                    {
                        "res_model": "db.backup.run",
                        "res_name": "production",
                        "message": "Database restored",
                        "details": {"forged": True},
                    },
                )
                self.assertRpcError(response)
                self.assertEqual(self._count(), before)
                self.assertFalse(
                    self.Event.search_count([("message", "=", "Database restored")])
                )

    def test_log_event_big_payload_refused_nothing_stored(self):
        blob = "x" * (5 * 1024 * 1024)
        self._login("internal")
        before = self._count()
        response = self._call(
            "audit.event", "log_event", ["backup"], {"details": {"b": blob}}
        )
        self.assertRpcError(response)
        self.assertEqual(self._count(), before)
        self.assertEqual(_event_rows_containing(self.env.cr, "x" * 1000), 0)

    def test_create_write_unlink_copy_refused_for_every_role(self):
        event = self.event
        fnames = ["res_name", "action", "digest", "details", "sequence"]
        snapshot = event.read(fnames)[0]
        calls = [
            ("create", [[{"action": "restore", "result": "success"}]], {}),
            ("create", [{"action": "restore"}], {}),
            ("write", [[event.id], {"res_name": "forged"}], {}),
            ("unlink", [[event.id]], {}),
            ("copy", [[event.id]], {}),
            (
                "web_save",
                [[event.id], {"res_name": "forged"}],
                {"specification": {"res_name": {}}},
            ),
            ("web_save", [[], {"action": "restore"}], {"specification": {}}),
            ("name_create", ["forged"], {}),
            ("load", [["action", "result"], [["restore", "success"]]], {}),
        ]
        for role in ROLES:
            with self.subTest(role=role):
                self._login(role)
                before = self._count()
                for method, args, kwargs in calls:
                    response = self._call("audit.event", method, args, kwargs)
                    if method == "load" and "result" in response:
                        # ``load`` may report the refusal in its result.
                        self.assertFalse(response["result"]["ids"], method)
                        self.assertTrue(response["result"]["messages"], method)
                        continue
                    with self.subTest(method=method):
                        self.assertRpcError(response)
                self.assertEqual(self._count(), before)
                event.invalidate_recordset()
                self.assertTrue(event.exists())
                self.assertEqual(event.read(fnames)[0], snapshot)

    def test_checkpoints_not_created_over_rpc(self):
        Checkpoint = self.env["audit.checkpoint"]
        before = Checkpoint.search_count([])
        for role in ("auditor", "manager", "admin"):
            with self.subTest(role=role):
                self._login(role)
                response = self._call(
                    "audit.checkpoint", "create", [[{"kind": "anchor", "sequence": 1}]]
                )
                self.assertRpcError(response)
        self.assertEqual(Checkpoint.search_count([]), before)

    def test_integrity_check_only_for_auditors(self):
        for role in ("portal", "internal"):
            with self.subTest(role=role):
                self._login(role)
                response = self._call("audit.event", "action_verify_integrity", [[]])
                self.assertRpcError(response)
        self._login("auditor")
        response = self._call("audit.event", "action_verify_integrity", [[]])
        self.assertEqual(response["result"]["res_model"], "audit.verify.wizard")


@tagged("post_install", "-at_install")
class TestFailedLoginFlood(HttpCase):
    """Anonymous failed logins: capped, rate-limited, and still counted."""

    def setUp(self):
        super().setUp()
        self.Event = self.env["audit.event"]
        # A limiter of our own with a clock the test moves; Odoo's own login
        # cooldown (per address, in-process too) would block later tests.
        self.clock = FakeClock()
        self.limiter = FailedLoginLimiter(clock=self.clock)
        patcher = patch.object(
            self.registry, "_audit_login_limiter", self.limiter, create=True
        )
        patcher.start()
        self.addCleanup(patcher.stop)
        self.env["ir.config_parameter"].sudo().set_param("base.login_cooldown_after", 0)
        failures = getattr(self.registry, "_login_failures", None)
        if failures is not None:
            self.addCleanup(failures.clear)

    def _web_login(self, login, password="wrong", headers=None):
        page = self.url_open("/web/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        return self.url_open(
            "/web/login",
            data={"login": login, "password": password, "csrf_token": token},
            headers=headers,
            timeout=60,
        )

    def _json_login(self, login, headers=None):
        with mute_logger("odoo.http"):
            return self.url_open(
                "/web/session/authenticate",
                data=json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "method": "call",
                        "id": 1,
                        "params": {
                            "db": self.env.cr.dbname,
                            "login": login,
                            "password": "wrong",
                        },
                    }
                ),
                headers={"Content-Type": "application/json", **(headers or {})},
            )

    def _failed(self, domain=()):
        return self.Event.search([("action", "=", "login_failed"), *domain], order="id")

    def test_huge_login_and_user_agent_stored_capped(self):
        huge = "h_sec_big_" + "a" * (5 * 1024 * 1024)
        # (an HTTP header line stays under 64 KiB: the server's limit)
        agent = "Agent/" + "z" * 60_000
        before = self._failed().ids
        response = self._web_login(huge, headers={"User-Agent": agent})
        self.assertEqual(response.status_code, 200)
        self.assertIn("Wrong login/password", response.text)
        new = self._failed([("id", "not in", before)])
        self.assertEqual(len(new), 1)
        self.assertEqual(new.login, huge[:LOGIN_MAX] + TRUNCATED_MARKER)
        self.assertEqual(new.details["login_length"], len(huge))
        self.assertEqual(new.user_agent, agent[:USER_AGENT_MAX] + TRUNCATED_MARKER)
        self.env.cr.execute(
            SQL("SELECT length(e::text) FROM audit_event e WHERE id = %s", new.id)
        )
        self.assertLess(self.env.cr.fetchone()[0], 2000)
        self.assertEqual(_event_rows_containing(self.env.cr, "a" * (LOGIN_MAX + 1)), 0)
        self.assertTrue(self.Event._verify_chain()["ok"])

    def test_flood_from_one_address_bounded_and_counted(self):
        before = self._failed().ids
        for i in range(200):
            self._json_login(f"h_sec_flood_{i}")
        stored = self._failed([("id", "not in", before)])
        self.assertEqual(len(stored), FAILED_LOGIN_PER_ADDRESS)
        self.assertEqual(set(stored.mapped("ip_address")), {"127.0.0.1"})
        self.assertFalse(stored.filtered("message"))
        # The minute is over: the next attempt (or login) writes the summary.
        self.clock.now += 61
        self._json_login("h_sec_flood_after")
        new = self._failed([("id", "not in", before + stored.ids)])
        summary = new.filtered(lambda e: e.details.get("not_recorded"))
        self.assertEqual(len(summary), 1)
        self.assertEqual(
            summary.details["not_recorded"], 200 - FAILED_LOGIN_PER_ADDRESS
        )
        self.assertEqual(summary.details["scope"], "address")
        self.assertEqual(summary.ip_address, "127.0.0.1")
        self.assertEqual(
            summary.message,
            f"{200 - FAILED_LOGIN_PER_ADDRESS} further failed logins from "
            "127.0.0.1 not recorded individually",
        )
        self.assertEqual((new - summary).login, "h_sec_flood_after")
        self.assertTrue(self.Event._verify_chain()["ok"])

    def test_one_login_from_many_addresses_bounded_and_counted(self):
        before = self._failed().ids
        with patch.dict(config.options, {"proxy_mode": True}):
            for i in range(30):
                self._json_login(
                    "h_sec_target", headers={"X-Forwarded-For": f"203.0.113.{i + 1}"}
                )
        stored = self._failed([("id", "not in", before)])
        self.assertEqual(len(stored), FAILED_LOGIN_PER_LOGIN)
        self.assertEqual(len(set(stored.mapped("ip_address"))), FAILED_LOGIN_PER_LOGIN)
        # A successful login after the minute reports what was dropped.
        self.clock.now += 61
        user = new_test_user(self.env, login="h_sec_ok", password="h_sec_ok_pw1")
        self._web_login("h_sec_ok", "h_sec_ok_pw1")
        summary = self._failed(
            [("id", "not in", before + stored.ids), ("login", "=", "h_sec_target")]
        )
        self.assertEqual(len(summary), 1)
        self.assertEqual(summary.details["not_recorded"], 30 - FAILED_LOGIN_PER_LOGIN)
        self.assertEqual(summary.details["scope"], "login")
        self.assertTrue(
            self.Event.search_count(
                [("action", "=", "login"), ("user_id", "=", user.id)]
            )
        )


@tagged("post_install", "-at_install")
class TestFailedLoginLimiter(TransactionCase):
    """The limiter on its own: bounded memory, every drop accounted for."""

    def test_memory_bounded_and_drops_reported_on_eviction(self):
        clock = FakeClock()
        limiter = FailedLoginLimiter(
            per_address=1, per_login=100, total=10_000, max_keys=50, clock=clock
        )
        reported = dropped = 0
        for i in range(5000):
            # One address hammering, among ever new addresses and logins
            # that push every counter out of the table.
            address = "10.9.9.9" if i % 2 else f"10.0.{i // 256 % 256}.{i % 256}"
            admitted, summaries = limiter.admit(address, f"user{i}")
            dropped += not admitted
            reported += sum(s["dropped"] for s in summaries)
            self.assertLessEqual(len(limiter), 50)
        clock.now += 61
        reported += sum(s["dropped"] for s in limiter.due_summaries())
        self.assertGreater(dropped, 100)
        self.assertEqual(reported, dropped)
        self.assertEqual(len(limiter), 0)

    def test_total_bound_across_addresses_and_logins(self):
        clock = FakeClock()
        limiter = FailedLoginLimiter(total=25, clock=clock)
        results = [limiter.admit(f"10.1.0.{i}", f"user{i}")[0] for i in range(100)]
        self.assertEqual(sum(results), 25)
        clock.now += 61
        summaries = limiter.due_summaries()
        self.assertEqual([(s["scope"], s["dropped"]) for s in summaries], [("all", 75)])
        self.assertTrue(limiter.admit("10.1.0.1", "user1")[0])

    def test_module_limits_are_small(self):
        # The per-process bound the threat model quotes.
        self.assertLessEqual(res_users_module.FAILED_LOGIN_TOTAL, 100)
        self.assertLessEqual(res_users_module.FAILED_LOGIN_WINDOW, 60)


@tagged("post_install", "-at_install")
class TestCaptureWithholdsSecrets(RpcMixin, HttpCase):
    """Audit rules on models holding secrets: values never reach the log."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Event = cls.env["audit.event"]
        cls.admin = new_test_user(
            cls.env,
            login="h_sec_sysadmin",
            password="h_sec_sysadmin_pw1",
            groups="base.group_user,base.group_system",
        )
        for xmlid in ("base.model_ir_mail_server", "base.model_ir_actions_server"):
            cls.env["audit.rule"].create({"model_id": cls.env.ref(xmlid).id})

    def _rpc(self, model, method, args, kwargs=None):
        self.authenticate("h_sec_sysadmin", "h_sec_sysadmin_pw1")
        return self.assertRpcOk(self.call_kw(model, method, args, kwargs))

    def _events(self, model, res_id):
        return self.Event.search(
            [("res_model", "=", model), ("res_id", "=", res_id)], order="id"
        )

    def test_mail_server_password_recorded_as_changed_only(self):
        first, second = "Sm7p-First-Pa55word", "Sm7p-Second-Pa55word"
        server_id = self._rpc(
            "ir.mail_server",
            "create",
            [
                {
                    "name": "h_sec relay",
                    "smtp_host": "smtp.example.com",
                    "smtp_user": "h_sec_mailer",
                    "smtp_pass": first,
                }
            ],
        )
        self._rpc("ir.mail_server", "write", [[server_id], {"smtp_pass": second}])
        self._rpc(
            "ir.mail_server", "write", [[server_id], {"smtp_host": "relay.example"}]
        )
        created, updated, renamed = self._events("ir.mail_server", server_id)
        # The Auditor may not read ir.mail_server at all: every field, the
        # password first, is recorded as changed, and the record has no name.
        self.assertEqual(created.details["fields"]["smtp_pass"], {"changed": True})
        self.assertEqual(created.details["fields"]["smtp_user"], {"changed": True})
        self.assertEqual(created.details["fields"]["smtp_host"], {"changed": True})
        self.assertFalse(created.res_name)
        self.assertEqual(updated.details, {"fields": {"smtp_pass": {"changed": True}}})
        self.assertEqual(renamed.details, {"fields": {"smtp_host": {"changed": True}}})
        self._rpc("ir.mail_server", "unlink", [[server_id]])
        deleted = self._events("ir.mail_server", server_id)[-1]
        self.assertEqual(deleted.action, "delete")
        self.assertNotIn("smtp_pass", deleted.details["fields"])
        self.env.flush_all()
        for needle in (first, second, "h_sec_mailer", "relay.example", "h_sec relay"):
            self.assertEqual(_event_rows_containing(self.env.cr, needle), 0, needle)

    def test_models_the_auditor_cannot_read_give_no_values(self):
        """An audit rule on a model the Auditor may not read (ir.mail_server)
        records which fields changed, never their values nor the record's
        name; a model the Auditor reads (res.partner) keeps its values."""
        auditor = new_test_user(
            self.env,
            login="h_sec_reader",
            groups="base.group_user,audit_export.audit_group_auditor",
        )
        Rule = self.env["audit.rule"]
        self.assertFalse(Rule._auditor_reads("ir.mail_server"))
        self.assertTrue(Rule._auditor_reads("res.partner"))
        with self.assertRaises(AccessError):
            self.env["ir.mail_server"].with_user(auditor).search([], limit=1)
        self.env["audit.rule"].create(
            {"model_id": self.env.ref("base.model_res_partner").id}
        )
        partner_id = (
            self.env["res.partner"].create({"name": "h_sec visible partner"}).id
        )
        server_id = self._rpc(
            "ir.mail_server",
            "create",
            [{"name": "h_sec hidden relay", "smtp_host": "h-sec-hidden.example"}],
        )
        partner_event = self._events("res.partner", partner_id)[0]
        self.assertEqual(
            partner_event.details["fields"]["name"], {"new": "h_sec visible partner"}
        )
        server_event = self._events("ir.mail_server", server_id)[0]
        self.assertEqual(server_event.details["fields"]["smtp_host"], {"changed": True})
        # what the Auditor reads over RPC holds nothing of the hidden model
        self.authenticate("h_sec_reader", "h_sec_reader")
        rows = self.make_jsonrpc_request(
            "/web/dataset/call_kw/audit.event/search_read",
            {
                "model": "audit.event",
                "method": "search_read",
                "args": [
                    [("res_model", "=", "ir.mail_server"), ("res_id", "=", server_id)]
                ],
                "kwargs": {"fields": ["res_name", "details", "summary"]},
            },
        )
        self.assertTrue(rows)
        self.assertNotIn("h-sec-hidden", json.dumps(rows))
        self.assertNotIn("h_sec hidden relay", json.dumps(rows))

    def test_field_restricted_to_administrators_recorded_as_changed_only(self):
        code = "records.write({'comment': 'h_sec_marker_4711'})"
        action_id = self._rpc(
            "ir.actions.server",
            "create",
            [
                {
                    "name": "h_sec action",
                    "model_id": self.env.ref("base.model_res_partner").id,
                    "state": "code",
                    "code": code,
                }
            ],
        )
        self._rpc(
            "ir.actions.server",
            "write",
            [[action_id], {"code": code.replace("4711", "4712")}],
        )
        # (creating a server action also writes its update_path)
        events = self._events("ir.actions.server", action_id)
        created, updated = events[0], events[-1]
        self.assertEqual((created.action, updated.action), ("create", "update"))
        self.assertEqual(created.details["fields"]["code"], {"changed": True})
        # (the Auditor does not read ir.actions.server either: no values at all)
        self.assertEqual(created.details["fields"]["name"], {"changed": True})
        self.assertEqual(updated.details, {"fields": {"code": {"changed": True}}})
        self.env.flush_all()
        self.assertEqual(_event_rows_containing(self.env.cr, "h_sec_marker_47"), 0)

    def test_withheld_values_are_never_read_by_the_capture(self):
        """The capture reads as superuser: it must not even read a withheld
        field (what it asks to read is spied on)."""
        server = self.env["ir.mail_server"].create(
            {"name": "h_sec probe", "smtp_host": "probe.example", "smtp_pass": "p1"}
        )
        Model = type(server)
        original = Model._audit_read_values
        asked = []

        def spy(records, fnames, fetch=True):
            asked.extend(fnames)
            return original(records, fnames, fetch=fetch)

        with patch.object(Model, "_audit_read_values", spy):
            server.write({"smtp_pass": "p2", "smtp_host": "probe2.example"})
            server.unlink()
        # The Auditor reads no field of ir.mail_server: nothing is read at all.
        self.assertFalse(
            {"smtp_pass", "smtp_user", "smtp_host", "name"} & set(asked), asked
        )
