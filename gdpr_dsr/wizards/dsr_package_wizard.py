from odoo import api, fields, models
from odoo.exceptions import UserError

PASSWORD_FIELDS = ("password", "password_confirm")


class DsrPackageWizard(models.TransientModel):
    """Generate the export package of a request.

    The ZIP password never reaches the database, not even this transient
    record: the password fields are not stored, and the values typed are
    used by ``create``/``write`` itself (the web client saves the wizard
    when "Generate" is clicked) to build the protected package at once.
    """

    _name = "dsr.package.wizard"
    _description = "Data Subject Request: generate the export package"

    request_id = fields.Many2one("dsr.request", required=True, ondelete="cascade")
    password = fields.Char(
        store=False,
        help="Optional: protect the ZIP with AES-256 (7-Zip, WinZip, macOS open "
        "it). Send the password to the subject through another channel.",
    )
    password_confirm = fields.Char(string="Confirm password", store=False)
    generated = fields.Boolean(readonly=True)

    @api.model_create_multi
    def create(self, vals_list):
        if not self.env.su and any("generated" in vals for vals in vals_list):
            raise UserError(self.env._("The wizard records what it generated."))
        if not self.env.su:
            self = self.with_context(default_generated=False)
        passwords = [self._pop_passwords(vals) for vals in vals_list]
        wizards = super().create(vals_list)
        for wizard, password in zip(wizards, passwords, strict=True):
            if password:
                wizard._generate(password)
        return wizards

    def write(self, vals):
        if "generated" in vals and not self.env.su:
            raise UserError(self.env._("The wizard records what it generated."))
        password = self._pop_passwords(vals)
        result = super().write(vals) if vals else True
        if password:
            for wizard in self:
                wizard._generate(password)
        return result

    @api.model
    def _pop_passwords(self, vals):
        """Remove the passwords from ``vals``; return the checked password
        (``None`` when none was typed)."""
        password, confirm = (vals.pop(name, None) or None for name in PASSWORD_FIELDS)
        if not password:
            return None
        # the suite's one password policy (length and a strength estimate)
        return self.env["audit.password.policy"]._check_new(password, confirm)

    def _generate(self, password=None):
        self.ensure_one()
        self.request_id._generate_package(password=password)
        self.sudo().write({"generated": True})

    def action_generate(self):
        self.ensure_one()
        if not self.generated:
            self._generate()
        return self.request_id.action_download_package()
