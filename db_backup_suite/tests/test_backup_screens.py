"""The backup screens as each role meets them: menus, the groups on the
user form, Backup Now from the list (as the web client calls it), refusals
with a reason, live progress on the bus, the restore dialog's summary,
sandbox addresses, schedule time zones, settings."""

import json
import os

from freezegun import freeze_time
from lxml import etree

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tools import mute_logger

from odoo.addons.audit_export.tests.common import RpcMixin
from odoo.addons.base.models.res_users import name_selection_groups
from odoo.addons.bus.models.bus import channel_with_db, json_dump

from ..models.db_backup_run import BUS_PROGRESS
from ..service import restore_job
from .common import KeyringMixin, manifest_of

OPERATOR = "db_backup_suite.backup_group_operator"
RESTORE = "db_backup_suite.backup_group_restore"


@tagged("post_install", "-at_install")
class TestBackupScreens(RpcMixin, KeyringMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        cls.destination = cls.setup_local_destination()
        cls.env["db.backup.destination"].search(
            [("id", "!=", cls.destination.id)]
        ).active = False
        cls.operator = new_test_user(
            cls.env, login="h13s_operator", groups=f"base.group_user,{OPERATOR}"
        )
        cls.restorer = new_test_user(
            cls.env, login="h13s_restorer", groups=f"base.group_user,{RESTORE}"
        )
        cls.plain = new_test_user(cls.env, login="h13s_plain", groups="base.group_user")
        cls.sysadmin = new_test_user(
            cls.env,
            login="h13s_admin",
            groups="base.group_user,base.group_system",
        )
        cls.Run = cls.env["db.backup.run"]

    # -- helpers ----------------------------------------------------------------
    def call_button(self, login, model, method, args):
        """``/web/dataset/call_button`` as the web client calls a button."""
        self.authenticate(login, login)
        return self.call_kw(
            model, method, args, {"context": {"lang": "en_US"}}, route="call_button"
        )

    def bus_payloads(self, target):
        """Progress payloads sent (so far) on ``target``'s bus channel."""
        self.env.cr.flush()  # the bus writes its rows before the commit
        channel = json_dump(channel_with_db(self.env.cr.dbname, target))
        rows = (
            self.env["bus.bus"].sudo().search([("channel", "=", channel)], order="id")
        )
        messages = [json.loads(row.message) for row in rows]
        return [m["payload"] for m in messages if m["type"] == BUS_PROGRESS]

    def done_run(self, **manifest):
        return self.Run.sudo().create(
            {
                "kind": "manual",
                "state": "done",
                "label": "manual",
                "name": "%s/%s_manual_20260101T000000Z.tar.zst.enc"
                % (self.env.cr.dbname, self.env.cr.dbname),
                "size": 2048,
                "encryption": "encrypted",
                "manifest_json": manifest_of(self.env, **manifest),
            }
        )

    # -- menus and groups -------------------------------------------------------
    def test_each_role_has_its_menu(self):
        Menu = self.env["ir.ui.menu"]
        root = self.env.ref("db_backup_suite.db_backup_root_menu")
        self.assertFalse(root.parent_id, "an app of the home menu")
        self.assertTrue(root.web_icon)
        menus = {
            name: self.env.ref(f"db_backup_suite.db_backup_{name}_menu").id
            for name in ("root", "dashboard", "run", "sandbox", "config", "schedule")
        }
        expected = {
            self.operator: {"root", "dashboard", "run"},
            self.restorer: {"root", "dashboard", "run", "sandbox"},
            self.plain: set(),
            self.sysadmin: {"root", "config", "schedule"},
        }
        for user, names in expected.items():
            visible = Menu.with_user(user)._visible_menu_ids()
            self.assertEqual(
                {name for name, menu_id in menus.items() if menu_id in visible},
                names,
                user.login,
            )
        # the home menu of an operator (no Settings rights) shows the app
        apps = Menu.with_user(self.operator).load_menus(debug=False)["root"]["children"]
        self.assertIn(root.id, apps)
        self.assertNotIn(self.env.ref("base.menu_administration").id, apps)
        # and its first entry opens the page
        action = self.env["db.backup.dashboard"].with_user(self.operator).action_open()
        self.assertEqual(action["res_model"], "db.backup.dashboard")

    def test_groups_on_the_user_form_without_developer_mode(self):
        self.env["res.groups"]._update_user_groups_view()
        admin = self.env.ref("base.user_admin")
        form = self.env.ref("base.view_users_form")
        arch = (
            self.env["res.users"]
            .with_user(admin)
            .get_views([(form.id, "form")])["views"]["form"]["arch"]
        )
        names = {
            node.get("name"): node for node in etree.fromstring(arch).iter("field")
        }
        for category_xmlid, selected, implied in (
            ("db_backup_suite.module_category_database_backups", RESTORE, OPERATOR),
            (
                "audit_export.audit_module_category",
                "audit_export.audit_group_manager",
                "audit_export.audit_group_auditor",
            ),
        ):
            category = self.env.ref(category_xmlid)
            self.assertNotEqual(category, self.env.ref("base.module_category_hidden"))
            groups = self.env["res.groups"].search([("category_id", "=", category.id)])
            field = name_selection_groups(groups.ids)
            # a selection (blank / each role), shown without developer mode:
            # a developer-mode-only node is not in this admin's arch at all
            self.assertIn(field, names, category.name)
            self.assertNotEqual(names[field].get("invisible"), "True")
            user = new_test_user(
                self.env, login=f"h13s_form_{category.id}", groups="base.group_user"
            )
            user.write({field: self.env.ref(selected).id})
            self.assertTrue(user.has_group(selected))
            # the implied chain makes the selection an order of roles
            self.assertTrue(user.has_group(implied))

    # -- Backup Now -------------------------------------------------------------
    def test_backup_now_from_the_list_as_the_client_calls_it(self):
        # The list's header button sends the selected ids (here none): the
        # method took no argument and failed with a TypeError.
        response = self.call_button(
            "h13s_operator", "db.backup.run", "action_backup_now", [[]]
        )
        self.assertNotIn("error", response, response.get("error"))
        action = response["result"]
        self.assertEqual(action["tag"], "display_notification")
        self.assertEqual(action["params"]["type"], "success")
        self.assertEqual(action["params"]["next"]["tag"], "soft_reload")
        run = self.Run.search([("state", "=", "queued")])
        self.assertEqual(len(run), 1)
        self.assertEqual(run.requested_by_id, self.operator)
        # with rows selected: the same backup, not started twice
        response = self.call_button(
            "h13s_operator", "db.backup.run", "action_backup_now", [[run.id]]
        )
        self.assertEqual(response["result"]["params"]["type"], "warning")
        self.assertEqual(self.Run.search_count([("state", "=", "queued")]), 1)

    def test_backup_now_refused_without_a_destination(self):
        self.destination.active = False
        dashboard = self.env["db.backup.dashboard"].with_user(self.operator).create({})
        self.assertFalse(dashboard.has_destination)  # the page hides the button
        # and so does the list (it asks the server)
        self.assertEqual(
            self.Run.with_user(self.operator).backup_now_state(),
            {"keyring": True, "destination": False},
        )
        with self.assertRaises(AccessError):
            self.Run.with_user(self.plain).backup_now_state()
        with mute_logger("odoo.http"):
            response = self.call_button(
                "h13s_operator", "db.backup.run", "action_backup_now", [[]]
            )
        self.assertEqual(response["error"]["data"]["name"], "odoo.exceptions.UserError")
        self.assertIn("No backup destination", response["error"]["data"]["message"])
        self.assertFalse(self.Run.search([]))
        # a schedule whose destinations are all inactive: Run now refuses too
        schedule = self.env["db.backup.schedule"].create(
            {"frequency": "24h", "destination_ids": self.destination.ids}
        )
        with self.assertRaisesRegex(UserError, "has no active destination"):
            schedule.with_user(self.sysadmin).action_run_now()
        self.assertFalse(self.Run.search([]))
        self.destination.active = True
        dashboard.invalidate_recordset()
        self.assertTrue(dashboard.has_destination)

    def test_page_reloads_in_place(self):
        dashboard = self.env["db.backup.dashboard"].with_user(self.operator).create({})
        self.assertEqual(dashboard.display_name, "Database Backups")
        # Refresh returns nothing: the page reloads its record, no new one
        self.assertFalse(dashboard.action_reload())
        # Backup Now: a notification, then a reload of the same page
        action = dashboard.action_backup_now()
        self.assertEqual(action["type"], "ir.actions.client")
        self.assertEqual(action["params"]["next"]["tag"], "soft_reload")
        self.assertEqual(self.env["db.backup.dashboard"].sudo().search_count([]), 1)
        dashboard.invalidate_recordset()
        self.assertEqual(
            (dashboard.live_state, dashboard.live_res_model),
            ("queued", "db.backup.run"),
        )

    def test_run_now_on_a_schedule_says_so(self):
        schedule = self.env["db.backup.schedule"].create(
            {
                "name": "nightly",
                "frequency": "24h",
                "destination_ids": self.destination.ids,
            }
        )
        first = schedule.with_user(self.sysadmin).action_run_now()
        self.assertEqual(first["tag"], "display_notification")
        self.assertEqual(first["params"]["type"], "success")
        self.assertIn("nightly", first["params"]["title"])
        self.assertIn("queued", first["params"]["message"])
        second = schedule.with_user(self.sysadmin).action_run_now()
        self.assertEqual(second["params"]["type"], "warning")

    # -- live progress ----------------------------------------------------------
    def test_backup_progress_reaches_the_operators_on_the_bus(self):
        group = self.env.ref(OPERATOR)
        self.Run.with_user(self.operator).action_backup_now()
        run = self.Run.search([("state", "=", "queued")])
        queued = self.bus_payloads(group)
        self.assertEqual([p["state"] for p in queued], ["queued"])
        self.assertEqual(queued[0]["id"], run.id)
        self.assertEqual(queued[0]["requested_by_id"], self.operator.id)
        self.assertFalse(queued[0]["final"])
        self.Run._run_queued()
        run.invalidate_recordset()
        self.assertEqual(run.state, "done", run.error)
        payloads = [p for p in self.bus_payloads(group) if p["id"] == run.id]
        states = [p["state"] for p in payloads]
        self.assertEqual(states[0], "queued")
        self.assertIn("running", states)
        self.assertEqual(states[-1], "done")
        self.assertTrue(payloads[-1]["final"])
        self.assertEqual(payloads[-1]["size"], run.size_display)
        self.assertEqual(
            states.index("done"), len(states) - 1, "nothing after the end: %s" % states
        )

    def test_restore_progress_reaches_its_opener_only(self):
        run = self.done_run()
        wizard = (
            self.env["db.backup.restore.wizard"]
            .with_user(self.restorer)
            .create({"run_id": run.id, "target": "sandbox"})
        )
        wizard.sudo().write({"state": "started"})
        wizard.sudo()._job_progress(step="restore", done=3 * 1024 * 1024)
        self.assertEqual(wizard.progress, 30.0)
        self.assertIn("3.0 MB", wizard.progress_message)
        self.assertIn("sandbox", wizard.progress_message)
        wizard.sudo()._job_progress(result={"ok": True, "message": "Restored it"})
        self.assertEqual((wizard.state, wizard.result_message), ("done", "Restored it"))
        payloads = self.bus_payloads(self.restorer.partner_id)
        self.assertEqual([p["state"] for p in payloads], ["running", "done"])
        self.assertEqual({p["id"] for p in payloads}, {wizard.id})
        self.assertTrue(payloads[-1]["final"])
        self.assertNotIn("swap", json.dumps(payloads))
        self.assertNotIn(
            "disconnected", wizard.with_user(self.restorer)._started_message()
        )
        # nobody else hears of it
        self.assertFalse(
            [
                p
                for p in self.bus_payloads(self.env.ref(OPERATOR))
                if p["id"] == wizard.id
            ]
        )
        self.assertFalse(self.bus_payloads(self.operator.partner_id))

    def test_failed_restore_job_shows_its_error_in_the_dialog(self):
        run = self.done_run()
        wizard = (
            self.env["db.backup.restore.wizard"]
            .with_user(self.restorer)
            .create({"run_id": run.id, "target": "sandbox"})
        )
        wizard.sudo().write({"state": "started"})
        self.env.flush_all()  # the job's own transaction reads and writes it
        # the job as the detached process runs it, on an archive that is gone
        result = restore_job.run_job(
            {
                "database": self.env.cr.dbname,
                "target": "sandbox",
                "sandbox_name": self.env.cr.dbname + "-sandbox-h13s",
                "wizard_id": wizard.id,
                "expected_uuid": "h13s-uuid",
                "archive_name": run.name,
                "source": {"path": os.path.join(self.tmp_dir, "gone.tar.zst.enc")},
            }
        )
        self.assertFalse(result["ok"])
        wizard.invalidate_recordset()
        self.assertEqual(wizard.state, "failed")
        self.assertIn("gone.tar.zst.enc", wizard.result_message)
        payloads = self.bus_payloads(self.restorer.partner_id)
        self.assertEqual([p["state"] for p in payloads], ["running", "failed"])
        self.assertIn("Checking the archive", payloads[0]["message"])
        self.assertIn("gone.tar.zst.enc", payloads[-1]["error"])
        self.assertTrue(payloads[-1]["final"])
        self.assertEqual(wizard.live_state, "failed")

    def test_download_password_follows_the_suites_policy(self):
        run = self.done_run()
        Wizard = self.env["db.backup.download.wizard"].with_user(self.restorer)
        # three classes and 12 characters were enough; a guessable one is not
        with self.assertRaisesRegex(UserError, "too easy to guess"):
            Wizard.create(
                {
                    "run_id": run.id,
                    "password": "Password123!",
                    "password_confirm": "Password123!",
                }
            )
        # several unrelated words are (as for exports and DSR packages)
        wizard = Wizard.create(
            {
                "run_id": run.id,
                "password": "correct horse battery staple",
                "password_confirm": "correct horse battery staple",
            }
        )
        self.assertTrue(wizard.password_set)
        meter = Wizard.password_strength("Password123!")
        self.assertFalse(meter["ok"])
        self.assertTrue(Wizard.password_strength("correct horse battery staple")["ok"])
        with self.assertRaises(AccessError):
            self.env["db.backup.download.wizard"].with_user(
                self.operator
            ).password_strength("x")

    # -- restore dialog ---------------------------------------------------------
    def test_restore_dialog_summarises_the_archive(self):
        run = self.done_run(
            odoo_version="18.0.1.3",
            row_counts={"res_partner": 1234, "res_users": 3, "x_custom": 7},
            filestore={"files": 2, "bytes": 2048},
        )
        wizard = (
            self.env["db.backup.restore.wizard"]
            .with_user(self.restorer)
            .create({"run_id": run.id})
        )
        self.assertTrue(wizard.compatible, wizard.incompatibility)
        self.assertEqual(
            wizard.version_summary,
            "Odoo 18.0, like this server: it can be restored here",
        )
        summary = wizard.data_summary
        self.assertIn("Contact", summary)
        self.assertIn("1,234", summary)
        self.assertIn("3 tables, 1,244 rows; filestore: 2 files, 2.0 KB", summary)
        self.assertNotIn("x_custom", summary)  # main models only, in the table
        here = self.env["res.partner"].with_context(active_test=False).search_count([])
        self.assertIn(f"{here:,}", summary)
        action = wizard._action_open()
        self.assertEqual(action["name"], "Restore a Backup")

    def test_upload_shows_the_warning_once_an_archive_is_read(self):
        arch = etree.fromstring(
            self.env["db.backup.restore.wizard"]
            .with_user(self.restorer)
            .get_views([(False, "form")])["views"]["form"]["arch"]
        )
        warning = arch.xpath("//div[contains(@class, 'alert-warning')][strong]")[0]
        gates = [node.get("invisible") or "" for node in warning.iterancestors()]
        self.assertTrue(any("not archive_name" in gate for gate in gates), gates)
        wizard = (
            self.env["db.backup.restore.wizard"]
            .with_user(self.restorer)
            .create({"source": "upload"})
        )
        self.assertFalse(wizard.archive_name)  # nothing read: nothing offered
        self.assertEqual(wizard._action_open()["name"], "Restore an Uploaded Archive")

    # -- sandboxes --------------------------------------------------------------
    def test_sandbox_address_setting(self):
        sandbox = (
            self.env["db.backup.sandbox"]
            .sudo()
            .create({"name": "h13s-sandbox-20260101", "state": "ready"})
        )
        self.assertEqual(sandbox.url, "/web?db=h13s-sandbox-20260101")
        self.assertFalse(sandbox.own_host)
        action = sandbox.with_user(self.restorer).action_open()
        self.assertEqual(action["target"], "self")  # the view asked first
        settings = self.env["res.config.settings"].with_user(self.sysadmin)
        for wrong in ("https://example.com/{db}", "ftp://{db}.example.com", "{db}"):
            with self.assertRaises(ValidationError):
                settings.create({"db_backup_sandbox_url_pattern": wrong})
        settings.create(
            {"db_backup_sandbox_url_pattern": "https://{db}.example.com"}
        ).execute()
        sandbox.invalidate_recordset()
        self.assertEqual(sandbox.url, "https://h13s-sandbox-20260101.example.com")
        self.assertTrue(sandbox.own_host)
        action = sandbox.with_user(self.restorer).action_open()
        self.assertEqual(
            (action["url"], action["target"]),
            ("https://h13s-sandbox-20260101.example.com", "new"),
        )
        event = self.env["audit.event"].search(
            [("action", "=", "settings"), ("res_name", "like", "sandbox_url_pattern")]
        )
        self.assertEqual(len(event), 1)

    # -- times --------------------------------------------------------------------
    def test_schedule_asks_for_the_company_time_zone(self):
        self.env.company.partner_id.tz = False
        with freeze_time("2026-01-10 12:00:00"):
            schedule = self.env["db.backup.schedule"].create(
                {"frequency": "24h", "hour": 2, "destination_ids": self.destination.ids}
            )
            self.assertFalse(schedule.tz)  # the form asks for it
            self.assertEqual(str(schedule.next_run), "2026-01-11 02:00:00")  # UTC
            schedule.with_user(self.sysadmin).write({"company_tz": "Europe/Brussels"})
        self.assertEqual(self.env.company.partner_id.tz, "Europe/Brussels")
        self.assertEqual(schedule.tz, "Europe/Brussels")
        # 2 AM in Brussels (UTC+1 in January)
        self.assertEqual(str(schedule.next_run), "2026-01-11 01:00:00")

    def test_errors_panel_lists_runs_not_utc_text(self):
        failed = self.Run.sudo().create(
            {
                "kind": "manual",
                "state": "failed",
                "label": "manual",
                "error": "disk full\nTraceback ...",
            }
        )
        dashboard = self.env["db.backup.dashboard"].with_user(self.operator).create({})
        # records: the web client shows their dates in the user's time zone
        self.assertIn(failed, dashboard.problem_ids)
        self.assertEqual(failed.summary, "disk full")

    def test_labels_and_keyring_banner(self):
        labels = dict(self.Run._fields["encryption"].selection)
        self.assertEqual(
            labels, {"encrypted": "Encrypted", "plaintext": "Plaintext (legacy)"}
        )
        wizard_field = self.env["db.backup.download.wizard"]._fields["run_id"]
        self.assertEqual(wizard_field.string, "Backup")
        from odoo.tools import config

        config["suite_keyring_file"] = os.path.join(self.tmp_dir, "absent")
        try:
            dashboard = (
                self.env["db.backup.dashboard"].with_user(self.operator).create({})
            )
            self.assertFalse(dashboard.keyring_ok)
            # the file that is missing is named once, not the whole how-to again
            self.assertIn("absent", dashboard.keyring_problem)
            config.options.pop("suite_keyring_file")
            dashboard.invalidate_recordset()
            if not dashboard.keyring_ok:  # no keyring from the environment either
                self.assertFalse(dashboard.keyring_problem)
        finally:
            config["suite_keyring_file"] = self.keyring_path
