from . import db_backup_dashboard
from . import db_backup_restore_wizard
from . import db_backup_download_wizard
