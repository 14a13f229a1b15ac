"""System parameters in the audit capture.

``lib/sensitive`` lists ``ir.config_parameter`` among the secret models (an
export never includes it). The audit log records which parameter changed
and, for ordinary settings, from what to what; a parameter keeps its secret
in ``value``, so the same rule is applied to its KEY: a value whose key
would name a secret field (``database.secret``, ``*.api_key``,
``*_client_secret``, ``*.token``, ``*.smtp_pass`` ...) is withheld, never
read by the capture, and recorded as changed.
"""

from odoo import models

from suite_core.sensitive import is_secret_field

# The fields judged by key (below) instead of by the whole-model rule.
KEYED_FIELDS = frozenset({"key", "value"})


def is_secret_key(key):
    """True when a system parameter named ``key`` holds a secret.

    An empty or missing key counts as secret (nothing to judge by).
    """
    if not key:
        return True
    return is_secret_field(None, key, "char")


class IrConfigParameter(models.Model):
    _inherit = "ir.config_parameter"

    def _audit_field_withheld(self, field, has_group):
        if field.name in KEYED_FIELDS:
            # The key names the parameter (it is the record's name); the
            # value is judged per record by its key.
            return False
        return super()._audit_field_withheld(field, has_group)

    def _audit_record_withheld(self, fnames, vals=None):
        result = super()._audit_record_withheld(fnames, vals)
        if "value" not in fnames:
            return result
        new_key = (vals or {}).get("key")
        # Only the key is read here, never the value.
        params = self.sudo().with_context(active_test=False)
        params.fetch(["key"])
        for param in params:
            if is_secret_key(param.key) or (
                new_key is not None and is_secret_key(new_key)
            ):
                result[param.id] = {*result.get(param.id, ()), "value"}
        return result
