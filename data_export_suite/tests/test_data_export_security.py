import csv
import io
import json
import os
import shutil
import subprocess
import tempfile
from unittest.mock import patch

import pyzipper

from odoo.exceptions import AccessError, UserError
from odoo.tests import new_test_user, tagged

from odoo.addons.audit_export.lib import streamcrypt

from .common import ExportCase


@tagged("post_install", "-at_install")
class TestExportSecurity(ExportCase):
    def _csv_ids(self, job):
        return [int(r[0]) for r in csv.reader(io.StringIO(job._read_file().decode()))
                if r and r[0] != "id"]

    def test_user_outside_export_group_cannot_export(self):
        with self.assertRaises(AccessError):
            self.export(self.plain_user, field_paths="id\nname")
        with self.assertRaises(AccessError):
            self.env["data.export.wizard"].with_user(self.plain_user).create({
                "model_name": "res.partner",
                "field_paths": "id",
            })

    def test_unreadable_field_is_not_offered_nor_exported(self):
        # mail.message.mail_ids is restricted to base.group_system.
        Profile = self.env["data.export.profile"]
        self.assertNotIn("mail_ids",
                         Profile.with_user(self.exporter)._exportable_fields("mail.message"))
        self.assertIn("mail_ids", Profile._exportable_fields("mail.message"))
        with self.assertRaises(AccessError):
            self.export(self.exporter, model_name="mail.message", domain="[]",
                        field_paths="id\nmail_ids")
        # A field of res.partner restricted by groups: same, even through a
        # related path and through the gdpr_dsr API.
        phone = self.env["res.partner"]._fields["phone"]
        with patch.object(phone, "groups", "base.group_system"):
            self.assertNotIn(
                "phone",
                Profile.with_user(self.exporter)._exportable_fields("res.partner"),
            )
            for paths in ("id\nphone", "id\nparent_id.phone"):
                with self.assertRaises(AccessError):
                    self.export(self.exporter, field_paths=paths)
            with self.assertRaises(AccessError):
                Profile.with_user(self.exporter)._serialize_records(
                    self.partners.with_user(self.exporter), ["id", "phone"])
            job = self.export(self.env.ref("base.user_admin"), field_paths="id\nphone")
            self.assertIn("+32 2 000 00 01", job._read_file().decode())

    def test_unreadable_record_is_not_exported(self):
        other_company = self.env["res.company"].create({"name": "H6 Other Co"})
        hidden = self.env["res.partner"].create(
            {"name": "Other company partner", "company_id": other_company.id}
        )
        domain = repr([("id", "in", [*self.partners.ids, hidden.id])])
        job = self.export(self.exporter, field_paths="id\nname", domain=domain)
        ids = self._csv_ids(job)
        self.assertEqual(sorted(ids), sorted(self.partners.ids))
        self.assertNotIn("Other company partner", job._read_file().decode())
        # A user of both companies exporting with both selected gets it.
        both = new_test_user(
            self.env, login="h6_both", company_id=self.company.id,
            company_ids=[(6, 0, [self.company.id, other_company.id])],
            groups="base.group_user,data_export_suite.export_group_user",
        )
        job = self.env["data.export.job"].with_user(both).with_context(
            allowed_company_ids=[self.company.id, other_company.id]
        ).create({"model_name": "res.partner", "domain": domain,
                  "field_paths": "id"})
        job._launch()
        self.assertIn(hidden.id, self._csv_ids(job))

    def test_secrets_are_never_exported(self):
        admin = self.env.ref("base.user_admin")
        Profile = self.env["data.export.profile"].with_user(admin)
        names = Profile._exportable_fields("res.users")
        for secret in ("password", "new_password", "totp_secret", "api_key_ids",
                       "signup_token", "totp_trusted_device_ids"):
            self.assertNotIn(secret, names)
        for wanted in ("login", "name", "groups_id", "active", "login_date"):
            self.assertIn(wanted, names)
        for paths in ("id\npassword", "id\ntotp_secret", "id\napi_key_ids",
                      "id\ncreate_uid.password"):
            with self.assertRaises(AccessError):
                self.export(admin, model_name="res.users", domain="[]",
                            field_paths=paths)
        with self.assertRaises(AccessError):
            self.export(admin, model_name="res.users.apikeys", domain="[]",
                        field_paths="id")
        users = Profile.search([("ready_made_key", "=", "users")])
        self.assertTrue(users)
        job = self.export(admin, model_name="res.users", domain="[]",
                          field_paths=users.field_paths, include_archived=True,
                          export_format="json")
        items = json.loads(job._read_file())
        self.assertEqual(
            len(items),
            self.env["res.users"].with_context(active_test=False).search_count([]),
        )
        self.assertFalse({"password", "totp_secret", "api_key_ids"} & set(items[0]))

    def test_file_is_encrypted_at_rest_and_round_trips(self):
        job = self.export(self.exporter, field_paths="id\nname\nemail")
        path = job._storage_path()
        with open(path, "rb") as fh:
            stored = fh.read()
        self.assertNotIn(b"alice@example.com", stored)
        self.assertEqual(job.file_size, len(stored))
        header = streamcrypt.read_header(io.BytesIO(stored))
        self.assertEqual(header.purpose, "export")
        self.assertEqual(
            header.tenant,
            self.env["ir.config_parameter"].sudo().get_param("database.uuid"),
        )
        self.assertIn(b"alice@example.com", job._read_file())
        # Tampering is detected, never served.
        tampered = bytearray(stored)
        tampered[-40] ^= 0x01
        with open(path, "wb") as fh:
            fh.write(tampered)
        with self.assertRaises(streamcrypt.StreamCryptError):
            job._read_file()
        events = self.env["audit.event"].sudo().search(
            [("res_model", "=", "data.export.job"), ("res_id", "=", job.id)]
        )
        self.assertEqual(set(events.mapped("action")), {"export", "download"})

    def test_without_keyring_nothing_is_stored(self):
        files_before = set(os.listdir(self.env["data.export.job"]._storage_dir()))
        with patch.dict(os.environ, {}, clear=True), \
                self.assertRaisesRegex(UserError, "keyring"):
            self.export(self.exporter, field_paths="id\nname")
        self.assertEqual(
            set(os.listdir(self.env["data.export.job"]._storage_dir())), files_before
        )

    def test_owner_and_auditor_download_others_cannot(self):
        job = self.export(self.exporter, field_paths="id\nname")
        self.assertIn(b"Alice Export", job.with_user(self.auditor)._read_file())
        with self.assertRaises(AccessError):
            job.with_user(self.other_exporter)._read_file()
        with self.assertRaises(AccessError):
            job.with_user(self.plain_user)._read_file()
        self.assertFalse(
            self.env["data.export.job"].with_user(self.other_exporter).search(
                [("id", "=", job.id)])
        )
        # The requester cannot rewrite the job to point at another file.
        with self.assertRaises(AccessError):
            job.with_user(self.exporter).write({"storage_name": "x.enc"})
        # Auditors read but never delete; the owner may delete (file too).
        with self.assertRaises(AccessError):
            job.with_user(self.auditor).unlink()
        path = job._storage_path()
        self.assertTrue(os.path.exists(path))
        job.with_user(self.exporter).unlink()
        self.assertFalse(os.path.exists(path))
        self.assertTrue(self.env["audit.event"].sudo().search(
            [("action", "=", "delete"), ("res_model", "=", "data.export.job")]))

    def test_password_protected_zip(self):
        wizard = self.env["data.export.wizard"].with_user(self.exporter).create({
            "model_name": "res.partner",
            "field_paths": "id\nname\nemail",
            "domain": self.partner_domain,
            "export_format": "csv",
            "use_password": True,
            "password": "correct horse battery",
            "password_confirm": "correct horse battery",
        })
        action = wizard.action_export()
        self.assertEqual(action["type"], "ir.actions.act_url")
        job = self.env["data.export.job"].search([], limit=1)
        self.assertEqual(job.user_id, self.exporter)
        self.assertTrue(job.file_name.endswith(".zip"))
        self.assertFalse(job.sudo().password_sealed)  # erased once used
        data = job.with_user(self.exporter)._read_file()
        with pyzipper.AESZipFile(io.BytesIO(data)) as archive:
            archive.setpassword(b"correct horse battery")
            (name,) = archive.namelist()
            self.assertTrue(name.endswith(".csv"))
            self.assertIn(b"alice@example.com", archive.read(name))
        self.assertNotIn(b"alice@example.com", data)
        sevenzip = shutil.which("7zz") or shutil.which("7z")
        if sevenzip:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "export.zip")
                with open(path, "wb") as fh:
                    fh.write(data)
                out = subprocess.run(
                    [sevenzip, "x", "-pcorrect horse battery", f"-o{tmp}/out", path],
                    capture_output=True, text=True, check=False,
                )
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                with open(os.path.join(tmp, "out", name), "rb") as fh:
                    self.assertIn(b"alice@example.com", fh.read())
        # Too short or mismatched passwords are refused.
        wizard = wizard.create({
            "model_name": "res.partner",
            "field_paths": "id", "use_password": True,
            "password": "short", "password_confirm": "short",
        })
        with self.assertRaisesRegex(UserError, "at least"):
            wizard.action_export()
