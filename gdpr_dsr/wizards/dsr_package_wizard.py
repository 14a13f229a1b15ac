from odoo import api, fields, models
from odoo.exceptions import UserError

PASSWORD_FIELDS = ("password", "password_confirm")


class DsrPackageWizard(models.TransientModel):
    """Queue the export package of a request and follow it.

    The ZIP password never reaches the database in clear, not even this
    transient record: the password fields are not stored, and the values
    typed are checked by ``create``/``write`` itself (the web client saves
    the wizard when "Generate" is clicked) and handed to the package job
    sealed with the server keyring. The dialog then shows the job's
    progress (bus), and "Package ready" with a Download button at the end.
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
    job_id = fields.Many2one("dsr.package.job", readonly=True, ondelete="set null")
    package_job_id = fields.Many2one(
        "dsr.package.job", compute="_compute_job_view", string="Package job"
    )
    package_job_state = fields.Selection(
        [
            ("queued", "Queued"),
            ("running", "Running"),
            ("done", "Package ready"),
            ("failed", "Failed"),
        ],
        compute="_compute_job_view",
    )
    package_job_step = fields.Char(compute="_compute_job_view")
    package_job_progress = fields.Float(compute="_compute_job_view")
    package_job_error = fields.Text(compute="_compute_job_view")

    @api.depends("job_id")
    def _compute_job_view(self):
        """The job, as the live progress widget reads it (the same names as
        on the request's form)."""
        for wizard in self:
            job = wizard.job_id
            wizard.package_job_id = job
            wizard.package_job_state = job.state
            wizard.package_job_step = job.step
            wizard.package_job_progress = job.progress
            wizard.package_job_error = job.error_message

    @api.model_create_multi
    def create(self, vals_list):
        if not self.env.su and any("job_id" in vals for vals in vals_list):
            raise UserError(self.env._("The dialog records the job it queued."))
        if not self.env.su:
            self = self.with_context(default_job_id=False)
        passwords = [self._pop_passwords(vals) for vals in vals_list]
        wizards = super().create(vals_list)
        for wizard, password in zip(wizards, passwords, strict=True):
            if password:
                wizard._queue(password)
        return wizards

    def write(self, vals):
        if "job_id" in vals and not self.env.su:
            raise UserError(self.env._("The dialog records the job it queued."))
        password = self._pop_passwords(vals)
        result = super().write(vals) if vals else True
        if password:
            for wizard in self:
                wizard._queue(password)
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

    def _queue(self, password=None):
        self.ensure_one()
        if self.job_id:
            raise UserError(self.env._("This package is queued already."))
        job = self.request_id._queue_package(password=password)
        self.sudo().write({"job_id": job.id})

    def action_generate(self):
        """Queue the package (without password when none was typed) and keep
        the dialog open on its progress."""
        self.ensure_one()
        if not self.job_id:
            self._queue()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Export Package"),
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "new",
        }

    def action_download(self):
        self.ensure_one()
        if self.job_id.state != "done":
            raise UserError(self.env._("The package is not ready yet."))
        return self.request_id.action_download_package()
