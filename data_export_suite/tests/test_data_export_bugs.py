"""One test per export bug found by walking the screens as each role."""

import csv
import io
import json
from unittest import SkipTest
from unittest.mock import patch

from freezegun import freeze_time
from lxml import etree

from odoo.exceptions import AccessError, UserError
from odoo.tests import new_test_user, tagged
from odoo.tools import mute_logger

from ..models.data_export_job import BUS_UPDATE
from .common import ExportCase


def csv_rows(job, user):
    return list(csv.reader(io.StringIO(job.with_user(user)._read_file().decode())))


@tagged("post_install", "-at_install")
class TestExportBugs(ExportCase):
    # -- JSON at depth >= 2 as an administrator ----------------------------------
    def test_deep_json_never_searches_a_model_without_search(self):
        """account.code.mapping lives in the cache only: its search() raises
        NotImplementedError. Probing its computed fields must not search."""
        if "account.code.mapping" not in self.env:
            raise SkipTest("Invoicing is not installed")
        admin = self.env.ref("base.user_admin")
        account = self.env["account.account"].create(
            {
                "name": "H Export Probe",
                "code": "999001",
                "account_type": "asset_current",
            }
        )
        job = self.export(
            admin,
            model_name="account.account",
            domain=repr([("id", "=", account.id)]),
            field_paths="id\ncode\ncode_mapping_ids",
            export_format="json",
            json_depth=2,
        )
        self.assertEqual(job.state, "done", job.error_message)
        (item,) = json.loads(job.with_user(admin)._read_file())
        self.assertEqual(item["code"], "999001")
        mappings = item["code_mapping_ids"]
        self.assertTrue(mappings)
        self.assertTrue(all({"id", "display_name"} <= set(m) for m in mappings))
        # Its computed fields cannot be probed: withheld, without raising.
        Profile = self.env["data.export.profile"].with_user(admin)
        self.assertFalse(Profile._probe_compute("account.code.mapping", "code"))
        self.assertNotIn("code", Profile._exportable_fields("account.code.mapping"))

    def test_probing_reads_sample_ids_from_the_table_without_search(self):
        Partner = type(self.env["res.partner"])
        Profile = self.env["data.export.profile"].with_user(self.exporter)

        def no_search(*args, **kwargs):
            raise NotImplementedError("probing must not search")

        with patch.object(Partner, "search", no_search):
            sample = Profile._probe_sample(
                self.env["res.partner"].with_user(self.exporter)
            )
        self.assertTrue(sample)
        self.assertEqual(sample, sample._filtered_access("read"))

    # -- x2many columns whose records have no display name ------------------------
    def test_x2many_of_records_without_display_name(self):
        partner = self.partners[0]
        message = self.env["mail.message"].create(
            {
                "model": "res.partner",
                "res_id": partner.id,
                "message_type": "comment",
                "body": "no name",
            }
        )
        message.sudo().record_name = False
        self.assertFalse(message.with_user(self.exporter).display_name)
        for fmt in ("csv", "xlsx", "json"):
            with self.subTest(fmt=fmt):
                job = self.export(
                    self.exporter,
                    domain=repr([("id", "=", partner.id)]),
                    field_paths="id\nname\nmessage_ids",
                    export_format=fmt,
                )
                self.assertEqual(job.state, "done", job.error_message)
                if fmt == "csv":
                    header, row = csv_rows(job, self.exporter)
                    self.assertEqual(header, ["id", "name", "message_ids"])
                    self.assertIn(f"Message #{message.id}", row[2])
                elif fmt == "json":
                    (item,) = json.loads(job.with_user(self.exporter)._read_file())
                    ids = [m["id"] for m in item["message_ids"]]
                    self.assertIn(message.id, ids)
        # Related paths through the x2many too.
        job = self.export(
            self.exporter,
            domain=repr([("id", "=", partner.id)]),
            field_paths="id\nmessage_ids.author_id",
            export_format="csv",
        )
        self.assertEqual(job.state, "done", job.error_message)

    # -- the ready-made Customers profile for users without accounting rights ----
    def test_customers_profile_drops_columns_the_user_may_not_export(self):
        Profile = self.env["data.export.profile"]
        customers = Profile.search([("ready_made_key", "=", "customers")])
        if "total_invoiced" not in customers.field_paths:
            raise SkipTest("Invoicing is not installed")
        self.assertFalse(self.exporter.has_group("account.group_account_invoice"))
        Job = self.env["data.export.job"].with_user(self.exporter)
        # The profile alone, or with its own column list: columns dropped.
        for extra in ({}, {"field_paths": customers.field_paths}):
            with self.subTest(extra=extra):
                job = Job.create(
                    {"profile_id": customers.id, "domain": self.partner_domain, **extra}
                )
                self.assertEqual(job.omitted_paths, "Total Invoiced")
                self.assertNotIn("total_invoiced", job.field_paths)
                job._launch()
                self.assertEqual(job.state, "done", job.error_message)
                header = csv_rows(job, self.exporter)[0]
                self.assertIn("email", header)
                self.assertNotIn("total_invoiced", header)
        # A list of the user's own naming the field: refused, nothing created.
        jobs = Job.search_count([])
        with self.assertRaises(AccessError):
            Job.create(
                {
                    "profile_id": customers.id,
                    "domain": self.partner_domain,
                    "field_paths": "id\nname\ntotal_invoiced",
                }
            )
        self.assertEqual(Job.search_count([]), jobs)
        # The wizard: filled with what the user may export, told what went.
        Wizard = self.env["data.export.wizard"].with_user(self.exporter)
        wizard = Wizard.create(
            {"profile_id": customers.id, "domain": self.partner_domain}
        )
        self.assertEqual(wizard.model_name, "res.partner")
        self.assertNotIn("total_invoiced", wizard.field_paths)
        self.assertEqual(wizard.omitted_fields, "Total Invoiced")
        action = wizard.action_run()
        self.assertEqual(action["params"]["next"]["tag"], "data_export_suite.download")
        job = Job.search([], limit=1)
        self.assertEqual(job.omitted_paths, "Total Invoiced")

    # -- fields offered then refused (another company's records) ------------------
    def test_every_offered_field_exports(self):
        company_b = self.env["res.company"].create({"name": "H Export B"})
        user_b = new_test_user(
            self.env,
            login="h_export_b",
            company_id=company_b.id,
            company_ids=[(6, 0, company_b.ids)],
            groups="base.group_user,data_export_suite.export_group_user",
        )
        Wizard = (
            self.env["data.export.wizard"].with_user(user_b).with_company(company_b)
        )
        for model in ("res.partner", "res.company", "res.users"):
            with self.subTest(model=model):
                offered = [item["id"] for item in Wizard.get_export_fields(model)]
                self.assertIn("id", offered)
                job = self.export(
                    user_b,
                    model_name=model,
                    domain="[]",
                    field_paths="\n".join(offered),
                    export_format="json",
                )
                self.assertEqual(job.state, "done", job.error_message)
                self.assertTrue(json.loads(job.with_user(user_b)._read_file()))
        if "fiscal_country_codes" in self.env["res.partner"]._fields:
            # computed from the partner's company: another company's partner
            # the user reads (an internal user's) would raise AccessError
            offered = [i["id"] for i in Wizard.get_export_fields("res.partner")]
            self.assertNotIn("fiscal_country_codes", offered)

    # -- size: estimate, background, limit ---------------------------------------
    def test_large_exports_run_in_the_background_and_have_a_limit(self):
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("data_export_suite.sync_max_bytes", "2000")
        users = self.env["res.users"].search([], limit=5)
        domain = repr([("id", "in", users.ids)])
        fields = "id\nname\ngroups_id\ncompany_ids"
        flat = self.export(
            self.exporter,
            model_name="res.users",
            domain=domain,
            field_paths="id",
            export_format="json",
        )
        self.assertEqual(flat.state, "done")
        self.assertFalse(flat.background)
        deep = self.export(
            self.exporter,
            model_name="res.users",
            domain=domain,
            field_paths=fields,
            export_format="json",
            json_depth=2,
        )
        # Few records but a large file: queued, not run in the request.
        self.assertTrue(deep.background)
        self.assertEqual(deep.state, "queued")
        self.assertFalse(deep.sudo().storage_name)
        self.assertGreater(deep.estimated_size, 2000)
        self.assertEqual(deep.records_total, len(users))
        # Above the limit: refused before anything is written.
        params.set_param("data_export_suite.max_file_bytes", "3000")
        refused = self.export(
            self.exporter,
            launch=False,
            model_name="res.users",
            domain=domain,
            field_paths=fields,
            export_format="json",
            json_depth=2,
        )
        with self.assertRaisesRegex(UserError, "more than the 3.0 KB allowed"):
            refused._launch()
        self.assertFalse(refused.sudo().storage_name)
        self.assertFalse(refused.background)
        # The wizard says so before the export.
        wizard = (
            self.env["data.export.wizard"]
            .with_user(self.exporter)
            .create(
                {
                    "model_name": "res.users",
                    "domain": domain,
                    "field_paths": fields,
                    "export_format": "json",
                    "json_depth": 2,
                }
            )
        )
        self.assertEqual(wizard.record_count, len(users))
        self.assertIn("too large", wizard.estimate_text)

    def test_a_file_growing_past_the_limit_stops(self):
        params = self.env["ir.config_parameter"].sudo()
        job = self.export(self.exporter, launch=False, field_paths="id\nname")
        params.set_param("data_export_suite.max_file_bytes", "100")
        with (
            patch.object(type(job), "_estimate_size", return_value=10),
            self.assertRaisesRegex(UserError, "passed the 100 bytes allowed"),
        ):
            job._launch()
        self.assertFalse(job.sudo().storage_name)

    # -- times in the user's time zone and format ---------------------------------
    @freeze_time("2026-01-15 23:30:00")
    def test_job_names_use_the_user_time_zone_and_date_format(self):
        self.exporter.tz = "Pacific/Auckland"  # UTC+13 in January
        job = self.export(self.exporter, launch=False, field_paths="id")
        self.assertEqual(job.name, "Contact (01/16/2026 12:30)")
        job._launch()
        self.assertIn("20260116-1230", job.file_name)

    # -- wording -------------------------------------------------------------------
    def test_one_record_is_singular_everywhere(self):
        Job = self.env["data.export.job"].with_user(self.exporter)
        self.assertEqual(Job._records_text(1), "1 record")
        self.assertEqual(Job._records_text(3), "3 records")
        self.assertEqual(Job._records_text(0), "0 records")
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("data_export_suite.sync_max_bytes", "1")
        job = self.export(
            self.exporter,
            domain=repr([("id", "=", self.partners[0].id)]),
            field_paths="id\nname",
        )
        self.assertTrue(job.background)
        sent = []
        Bus = type(self.env["bus.bus"])
        with patch.object(
            Bus, "_sendone", lambda self, target, kind, msg: sent.append((kind, msg))
        ):
            self.env["data.export.job"].sudo()._cron_run_queued_jobs()
        self.assertEqual(job.state, "done")
        final = [msg for kind, msg in sent if kind == BUS_UPDATE and msg.get("final")]
        self.assertEqual(len(final), 1)
        self.assertIn("(1 record,", final[0]["message"])
        self.assertNotIn("1 records", final[0]["message"])
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
        self.assertIn("1 record of res.partner", event.message)

    # -- progress and the "file is ready" notification through the bus -----------
    def test_background_progress_and_ready_notification_on_the_bus(self):
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("data_export_suite.sync_record_limit", "1")
        params.set_param("data_export_suite.batch_size", "1")
        job = self.export(self.exporter, field_paths="id\nname")
        self.assertEqual(job.state, "queued")
        sent = []
        Bus = type(self.env["bus.bus"])
        with patch.object(
            Bus,
            "_sendone",
            lambda self, target, kind, msg: sent.append((target, kind, msg)),
        ):
            self.env["data.export.job"].sudo()._cron_run_queued_jobs()
        self.assertEqual(job.state, "done")
        updates = [msg for _target, kind, msg in sent if kind == BUS_UPDATE]
        # The owner's channel only.
        self.assertEqual(
            {target for target, _k, _m in sent}, {self.exporter.partner_id}
        )
        self.assertEqual(updates[0]["state"], "running")
        progress = [
            u["records_done"]
            for u in updates
            if u["state"] == "running" and "final" not in u
        ]
        self.assertEqual(progress[-3:], [1, 2, 3])
        final = updates[-1]
        self.assertTrue(final["final"])
        self.assertEqual(final["state"], "done")
        self.assertEqual(final["id"], job.id)
        self.assertEqual(final["title"], "Your file is ready")
        self.assertIn("3 records", final["message"])
        # A failure tells the owner too, as a failure.
        failing = self.export(self.exporter, field_paths="id\nname")
        sent.clear()
        with (
            patch.object(
                Bus,
                "_sendone",
                lambda self, target, kind, msg: sent.append((target, kind, msg)),
            ),
            patch.object(
                type(failing), "_write_table", side_effect=RuntimeError("disk full")
            ),
            # the failure is logged with its traceback, as it should be
            mute_logger("odoo.addons.data_export_suite.models.data_export_job"),
        ):
            self.env["data.export.job"].sudo()._cron_run_queued_jobs()
        self.assertEqual(failing.state, "failed")
        final = sent[-1][2]
        self.assertEqual((final["state"], final["title"]), ("failed", "Export failed"))
        self.assertIn("disk full", final["message"])


