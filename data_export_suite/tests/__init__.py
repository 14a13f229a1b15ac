from . import (
    test_data_export_accounting,
    test_data_export_bugs,
    test_data_export_download,
    test_data_export_formats,
    test_data_export_jobs,
    test_data_export_security,
    test_data_export_wizard_rpc,
    test_dialog_ownership,
    test_error_messages,
    test_security_rpc,
)
