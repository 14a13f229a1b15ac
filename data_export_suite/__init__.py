# The Odoo layer loads only when Odoo imports this addon; ``lib`` stays
# importable from plain Python (tests, CLI) without Odoo.
if __name__.startswith("odoo.addons."):
    from . import controllers, models, tools, wizards
