"""The translated messages of this addon's library errors (``lib/domain.py``,
``lib/zipper.py``), listed in audit_export's table of library errors
(``suite_error_message``) when Odoo imports this addon."""

from odoo.addons.audit_export.tools.suite_errors import register

from ..lib import domain, zipper

register(
    domain.DomainError,
    lambda env, exc: env["data.export.record.selection"]._domain_error_message(exc),
)
register(
    zipper.ZipperError,
    lambda env, exc: env._(
        "The ZIP file cannot be made (%(detail)s). A ZIP password needs at "
        "least %(length)s characters; then try again.",
        detail=str(exc),
        length=zipper.MIN_PASSWORD_LENGTH,
    ),
)
