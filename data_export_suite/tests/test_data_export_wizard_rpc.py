"""The export wizard over real HTTP JSON-RPC, and the exporter's tour."""

import csv
import io
import json
import os
from unittest.mock import patch

from odoo.tests import HttpCase, new_test_user, tagged

from odoo.addons.audit_export.tests.common import RpcMixin

from suite_core.keyring import generate_key_line

EXPORT_GROUP = "data_export_suite.export_group_user"


@tagged("post_install", "-at_install")
class TestExportWizardRpc(RpcMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        environ = {k: v for k, v in os.environ.items() if "SUITE_KEYRING" not in k}
        environ["SUITE_KEYRING"] = generate_key_line("wizardrpc")
        cls.startClassPatcher(patch.dict(os.environ, environ, clear=True))

        def user(login, groups):
            return new_test_user(
                cls.env,
                login=login,
                password=f"{login}-Pw-2025",
                groups=groups,
                tz="Europe/Brussels",
            )

        cls.exporter = user("wiz_exporter", f"base.group_user,{EXPORT_GROUP}")
        cls.plain = user("wiz_plain", "base.group_user")
        cls.portal = user("wiz_portal", "base.group_portal")
        belgium = cls.env.ref("base.be")
        cls.partners = cls.env["res.partner"].create(
            [
                {
                    "name": "Wiz Alice",
                    "email": "alice@wiz.example",
                    "country_id": belgium.id,
                },
                {"name": "Wiz Bob", "email": "bob@wiz.example"},
            ]
        )
        cls.domain = repr([("id", "in", cls.partners.ids)])

    def rpc_password(self, login):
        return f"{login}-Pw-2025"

    def call(self, user, method, *args, model="data.export.wizard", **kwargs):
        """``model.method`` as ``user``; its result."""
        return self.assertRpcOk(self.rpc_as(user.login, model, method, *args, **kwargs))

    def refused(self, error, user, method, *args, **kwargs):
        """``model.method`` as ``user`` fails with ``error``; its message."""
        model = kwargs.pop("model", "data.export.wizard")
        reply = self.rpc_as(user.login, model, method, *args, **kwargs)
        return self.assertRpcError(reply, error)

    def test_business_models_by_their_name(self):
        models = {
            c["value"]: c["label"]
            for c in self.call(self.exporter, "get_export_models")
        }
        self.assertEqual(models["res.partner"], "Contact")
        self.assertIn("res.country", models)
        for technical in (
            "ir.model",
            "ir.ui.view",
            "ir.cron",
            "ir.config_parameter",
            "res.users.apikeys",
            "bus.bus",
            "base.language.install",
            "data.export.wizard",
            "res.config.settings",
        ):
            self.assertNotIn(technical, models)
        self.assertFalse([m for m in models if m.startswith("ir.")])
        labels = list(models.values())
        self.assertEqual(labels, sorted(labels, key=str.lower))
        for user in (self.plain, self.portal):
            self.refused("AccessError", user, "get_export_models")

    def test_field_tree_like_odoo_export_dialog(self):
        items = self.call(self.exporter, "get_export_fields", "res.partner")
        by_path = {item["id"]: item for item in items}
        self.assertEqual(items[0]["id"], "id")
        self.assertEqual(by_path["name"]["label"], "Name")
        self.assertTrue(by_path["country_id"]["children"])
        self.assertFalse(by_path["name"]["children"])
        for secret in ("signup_token", "signup_url", "password"):
            self.assertNotIn(secret, by_path)
        # Related fields unfold with full labels...
        children = self.call(
            self.exporter, "get_export_fields", "res.partner", "country_id", "Country"
        )
        code = next(i for i in children if i["id"] == "country_id.code")
        self.assertEqual(code["string"], "Country / Country Code")
        # ...three hops deep at most.
        third = self.call(
            self.exporter,
            "get_export_fields",
            "res.partner",
            "user_ids.company_id",
            "x",
        )
        self.assertFalse(any(item["children"] for item in third))
        # A prefix through a withheld field or a made-up one is refused.
        self.refused(
            "AccessError",
            self.exporter,
            "get_export_fields",
            "res.users",
            "api_key_ids",
        )
        self.refused(
            "UserError",
            self.exporter,
            "get_export_fields",
            "res.partner",
            "no_such_field",
        )
        self.refused(
            "AccessError", self.exporter, "get_export_fields", "res.users.apikeys"
        )
        self.refused("AccessError", self.plain, "get_export_fields", "res.partner")
        labels = self.call(
            self.exporter, "get_column_labels", "res.partner", ["id", "country_id.code"]
        )
        self.assertEqual(
            labels, {"id": "ID", "country_id.code": "Country / Country Code"}
        )

    def test_export_closes_with_a_notification_and_labels_by_default(self):
        wizard_id = self.call(
            self.exporter,
            "create",
            {
                "model_name": "res.partner",
                "domain": self.domain,
                "field_paths": "id\nname\ncountry_id.code",
            },
        )
        action = self.call(self.exporter, "action_run", [wizard_id])
        self.assertEqual(action["tag"], "display_notification")
        self.assertEqual(action["params"]["title"], "Your file is ready")
        self.assertIn("2 records", action["params"]["message"])
        download = action["params"]["next"]
        self.assertEqual(download["tag"], "data_export_suite.download")
        response = self.url_open(download["params"]["url"])
        self.assertEqual(response.status_code, 200)
        rows = list(csv.reader(io.StringIO(response.content.decode())))
        self.assertEqual(rows[0], ["ID", "Name", "Country / Country Code"])
        self.assertIn([str(self.partners[0].id), "Wiz Alice", "BE"], rows)
        # Technical names on request.
        wizard_id = self.call(
            self.exporter,
            "create",
            {
                "model_name": "res.partner",
                "domain": self.domain,
                "field_paths": "id\nname",
                "header_style": "names",
            },
        )
        action = self.call(self.exporter, "action_run", [wizard_id])
        response = self.url_open(action["params"]["next"]["params"]["url"])
        self.assertTrue(response.content.decode().startswith("id,name"))
        # A large one is queued and says so.
        self.env["ir.config_parameter"].sudo().set_param(
            "data_export_suite.sync_record_limit", "1"
        )
        wizard_id = self.call(
            self.exporter,
            "create",
            {
                "model_name": "res.partner",
                "domain": self.domain,
                "field_paths": "id",
            },
        )
        action = self.call(self.exporter, "action_run", [wizard_id])
        self.assertEqual(action["params"]["title"], "Export queued")
        self.assertNotIn("next", action["params"])
        self.assertIn("notified", action["params"]["message"])
        job = (
            self.env["data.export.job"]
            .sudo()
            .search([("user_id", "=", self.exporter.id)], limit=1)
        )
        self.assertEqual(job.state, "queued")

    def test_unusable_csv_delimiter_refused_when_requested(self):
        """A delimiter the CSV writer cannot use is refused with the suite's
        message when the export is requested, small or large: never the
        writer's raw error (an Odoo server error and its traceback) nor a
        job queued only to fail in the background."""
        Job = self.env["data.export.job"].sudo()
        Profile = self.env["data.export.profile"].sudo()
        before = (Job.search_count([]), Profile.search_count([]))
        for limit in ("1000", "1"):  # run at once / queued for the cron
            self.env["ir.config_parameter"].sudo().set_param(
                "data_export_suite.sync_record_limit", limit
            )
            for delimiter in ('"', "\n", "a"):
                for save_profile in (False, True):
                    wizard_id = self.call(
                        self.exporter,
                        "create",
                        {
                            "model_name": "res.partner",
                            "domain": self.domain,
                            "field_paths": "id\nname",
                            "csv_delimiter": delimiter,
                            "save_profile": save_profile,
                            "profile_name": "Bad delimiter",
                        },
                    )
                    message = self.refused(
                        "ValidationError", self.exporter, "action_run", [wizard_id]
                    )
                    self.assertEqual(
                        message,
                        "The CSV delimiter must be one punctuation character.",
                    )
                # straight to the job model: the same refusal
                message = self.refused(
                    "ValidationError",
                    self.exporter,
                    "create",
                    {
                        "model_name": "res.partner",
                        "domain": self.domain,
                        "field_paths": "id",
                        "csv_delimiter": delimiter,
                    },
                    model="data.export.job",
                )
                self.assertEqual(
                    message, "The CSV delimiter must be one punctuation character."
                )
        self.assertEqual((Job.search_count([]), Profile.search_count([])), before)
        # another format does not use it: not checked there
        job_id = self.call(
            self.exporter,
            "create",
            {
                "model_name": "res.partner",
                "domain": self.domain,
                "field_paths": "id",
                "export_format": "json",
                "csv_delimiter": '"',
            },
            model="data.export.job",
        )
        self.assertTrue(Job.browse(job_id).exists())

    def test_password_policy_and_meter(self):
        weak = self.call(self.exporter, "password_strength", "abcdefghijkl")
        self.assertFalse(weak["ok"])
        self.assertEqual(weak["code"], "weak")
        self.assertIn("too easy to guess", weak["message"])
        self.assertNotIn("abcdefghijkl", json.dumps(weak))
        strong = self.call(
            self.exporter, "password_strength", "correct horse battery staple"
        )
        self.assertTrue(strong["ok"])
        self.assertEqual((strong["score"], strong["label"]), (4, "Strong"))
        short = self.call(self.exporter, "password_strength", "kX9#mP2$")
        self.assertEqual(short["code"], "too_short")
        # The user's own login is no password.
        mine = self.call(self.exporter, "password_strength", "wiz_exporter2025")
        self.assertFalse(mine["ok"])
        for user in (self.plain, self.portal):
            self.refused("AccessError", user, "password_strength", "x")
        # The wizard refuses what the meter refuses, and stores nothing.
        wizards = self.env["data.export.wizard"].sudo().search_count([])
        message = self.refused(
            "UserError",
            self.exporter,
            "create",
            {
                "model_name": "res.partner",
                "field_paths": "id",
                "domain": "[]",
                "use_password": True,
                "password": "abcdefghijkl",
                "password_confirm": "abcdefghijkl",
            },
        )
        self.assertIn("too easy to guess", message)
        self.assertEqual(
            self.env["data.export.wizard"].sudo().search_count([]), wizards
        )
        wizard_id = self.call(
            self.exporter,
            "create",
            {
                "model_name": "res.partner",
                "field_paths": "id",
                "domain": self.domain,
                "use_password": True,
                "password": "correct horse battery staple",
                "password_confirm": "correct horse battery staple",
            },
        )
        action = self.call(self.exporter, "action_run", [wizard_id])
        self.assertEqual(action["params"]["next"]["tag"], "data_export_suite.download")

    def test_exporter_tour(self):
        # start_tour logs in with the login as password
        tourist = new_test_user(
            self.env,
            login="wiz_tourist",
            tz="Europe/Brussels",
            groups=f"base.group_user,{EXPORT_GROUP}",
        )
        self.start_tour("/odoo", "data_export_suite_exporter_tour", login=tourist.login)
        job = (
            self.env["data.export.job"]
            .sudo()
            .search([("user_id", "=", tourist.id)], limit=1)
        )
        self.assertEqual(job.state, "done")
        self.assertEqual(job.field_paths.split("\n"), ["id", "name", "country_id.code"])
        self.assertEqual(job.header_style, "labels")
        self.assertEqual(job.model_name, "res.partner")

    def test_progress_tour(self):
        tourist = new_test_user(
            self.env, login="wiz_watcher", groups=f"base.group_user,{EXPORT_GROUP}"
        )
        self.env["ir.config_parameter"].sudo().set_param(
            "data_export_suite.sync_record_limit", "1"
        )
        partners = self.partners | self.env["res.partner"].create({"name": "Wiz C"})
        job = (
            self.env["data.export.job"]
            .with_user(tourist)
            .create(
                {
                    "model_name": "res.partner",
                    "field_paths": "id",
                    "domain": repr([("id", "in", partners.ids)]),
                }
            )
        )
        job._launch()
        self.assertEqual((job.state, job.records_total), ("queued", 3))
        self.start_tour("/odoo", "data_export_suite_progress_tour", login=tourist.login)

    def test_another_users_private_profile_cannot_fill_a_request(self):
        owner = new_test_user(
            self.env, login="wiz_owner", groups=f"base.group_user,{EXPORT_GROUP}"
        )
        private = (
            self.env["data.export.profile"]
            .with_user(owner)
            .create(
                {
                    "name": "Owner's secret selection",
                    "model_id": self.env["ir.model"]._get_id("res.partner"),
                    "field_paths": "id\nname\nemail",
                    "domain": repr([("id", "in", self.partners.ids)]),
                }
            )
        )
        before = (
            self.env["data.export.wizard"].sudo().search_count([]),
            self.env["data.export.job"].sudo().search_count([]),
        )
        self.refused("AccessError", self.exporter, "create", {"profile_id": private.id})
        self.refused(
            "AccessError",
            self.exporter,
            "create",
            {"profile_id": private.id},
            model="data.export.job",
        )
        self.refused(
            "AccessError",
            self.exporter,
            "action_open_export_wizard",
            [private.id],
            model="data.export.profile",
        )
        self.assertEqual(
            (
                self.env["data.export.wizard"].sudo().search_count([]),
                self.env["data.export.job"].sudo().search_count([]),
            ),
            before,
        )

    def test_auditor_tour(self):
        auditor = new_test_user(
            self.env,
            login="wiz_auditor",
            groups="base.group_user,audit_export.audit_group_auditor",
        )
        job = (
            self.env["data.export.job"]
            .with_user(self.exporter)
            .create(
                {
                    "name": "Audited export",
                    "model_name": "res.partner",
                    "field_paths": "id\nname\ncountry_id.code",
                    "domain": self.domain,
                }
            )
        )
        job._launch()
        self.assertEqual(job.state, "done")
        self.start_tour("/odoo", "data_export_suite_auditor_tour", login=auditor.login)
