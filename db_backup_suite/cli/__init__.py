# The Odoo command (``odoo-bin db_backup``) loads only when Odoo imports the
# addon (the engine's child process lives in ``service/engine_job.py``).
if __name__.startswith("odoo.addons."):
    from . import db_backup
