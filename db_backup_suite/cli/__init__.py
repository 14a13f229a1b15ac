# ``engine_job`` runs as a plain-Python child process (no Odoo); the Odoo
# command (``odoo-bin db_backup``) loads only when Odoo imports the addon.
if __name__.startswith("odoo.addons."):
    from . import db_backup
