"""18.0.1.1.0: the export wizard no longer stores the ZIP password.

``password`` and ``password_confirm`` were columns of the wizard's transient
table; the fields are no longer stored (only a seal made with the server
keyring passes through). Drop the columns and whatever they still held.
"""

from odoo.tools import SQL


def migrate(cr, version):
    if not version:
        return
    cr.execute(
        SQL(
            "ALTER TABLE data_export_wizard "
            "DROP COLUMN IF EXISTS password, DROP COLUMN IF EXISTS password_confirm"
        )
    )
