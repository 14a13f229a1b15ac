"""Server-side code of the suite that defines no Odoo model (like Odoo's own
``odoo/service``): plain functions and classes the models, wizards,
controllers and the ``db_backup`` command call.

- ``backup_engine``: the bridge to the engine (``lib/``): where the keyring
  comes from, how to reach PostgreSQL and the filestore, how an engine job
  runs in a child process and reports through its event file;
- ``engine_job``: that child process (``python -m
  db_backup_suite.service.engine_job``), plain Python: it never imports
  Odoo;
- ``restore_job``: the restore job run by the detached ``odoo-bin db_backup
  restore-job`` process (pre-restore backup, engine restore, post-restore
  steps);
- ``restore_drill``: the restore drill job run by that same process.

This package imports none of its modules: ``engine_job`` starts from plain
Python (no Odoo), the others are imported where they are used.
"""
