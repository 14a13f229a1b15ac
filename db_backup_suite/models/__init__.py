# The mixin first: the models below inherit it.
from . import db_backup_guarded_mixin

# isort: split
from . import (
    backup_engine,
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
