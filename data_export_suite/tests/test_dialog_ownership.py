"""An export dialog is its opener's: another exporter can neither read,
change, run nor delete it (over a real HTTP JSON-RPC session)."""

from odoo.tests import HttpCase, new_test_user, tagged

from odoo.addons.audit_export.tests.common import RpcMixin

EXPORTER = "base.group_user,data_export_suite.export_group_user"


@tagged("post_install", "-at_install")
class TestExportDialogOwnership(RpcMixin, HttpCase):
    def test_another_exporter_cannot_touch_my_dialog(self):
        owner = new_test_user(self.env, login="dlg_owner", groups=EXPORTER)
        new_test_user(self.env, login="dlg_other", groups=EXPORTER)
        wizard = (
            self.env["data.export.wizard"]
            .with_user(owner)
            .create(
                {
                    "model_name": "res.partner",
                    "field_paths": "name",
                    "domain": "[('is_company', '=', True)]",
                }
            )
        )
        before = wizard.sudo().read(["model_name", "field_paths", "domain"])
        jobs_before = self.env["data.export.job"].sudo().search_count([])
        self.authenticate("dlg_other", "dlg_other")
        for method, args in (
            ("read", [wizard.ids, ["field_paths", "domain"]]),
            ("write", [wizard.ids, {"field_paths": "email", "domain": "[]"}]),
            ("action_export", [wizard.ids]),
            ("unlink", [wizard.ids]),
        ):
            with self.subTest(method=method):
                self.assertRpcError(self.rpc("data.export.wizard", method, *args))
        self.assertTrue(wizard.sudo().exists())
        self.assertEqual(
            wizard.sudo().read(["model_name", "field_paths", "domain"]), before
        )
        self.assertEqual(
            self.env["data.export.job"].sudo().search_count([]), jobs_before
        )
