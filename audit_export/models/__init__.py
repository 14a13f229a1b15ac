from . import (
    audit_checkpoint,
    audit_event,
    audit_rule,
    base,
    ir_config_parameter,
    res_users,
)
