from odoo import fields, models
from odoo.exceptions import UserError

from odoo.addons.data_export_suite.lib.zipper import MIN_PASSWORD_LENGTH


class DsrPackageWizard(models.TransientModel):
    _name = "dsr.package.wizard"
    _description = "Data Subject Request: generate the export package"

    request_id = fields.Many2one("dsr.request", required=True, ondelete="cascade")
    password = fields.Char(
        help="Optional: protect the ZIP with AES-256 (7-Zip, WinZip, macOS open "
        "it). Send the password to the subject through another channel.",
    )
    password_confirm = fields.Char(string="Confirm password")

    def action_generate(self):
        self.ensure_one()
        password = self.password or None
        if password and password != self.password_confirm:
            raise UserError(self.env._("The two passwords differ."))
        if password and len(password) < MIN_PASSWORD_LENGTH:
            raise UserError(self.env._(
                "The password needs at least %(count)s characters.",
                count=MIN_PASSWORD_LENGTH,
            ))
        request = self.request_id
        # The password is not kept in the database once used.
        self.write({"password": False, "password_confirm": False})
        request._generate_package(password=password)
        return request.action_download_package()