@tagged("post_install", "-at_install")
class TestExportRoles(ExportCase):
    """Menus and the user form: each role finds its screens."""

    def visible(self, user, xmlid):
        menu = self.env.ref(xmlid)
        return menu.id in self.env["ir.ui.menu"].with_user(user)._visible_menu_ids()

    def test_menus_per_role(self):
        admin = self.env.ref("base.user_admin")
        for xmlid in (
            "data_export_suite.data_export_root_menu",
            "data_export_suite.data_export_wizard_menu",
            "data_export_suite.data_export_job_menu",
            "data_export_suite.data_export_profile_menu",
        ):
            self.assertTrue(self.visible(self.exporter, xmlid), xmlid)
            self.assertTrue(self.visible(admin, xmlid), xmlid)
            self.assertFalse(self.visible(self.auditor, xmlid), xmlid)
            self.assertFalse(self.visible(self.plain_user, xmlid), xmlid)
        audit_menu = "data_export_suite.data_export_job_audit_menu"
        self.assertTrue(self.visible(self.auditor, audit_menu))
        self.assertFalse(self.visible(self.exporter, audit_menu))
        self.assertFalse(self.visible(self.plain_user, audit_menu))
        # Auditors see every job (no "mine" filter); exporters start on theirs.
        audit_action = self.env.ref("data_export_suite.data_export_job_action_audit")
        self.assertNotIn("filter_mine", audit_action.context)
        mine = self.env.ref("data_export_suite.data_export_job_action")
        self.assertIn("search_default_filter_mine", mine.context)
        job = self.export(self.exporter, field_paths="id")
        self.assertEqual(
            self.env["data.export.job"]
            .with_user(self.auditor)
            .search([("id", "=", job.id)]),
            job.with_user(self.auditor),
        )

    def test_export_group_on_the_user_form_without_developer_mode(self):
        group = self.env.ref("data_export_suite.export_group_user")
        category = group.category_id
        self.assertEqual(category.name, "Data Export")
        self.assertNotEqual(category, self.env.ref("base.module_category_hidden"))
        self.env["res.groups"]._update_user_groups_view()
        view = self.env.ref("base.user_groups_view")
        arch = etree.fromstring(view.arch_db)
        nodes = [
            node
            for node in arch.iter("field")
            if node.get("name", "").startswith("sel_groups_")
            and str(group.id) in node.get("name").split("_")[2:]
        ]
        self.assertTrue(nodes, "no selection field for the Data Export group")
        visible = [
            node
            for node in nodes
            if node.get("invisible") != "True"
            and not any(
                "base.group_no_one" in (a.get("groups") or "")
                for a in [node, *node.iterancestors()]
            )
        ]
        self.assertTrue(visible, "the group shows only in developer mode")
        # A selection (blank / Exporter), like any app's rights.
        user = self.plain_user
        field = f"sel_groups_{'_'.join(visible[0].get('name').split('_')[2:])}"
        user.write({field: group.id})
        self.assertTrue(user.has_group("data_export_suite.export_group_user"))
