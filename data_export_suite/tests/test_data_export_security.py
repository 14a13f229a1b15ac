import base64
import csv
import io
import json
import os
import shutil
import subprocess
import tempfile
from unittest.mock import patch

import pyzipper

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.osv import expression
from odoo.tests import new_test_user, tagged

from suite_core import streamcrypt

from ..lib import domain as domain_lib
from .common import ExportCase


@tagged("post_install", "-at_install")
class TestExportSecurity(ExportCase):
    def _csv_ids(self, job):
        return [
            int(r[0])
            for r in csv.reader(io.StringIO(job._read_file().decode()))
            if r and r[0] != "id"
        ]

    def test_user_outside_export_group_cannot_export(self):
        with self.assertRaises(AccessError):
            self.export(self.plain_user, field_paths="id\nname")
        with self.assertRaises(AccessError):
            self.env["data.export.wizard"].with_user(self.plain_user).create(
                {
                    "model_name": "res.partner",
                    "field_paths": "id",
                }
            )

    def test_unreadable_field_is_not_offered_nor_exported(self):
        # mail.message.mail_ids is restricted to base.group_system.
        Profile = self.env["data.export.profile"]
        self.assertNotIn(
            "mail_ids",
            Profile.with_user(self.exporter)._exportable_fields("mail.message"),
        )
        self.assertIn("mail_ids", Profile._exportable_fields("mail.message"))
        with self.assertRaises(AccessError):
            self.export(
                self.exporter,
                model_name="mail.message",
                domain="[]",
                field_paths="id\nmail_ids",
            )
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
                    self.partners.with_user(self.exporter), ["id", "phone"]
                )
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
            self.env,
            login="h6_both",
            company_id=self.company.id,
            company_ids=[(6, 0, [self.company.id, other_company.id])],
            groups="base.group_user,data_export_suite.export_group_user",
        )
        job = (
            self.env["data.export.job"]
            .with_user(both)
            .with_context(allowed_company_ids=[self.company.id, other_company.id])
            .create(
                {"model_name": "res.partner", "domain": domain, "field_paths": "id"}
            )
        )
        job._launch()
        self.assertIn(hidden.id, self._csv_ids(job))

    def test_secrets_are_never_exported(self):
        admin = self.env.ref("base.user_admin")
        Profile = self.env["data.export.profile"].with_user(admin)
        names = Profile._exportable_fields("res.users")
        for secret in (
            "password",
            "new_password",
            "totp_secret",
            "api_key_ids",
            "signup_token",
            "totp_trusted_device_ids",
        ):
            self.assertNotIn(secret, names)
        for wanted in ("login", "name", "groups_id", "active", "login_date"):
            self.assertIn(wanted, names)
        for paths in (
            "id\npassword",
            "id\ntotp_secret",
            "id\napi_key_ids",
            "id\ncreate_uid.password",
        ):
            with self.assertRaises(AccessError):
                self.export(
                    admin, model_name="res.users", domain="[]", field_paths=paths
                )
        with self.assertRaises(AccessError):
            self.export(
                admin, model_name="res.users.apikeys", domain="[]", field_paths="id"
            )
        users = Profile.search([("ready_made_key", "=", "users")])
        self.assertTrue(users)
        job = self.export(
            admin,
            model_name="res.users",
            domain="[]",
            field_paths=users.field_paths,
            include_archived=True,
            export_format="json",
        )
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
        events = (
            self.env["audit.event"]
            .sudo()
            .search([("res_model", "=", "data.export.job"), ("res_id", "=", job.id)])
        )
        self.assertEqual(set(events.mapped("action")), {"export", "download"})

    def test_without_keyring_nothing_is_stored(self):
        files_before = set(os.listdir(self.env["data.export.job"]._storage_dir()))
        with (
            patch.dict(os.environ, {}, clear=True),
            self.assertRaisesRegex(UserError, "keyring"),
        ):
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
            self.env["data.export.job"]
            .with_user(self.other_exporter)
            .search([("id", "=", job.id)])
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
        self.assertTrue(
            self.env["audit.event"]
            .sudo()
            .search([("action", "=", "delete"), ("res_model", "=", "data.export.job")])
        )

    def test_password_protected_zip(self):
        wizard = (
            self.env["data.export.wizard"]
            .with_user(self.exporter)
            .create(
                {
                    "model_name": "res.partner",
                    "field_paths": "id\nname\nemail",
                    "domain": self.partner_domain,
                    "export_format": "csv",
                    "use_password": True,
                    "password": "correct horse battery",
                    "password_confirm": "correct horse battery",
                }
            )
        )
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
                    capture_output=True,
                    text=True,
                    check=False,
                )
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                with open(os.path.join(tmp, "out", name), "rb") as fh:
                    self.assertIn(b"alice@example.com", fh.read())
        # Too short, mismatched or missing passwords are refused.
        with self.assertRaisesRegex(UserError, "at least"):
            wizard.create(
                {
                    "model_name": "res.partner",
                    "field_paths": "id",
                    "use_password": True,
                    "password": "short",
                    "password_confirm": "short",
                }
            )
        with self.assertRaisesRegex(UserError, "do not match"):
            wizard.create(
                {
                    "model_name": "res.partner",
                    "field_paths": "id",
                    "use_password": True,
                    "password": "correct horse battery",
                    "password_confirm": "correct horse batterY",
                }
            )
        wizard = wizard.create(
            {
                "model_name": "res.partner",
                "field_paths": "id",
                "use_password": True,
            }
        )
        with self.assertRaisesRegex(UserError, "at least"):
            wizard.action_export()


