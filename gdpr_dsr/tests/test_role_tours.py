import threading
from unittest.mock import patch

from lxml import etree

from odoo.tests import HttpCase, TransactionCase, new_test_user, tagged

from odoo.addons.audit_export.tests.live_bus import JobThread, LiveBusMixin
from odoo.addons.base.models.res_users import name_selection_groups

from .common import DsrCase, make_verified_request


@tagged("post_install", "-at_install")
class TestRoleTours(HttpCase):
    """Each compliance role reaches its screens from the home menu by its
    own app's menus (tours in static/tests/tours/gdpr_dsr_role_tours.js)."""

    def test_auditor_reads_log_exports_and_register(self):
        officer = new_test_user(
            self.env,
            login="tour_officer_a",
            groups="base.group_user,gdpr_dsr.dsr_group_officer",
        )
        request = (
            self.env["dsr.request"]
            .with_user(officer)
            .create({"subject_email": "auditor.tour@example.com"})
        )
        exporter = new_test_user(
            self.env,
            login="tour_exporter",
            groups="base.group_user,data_export_suite.export_group_user",
        )
        self.env["data.export.job"].with_user(exporter).create(
            {
                "name": "Audited export",
                "model_name": "res.partner",
                "field_paths": "id\nname",
                "domain": "[('id', '=', %d)]" % exporter.partner_id.id,
            }
        )
        auditor = new_test_user(
            self.env,
            login="tour_auditor",
            groups="base.group_user,audit_export.audit_group_auditor",
        )
        before = request.read(["subject_email", "state", "write_date"])
        self.start_tour("/odoo", "gdpr_dsr_auditor_tour", login=auditor.login)
        request.invalidate_recordset()
        self.assertEqual(request.read(["subject_email", "state", "write_date"]), before)

    def test_officer_opens_compliance_and_a_request(self):
        officer = new_test_user(
            self.env,
            login="tour_officer",
            groups="base.group_user,gdpr_dsr.dsr_group_officer",
        )
        self.env["dsr.request"].with_user(officer).create(
            {"subject_email": "officer.tour@example.com"}
        )
        self.start_tour("/odoo", "gdpr_dsr_officer_tour", login=officer.login)


