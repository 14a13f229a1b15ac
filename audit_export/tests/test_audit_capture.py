from odoo.tests import TransactionCase, new_test_user, tagged


@tagged("post_install", "-at_install")
class TestAuditCapture(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Event = cls.env["audit.event"]
        cls.admin_user = new_test_user(
            cls.env,
            login="h5_capture_admin",
            groups="base.group_user,base.group_system,base.group_erp_manager,"
            "base.group_partner_manager",
        )

    def _events(self, model, res_id, action):
        return self.Event.search(
            [
                ("res_model", "=", model),
                ("res_id", "=", res_id),
                ("action", "=", action),
            ],
            order="id",
        )

    def test_user_create_update_delete_with_old_and_new_values(self):
        Users = self.env["res.users"].with_user(self.admin_user)
        user = Users.create({"name": "Audit Target", "login": "h5_target"})
        created = self._events("res.users", user.id, "create")
        self.assertEqual(len(created), 1)
        self.assertEqual(created.user_id, self.admin_user)
        self.assertEqual(created.res_name, "Audit Target")
        self.assertEqual(created.details["fields"]["login"], {"new": "h5_target"})

        user.write({"name": "Audit Target Renamed", "email": "t@example.com"})
        # (creating a user also writes its generated avatar: an earlier update)
        updated = self._events("res.users", user.id, "update")[-1:]
        fields_ = updated.details["fields"]
        self.assertEqual(
            fields_["name"], {"old": "Audit Target", "new": "Audit Target Renamed"}
        )
        self.assertEqual(fields_["email"], {"old": None, "new": "t@example.com"})
        self.assertEqual(updated.res_name, "Audit Target Renamed")

        user_id = user.id
        user.unlink()
        deleted = self._events("res.users", user_id, "delete")
        self.assertEqual(len(deleted), 1)
        self.assertEqual(deleted.details["fields"]["login"], {"old": "h5_target"})
        self.assertEqual(deleted.res_name, "Audit Target Renamed")

    def test_password_change_records_only_the_fact(self):
        secret = "Sup3r-Secret-Passw0rd!"
        user = new_test_user(self.env, login="h5_pwd_user")
        user.with_user(self.admin_user).write({"password": secret})
        event = self._events("res.users", user.id, "update")[-1:]
        self.assertEqual(event.details["fields"]["password"], {"changed": True})
        self.env.cr.execute(
            "SELECT count(*) FROM audit_event WHERE details::text LIKE %s "
            "OR message LIKE %s",
            [f"%{secret}%", f"%{secret}%"],
        )
        self.assertEqual(self.env.cr.fetchone()[0], 0)

    def test_secret_system_parameter_redacted(self):
        ICP = self.env["ir.config_parameter"].sudo()
        secrets = {
            "h5.api_token": "tok-123456",
            "h5.smtp_pass": "pass-123456",
            "h5.client_secret": "cs-123456",
            "h5.webhook_key": "wh-123456",
            "h5.signing_salt": "salt-123456",
        }
        for key, value in secrets.items():
            ICP.set_param(key, value)
        ICP.set_param("h5.plain_setting", "visible-value")
        for key in secrets:
            param = ICP.search([("key", "=", key)])
            created = self._events("ir.config_parameter", param.id, "create")
            self.assertEqual(created.details["fields"]["value"], {"changed": True})
            self.assertEqual(created.details["fields"]["key"], {"new": key})
            self.assertEqual(created.res_name, key)
        plain = ICP.search([("key", "=", "h5.plain_setting")])
        self.assertEqual(
            self._events("ir.config_parameter", plain.id, "create").details["fields"][
                "value"
            ],
            {"new": "visible-value"},
        )
        ICP.set_param("h5.plain_setting", "second-value")
        self.assertEqual(
            self._events("ir.config_parameter", plain.id, "update").details,
            {"fields": {"value": {"old": "visible-value", "new": "second-value"}}},
        )
        ICP.set_param("h5.api_token", "tok-654321")
        token = ICP.search([("key", "=", "h5.api_token")])
        self.assertEqual(
            self._events("ir.config_parameter", token.id, "update").details,
            {"fields": {"value": {"changed": True}}},
        )
        # Renamed to a secret key: the value written with it is withheld.
        plain.write({"key": "h5.renamed_api_key", "value": "now-a-secret"})
        renamed = self._events("ir.config_parameter", plain.id, "update")[-1:]
        self.assertEqual(renamed.details["fields"]["value"], {"changed": True})
        self.assertEqual(
            renamed.details["fields"]["key"],
            {"old": "h5.plain_setting", "new": "h5.renamed_api_key"},
        )
        token.unlink()
        deleted = self._events("ir.config_parameter", token.id, "delete")
        self.assertEqual(deleted.details["fields"]["value"], {"redacted": True})
        for needle in ("123456", "654321", "now-a-secret"):
            self.env.cr.execute(
                "SELECT count(*) FROM audit_event e WHERE strpos(e::text, %s) > 0",
                [needle],
            )
            self.assertEqual(self.env.cr.fetchone()[0], 0, needle)

    def test_reading_role_is_the_auditor(self):
        has_group = self.env["audit.rule"]._auditor_has_group()
        self.assertTrue(has_group("audit_export.audit_group_auditor"))
        self.assertTrue(has_group("base.group_user"))
        self.assertFalse(has_group("base.group_system"))
        self.assertFalse(has_group("audit_export.audit_group_manager"))
        self.assertFalse(has_group("h5.no_such_group"))
        withheld = self.env["audit.rule"]._rules_by_model()["res.users"]["withheld"]
        # Secrets by name and by groups= beyond the Auditor; what an auditor
        # reads stays recorded (groups="base.group_user" included).
        self.assertTrue({"password", "new_password", "totp_secret"} <= withheld)
        self.assertIn("signup_type", withheld)  # groups="base.group_erp_manager"
        self.assertNotIn("activity_state", withheld)  # groups="base.group_user"
        self.assertFalse({"login", "name", "email", "groups_id"} & withheld)

    def test_unchanged_write_not_logged_and_batch_write(self):
        partners = self.env["res.partner"].create([{"name": f"P{i}"} for i in range(3)])
        self.assertFalse(self._events("res.partner", partners[0].id, "create"))
        rule = self.env["audit.rule"].create(
            {"model_id": self.env.ref("base.model_res_partner").id, "log_create": False}
        )
        partners.write({"name": "P0"})
        updates = self.Event.search(
            [("res_model", "=", "res.partner"), ("res_id", "in", partners.ids)]
        )
        # P0 did not change; P1 and P2 did.
        self.assertEqual(sorted(updates.mapped("res_id")), partners[1:].ids)
        self.assertEqual(
            updates.filtered(lambda e: e.res_id == partners[1].id).details["fields"][
                "name"
            ],
            {"old": "P1", "new": "P0"},
        )
        # Rules take effect at once, and stop at once.
        rule.active = False
        partners.write({"name": "Q"})
        self.assertEqual(
            self.Event.search_count(
                [("res_model", "=", "res.partner"), ("res_id", "in", partners.ids)]
            ),
            2,
        )

    def test_rule_changes_are_audited_and_excluded_fields(self):
        rule = self.env["audit.rule"].create(
            {
                "model_id": self.env.ref("base.model_res_partner").id,
                "excluded_field_ids": [
                    (6, 0, [self.env.ref("base.field_res_partner__comment").id])
                ],
            }
        )
        self.assertTrue(self._events("audit.rule", rule.id, "create"))
        partner = self.env["res.partner"].create({"name": "R"})
        partner.write({"comment": "ignored", "phone": "123"})
        event = self._events("res.partner", partner.id, "update")
        self.assertIn("phone", event.details["fields"])
        self.assertNotIn("comment", event.details["fields"])

    def test_many2many_group_change(self):
        user = new_test_user(self.env, login="h5_grp_user", groups="base.group_user")
        group = self.env.ref("base.group_partner_manager")
        user.with_user(self.admin_user).write({"groups_id": [(4, group.id)]})
        event = self._events("res.users", user.id, "update")[-1:]
        change = event.details["fields"]["groups_id"]
        self.assertNotIn(group.id, change["old"])
        self.assertIn(group.id, change["new"])