@tagged("post_install", "-at_install")
class TestExportTrustBoundaries(ExportCase):
    """Domains are data, server-owned fields stay the server's, steps re-check."""

    def _job_count(self):
        return self.env["data.export.job"].sudo().search_count([])

    def test_typed_domains_are_parsed_never_evaluated(self):
        system = self.env.ref("base.group_system")
        secret = self.env["ir.config_parameter"].sudo().get_param("database.secret")
        jobs_before = self._job_count()
        hostile = {
            f"user.sudo().write({{'groups_id': [(4, {system.id})]}})": (
                "A function call"
            ),
            "user.env.cr.execute('UPDATE res_users SET active = false')": (
                "A function call"
            ),
            "__import__('os').getcwd()": "A function call",
            "().__class__.__bases__[0]": "A subscript",
            "user.env": "Attribute access",
            "(lambda: 1)()": "A function call",
            "f'{user.password}'": "An f-string",
            "user": "Unknown name",
        }
        for value, kind in hostile.items():
            domain = f"[('id', '=', {value})]"
            with self.subTest(value=value):
                with self.assertRaises(ValidationError) as error:
                    self.export(self.exporter, field_paths="id", domain=domain)
                message = str(error.exception)
                self.assertIn(kind, message)
                self.assertIn(value[:40], message)
                self.assertNotIn(secret, message)
                with self.assertRaises(ValidationError):
                    self.env["data.export.profile"].with_user(self.exporter).create(
                        {
                            "name": "H6 hostile",
                            "field_paths": "id",
                            "domain": domain,
                            "model_id": self.env["ir.model"]._get_id("res.partner"),
                        }
                    )
                with self.assertRaises(ValidationError):
                    self.env["data.export.wizard"].with_user(self.exporter).create(
                        {
                            "model_name": "res.partner",
                            "field_paths": "id",
                            "domain": domain,
                        }
                    )
        self.assertFalse(self.exporter.has_group("base.group_system"))
        self.assertEqual(self._job_count(), jobs_before)
        self.assertFalse(
            self.env["data.export.profile"].search([("name", "=", "H6 hostile")])
        )
        self.assertTrue(self.plain_user.active)

    def test_domains_resolve_names_and_check_fields(self):
        Profile = self.env["data.export.profile"].with_user(self.exporter)
        self.assertEqual(domain_lib.TERM_OPERATORS, expression.TERM_OPERATORS)
        ids = self.partners.ids
        domain = Profile._parse_domain(
            f"[('id', 'in', {ids}), '|', ('create_uid', '!=', uid), "
            "('company_id', 'in', company_ids), ('write_date', '<=', now)]",
            "res.partner",
        )
        self.assertEqual(domain[0], "&")
        self.assertIn(("create_uid", "!=", self.exporter.id), domain)
        self.assertIn(("company_id", "in", self.exporter.company_ids.ids), domain)
        # ``now`` has whole seconds: records written in this very second would
        # be later than it, so they are dated a minute back.
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE res_partner SET write_date = write_date - interval '1 minute' "
            "WHERE id = ANY(%s)",
            [ids],
        )
        self.partners.invalidate_recordset(["write_date"])
        self.assertEqual(
            sorted(self.env["res.partner"].with_user(self.exporter).search(domain).ids),
            sorted(ids),
        )
        # The ready-made Invoices domain (if Invoicing is there) stays valid.
        Admin = self.env["data.export.profile"]
        for profile in Admin.search([("ready_made_key", "!=", False)]):
            Admin._parse_domain(profile.domain, profile.model_name)
        # Fields: unknown, not a relation, withheld (groups, secret, through
        # a related path and inside "any").
        cases = [
            ("[('no_such_field', '=', 1)]", ValidationError, "no_such_field"),
            ("[('name.id', '=', 1)]", ValidationError, "not a relation"),
            (
                "[('user_ids.api_key_ids', '!=', False)]",
                AccessError,
                "user_ids.api_key_ids",
            ),
            ("[('user_ids.password', '=', 'x')]", AccessError, "user_ids.password"),
            (
                "[('user_ids', 'any', [('totp_secret', '!=', False)])]",
                UserError,
                "totp_secret",
            ),  # AccessError, or unknown without TOTP
            ("[('id', 'in', 'abc')]", ValidationError, "res.partner"),
        ]
        for text, error, part in cases:
            with self.subTest(text=text):
                with self.assertRaises(error) as caught:
                    Profile._parse_domain(text, "res.partner")
                self.assertIn(part, str(caught.exception))
        phone = self.env["res.partner"]._fields["phone"]
        with patch.object(phone, "groups", "base.group_system"):
            with self.assertRaisesRegex(AccessError, "phone"):
                self.export(
                    self.exporter,
                    field_paths="id",
                    domain="[('phone', '=like', '+32%')]",
                )
            # An administrator holds the group: allowed.
            Profile.with_user(self.env.ref("base.user_admin"))._parse_domain(
                "[('phone', '=like', '+32%')]", "res.partner"
            )

    def test_server_owned_fields_are_refused(self):
        victim = self.export(self.other_exporter, field_paths="id\nname")
        victim_path = victim._storage_path()
        with open(victim_path, "rb") as fh:
            victim_bytes = fh.read()
        Job = self.env["data.export.job"].with_user(self.exporter)
        jobs_before = self._job_count()
        for extra in (
            {"state": "done"},
            {"storage_name": victim.sudo().storage_name},
            {"user_id": self.other_exporter.id},
            {"records_done": 5},
            {"password_sealed": b"eA=="},
            {"download_token_hash": "x"},
        ):
            with self.subTest(extra=extra), self.assertRaises(AccessError):
                Job.create(
                    {
                        "model_name": "res.partner",
                        "field_paths": "id",
                        "domain": self.partner_domain,
                        **extra,
                    }
                )
        self.assertEqual(self._job_count(), jobs_before)
        # Context defaults cannot set them either.
        job = Job.with_context(
            default_state="done",
            default_storage_name=victim.sudo().storage_name,
            default_user_id=self.other_exporter.id,
            default_file_name="stolen.csv",
        ).create(
            {
                "model_name": "res.partner",
                "field_paths": "id",
                "domain": self.partner_domain,
            }
        )
        self.assertEqual(job.state, "queued")
        self.assertEqual(job.user_id, self.exporter)
        self.assertFalse(job.sudo().storage_name)
        self.assertFalse(job.file_name)
        with self.assertRaisesRegex(UserError, "no file"):
            job.action_download()
        # A requested job is not edited, its owner never changes.
        for vals in (
            {"storage_name": victim.sudo().storage_name},
            {"state": "done"},
            {"domain": "[]"},
            {"user_id": self.other_exporter.id},
        ):
            with self.subTest(vals=vals), self.assertRaises(AccessError):
                job.write(vals)
        with self.assertRaises(AccessError):
            job.sudo().write({"user_id": self.other_exporter.id})
        with self.assertRaises(AccessError):
            job.copy()
        self.assertEqual(job.sudo().user_id, self.exporter)
        with open(victim_path, "rb") as fh:
            self.assertEqual(fh.read(), victim_bytes)
        # Profiles: the ready-made marks and the owner are the server's.
        Profile = self.env["data.export.profile"].with_user(self.exporter)
        values = {
            "name": "H6 own",
            "field_paths": "id",
            "model_id": self.env["ir.model"]._get_id("res.partner"),
        }
        for extra in (
            {"ready_made_key": "sales"},
            {"ready_made_paths": "id"},
            {"user_id": self.other_exporter.id},
        ):
            with self.subTest(extra=extra), self.assertRaises(AccessError):
                Profile.create({**values, **extra})
        own = Profile.create({**values, "user_id": False})
        self.assertEqual(own.user_id, self.exporter)
        own = Profile.with_context(default_ready_made_key="sales").create(values)
        self.assertFalse(own.ready_made_key)
        for vals in ({"ready_made_key": "users"}, {"user_id": self.other_exporter.id}):
            with self.subTest(vals=vals), self.assertRaises(AccessError):
                own.write(vals)
        # A copy of a ready-made profile is the user's own.
        customers = Profile.search([("ready_made_key", "=", "customers")])
        copy = customers.copy()
        self.assertEqual(copy.user_id, self.exporter)
        self.assertFalse(copy.ready_made_key)
        self.assertEqual(customers.sudo().user_id.id, False)
        # Only administrators refresh the ready-made profiles.
        with self.assertRaises(AccessError):
            Profile.action_refresh_ready_made()

    def test_each_step_rechecks_its_preconditions(self):
        job = self.export(self.exporter, field_paths="id\nname")
        self.assertEqual(job.state, "done")
        path = job._storage_path()
        with open(path, "rb") as fh:
            stored = fh.read()
        with self.assertRaisesRegex(UserError, "launched already"):
            job._launch()
        with self.assertRaisesRegex(UserError, "cannot run"):
            job._execute(background=False)
        with self.assertRaisesRegex(UserError, "cannot run"):
            job._execute(background=True)
        with open(path, "rb") as fh:
            self.assertEqual(fh.read(), stored)
        # Past its expiry the file is not served, even before the purge.
        job.sudo().expires_at = "2000-01-01 00:00:00"
        with self.assertRaisesRegex(UserError, "expired"):
            job._read_file()
        with self.assertRaisesRegex(UserError, "expired"):
            job.action_download()
        # A profile the owner may not read cannot name their job.
        private = (
            self.env["data.export.profile"]
            .with_user(self.other_exporter)
            .create(
                {
                    "name": "H6 private",
                    "field_paths": "id",
                    "model_id": self.env["ir.model"]._get_id("res.partner"),
                }
            )
        )
        with self.assertRaises(AccessError):
            self.export(
                self.exporter, launch=False, field_paths="id", profile_id=private.id
            )

    def test_password_is_sealed_until_the_background_run_then_erased(self):
        self.env["ir.config_parameter"].sudo().set_param(
            "data_export_suite.sync_record_limit", "1"
        )
        wizard = (
            self.env["data.export.wizard"]
            .with_user(self.exporter)
            .create(
                {
                    "model_name": "res.partner",
                    "field_paths": "id\nemail",
                    "domain": self.partner_domain,
                    "use_password": True,
                    "password": "correct horse battery",
                    "password_confirm": "correct horse battery",
                }
            )
        )
        # Not stored in the wizard's table, not readable back.
        self.env.cr.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'data_export_wizard'"
        )
        columns = {row[0] for row in self.env.cr.fetchall()}
        self.assertFalse({"password", "password_confirm"} & columns)
        wizard.invalidate_recordset()
        self.assertFalse(wizard.password)
        self.assertTrue(wizard.sudo().password_sealed)
        seal = base64.b64decode(wizard.sudo().password_sealed)
        self.assertNotIn(b"correct horse", seal)
        wizard.action_export()
        self.assertFalse(wizard.sudo().password_sealed)
        job = self.env["data.export.job"].search(
            [("user_id", "=", self.exporter.id)], limit=1
        )
        self.assertEqual(job.state, "queued")
        sealed = base64.b64decode(job.sudo().password_sealed)
        header = streamcrypt.read_header(io.BytesIO(sealed))
        self.assertEqual(header.purpose, "export-password")
        self.assertEqual(header.tenant, job._tenant())
        # Nobody reads the seal over the ORM, administrators included.
        for user in (self.exporter, self.env.ref("base.user_admin")):
            with self.assertRaises(AccessError):
                job.with_user(user).read(["password_sealed"])
        # Bound to its purpose: it does not open as an export file.
        with self.assertRaises(streamcrypt.StreamCryptError):
            streamcrypt.DecryptingReader(
                io.BytesIO(sealed),
                keyring=job._load_keyring(),
                tenant=job._tenant(),
                purpose="export",
            ).read()
        self.env["data.export.job"].sudo()._cron_run_queued_jobs()
        self.assertEqual(job.state, "done")
        self.assertFalse(job.sudo().password_sealed)
        with pyzipper.AESZipFile(io.BytesIO(job._read_file())) as archive:
            archive.setpassword(b"correct horse battery")
            self.assertIn(b"alice@example.com", archive.read(archive.namelist()[0]))

    def test_export_files_are_private_on_disk(self):
        folder = self.env["data.export.job"]._storage_dir()
        os.chmod(folder, 0o755)
        job = self.export(self.exporter, field_paths="id\nname")
        self.assertEqual(os.stat(folder).st_mode & 0o777, 0o700)
        self.assertEqual(os.stat(job._storage_path()).st_mode & 0o777, 0o600)
