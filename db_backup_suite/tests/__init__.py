from . import (
    test_access,
    test_backup_now,
    test_destination,
    test_emergency_restore,
    test_offsite,
    test_restore,
    test_restore_hooks,
    test_restore_reapplies_erasures,
    test_retention,
    test_schedule,
    test_security_rpc,
    test_tour,
)
