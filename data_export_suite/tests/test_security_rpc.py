"""The export suite's trust boundaries, attacked over real HTTP JSON-RPC.

Each role logs in and calls the server the way any client can
(``/web/dataset/call_kw``, the download route): an internal user without
export rights, a Data Export user, a Privacy Officer (``gdpr_dsr``, skipped
without it) and a portal user. Every attack must end in AccessError,
ValidationError or UserError (403 for the download route) and leave the
database and the files as they were.
"""

import hashlib
import os
import uuid
from unittest import SkipTest
from unittest.mock import patch

from odoo.tests import HttpCase, new_test_user, tagged

from odoo.addons.audit_export.tests.common import RpcMixin

from suite_core.keyring import generate_key_line

EXPORT_GROUP = "data_export_suite.export_group_user"


@tagged("post_install", "-at_install")
class TestExportSecurityRpc(RpcMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        environ = {k: v for k, v in os.environ.items() if "SUITE_KEYRING" not in k}
        environ["SUITE_KEYRING"] = generate_key_line("rpctest")
        cls.startClassPatcher(patch.dict(os.environ, environ, clear=True))

        def user(login, groups):
            return new_test_user(
                cls.env, login=login, password=f"{login}-Pw-2025", groups=groups
            )

        cls.plain = user("rpc_plain", "base.group_user")
        cls.exporter = user("rpc_exporter", f"base.group_user,{EXPORT_GROUP}")
        cls.other = user("rpc_other", f"base.group_user,{EXPORT_GROUP}")
        cls.portal = user("rpc_portal", "base.group_portal")
        cls.audit_admin = user(
            "rpc_audit_admin",
            "base.group_user,base.group_system,audit_export.audit_group_auditor",
        )
        officer_group = cls.env.ref("gdpr_dsr.dsr_group_officer", False)
        cls.officer = (
            user("rpc_officer", "base.group_user,gdpr_dsr.dsr_group_officer")
            if officer_group
            else None
        )
        cls.system = cls.env.ref("base.group_system")
        cls.partners = cls.env["res.partner"].create(
            [
                {"name": "Rpc Alice", "email": "rpc-alice@example.com"},
                {"name": "Rpc Bob", "email": "rpc-bob@example.com"},
            ]
        )
        cls.domain = repr([("id", "in", cls.partners.ids)])
        cls.pwned = f"/tmp/rpc-pwned-{uuid.uuid4().hex}"
        cls.hostile = {
            "sudo": "[('id', '=', user.sudo().write({'groups_id': [(4, %d)]}))]"
            % cls.system.id,
            "cursor": "[('id', '=', user.env.cr.execute("
            "'UPDATE res_users SET active = false'))]",
            "import": f"[('id', '=', __import__('os').system('touch {cls.pwned}'))]",
            "dunder": "[('id', 'in', ().__class__.__bases__[0].__subclasses__())]",
            "dunder_name": "[('id', '=', __builtins__)]",
            "lambda": "[('id', '=', (lambda: 1)())]",
            "fstring": "[('name', '=', f'{user.password}')]",
            "name": "[('id', '=', user.id)]",
        }

    # -- helpers ----------------------------------------------------------------
    def rpc_password(self, login):
        return f"{login}-Pw-2025"

    def login(self, user):
        if getattr(self, "_logged_in", None) != user.login:
            self.authenticate(user.login, self.rpc_password(user.login))
            self._logged_in = user.login

    def call(self, user, model, method, *args, **kwargs):
        """call_kw as ``user``: the JSON-RPC response (result or error)."""
        self.login(user)
        return self.rpc(model, method, *args, **kwargs)

    def refused(self, error, user, model, method, *args, **kwargs):
        """Assert the call fails with ``error``; return the message."""
        result = self.call(user, model, method, *args, **kwargs)
        return self.assertRpcError(result, error)

    def ok(self, user, model, method, *args, **kwargs):
        return self.assertRpcOk(self.call(user, model, method, *args, **kwargs))

    def snapshot(self):
        """What an attack must not change."""
        self.env.invalidate_all()
        return {
            "groups": {u.id: sorted(u.groups_id.ids) for u in self.all_users()},
            "active_users": self.env["res.users"].search_count([]),
            "jobs": self.env["data.export.job"].sudo().search_count([]),
            "profiles": self.env["data.export.profile"]
            .sudo()
            .with_context(active_test=False)
            .search_count([]),
            "secret": self.env["ir.config_parameter"]
            .sudo()
            .get_param("database.secret"),
        }

    def all_users(self):
        users = self.plain | self.exporter | self.other | self.portal
        return users | self.officer if self.officer else users

    def export_as(self, user):
        """A finished export of ``user`` (through the wizard, over RPC)."""
        wizard_id = self.ok(
            user,
            "data.export.wizard",
            "create",
            {
                "model_name": "res.partner",
                "field_paths": "id\nname\nemail",
                "domain": self.domain,
            },
        )
        action = self.ok(user, "data.export.wizard", "action_export", [wizard_id])
        self.assertEqual(action["type"], "ir.actions.act_url")
        job = (
            self.env["data.export.job"]
            .sudo()
            .search([("user_id", "=", user.id)], limit=1)
        )
        self.assertEqual(job.state, "done")
        return job, action["url"]

    @staticmethod
    def file_digest(job):
        with open(job._storage_path(), "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()

    # -- evaluated domains ------------------------------------------------------
    def _hostile_domains_refused(self, user):
        before = self.snapshot()
        own_profile = self.ok(
            user,
            "data.export.profile",
            "create",
            {
                "name": "Rpc own",
                "field_paths": "id",
                "model_id": self.env["ir.model"]._get_id("res.partner"),
            },
        )
        wizard_id = self.ok(
            user,
            "data.export.wizard",
            "create",
            {
                "model_name": "res.partner",
                "field_paths": "id",
                "domain": "[]",
            },
        )
        before["profiles"] += 1
        for name, domain in self.hostile.items():
            with self.subTest(user=user.login, attack=name):
                calls = [
                    (
                        "data.export.job",
                        "create",
                        [
                            {
                                "model_name": "res.partner",
                                "field_paths": "id",
                                "domain": domain,
                            }
                        ],
                    ),
                    (
                        "data.export.wizard",
                        "create",
                        [
                            {
                                "model_name": "res.partner",
                                "field_paths": "id",
                                "domain": domain,
                            }
                        ],
                    ),
                    ("data.export.wizard", "write", [[wizard_id], {"domain": domain}]),
                    (
                        "data.export.profile",
                        "create",
                        [
                            {
                                "name": "Rpc hostile",
                                "field_paths": "id",
                                "domain": domain,
                                "model_id": self.env["ir.model"]._get_id("res.partner"),
                            }
                        ],
                    ),
                    (
                        "data.export.profile",
                        "write",
                        [[own_profile], {"domain": domain}],
                    ),
                ]
                for model, method, args in calls:
                    message = self.refused(
                        "ValidationError", user, model, method, *args
                    )
                    self.assertIn("domain", message)
                    self.assertNotIn(before["secret"], message)
        # Nothing ran: no administrator, no query, no file, nothing created.
        self.assertEqual(self.snapshot(), before)
        self.assertFalse(user.has_group("base.group_system"))
        self.assertFalse(os.path.exists(self.pwned))
        wizard = self.env["data.export.wizard"].sudo().browse(wizard_id)
        self.assertEqual(wizard.domain, "[]")
        profile = self.env["data.export.profile"].sudo().browse(own_profile)
        self.assertEqual(profile.domain, "[]")

    def test_exporter_domains_are_never_evaluated(self):
        self._hostile_domains_refused(self.exporter)

    def test_privacy_officer_domains_are_never_evaluated(self):
        if not self.officer:
            raise SkipTest("gdpr_dsr is not installed")
        self._hostile_domains_refused(self.officer)

    def test_users_without_export_rights_are_refused_first(self):
        before = self.snapshot()
        for user in (self.plain, self.portal):
            for name in ("sudo", "cursor", "import"):
                domain = self.hostile[name]
                with self.subTest(user=user.login, attack=name):
                    for model in ("data.export.job", "data.export.wizard"):
                        self.refused(
                            "AccessError",
                            user,
                            model,
                            "create",
                            {
                                "model_name": "res.partner",
                                "field_paths": "id",
                                "domain": domain,
                            },
                        )
                    self.refused(
                        "AccessError",
                        user,
                        "data.export.profile",
                        "create",
                        {
                            "name": "Rpc",
                            "field_paths": "id",
                            "domain": domain,
                            "model_id": self.env["ir.model"]._get_id("res.partner"),
                        },
                    )
            self.refused(
                "AccessError", user, "data.export.job", "search_read", [], ["name"]
            )
        self.assertEqual(self.snapshot(), before)
        self.assertFalse(os.path.exists(self.pwned))

    # -- server-owned fields ----------------------------------------------------
    def test_server_owned_fields_are_refused(self):
        victim, _url = self.export_as(self.other)
        digest = self.file_digest(victim)
        before = self.snapshot()
        base = {"model_name": "res.partner", "field_paths": "id", "domain": self.domain}
        for extra in (
            {"state": "done"},
            {"storage_name": victim.storage_name},
            {"user_id": self.other.id},
            {"file_name": "x.csv", "expires_at": "2999-01-01 00:00:00"},
            {"password_protected": True},
            {"download_token_hash": "0" * 64},
        ):
            with self.subTest(extra=extra):
                message = self.refused(
                    "AccessError",
                    self.exporter,
                    "data.export.job",
                    "create",
                    {**base, **extra},
                )
                self.assertIn(next(iter(extra)), message)
        self.assertEqual(self.snapshot(), before)
        # Context defaults are dropped: the job is the requester's, queued,
        # without a file; there is nothing to download.
        job_id = self.ok(
            self.exporter,
            "data.export.job",
            "create",
            base,
            context={
                "default_state": "done",
                "default_storage_name": victim.storage_name,
                "default_user_id": self.other.id,
            },
        )
        job = self.env["data.export.job"].sudo().browse(job_id)
        self.assertEqual(
            (job.state, job.user_id, job.storage_name), ("queued", self.exporter, False)
        )
        self.refused(
            "UserError", self.exporter, "data.export.job", "action_download", [job_id]
        )
        # A requested job is not edited; the owner cannot be changed.
        for vals in (
            {"storage_name": victim.storage_name},
            {"state": "done"},
            {"user_id": self.other.id},
            {"domain": "[]"},
        ):
            with self.subTest(vals=vals):
                self.refused(
                    "AccessError",
                    self.exporter,
                    "data.export.job",
                    "write",
                    [job_id],
                    vals,
                )
        self.env.invalidate_all()
        self.assertEqual(
            (job.state, job.user_id, job.storage_name), ("queued", self.exporter, False)
        )
        # Private steps are not reachable over RPC.
        for method in (
            "_launch",
            "_execute",
            "_run_export",
            "_set_password",
            "_unseal_password",
            "_open_decrypted",
        ):
            self.refused(
                "AccessError", self.exporter, "data.export.job", method, [job_id]
            )
        self.assertEqual(job.state, "queued")
        # Profiles: ready-made marks and owners.
        profile = {
            "name": "Rpc prof",
            "field_paths": "id",
            "model_id": self.env["ir.model"]._get_id("res.partner"),
        }
        for extra in ({"ready_made_key": "customers"}, {"user_id": self.other.id}):
            self.refused(
                "AccessError",
                self.exporter,
                "data.export.profile",
                "create",
                {**profile, **extra},
            )
        own = self.ok(self.exporter, "data.export.profile", "create", profile)
        for vals in ({"ready_made_key": "users"}, {"user_id": self.other.id}):
            self.refused(
                "AccessError",
                self.exporter,
                "data.export.profile",
                "write",
                [own],
                vals,
            )
        self.refused(
            "AccessError",
            self.exporter,
            "data.export.profile",
            "action_refresh_ready_made",
            [own],
        )
        own_profile = self.env["data.export.profile"].sudo().browse(own)
        self.assertEqual(
            (own_profile.user_id, own_profile.ready_made_key), (self.exporter, False)
        )
        self.assertEqual(self.file_digest(victim), digest)
        victim.invalidate_recordset()
        self.assertEqual(victim.user_id, self.other)

    def test_sealed_password_and_tokens_are_not_readable(self):
        job, _url = self.export_as(self.exporter)
        job.sudo().write({"password_sealed": b"c2VhbGVk"})  # as if not run yet
        # The owner and an administrator who audits read the job...
        for user in (self.exporter, self.audit_admin):
            (values,) = self.ok(user, "data.export.job", "read", [job.id], ["name"])
            self.assertEqual(values["name"], job.name)
        # ...never its seal nor its download token.
        for user in (self.exporter, self.audit_admin):
            for field in (
                "password_sealed",
                "download_token_hash",
                "download_token_user_id",
            ):
                with self.subTest(user=user.login, field=field):
                    self.refused(
                        "AccessError",
                        user,
                        "data.export.job",
                        "read",
                        [job.id],
                        [field],
                    )
        self.env.invalidate_all()
        self.assertEqual(job.sudo().password_sealed, b"c2VhbGVk")
        # The wizard's password fields give nothing back.
        wizard_id = self.ok(
            self.exporter,
            "data.export.wizard",
            "create",
            {
                "model_name": "res.partner",
                "field_paths": "id",
                "domain": "[]",
                "use_password": True,
                "password": "correct horse battery",
                "password_confirm": "correct horse battery",
            },
        )
        (values,) = self.ok(
            self.exporter,
            "data.export.wizard",
            "read",
            [wizard_id],
            ["password", "password_confirm"],
        )
        self.assertEqual(
            (values["password"], values["password_confirm"]), (False, False)
        )
        self.refused(
            "AccessError",
            self.exporter,
            "data.export.wizard",
            "read",
            [wizard_id],
            ["password_sealed"],
        )

    # -- withheld fields --------------------------------------------------------
    def test_withheld_fields_are_neither_offered_nor_exported(self):
        before = self.snapshot()
        cases = [
            ("res.users", "id\npassword"),
            ("res.users", "id\napi_key_ids"),
            ("res.users", "id\ncreate_uid.password"),
            ("res.partner", "id\nuser_ids.api_key_ids"),
            ("mail.message", "id\nmail_ids"),  # groups="base.group_system"
            ("res.users.apikeys", "id"),
        ]
        for model, paths in cases:
            with self.subTest(model=model, paths=paths):
                message = self.refused(
                    "AccessError",
                    self.exporter,
                    "data.export.job",
                    "create",
                    {
                        "model_name": model,
                        "field_paths": paths,
                        "domain": "[]",
                    },
                )
                self.assertTrue(paths.split("\n")[-1] in message or model in message)
        # ...nor usable as a filter (an oracle on their values).
        for model, domain in (
            ("res.users", "[('password', '=', 'x')]"),
            ("res.partner", "[('user_ids.api_key_ids', '!=', False)]"),
            ("mail.message", "[('mail_ids', '!=', False)]"),
            ("res.partner", "[('user_ids', 'any', [('password', '=', 'x')])]"),
        ):
            with self.subTest(model=model, domain=domain):
                self.refused(
                    "AccessError",
                    self.exporter,
                    "data.export.job",
                    "create",
                    {"model_name": model, "field_paths": "id", "domain": domain},
                )
        self.assertEqual(self.snapshot(), before)
        # Offered fields: the rule applies to what the wizard lists.
        wizard_id = self.ok(
            self.exporter,
            "data.export.wizard",
            "create",
            {
                "model_name": "res.users",
                "field_paths": "id",
                "domain": "[]",
            },
        )
        (values,) = self.ok(
            self.exporter,
            "data.export.wizard",
            "read",
            [wizard_id],
            ["available_fields"],
        )
        offered = {
            line.split(":")[0] for line in values["available_fields"].split("\n")
        }
        self.assertIn("login", offered)
        for name in (
            "password",
            "new_password",
            "api_key_ids",
            "totp_enabled",
            "totp_secret",
            "totp_trusted_device_ids",
        ):
            self.assertNotIn(name, offered)
        if self.officer:
            self.refused(
                "AccessError",
                self.officer,
                "data.export.job",
                "create",
                {
                    "model_name": "mail.message",
                    "field_paths": "id\nmail_ids",
                    "domain": "[]",
                },
            )

    # -- download links ---------------------------------------------------------
    def test_download_links_work_once_for_their_user_within_minutes(self):
        job, url = self.export_as(self.exporter)
        digest = self.file_digest(job)
        downloads = [
            ("action", "=", "download"),
            ("res_model", "=", "data.export.job"),
            ("res_id", "=", job.id),
        ]
        events = self.env["audit.event"].sudo().search_count(downloads)
        self.login(self.exporter)
        response = self.url_open(url)
        self.assertEqual(response.status_code, 200)
        self.assertIn(b"rpc-alice@example.com", response.content)
        # Reused: refused.
        response = self.url_open(url)
        self.assertEqual(response.status_code, 403)
        self.assertNotIn(b"rpc-alice", response.content)
        # Stolen: a fresh link of the owner is refused to everybody else.
        url = self.ok(self.exporter, "data.export.job", "action_download", [job.id])[
            "url"
        ]
        for thief in (self.other, self.plain, self.portal):
            with self.subTest(thief=thief.login):
                self.login(thief)
                response = self.url_open(url)
                self.assertEqual(response.status_code, 403)
                self.assertNotIn(b"rpc-alice", response.content)
        # ...and on another job's address.
        other_job, _other_url = self.export_as(self.other)
        self.login(self.other)
        stolen = url.replace(f"/download/{job.id}?", f"/download/{other_job.id}?")
        self.assertEqual(self.url_open(stolen).status_code, 403)
        # Without a token, or a made-up one: refused.
        self.login(self.exporter)
        bare = url.split("?")[0]
        self.assertEqual(self.url_open(bare).status_code, 403)
        self.assertEqual(self.url_open(bare + "?token=guess").status_code, 403)
        # Others cannot even ask for a link.
        for thief in (self.other, self.plain, self.portal):
            self.refused(
                "AccessError", thief, "data.export.job", "action_download", [job.id]
            )
        # Expired after a few minutes.
        self.env.invalidate_all()
        self.assertTrue(job.sudo().download_token_hash)
        job.sudo().download_token_expires_at = "2000-01-01 00:00:00"
        self.login(self.exporter)
        self.assertEqual(self.url_open(url).status_code, 403)
        # Only the hash is stored, never the token.
        self.env.invalidate_all()
        token = url.split("token=")[1]
        self.assertNotEqual(job.sudo().download_token_hash, token)
        self.assertEqual(
            job.sudo().download_token_hash, hashlib.sha256(token.encode()).hexdigest()
        )
        # Exactly one download happened; the file is untouched.
        self.env.invalidate_all()
        self.assertEqual(
            self.env["audit.event"].sudo().search_count(downloads), events + 1
        )
        self.assertEqual(self.file_digest(job), digest)
        self.assertEqual(job.state, "done")
