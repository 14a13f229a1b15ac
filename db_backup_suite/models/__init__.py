# The mixins first: the models below inherit them.
from . import db_backup_guarded_mixin, db_backup_settings_audit_mixin

# isort: split
from . import (
    db_backup_copy,
    db_backup_destination,
    db_backup_run,
    db_backup_sandbox,
    db_backup_schedule,
    ir_cron,
    ir_http,
    maintenance_guard,
    res_config_settings,
)
