from odoo.exceptions import AccessError, ValidationError
from odoo.tests import TransactionCase, new_test_user, tagged

PARAM = "audit_export.retention_days"


@tagged("post_install", "-at_install")
class TestAuditSettings(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.admin = cls.env.ref("base.user_admin")
        cls.auditor = new_test_user(
            cls.env,
            login="h10_settings_auditor",
            groups="base.group_user,audit_export.audit_group_manager",
        )

    def _settings_events(self):
        return self.env["audit.event"].search(
            [("action", "=", "settings"), ("res_name", "=", PARAM)]
        )

    def test_retention_setting_writes_parameter_and_is_audited(self):
        Settings = self.env["res.config.settings"].with_user(self.admin)
        self.assertEqual(Settings.create({}).audit_retention_days, 730)
        Settings.create({"audit_retention_days": 90}).execute()
        self.assertEqual(self.env["ir.config_parameter"].get_param(PARAM), "90")
        self.assertEqual(self.env["audit.event"]._retention_days(), 90)
        event = self._settings_events()
        self.assertEqual(len(event), 1)
        self.assertEqual(event.user_id, self.admin)
        self.assertEqual(event.details, {"fields": {PARAM: {"old": 730, "new": 90}}})
        # The form shows the stored value; saving it unchanged logs nothing.
        settings = Settings.create({})
        self.assertEqual(settings.audit_retention_days, 90)
        settings.execute()
        self.assertEqual(len(self._settings_events()), 1)

    def test_negative_retention_refused(self):
        with self.assertRaises(ValidationError):
            self.env["res.config.settings"].with_user(self.admin).create(
                {"audit_retention_days": -1}
            )
        self.assertFalse(self._settings_events())

    def test_settings_block_shown_to_audit_managers_only(self):
        Settings = self.env["res.config.settings"]
        arch = Settings.with_user(self.admin).get_views([(False, "form")])["views"][
            "form"
        ]["arch"]
        self.assertIn('name="audit_retention_days"', arch)
        # An Audit Manager without administrator rights cannot open the
        # General Settings (Odoo restricts them to administrators).
        with self.assertRaises(AccessError):
            Settings.with_user(self.auditor).create({"audit_retention_days": 1})
        self.assertNotEqual(self.env["ir.config_parameter"].get_param(PARAM), "1")
