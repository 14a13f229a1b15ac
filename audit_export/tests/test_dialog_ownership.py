"""An audit export dialog is its opener's: another auditor can neither read,
change, run nor delete it (over a real HTTP JSON-RPC session)."""

from odoo.tests import HttpCase, new_test_user, tagged

from .common import RpcMixin

AUDITOR = "base.group_user,audit_export.audit_group_auditor"


@tagged("post_install", "-at_install")
class TestAuditDialogOwnership(RpcMixin, HttpCase):
    def test_another_auditor_cannot_touch_my_dialog(self):
        owner = new_test_user(self.env, login="adlg_owner", groups=AUDITOR)
        new_test_user(self.env, login="adlg_other", groups=AUDITOR)
        wizard = self.env["audit.export.wizard"].with_user(owner).create({})
        fields = ["file_format", "date_from", "date_to"]
        before = wizard.sudo().read(fields)
        self.authenticate("adlg_other", "adlg_other")
        for method, args in (
            ("read", [wizard.ids, fields]),
            ("write", [wizard.ids, {"date_from": "2020-01-01 00:00:00"}]),
            ("action_export", [wizard.ids]),
            ("unlink", [wizard.ids]),
        ):
            with self.subTest(method=method):
                self.assertRpcError(self.rpc("audit.export.wizard", method, *args))
        self.assertTrue(wizard.sudo().exists())
        self.assertEqual(wizard.sudo().read(fields), before)
