from . import data_export_job, data_export_profile, res_partner
