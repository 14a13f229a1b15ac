# Abstract models first: data.export.profile and data.export.job inherit
# them, and data_export_job imports data_export_profile.
from . import (
    data_export_field_access,
    data_export_file_store,
    data_export_file_writer,
    data_export_ready_made,
    data_export_record_selection,
    data_export_values,
)

# isort: split
from . import data_export_job, data_export_profile, res_partner
