from odoo.tests import HttpCase, TransactionCase, new_test_user, tagged


def _visible_xmlids(env):
    """XML ids of the menus ``env.user`` sees (as the web client loads them)."""
    menus = env["ir.ui.menu"].load_menus(debug=False)
    return {menu.get("xmlid") for key, menu in menus.items() if key != "root"}


@tagged("post_install", "-at_install")
class TestAuditMenus(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.auditor = new_test_user(
            cls.env,
            login="h10_menu_auditor",
            groups="base.group_user,audit_export.audit_group_auditor",
        )
        cls.manager = new_test_user(
            cls.env,
            login="h10_menu_manager",
            groups="base.group_user,audit_export.audit_group_manager",
        )
        cls.employee = new_test_user(
            cls.env, login="h10_menu_employee", groups="base.group_user"
        )

    def test_auditor_sees_audit_app_not_settings(self):
        seen = _visible_xmlids(self.env(user=self.auditor))
        self.assertTrue(
            {
                "audit_export.audit_root_menu",
                "audit_export.audit_event_menu",
                "audit_export.audit_export_wizard_menu",
                "audit_export.audit_event_verify_menu",
            }
            <= seen
        )
        # Neither General Settings nor anything below Settings, nor the
        # managers' configuration.
        self.assertNotIn("base.menu_administration", seen)
        self.assertNotIn("audit_export.audit_security_menu", seen)
        self.assertNotIn("audit_export.audit_config_menu", seen)
        self.assertNotIn("audit_export.audit_rule_menu", seen)
        settings = self.env.ref("base.menu_administration")
        visible_ids = self.env["ir.ui.menu"].with_user(self.auditor)._visible_menu_ids()
        self.assertNotIn(settings.id, visible_ids)
        loaded = self.env["ir.ui.menu"].with_user(self.auditor).load_menus(False)
        loaded_ids = [key for key in loaded if key != "root"]
        under_settings = (
            self.env["ir.ui.menu"]
            .browse(loaded_ids)
            .filtered(lambda menu: menu.parent_path.startswith(f"{settings.id}/"))
        )
        self.assertFalse(under_settings)

    def test_manager_sees_configuration(self):
        seen = _visible_xmlids(self.env(user=self.manager))
        self.assertIn("audit_export.audit_rule_menu", seen)
        self.assertIn("audit_export.audit_checkpoint_menu", seen)
        self.assertNotIn("base.menu_administration", seen)

    def test_employee_sees_no_audit_menu(self):
        seen = _visible_xmlids(self.env(user=self.employee))
        self.assertFalse({xmlid for xmlid in seen if xmlid.startswith("audit_export.")})

    def test_administrator_keeps_settings_entry(self):
        admin = self.env.ref("base.user_admin")
        seen = _visible_xmlids(self.env(user=admin))
        self.assertIn("base.menu_administration", seen)
        self.assertIn("audit_export.audit_security_event_menu", seen)
        self.assertIn("audit_export.audit_root_menu", seen)


@tagged("post_install", "-at_install")
class TestAuditTour(HttpCase):
    def test_auditor_tour(self):
        new_test_user(
            self.env,
            login="h10_tour_auditor",
            password="h10_tour_auditor",
            groups="base.group_user,audit_export.audit_group_auditor",
        )
        Event = self.env["audit.event"]
        Event.log_event("backup", res_model="db.backup.run", res_name="nightly")
        Event.log_event(
            "download",
            res_model="db.backup.run",
            res_name="tour-denied",
            result="failure",
            details={"file": "tour.zip"},
        )
        self.start_tour("/odoo", "audit_export_auditor_tour", login="h10_tour_auditor")
