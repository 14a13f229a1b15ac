from . import (
    test_dialog_ownership,
    test_dsr_erasure,
    test_dsr_export,
    test_dsr_leftovers,
    test_dsr_package_job,
    test_dsr_request,
    test_dsr_restore,
    test_dsr_tour,
    test_error_messages,
    test_role_tours,
    test_security_rpc,
)
