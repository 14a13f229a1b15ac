from . import (
    test_audit_capture,
    test_audit_chain_attacks,
    test_audit_event,
    test_audit_http,
    test_audit_keyring,
    test_audit_settings,
    test_audit_ui,
    test_dialog_ownership,
    test_security_rpc,
    test_suite_errors,
)
