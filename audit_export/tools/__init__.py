from . import suite_errors
