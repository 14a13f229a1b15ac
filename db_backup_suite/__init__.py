# The Odoo layer loads only when Odoo imports this addon; ``lib`` and the
# engine's child process (``service/engine_job.py``) stay importable from
# plain Python (tests, CLI, ``python -m db_backup_suite.service.engine_job``)
# without Odoo. ``service`` is imported by the models, wizards and
# controllers that use it.
if __name__.startswith("odoo.addons."):
    from . import cli, controllers, models, tools, wizards
