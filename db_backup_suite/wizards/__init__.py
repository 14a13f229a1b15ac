from . import (
    db_backup_dashboard,
    db_backup_download_wizard,
    db_backup_emergency_export,
    db_backup_key_rotation,
    db_backup_restore_wizard,
)
