import io
import json
import os
import zipfile
from datetime import timedelta
from unittest.mock import patch

import pyzipper
from freezegun import freeze_time

from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import HttpCase, tagged

from suite_core import keyring as suite_keyring
from suite_core.sensitive import is_withheld

from .common import BANK_ACCOUNT, DsrCase, make_verified_request, run_package_jobs


@tagged("post_install", "-at_install")
class TestDsrExport(DsrCase, HttpCase):
    def _expected(self):
        s = self.subject
        profile = {s["partner"].id, s["invoice_address"].id, s["delivery_address"].id}
        # apps may log on the subject's own contact (accounting logs the bank
        # account creation there): those messages are part of the subject's data
        logged = self.env["mail.message"].search(
            [
                ("model", "=", "res.partner"),
                ("res_id", "in", list(profile)),
            ]
        )
        return {
            "profile": profile,
            "messages": {s["own_note"].id, s["written"].id, s["addressed"].id}
            | set(logged.ids),
            "attachments": {s["passport"].id, s["photo"].id},
        }

    def test_discovery_lists_everything_grouped_by_model(self):
        request = make_verified_request(self.officer_env(), "access")
        request.action_discover()
        self.assertEqual(request.state, "in_progress")
        lines = request.line_ids
        by_model = {}
        for line in lines:
            by_model.setdefault(line.res_model, set()).add(line.res_id)
        expected = self._expected()
        self.assertEqual(by_model["res.partner"], expected["profile"])
        self.assertEqual(by_model["mail.message"], expected["messages"])
        self.assertEqual(by_model["ir.attachment"], expected["attachments"])
        self.assertEqual(by_model["res.users"], {self.subject["user"].id})
        self.assertEqual(by_model["res.partner.bank"], {self.subject["bank"].id})
        followers = self.env["mail.followers"].search(
            [
                ("partner_id", "in", list(expected["profile"])),
            ]
        )
        self.assertEqual(by_model.get("mail.followers", set()), set(followers.ids))
        # the bystander is never part of the subject's data
        self.assertNotIn(self.subject["other"].id, by_model["res.partner"])
        self.assertTrue(all(lines.mapped("accessible")))
        self.assertEqual(set(lines.mapped("planned_action")), {"export"})
        action = request.action_view_lines()
        self.assertEqual(action["context"]["search_default_group_model"], 1)
        groups = self.env["dsr.request.line"]._read_group(
            action["domain"], ["res_model"], ["__count"]
        )
        self.assertEqual(
            dict(groups),
            {model: len(ids) for model, ids in by_model.items()},
        )

    def test_exclusion_list_extends_the_scan(self):
        self.env["dsr.discovery.exclusion"].create(
            {
                "model_name": "res.partner.bank",
                "reason": "kept out by the admin",
            }
        )
        request = make_verified_request(self.officer_env(), "access")
        request.action_discover()
        models = set(request.line_ids.mapped("res_model"))
        self.assertNotIn("res.partner.bank", models)
        self.assertIn("res.users", models)
        # only administrators maintain the list
        with self.assertRaises(AccessError):
            self.env["dsr.discovery.exclusion"].with_user(self.officer).create(
                {
                    "model_name": "res.users",
                    "reason": "hide users",
                }
            )

    def _generate(self, password=None):
        env = self.officer_env()
        request = make_verified_request(env, "access")
        wizard = env["dsr.package.wizard"].create(
            {
                "request_id": request.id,
                "password": password,
                "password_confirm": password,
            }
        )
        action = wizard.action_generate()
        # the dialog stays open on the job's progress
        self.assertEqual(
            (action["res_model"], action["res_id"], action["target"]),
            ("dsr.package.wizard", wizard.id, "new"),
        )
        # the password is checked when the wizard is saved and stored nowhere
        # in clear (sealed on the job until it runs)
        self.assertTrue(wizard.job_id)
        self.assertFalse(wizard.password)
        self.assertFalse(request.package_generated_on)
        self.assertEqual(run_package_jobs(self.env), wizard.job_id.sudo())
        wizard.invalidate_recordset()
        self.assertEqual(wizard.package_job_state, "done")
        action = wizard.action_download()
        self.assertEqual(action["url"], f"/gdpr_dsr/package/{request.id}")
        self.env.flush_all()
        self.env.cr.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'dsr_package_wizard'"
        )
        columns = {row[0] for row in self.env.cr.fetchall()}
        self.assertIn("request_id", columns)
        self.assertFalse({"password", "password_confirm"} & columns)
        return request

    def _check_document(self, names, document):
        expected = self._expected()
        s = self.subject
        attachment_names = {
            f"attachments/{s['passport'].id}-passport.pdf",
            f"attachments/{s['photo'].id}-photo.png",
        }
        self.assertEqual(set(names), {"data.json"} | attachment_names)
        self.assertEqual({p["id"] for p in document["profile"]}, expected["profile"])
        jane = next(p for p in document["profile"] if p["id"] == s["partner"].id)
        self.assertEqual(jane["name"], "Jane Subject")
        # as stored (the padding is how the partner was typed in)
        self.assertEqual(jane["email"].strip(), "Jane.Subject@Example.com")
        self.assertEqual(jane["street"], "1 Privacy Street")
        self.assertEqual([u["id"] for u in document["users"]], [s["user"].id])
        self.assertEqual(
            {m["id"] for m in document["communications"]["messages"]},
            expected["messages"],
        )
        bodies = {m["id"]: m["body"] for m in document["communications"]["messages"]}
        self.assertIn("Jane asked for a callback", bodies[s["own_note"].id])
        self.assertEqual(
            {a["id"] for a in document["attachments"]}, expected["attachments"]
        )
        self.assertEqual({a["file"] for a in document["attachments"]}, attachment_names)
        banks = document["payment_information"]["res.partner.bank"]
        self.assertEqual([b["id"] for b in banks], [s["bank"].id])
        self.assertEqual(banks[0]["acc_number"], "************6755")
        self.assertEqual(document["withheld"], [])
        self.assertEqual(document["request"]["type"], "access")

    def test_package_plain_zip_encrypted_at_rest(self):
        request = self._generate()
        self.assertEqual(request.state, "done")
        self.assertFalse(request.package_protected)
        # officers never read the stored package: only the download decrypts it
        with self.assertRaises(AccessError):
            request.read(["package_file"])
        stored = self.b64(request.sudo().with_context(bin_size=False).package_file)
        self.assertNotEqual(stored[:2], b"PK")
        self.assertNotIn(b"Jane", stored)
        data = request._read_package()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            raw_json = archive.read("data.json")
            document = json.loads(raw_json)
            self.assertEqual(
                archive.read(f"attachments/{self.subject['passport'].id}-passport.pdf"),
                b"%PDF-1.4 Jane's passport scan",
            )
        self._check_document(names, document)
        self.assertNotIn(BANK_ACCOUNT.encode(), raw_json)
        self.assertEqual(
            request.package_expiry - request.package_generated_on, timedelta(days=30)
        )
        steps = (
            self.env["audit.event"]
            .sudo()
            .search(
                [
                    ("res_model", "=", "dsr.request"),
                    ("res_id", "=", request.id),
                ]
            )
            .mapped(lambda e: (e.details or {}).get("step"))
        )
        self.assertEqual(
            sorted(steps),
            ["downloaded", "exported", "package_queued", "received", "verified"],
        )

    def test_package_whose_key_left_the_keyring_is_named(self):
        """A package sealed under a key the keyring no longer holds: the
        error names the request and the key id (not the crypto layer's
        generic "the key that encrypted this archive"), and nothing is
        served."""
        request = self._generate()
        first_key = suite_keyring.Keyring.load().active.key_id
        other_ring = {suite_keyring.ENV_KEYRING: suite_keyring.generate_key_line()}
        with (
            patch.dict(os.environ, other_ring),
            self.assertRaises(UserError) as caught,
        ):
            request._read_package()
        message = str(caught.exception)
        self.assertIn(request.name, message)
        self.assertIn(first_key, message)
        self.assertNotIn("add the key that encrypted this archive", message)

    def test_package_with_password(self):
        request = self._generate(password="correct horse battery")
        self.assertTrue(request.package_protected)
        data = request._read_package()
        with pyzipper.AESZipFile(io.BytesIO(data)) as archive:
            with self.assertRaises(RuntimeError):
                archive.read("data.json")
            archive.setpassword(b"correct horse battery")
            names = archive.namelist()
            document = json.loads(archive.read("data.json"))
        self._check_document(names, document)

    def test_package_never_exports_secrets(self):
        """The suite's one secret rule applies to the package, for the
        officer: no withheld field anywhere, credentials models withheld."""
        env = self.officer_env()
        request = make_verified_request(env, "access")
        request.action_discover()
        jane = self.subject["user"]
        key = (
            self.env["res.users.apikeys"]
            .with_user(jane)
            .sudo()
            ._generate(None, "jane's script", False)
        )
        apikey = (
            self.env["res.users.apikeys"].sudo().search([("user_id", "=", jane.id)])
        )
        self.assertEqual(len(apikey), 1)
        # as an app-specific discovery hook would list it
        Line = self.env["dsr.request.line"].sudo()
        Line.create(
            {
                "request_id": request.id,
                "res_model": "res.users.apikeys",
                "res_id": apikey.id,
                "category": "record",
                "planned_action": "export",
                "seal": Line._seal_value(
                    request.id, "res.users.apikeys", apikey.id, "record", "export"
                ),
            }
        )
        request._generate_package()
        with zipfile.ZipFile(io.BytesIO(request._read_package())) as archive:
            raw = archive.read("data.json")
        document = json.loads(raw)
        self.assertIn(
            {
                "model": "res.users.apikeys",
                "id": apikey.id,
                "reason": "holds credentials (never exported)",
            },
            document["withheld"],
        )
        self.assertNotIn("res.users.apikeys", document["records"])
        self.assertNotIn(key[:8].encode(), raw)
        sections = [
            ("res.partner", document["profile"]),
            ("res.users", document["users"]),
            ("mail.message", document["communications"]["messages"]),
            *((model, rows) for model, rows in document["payment_information"].items()),
            *((model, rows) for model, rows in document["records"].items()),
        ]
        checked = 0
        for model, rows in sections:
            fields_ = self.env[model]._fields
            for row in rows:
                for fname in row:
                    field = fields_[fname]
                    self.assertFalse(
                        is_withheld(
                            model,
                            fname,
                            field.type,
                            field.groups,
                            self.officer.has_group,
                        ),
                        f"{model}.{fname} is a secret or restricted field",
                    )
                    checked += 1
        self.assertGreater(checked, 50)
        line = request.line_ids.filtered(lambda ln: ln.res_model == "res.users.apikeys")
        self.assertEqual(line.result, "withheld")

    def test_password_mismatch_and_expiry(self):
        env = self.officer_env()
        request = make_verified_request(env, "access")
        with self.assertRaises(UserError):
            env["dsr.package.wizard"].create(
                {
                    "request_id": request.id,
                    "password": "abcdefgh1",
                    "password_confirm": "abcdefgh2",
                }
            )
        with self.assertRaises(UserError):
            env["dsr.package.wizard"].create(
                {
                    "request_id": request.id,
                    "password": "short",
                    "password_confirm": "short",
                }
            )
        # the suite's one policy: twelve characters are not enough if they
        # are easy to guess
        with self.assertRaises(UserError):
            env["dsr.package.wizard"].create(
                {
                    "request_id": request.id,
                    "password": "abcdefghijkl",
                    "password_confirm": "abcdefghijkl",
                }
            )
        self.assertFalse(request.package_generated_on)
        request._generate_package()
        with freeze_time(fields.Datetime.now() + timedelta(days=31)):
            with self.assertRaises(UserError):
                request._read_package()
            self.assertEqual(self.env["dsr.request"]._cron_purge_packages(), 1)
        self.assertFalse(request.sudo().package_file)
        self.assertFalse(request.sudo().package_sha256)


@tagged("post_install", "-at_install")
class TestDsrDownload(DsrCase, HttpCase):
    def test_download_route_for_officer_only(self):
        request = make_verified_request(self.officer_env(), "access")
        request._generate_package()
        url = f"/gdpr_dsr/package/{request.id}"

        self.authenticate("dsr_outsider", "dsr_outsider")
        response = self.url_open(url)
        self.assertEqual(response.status_code, 403)
        self.assertNotEqual(response.content[:2], b"PK")

        self.authenticate("dsr_officer", "dsr_officer")
        response = self.url_open(url)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.headers["Content-Type"], "application/zip")
        self.assertIn(request.package_filename, response.headers["Content-Disposition"])
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            self.assertIn("data.json", archive.namelist())
            document = json.loads(archive.read("data.json"))
        self.assertEqual(document["request"]["reference"], request.name)
