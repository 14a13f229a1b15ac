from . import (
    test_access,
    test_backup_now,
    test_backup_screens,
    test_destination,
    test_emergency_restore,
    test_offsite,
    test_restore,
    test_restore_hooks,
    test_restore_reapplies_erasures,
    test_retention,
    test_role_tours,
    test_schedule,
    test_security_rpc,
    test_tour,
)
from . import test_run_states
