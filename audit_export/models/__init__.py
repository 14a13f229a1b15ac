from . import (
    audit_checkpoint,
    audit_event,
    audit_rule,
    base,
    ir_config_parameter,
    password_policy,
    res_config_settings,
    res_users,
)
