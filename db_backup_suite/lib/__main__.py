"""``python -m db_backup_suite.lib <command>``: see cli.py."""

import sys

from .cli import main

sys.exit(main())
