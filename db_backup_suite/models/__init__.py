from . import backup_engine
from . import db_backup_destination
from . import db_backup_schedule
from . import db_backup_run
from . import db_backup_copy
from . import db_backup_sandbox
