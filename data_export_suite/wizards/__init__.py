from . import data_export_wizard