@tagged("post_install", "-at_install")
class TestOfficerPackageTour(LiveBusMixin, DsrCase, HttpCase):
    """The officer's main job in Chromium, followed live through the bus.

    The bus in tests: websockets are off by default and a test cursor never
    runs post-commit hooks, so the NOTIFY that wakes a websocket never
    happens: the websocket is allowed and woken when a transaction that sent
    bus messages commits. The package job, which the cron runs in
    production, runs in a thread of the test process once the dialog showed
    it queued (its cursors are the test's, taken in turn with the browser's).
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.enable_live_bus()

    def test_officer_generates_a_package_followed_to_ready(self):
        request = make_verified_request(
            self.officer_env(), "access", "package.tour@example.com"
        )
        Wizard = type(self.env["dsr.package.wizard"])
        compute = Wizard._compute_job_view
        shown = threading.Event()
        threads = []

        def compute_job_view(wizards):
            compute(wizards)
            if any(w.package_job_state == "queued" for w in wizards):
                shown.set()  # the dialog shows the queued job

        def trigger(cron, at=None):
            if cron == self.env.ref("gdpr_dsr.dsr_package_job_cron"):
                thread = JobThread(
                    self.registry,
                    lambda env: env["dsr.package.job"]._cron_run_queued_jobs(),
                    wait_for=shown,
                )
                threads.append(thread)
                thread.start()

        with (
            patch.object(Wizard, "_compute_job_view", compute_job_view),
            patch.object(type(self.env["ir.cron"]), "_trigger", trigger),
        ):
            self.start_tour(
                "/odoo",
                "gdpr_dsr_officer_package_tour",
                login="dsr_officer",
                timeout=180,
            )
        self.assertEqual(len(threads), 1, "Generate wakes the package cron once")
        threads[0].join(60)
        self.assertIsNone(threads[0].error)
        self.env.invalidate_all()
        job = self.env["dsr.package.job"].search([("request_id", "=", request.id)])
        self.assertEqual(job.state, "done")
        self.assertEqual(job.user_id, self.officer)
        self.assertTrue(request.package_protected)
        self.assertEqual(request.state, "done")


@tagged("post_install", "-at_install")
class TestRoleMenus(TransactionCase):
    """Menus per role and the Privacy Officer on the user form."""

    def test_each_role_has_its_app(self):
        Menu = self.env["ir.ui.menu"]
        compliance = self.env.ref("gdpr_dsr.dsr_compliance_menu")
        audit = self.env.ref("audit_export.audit_root_menu")
        register = self.env.ref("gdpr_dsr.dsr_request_menu")
        register_audit = self.env.ref("gdpr_dsr.dsr_request_audit_menu")
        exports_audit = self.env.ref("data_export_suite.data_export_job_audit_menu")
        self.assertFalse(compliance.parent_id, "an app of the home menu")
        self.assertEqual(register_audit.parent_id, audit)
        officer = new_test_user(
            self.env,
            login="h13m_officer",
            groups="base.group_user,gdpr_dsr.dsr_group_officer",
        )
        auditor = new_test_user(
            self.env,
            login="h13m_auditor",
            groups="base.group_user,audit_export.audit_group_auditor",
        )
        plain = new_test_user(self.env, login="h13m_plain", groups="base.group_user")
        menus = (compliance, register, audit, register_audit, exports_audit)
        expected = {
            officer: {compliance, register},
            auditor: {audit, register_audit, exports_audit},
            plain: set(),
        }
        for user, seen in expected.items():
            # what the web client shows: menus reachable from the home menu
            loaded = Menu.with_user(user).load_menus(debug=False)
            reachable, todo = set(), list(loaded["root"]["children"])
            while todo:
                menu_id = todo.pop()
                reachable.add(menu_id)
                todo.extend(loaded[menu_id]["children"])
            self.assertEqual(
                {menu for menu in menus if menu.id in reachable}, seen, user.login
            )
        # the auditor's register is read-only: the views offer no create or
        # edit, and the server refuses them
        arch = (
            self.env["dsr.request"]
            .with_user(auditor)
            .get_views([(False, "list"), (False, "form")])["views"]
        )
        for view_type in ("list", "form"):
            root = etree.fromstring(arch[view_type]["arch"])
            self.assertEqual(root.get("create"), "False", view_type)
            self.assertEqual(root.get("edit"), "False", view_type)

    def test_privacy_officer_on_the_user_form_without_developer_mode(self):
        group = self.env.ref("gdpr_dsr.dsr_group_officer")
        category = group.category_id
        self.assertEqual(category, self.env.ref("gdpr_dsr.module_category_compliance"))
        self.assertEqual(group.name, "Privacy Officer")
        self.env["res.groups"]._update_user_groups_view()
        admin = self.env.ref("base.user_admin")
        form = self.env.ref("base.view_users_form")
        arch = (
            self.env["res.users"]
            .with_user(admin)
            .get_views([(form.id, "form")])["views"]["form"]["arch"]
        )
        groups = self.env["res.groups"].search([("category_id", "=", category.id)])
        field = name_selection_groups(groups.ids)
        nodes = [
            n for n in etree.fromstring(arch).iter("field") if n.get("name") == field
        ]
        self.assertTrue(nodes, "no Compliance selection on the user form")
        self.assertNotEqual(nodes[0].get("invisible"), "True")
        user = new_test_user(self.env, login="h13m_form", groups="base.group_user")
        user.write({field: group.id})
        self.assertTrue(user.has_group("gdpr_dsr.dsr_group_officer"))
