# Abstract models first: dsr.request inherits them.
from . import dsr_package_builder, dsr_restore_hook

# isort: split
from . import (
    dsr_discovery,
    dsr_discovery_exclusion,
    dsr_erasure,
    dsr_leftover_scan,
    dsr_package_job,
    dsr_request,
    dsr_request_line,
    ir_attachment,
    ir_binary,
    res_users,
)
