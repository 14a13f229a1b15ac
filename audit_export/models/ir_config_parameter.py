import re

from odoo import models

# System parameters keep their secrets in "value": judge them by their key.
SECRET_PARAM_RE = re.compile(r"secret|passw|token|api_?key|private|_key$", re.I)


class IrConfigParameter(models.Model):
    _inherit = "ir.config_parameter"

    def _audit_secret_names(self, record_id, values):
        names = super()._audit_secret_names(record_id, values)
        key = values.get("key")
        if key is None:
            key = self.browse(record_id).sudo().exists().key or ""
        if SECRET_PARAM_RE.search(key):
            names = names | {"value"}
        return names
