import datetime as dt
import json
import os
from unittest.mock import patch

from freezegun import freeze_time

from odoo.tests import tagged
from odoo.tools import SQL

from .common import ExportCase


@tagged("post_install", "-at_install")
class TestExportJobs(ExportCase):
    def test_background_job_with_progress_and_notification(self):
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("data_export_suite.sync_record_limit", "2")
        params.set_param("data_export_suite.batch_size", "2")
        cron = self.env.ref("data_export_suite.ir_cron_run_export_jobs")
        triggers_before = (
            self.env["ir.cron.trigger"].sudo().search_count([("cron_id", "=", cron.id)])
        )
        job = self.export(self.exporter, field_paths="id\nname", export_format="json")
        # Three records > limit of two: queued for the cron, not run here.
        self.assertEqual(job.state, "queued")
        self.assertTrue(job.background)
        self.assertEqual(job.records_total, 3)
        self.assertEqual(
            self.env["ir.cron.trigger"]
            .sudo()
            .search_count([("cron_id", "=", cron.id)]),
            triggers_before + 1,
        )
        # Run the cron method the way the cron worker does (progress record
        # injected in the context).
        cron_with_progress, progress = cron.sudo()._add_progress()
        self.env["data.export.job"].with_context(
            ir_cron_progress_id=progress.id
        ).sudo()._cron_run_queued_jobs()
        job.invalidate_recordset()
        self.assertEqual(job.state, "done")
        self.assertEqual(job.records_done, 3)
        self.assertEqual(job.progress, 100.0)
        self.assertEqual(progress.remaining, 0)
        self.assertEqual(progress.done, 3)
        self.assertEqual(
            sorted(
                i["id"] for i in json.loads(job.with_user(self.exporter)._read_file())
            ),
            sorted(self.partners.ids),
        )
        # The owner is notified in their inbox.
        notified = job.message_ids.filtered(
            lambda m: self.exporter.partner_id in m.partner_ids
        )
        self.assertTrue(notified)
        self.assertIn("is ready", notified[0].body)
        # The export ran as the owner: it is the owner's audit event.
        event = (
            self.env["audit.event"]
            .sudo()
            .search(
                [
                    ("res_model", "=", "data.export.job"),
                    ("res_id", "=", job.id),
                    ("action", "=", "export"),
                ]
            )
        )
        self.assertEqual(event.result, "success")
        self.assertEqual(
            event.details.get("records")
            if isinstance(event.details, dict)
            else json.loads(event.details)["records"],
            3,
        )

    def test_background_job_runs_as_the_owner(self):
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("data_export_suite.sync_record_limit", "1")
        other_company = self.env["res.company"].create({"name": "H6 Cron Co"})
        hidden = self.env["res.partner"].create(
            {"name": "Hidden", "company_id": other_company.id}
        )
        job = self.export(
            self.exporter,
            field_paths="id",
            export_format="json",
            domain=repr([("id", "in", [*self.partners.ids, hidden.id])]),
        )
        self.assertEqual(job.state, "queued")
        # The cron runs as superuser, the export still as the owner.
        self.env["data.export.job"].sudo()._cron_run_queued_jobs()
        ids = {i["id"] for i in json.loads(job.with_user(self.exporter)._read_file())}
        self.assertEqual(ids, set(self.partners.ids))

    def test_failed_background_job_is_recorded(self):
        self.env["ir.config_parameter"].sudo().set_param(
            "data_export_suite.sync_record_limit", "1"
        )
        job = self.export(self.exporter, field_paths="id\nname")
        self.assertEqual(job.state, "queued")
        # The owner lost the export right before the cron ran.
        self.exporter.groups_id = [
            (3, self.env.ref("data_export_suite.export_group_user").id)
        ]
        with self.assertLogs(
            "odoo.addons.data_export_suite.models.data_export_job", level="ERROR"
        ):
            self.env["data.export.job"].sudo()._cron_run_queued_jobs()
        self.assertEqual(job.state, "failed")
        self.assertTrue(job.error_message)
        self.assertFalse(job.sudo().storage_name)

    def test_files_are_purged_after_30_days(self):
        start = dt.datetime(2025, 1, 10, 12, 0, 0)
        with freeze_time(start):
            job = self.export(self.exporter, field_paths="id\nname")
            self.assertEqual(job.expires_at, start + dt.timedelta(days=30))
            path = job._storage_path()
            self.assertTrue(os.path.exists(path))
        Job = self.env["data.export.job"]
        with freeze_time(start + dt.timedelta(days=29, hours=23)):
            Job._cron_purge_expired()
            self.assertEqual(job.state, "done")
            self.assertTrue(os.path.exists(path))
            self.assertIn(b"Alice", job._read_file())
        with freeze_time(start + dt.timedelta(days=30, minutes=1)):
            Job._cron_purge_expired()
            self.assertEqual(job.state, "expired")
            self.assertFalse(os.path.exists(path))
            with self.assertRaisesRegex(Exception, "no file"):
                job._read_file()

    def test_ready_made_profiles_follow_installed_apps(self):
        Profile = self.env["data.export.profile"].with_user(self.exporter)
        keys = set(Profile.search([]).mapped("ready_made_key"))
        self.assertIn("customers", keys)
        self.assertIn("users", keys)
        for key, model in (
            ("invoices", "account.move"),
            ("sales", "sale.order"),
            ("repair_orders", "repair.order"),
        ):
            self.assertEqual(key in keys, model in self.env)
        customers = Profile.search([("ready_made_key", "=", "customers")])
        paths = customers.field_paths.split("\n")
        self.assertEqual(paths[:5], ["id", "name", "phone", "mobile", "email"])
        self.assertIn("export_last_activity_date", paths)
        self.assertEqual("total_invoiced" in paths, "account.move" in self.env)
        # Idempotent.
        self.assertFalse(self.env["data.export.profile"]._setup_ready_made_profiles())
        # "Export (suite)" in the Action menu of partner lists.
        action = self.env.ref("data_export_suite.list_action_export_res_partner")
        self.assertEqual(action.binding_model_id.model, "res.partner")
        self.assertEqual(action.binding_view_types, "list")
        result = (
            action.with_user(self.exporter)
            .with_context(
                active_model="res.partner",
                active_ids=self.partners[:2].ids,
                active_id=self.partners[0].id,
            )
            .run()
        )
        self.assertEqual(result["res_model"], "data.export.wizard")
        self.assertEqual(
            result["context"]["default_domain"],
            repr([("id", "in", self.partners[:2].ids)]),
        )

    def test_ready_made_profiles_refresh_when_modules_are_installed(self):
        Profile = self.env["data.export.profile"]
        customers = Profile.search([("ready_made_key", "=", "customers")])
        generated = customers.ready_made_paths
        self.assertEqual(customers.field_paths, generated)
        # This registry load installed modules (as after `-i account` or an
        # install from Apps): the hook Odoo calls once every model is loaded
        # brings back missing profiles and follows the fields now present.
        self.assertTrue(self.registry.updated_modules)
        Profile.search([("ready_made_key", "=", "users")]).unlink()
        before_app = "id\nname\nemail"  # as generated before an app was there
        customers.write({"field_paths": before_app, "ready_made_paths": before_app})
        Profile._register_hook()
        self.assertEqual(customers.field_paths, generated)
        self.assertEqual(customers.ready_made_paths, generated)
        users = Profile.search([("ready_made_key", "=", "users")])
        self.assertEqual(len(users), 1)
        self.assertIn("login", users.field_paths.split("\n"))
        # A profile the administrator edited stays as edited.
        customers.field_paths = "id\nemail"
        Profile._register_hook()
        self.assertEqual(customers.field_paths, "id\nemail")
        # A plain server start (nothing installed or updated) writes nothing.
        users.unlink()
        with patch.object(self.registry, "updated_modules", []):
            Profile._register_hook()
        self.assertFalse(Profile.search([("ready_made_key", "=", "users")]))

    def test_list_action_recreated_after_its_app_was_reinstalled(self):
        action = self.env.ref("data_export_suite.list_action_export_res_partner")
        # Uninstalling an app deletes its list actions through the database
        # cascade of their model, leaving this addon's xml id behind.
        self.env.cr.execute(SQL("DELETE FROM ir_act_server WHERE id = %s", action.id))
        self.env.invalidate_all()
        self.env["data.export.profile"]._setup_ready_made_profiles()
        again = self.env.ref("data_export_suite.list_action_export_res_partner")
        self.assertNotEqual(again.id, action.id)
        self.assertEqual(again.binding_model_id.model, "res.partner")
        self.assertEqual(again.binding_view_types, "list")

    def test_wizard_with_profile_and_saved_profile(self):
        Profile = self.env["data.export.profile"].with_user(self.exporter)
        customers = Profile.search([("ready_made_key", "=", "customers")])
        Wizard = self.env["data.export.wizard"].with_user(self.exporter)
        wizard = Wizard.new({"profile_id": customers.id})
        wizard._onchange_profile_id()
        self.assertEqual(wizard.model_name, "res.partner")
        self.assertIn("email: Email", wizard.available_fields)
        self.assertNotIn("password", wizard.available_fields)
        wizard = Wizard.create(
            {
                "profile_id": customers.id,
                "model_name": wizard.model_name,
                "field_paths": wizard.field_paths,
                "domain": self.partner_domain,
                "export_format": "json",
                "save_profile": True,
                "profile_name": "H6 my customers",
            }
        )
        wizard.action_export()
        job = self.env["data.export.job"].search(
            [("user_id", "=", self.exporter.id)], limit=1
        )
        self.assertEqual(job.state, "done")
        items = json.loads(job.with_user(self.exporter)._read_file())
        self.assertEqual(len(items), 3)
        self.assertIn("export_last_activity_date", items[0])
        saved = Profile.search([("name", "=", "H6 my customers")])
        self.assertEqual(saved.user_id, self.exporter)
        # Another exporter does not see a private profile.
        self.assertFalse(
            saved.with_user(self.other_exporter).search([("id", "=", saved.id)])
        )
