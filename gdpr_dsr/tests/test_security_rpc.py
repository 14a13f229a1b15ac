"""Attacks on data subject requests over real HTTP JSON-RPC.

Each test logs in as a role (Privacy Officer, an officer restricted to
another company, a plain internal user, a portal user), sends what a
hostile client would send to ``/web/dataset/call_kw`` or the download
route, asserts the error the server answers with, and that nothing changed.
"""

import base64
import hashlib
import io
import json
import zipfile

import pyzipper

from odoo import Command
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tools import SQL

from odoo.addons.audit_export.tests.common import RpcMixin

from suite_core import streamcrypt

from .common import SUBJECT_EMAIL, DsrCase, make_verified_request, run_package_jobs

OTHER_EMAIL = "carol.other-company@example.com"


@tagged("post_install", "-at_install")
class TestDsrSecurityRpc(RpcMixin, DsrCase, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.portal = new_test_user(
            cls.env, login="dsr_portal", groups="base.group_portal"
        )
        cls.company_a = cls.env.company
        cls.company_b = cls.env["res.company"].create({"name": "DSR Company B"})
        cls.officer_b = new_test_user(
            cls.env,
            login="dsr_officer_b",
            groups="base.group_user,gdpr_dsr.dsr_group_officer",
            company_id=cls.company_b.id,
            company_ids=[Command.set(cls.company_b.ids)],
        )
        # the rule that keeps officers to their companies' requests: what the
        # forged line of the attack deleted
        cls.rule = cls.env.ref("gdpr_dsr.dsr_request_rule_company")
        cls.admin = cls.env.ref("base.user_admin")

    # -- helpers -------------------------------------------------------------------
    def rule_snapshot(self):
        rule = self.rule.sudo().with_context(active_test=False)
        self.assertTrue(rule.exists())
        return rule.read(
            [
                "name",
                "model_id",
                "domain_force",
                "active",
                "groups",
                "perm_read",
                "perm_write",
                "perm_create",
                "perm_unlink",
            ],
        )[0]

    def admin_snapshot(self):
        admin = self.admin.sudo().with_context(active_test=False)
        return (admin.login, admin.active, admin.name, admin.partner_id.name)

    def lines_snapshot(self, request):
        return sorted(
            (ln.res_model, ln.res_id, ln.category, ln.planned_action, ln.result)
            for ln in request.sudo().line_ids
        )

    def erasure_request(self, env=None, email=SUBJECT_EMAIL):
        request = make_verified_request(env or self.officer_env(), "erasure", email)
        request.action_discover()
        return request

    def _blob(self, purpose, tenant, payload=b"PK\x03\x04 a backup payload"):
        buffer = io.BytesIO()
        writer = streamcrypt.EncryptingWriter(
            buffer,
            keyring=self.env["dsr.request"]._keyring(),
            tenant=tenant,
            purpose=purpose,
            content_type="application/zip",
        )
        writer.write(payload)
        writer.close()
        return buffer.getvalue()

    # -- forged lines ----------------------------------------------------------------
    def test_officer_cannot_create_or_write_lines(self):
        request = self.erasure_request()
        rule_before, admin_before = self.rule_snapshot(), self.admin_snapshot()
        lines_before = self.lines_snapshot(request)
        line = request.line_ids.filtered(lambda ln: ln.res_model == "res.partner")[:1]
        self.assertTrue(line)
        self.authenticate("dsr_officer", "dsr_officer")

        forged = {
            "request_id": request.id,
            "res_model": "ir.rule",
            "res_id": self.rule.id,
            "category": "profile",
            "planned_action": "delete",
        }
        self.assertRpcError(
            self.rpc("dsr.request.line", "create", forged), "AccessError"
        )
        self.assertRpcError(
            self.rpc(
                "dsr.request.line",
                "create",
                dict(
                    forged,
                    res_model="res.users",
                    res_id=self.admin.id,
                    category="user",
                    planned_action="anonymize",
                ),
            ),
            "AccessError",
        )
        self.assertRpcError(
            self.rpc(
                "dsr.request.line",
                "write",
                line.ids,
                {
                    "res_model": "ir.rule",
                    "res_id": self.rule.id,
                    "planned_action": "delete",
                },
            ),
            "AccessError",
        )
        self.assertRpcError(
            self.rpc(
                "dsr.request.line",
                "write",
                line.ids,
                {"result": "deleted"},
            ),
            "AccessError",
        )
        self.assertRpcError(
            self.rpc("dsr.request.line", "unlink", line.ids), "AccessError"
        )
        # through the request's one2many: the lines are the server's
        message = self.assertRpcError(
            self.rpc(
                "dsr.request",
                "write",
                request.ids,
                {"line_ids": [Command.create(forged)]},
            ),
            "AccessError",
        )
        self.assertIn("line_ids", message)
        self.assertRpcError(
            self.rpc(
                "dsr.request",
                "write",
                request.ids,
                {
                    "line_ids": [
                        Command.update(
                            line.id,
                            {
                                "res_model": "ir.rule",
                                "res_id": self.rule.id,
                            },
                        )
                    ]
                },
            ),
            "AccessError",
        )

        self.assertEqual(self.lines_snapshot(request), lines_before)
        self.assertEqual(self.rule_snapshot(), rule_before)
        self.assertEqual(self.admin_snapshot(), admin_before)

    def test_erasure_refuses_lines_not_from_the_discovery(self):
        """Lines that exist although the discovery did not write them (from
        before this check, or a bypassed ACL) are refused at execution: the
        whole erasure stops and names the line."""
        request = self.erasure_request()
        Line = self.env["dsr.request.line"].sudo()
        rule_before, admin_before = self.rule_snapshot(), self.admin_snapshot()
        partner = self.subject["partner"]
        cases = [
            # unsealed: not written by the discovery
            (
                {
                    "res_model": "ir.rule",
                    "res_id": self.rule.id,
                    "category": "profile",
                    "planned_action": "delete",
                },
                False,
                "not listed by the discovery",
            ),
            # sealed with the database secret (a leaked secret): the model is
            # still never erased
            (
                {
                    "res_model": "ir.rule",
                    "res_id": self.rule.id,
                    "category": "record",
                    "planned_action": "delete",
                },
                True,
                "never lists this model",
            ),
            # the administrator's account: not tied to the subject
            (
                {
                    "res_model": "res.users",
                    "res_id": self.admin.id,
                    "category": "user",
                    "planned_action": "anonymize",
                },
                True,
                "no longer tied to the subject",
            ),
        ]
        self.authenticate("dsr_officer", "dsr_officer")
        for values, sealed, expected in cases:
            with self.subTest(values=values, sealed=sealed):
                values = dict(values, request_id=request.id)
                if sealed:
                    values["seal"] = Line._seal_value(
                        request.id,
                        values["res_model"],
                        values["res_id"],
                        values["category"],
                        values["planned_action"],
                    )
                forged = Line.create(values)
                lines_before = self.lines_snapshot(request)
                reply = self.rpc(
                    "dsr.erasure.wizard",
                    "create",
                    {
                        "request_id": request.id,
                        "typed_email": SUBJECT_EMAIL,
                    },
                )
                wizard_id = reply["result"]
                message = self.assertRpcError(
                    self.rpc("dsr.erasure.wizard", "action_confirm", [wizard_id]),
                    "UserError",
                )
                self.assertIn(f"{values['res_model']} #{values['res_id']}", message)
                self.assertIn(expected, message)
                self.assertIn("nothing was erased", message)
                # nothing changed: not the rule, not the admin, not the subject
                self.assertEqual(self.rule_snapshot(), rule_before)
                self.assertEqual(self.admin_snapshot(), admin_before)
                self.assertEqual(partner.name, "Jane Subject")
                self.assertTrue(self.subject["invoice_address"].exists())
                self.assertEqual(request.state, "in_progress")
                self.assertEqual(self.lines_snapshot(request), lines_before)
                self.assertFalse(request.erasure_id)
                forged.unlink()
        self.assertNotIn(
            request.name,
            [e["request_ref"] for e in request._erasure_register().entries()],
        )

    # -- server-owned state ------------------------------------------------------------
    def test_state_and_verification_are_server_owned(self):
        env = self.officer_env()
        request = env["dsr.request"].create(
            {
                "subject_email": SUBJECT_EMAIL,
                "request_type": "erasure",
            }
        )
        verified = make_verified_request(env, "access")
        self.authenticate("dsr_officer", "dsr_officer")
        forged_values = {
            "state": "verified",
            "verified_by_id": self.officer.id,
            "verified_on": "2026-01-01 10:00:00",
            "name": "DSR/FORGED",
            "subject_email_sha256": "0" * 64,
            "package_filename": "x.zip",
            "package_generated_on": "2026-01-01 10:00:00",
            "package_expiry": "2099-01-01 10:00:00",
            "package_protected": True,
            "erased_on": "2026-01-01 10:00:00",
            "erasure_id": "forged",
            "certificate_json": base64.b64encode(b"{}").decode(),
            "certificate_html": base64.b64encode(b"<p>erased</p>").decode(),
            "discovered_on": "2026-01-01 10:00:00",
        }
        fields_read = [
            "state",
            "verified_by_id",
            "verified_on",
            "name",
            "erasure_id",
            "package_generated_on",
            "certificate_json",
        ]
        before = request.read(fields_read)
        for fname, value in forged_values.items():
            with self.subTest(field=fname):
                message = self.assertRpcError(
                    self.rpc(
                        "dsr.request",
                        "write",
                        request.ids,
                        {fname: value},
                    ),
                    "AccessError",
                )
                self.assertIn(fname, message)
                message = self.assertRpcError(
                    self.rpc(
                        "dsr.request",
                        "create",
                        {"subject_email": "x@example.com", fname: value},
                    ),
                    "AccessError",
                )
                self.assertIn(fname, message)
        request.invalidate_recordset()
        self.assertEqual(request.read(fields_read), before)
        self.assertEqual(request.state, "received")
        self.assertFalse(
            self.env["dsr.request"].search([("subject_email", "=", "x@example.com")])
        )

        # what the verification rests on is frozen once verified...
        for vals in (
            {"request_type": "erasure"},
            {"subject_email": "someone.else@example.com"},
            {"verification_method": "other"},
            {"company_id": self.company_b.id},
        ):
            with self.subTest(vals=vals):
                self.assertRpcError(
                    self.rpc("dsr.request", "write", verified.ids, vals), "UserError"
                )
        verified.invalidate_recordset()
        self.assertEqual(
            (verified.request_type, verified.subject_email, verified.state),
            ("access", SUBJECT_EMAIL, "verified"),
        )
        # ...and so is the evidence file
        evidence = verified.verification_attachment_ids
        self.assertRpcError(
            self.rpc("ir.attachment", "unlink", evidence.ids), "AccessError"
        )
        self.assertRpcError(
            self.rpc(
                "ir.attachment",
                "write",
                evidence.ids,
                {"raw": base64.b64encode(b"forged").decode()},
            ),
            "AccessError",
        )
        self.assertEqual(evidence.raw, b"ID card checked at the counter")

        # evidence must be a file of this request: not someone else's document
        # (the erasure deletes the evidence)
        passport = self.subject["passport"]
        self.rpc(
            "dsr.request",
            "write",
            request.ids,
            {
                "verification_method": "id_document",
            },
        )
        self.assertRpcError(
            self.rpc(
                "dsr.request",
                "write",
                request.ids,
                {"verification_attachment_ids": [Command.set(passport.ids)]},
            ),
            "ValidationError",
        )
        self.assertFalse(request.verification_attachment_ids)
        self.assertEqual(
            (passport.res_model, passport.res_id),
            ("res.partner", self.subject["partner"].id),
        )

        # the verification action is the way, and it checks what it checks
        self.assertRpcError(
            self.rpc("dsr.request", "action_verify", request.ids), "UserError"
        )
        self.assertEqual(request.state, "received")
        upload = self.rpc(
            "ir.attachment",
            "create",
            {
                "name": "id.txt",
                "raw": base64.b64encode(b"checked").decode(),
                "res_model": "dsr.request",
                "res_id": 0,
            },
        )["result"]
        self.assertIn(
            "result",
            self.rpc(
                "dsr.request",
                "write",
                request.ids,
                {"verification_attachment_ids": [Command.set([upload])]},
            ),
        )
        reply = self.rpc("dsr.request", "action_verify", request.ids)
        self.assertIs(reply.get("result"), True, reply)
        request.invalidate_recordset()
        self.assertEqual(request.state, "verified")
        self.assertEqual(request.verified_by_id, self.officer)
        attachment = self.env["ir.attachment"].browse(upload)
        self.assertEqual(
            (attachment.res_model, attachment.res_id), ("dsr.request", request.id)
        )

    # -- the export package ----------------------------------------------------
    def test_context_defaults_never_reach_server_owned_fields(self):
        """``default_state='verified'`` and forged verifier defaults in the RPC
        context are dropped: the request is created unverified, and neither a
        package nor an erasure can start from it."""
        self.authenticate("dsr_officer", "dsr_officer")
        forged_context = {
            "default_state": "verified",
            "default_verified_by_id": self.admin.id,
            "default_verified_on": "2026-01-01 10:00:00",
            "default_erasure_id": "FORGED-ERASURE",
            "default_discovered_on": "2026-01-01 10:00:00",
        }
        reply = self.rpc(
            "dsr.request",
            "create",
            {"subject_email": "forged.default@example.com"},
            context=forged_context,
        )
        self.assertNotIn("error", reply, reply)
        request = self.env["dsr.request"].browse(reply["result"])
        self.assertEqual(request.state, "received")
        self.assertFalse(request.verified_by_id)
        self.assertFalse(request.verified_on)
        self.assertFalse(request.erasure_id)
        self.assertFalse(request.discovered_on)
        # nothing downstream accepts the unverified request: a wizard whose
        # job came from the context has none, queues one, and refuses
        reply = self.rpc(
            "dsr.package.wizard",
            "create",
            {"request_id": request.id},
            context={"default_job_id": 1},
        )
        self.assertNotIn("error", reply, reply)
        wizard = self.env["dsr.package.wizard"].browse(reply["result"])
        self.assertFalse(wizard.job_id)
        self.assertRpcError(
            self.rpc("dsr.package.wizard", "action_generate", wizard.ids),
            "UserError",
        )
        request.invalidate_recordset()
        self.assertFalse(request.package_file)
        self.assertIn(
            self.url_open(f"/gdpr_dsr/package/{request.id}").status_code,
            (403, 404, 410),
        )

    def test_package_file_cannot_be_replaced(self):
        request = make_verified_request(self.officer_env(), "access")
        request._generate_package()
        stored = request.sudo().with_context(bin_size=False)
        original = (stored.package_file, stored.package_sha256)
        uuid = request._database_uuid()
        backup = self._blob("backup", uuid)
        url = f"/gdpr_dsr/package/{request.id}"
        self.authenticate("dsr_officer", "dsr_officer")

        self.assertRpcError(
            self.rpc(
                "dsr.request",
                "write",
                request.ids,
                {"package_file": base64.b64encode(backup).decode()},
            ),
            "AccessError",
        )
        # nor through the attachment of the stored field
        self.assertRpcError(
            self.rpc(
                "ir.attachment",
                "create",
                {
                    "name": "package_file",
                    "res_model": "dsr.request",
                    "res_id": request.id,
                    "res_field": "package_file",
                    "raw": base64.b64encode(backup).decode(),
                },
            ),
            "AccessError",
        )
        attachment = (
            self.env["ir.attachment"]
            .sudo()
            .search(
                [
                    ("res_model", "=", "dsr.request"),
                    ("res_id", "=", request.id),
                    ("res_field", "=", "package_file"),
                ]
            )
        )
        self.assertEqual(len(attachment), 1)
        self.assertRpcError(
            self.rpc(
                "ir.attachment",
                "write",
                attachment.ids,
                {"raw": base64.b64encode(backup).decode()},
            ),
            "AccessError",
        )
        self.assertRpcError(
            self.rpc("ir.attachment", "unlink", attachment.ids), "AccessError"
        )
        stored.invalidate_recordset()
        self.assertEqual((stored.package_file, stored.package_sha256), original)
        response = self.url_open(url)
        self.assertEqual(response.status_code, 200)
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            document = json.loads(archive.read("data.json"))
        self.assertEqual(document["request"]["reference"], request.name)

        # Bytes put there behind the ORM's back are refused at download: not
        # the digest recorded at generation...
        stored.write({"package_file": base64.b64encode(backup)})
        response = self.url_open(url)
        self.assertEqual(response.status_code, 403)
        self.assertIn("not the one this server generated", response.text)
        self.assertNotIn(b"backup payload", response.content)
        # ...and even with a matching digest, the decryption names this
        # database and the export-package purpose: a backup archive, another
        # database's package are refused before any key is derived
        for blob, expected in (
            (backup, "'backup' archive, not a 'dsr-export' archive"),
            (self._blob("dsr-export", "another-database-uuid"), "another-database"),
            (self._blob("data-export", uuid), "'data-export' archive"),
        ):
            with self.subTest(expected=expected):
                stored.write(
                    {
                        "package_file": base64.b64encode(blob),
                        "package_sha256": hashlib.sha256(blob).hexdigest(),
                    }
                )
                response = self.url_open(url)
                self.assertEqual(response.status_code, 403)
                self.assertIn("not an export package of this database", response.text)
                self.assertIn(expected, response.text)
                self.assertNotIn(b"backup payload", response.content)
        self.assertEqual(self.failure_steps(request), ["download_refused"] * 4)

    def test_package_password_never_stored(self):
        request = make_verified_request(self.officer_env(), "access")
        password = "correct horse battery staple"
        self.authenticate("dsr_officer", "dsr_officer")
        # what the web client sends when "Generate" is clicked
        reply = self.rpc(
            "dsr.package.wizard",
            "web_save",
            [],
            {
                "request_id": request.id,
                "password": password,
                "password_confirm": password,
            },
            specification={"password": {}, "job_id": {}},
        )
        record = reply["result"][0]
        self.assertFalse(record["password"])
        self.assertTrue(record["job_id"])
        reply = self.rpc("dsr.package.wizard", "action_generate", [record["id"]])
        self.assertEqual(reply["result"]["res_id"], record["id"])
        self.env.flush_all()
        # queued: the password is sealed on the job, in clear nowhere
        for table in ("dsr_package_wizard", "dsr_package_job"):
            self.env.cr.execute(SQL("SELECT * FROM %s", SQL.identifier(table)))
            rows = repr(self.env.cr.fetchall())
            self.assertNotIn(password, rows)
            self.assertNotIn(password.encode().hex(), rows)
        job = self.env["dsr.package.job"].browse(record["job_id"]).sudo()
        self.assertTrue(job.password_sealed)
        self.assertEqual(run_package_jobs(self.env), job)
        self.assertFalse(job.password_sealed)  # erased once used
        request.invalidate_recordset()
        self.assertTrue(request.package_protected)
        action = self.rpc("dsr.package.wizard", "action_download", [record["id"]])
        self.assertEqual(action["result"]["url"], f"/gdpr_dsr/package/{request.id}")
        # a mismatch is refused when the wizard is saved, nothing generated
        other = make_verified_request(self.officer_env(), "access")
        self.assertRpcError(
            self.rpc(
                "dsr.package.wizard",
                "web_save",
                [],
                {
                    "request_id": other.id,
                    "password": password,
                    "password_confirm": password + "!",
                },
                specification={},
            ),
            "UserError",
        )
        self.assertFalse(other.package_generated_on)
        response = self.url_open(action["result"]["url"])
        self.assertEqual(response.status_code, 200)
        with pyzipper.AESZipFile(io.BytesIO(response.content)) as archive:
            archive.setpassword(password.encode())
            document = json.loads(archive.read("data.json"))
        self.assertEqual(document["request"]["reference"], request.name)

    # -- companies -----------------------------------------------------------------
    def test_officer_cannot_erase_another_companys_records(self):
        quiet = self.env(context=dict(self.env.context, tracking_disable=True))
        carol = quiet["res.partner"].create(
            {
                "name": "Carol Company A",
                "email": OTHER_EMAIL,
                "company_id": self.company_a.id,
                "street": "1 Company A Street",
            }
        )
        carol_home = quiet["res.partner"].create(
            {
                "name": "Carol (home)",
                "parent_id": carol.id,
                "type": "delivery",
                "company_id": self.company_a.id,
            }
        )
        env_b = self.env(user=self.officer_b)
        request = self.erasure_request(env_b, email=OTHER_EMAIL)
        self.assertEqual(request.company_id, self.company_b)
        lines = {(ln.res_model, ln.res_id): ln for ln in request.line_ids}
        self.assertFalse(lines[("res.partner", carol.id)].accessible)
        lines_before = self.lines_snapshot(request)

        self.authenticate("dsr_officer_b", "dsr_officer_b")
        wizard_id = self.rpc(
            "dsr.erasure.wizard",
            "create",
            {
                "request_id": request.id,
                "typed_email": OTHER_EMAIL,
            },
        )["result"]
        message = self.assertRpcError(
            self.rpc("dsr.erasure.wizard", "action_confirm", [wizard_id]),
            "UserError",
        )
        self.assertIn(f"res.partner #{carol.id}", message)
        self.assertIn("you may not read this record", message)
        self.assertIn("nothing was erased", message)
        carol.invalidate_recordset()
        self.assertEqual(
            (carol.name, carol.email, carol.street, carol.active),
            ("Carol Company A", OTHER_EMAIL, "1 Company A Street", True),
        )
        self.assertTrue(carol_home.exists())
        request.invalidate_recordset()
        self.assertEqual(request.state, "in_progress")
        self.assertEqual(request.subject_email, OTHER_EMAIL)
        self.assertEqual(self.lines_snapshot(request), lines_before)
        # the officer of company B sees none of company A's requests
        request_a = self.erasure_request()
        self.assertRpcError(
            self.rpc("dsr.request", "read", request_a.ids, ["name"]), "AccessError"
        )
        self.assertRpcError(
            self.rpc(
                "dsr.request",
                "create",
                {
                    "subject_email": OTHER_EMAIL,
                    "company_id": self.company_a.id,
                },
            ),
            "AccessError",
        )
        wizard = self.rpc(
            "dsr.erasure.wizard",
            "create",
            {
                "request_id": request_a.id,
                "typed_email": SUBJECT_EMAIL,
            },
        )
        if "result" in wizard:
            self.assertRpcError(
                self.rpc("dsr.erasure.wizard", "action_confirm", [wizard["result"]]),
                "AccessError",
            )
        else:
            self.assertRpcError(wizard, "AccessError")
        self.assertEqual(self.subject["partner"].name, "Jane Subject")
        self.assertEqual(request_a.state, "in_progress")

    # -- users who are not officers ---------------------------------------------------
    def test_internal_and_portal_users_are_refused(self):
        request = self.erasure_request()
        request._generate_package()
        url = f"/gdpr_dsr/package/{request.id}"
        for login in ("dsr_outsider", "dsr_portal"):
            with self.subTest(login=login):
                self.authenticate(login, login)
                self.assertRpcError(
                    self.rpc(
                        "dsr.request",
                        "search_read",
                        [],
                        ["name", "subject_email"],
                    ),
                    "AccessError",
                )
                self.assertRpcError(
                    self.rpc(
                        "dsr.request",
                        "create",
                        {"subject_email": "z@example.com"},
                    ),
                    "AccessError",
                )
                self.assertRpcError(
                    self.rpc(
                        "dsr.request",
                        "write",
                        request.ids,
                        {"state": "verified"},
                    ),
                    "AccessError",
                )
                self.assertRpcError(
                    self.rpc("dsr.request", "action_discover", request.ids),
                    "AccessError",
                )
                self.assertRpcError(
                    self.rpc(
                        "dsr.request.line",
                        "create",
                        {
                            "request_id": request.id,
                            "res_model": "ir.rule",
                            "res_id": self.rule.id,
                            "category": "record",
                            "planned_action": "delete",
                        },
                    ),
                    "AccessError",
                )
                self.assertRpcError(
                    self.rpc(
                        "dsr.erasure.wizard",
                        "create",
                        {
                            "request_id": request.id,
                            "typed_email": SUBJECT_EMAIL,
                        },
                    ),
                    "AccessError",
                )
                self.assertRpcError(
                    self.rpc(
                        "dsr.request.line",
                        "action_keep",
                        request.line_ids[:1].ids,
                    ),
                    "AccessError",
                )
                response = self.url_open(url)
                self.assertEqual(response.status_code, 403)
                self.assertNotEqual(response.content[:2], b"PK")
        self.assertEqual(request.state, "in_progress")
        self.assertEqual(self.subject["partner"].name, "Jane Subject")
        self.assertTrue(self.rule.exists())
