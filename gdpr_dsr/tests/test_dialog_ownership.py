"""Package and erasure dialogs are their opener's: another Privacy Officer
can neither read, change, run nor delete them (over real HTTP JSON-RPC)."""

from odoo.tests import HttpCase, new_test_user, tagged

from odoo.addons.audit_export.tests.common import RpcMixin

from .common import DsrCase, make_verified_request

OFFICER = "base.group_user,gdpr_dsr.dsr_group_officer"


@tagged("post_install", "-at_install")
class TestDsrDialogOwnership(RpcMixin, HttpCase, DsrCase):
    def test_another_officer_cannot_touch_my_dialogs(self):
        owner = new_test_user(self.env, login="ddlg_owner", groups=OFFICER)
        new_test_user(self.env, login="ddlg_other", groups=OFFICER)
        owner_env = self.env(user=owner)
        access = make_verified_request(owner_env, "access")
        erasure = make_verified_request(owner_env, "erasure", "erase.me@example.com")
        package = owner_env["dsr.package.wizard"].create({"request_id": access.id})
        erase = owner_env["dsr.erasure.wizard"].create({"request_id": erasure.id})
        self.authenticate("ddlg_other", "ddlg_other")
        for wizard, action in ((package, "action_generate"), (erase, "action_confirm")):
            for method, args in (
                ("read", [wizard.ids, ["request_id"]]),
                ("write", [wizard.ids, {"request_id": access.id}]),
                (action, [wizard.ids]),
                ("unlink", [wizard.ids]),
            ):
                with self.subTest(model=wizard._name, method=method):
                    self.assertRpcError(self.rpc(wizard._name, method, *args))
            self.assertTrue(wizard.sudo().exists())
        self.assertEqual(package.sudo().request_id, access)
        self.assertEqual(erase.sudo().request_id, erasure)
        access.invalidate_recordset()
        erasure.invalidate_recordset()
        self.assertFalse(access.sudo().package_file)
        self.assertEqual(erasure.sudo().state, "verified")
