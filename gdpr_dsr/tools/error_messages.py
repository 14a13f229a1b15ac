"""The translated messages of this addon's library errors
(``lib/erasure_register.py``), listed in audit_export's table of library
errors (``suite_error_message``) when Odoo imports this addon."""

from odoo.addons.audit_export.tools.suite_errors import register

from ..lib import erasure_register

register(
    erasure_register.ErasureRegisterError,
    lambda env, exc: env._(
        "The erasure register cannot be read or written (%(detail)s). Check the "
        "folder of the server option dsr_erasure_register_dir: it must exist "
        "and be writable by Odoo; then try again.",
        detail=str(exc),
    ),
)
