"""18.0.1.2.0: exclusions have a scope (discovery, leftover scan, both).

Every exclusion that exists before this version was made for the discovery:
it keeps that scope (the new default, "both", is for exclusions created
from now on), so the leftover scan reads what they exclude."""

from odoo.tools import SQL


def migrate(cr, version):
    if not version:
        return
    cr.execute(
        SQL(
            "ALTER TABLE dsr_discovery_exclusion ADD COLUMN IF NOT EXISTS scope varchar"
        )
    )
    cr.execute(
        SQL(
            "UPDATE dsr_discovery_exclusion SET scope = 'discovery' WHERE scope IS NULL"
        )
    )
