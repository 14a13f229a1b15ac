"""Pure-Python helpers of data_export_suite (never imports ``odoo``)."""
