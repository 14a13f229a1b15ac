"""18.0.1.1.0: the wizards no longer store what is typed in them.

The package wizard's passwords and the erasure wizard's typed email were
columns of their transient tables; the fields are no longer stored. Drop
the columns (and whatever they still held)."""

from odoo.tools import SQL


def migrate(cr, version):
    if not version:
        return
    cr.execute(
        SQL(
            "ALTER TABLE dsr_package_wizard "
            "DROP COLUMN IF EXISTS password, DROP COLUMN IF EXISTS password_confirm"
        )
    )
    cr.execute(SQL("ALTER TABLE dsr_erasure_wizard DROP COLUMN IF EXISTS typed_email"))
