"""``odoo-bin db_backup``: the backup engine from Odoo's command line.

For the day nobody can log in. Odoo's own options (``-c``, ``-d``,
``--db_host``, ``--data-dir``, ...) come first, then a subcommand:

- ``engine <args>``: the engine's CLI (``python -m db_backup_suite.lib``:
  backup, restore, verify, list, prune, decrypt, keygen) with the database
  server, data directory and keyring taken from the Odoo configuration;
- ``restore-job --job-file F``: the restore started by the restore wizard
  (internal: the wizard writes F, mode 0600, and this command removes it).

Example: ``odoo-bin --addons-path=... db_backup -c /etc/odoo/odoo.conf engine
list --help``.
"""

import json
import logging
import os
import sys
from pathlib import Path

import odoo
from odoo.cli import Command
from odoo.tools import config

_logger = logging.getLogger(__name__)
SUBCOMMANDS = ("engine", "restore-job")


class DbBackup(Command):
    """Back up, restore and verify databases with the backup suite's engine."""

    name = "db_backup"

    def run(self, args):
        split = next((i for i, a in enumerate(args) if a in SUBCOMMANDS), None)
        if split is None or "-h" in args[: split or len(args)] or "--help" in args[
            : split or len(args)
        ]:
            print(__doc__)  # noqa: T201
            sys.exit(0 if split is None and ("-h" in args or "--help" in args) else 2)
        odoo_args, sub, sub_args = args[:split], args[split], args[split + 1 :]
        config.parser.prog = f"{Path(sys.argv[0]).name} {self.name}"
        config.parse_config(odoo_args, setup_logging=True)
        if sub == "engine":
            sys.exit(self._engine(sub_args))
        sys.exit(self._restore_job(sub_args))

    def _engine_env(self):
        from odoo.addons.db_backup_suite.models import backup_engine

        env = backup_engine.child_env()
        for key, option in (("PGHOST", "db_host"), ("PGPORT", "db_port"),
                            ("PGUSER", "db_user")):
            if config.get(option):
                env[key] = str(config[option])
        return env

    def _engine(self, engine_args):
        """Run the engine CLI as a child with the Odoo configuration applied."""
        import subprocess

        from odoo.addons.db_backup_suite.models import backup_engine

        cmd = [sys.executable, "-m", "db_backup_suite.lib", *engine_args]
        return subprocess.call(  # noqa: S603 - our own interpreter and module
            cmd, cwd=str(backup_engine.ADDONS_PARENT), env=self._engine_env())

    def _restore_job(self, sub_args):
        import argparse

        from odoo.addons.db_backup_suite.models import restore_job

        parser = argparse.ArgumentParser(prog="db_backup restore-job")
        parser.add_argument("--job-file", required=True)
        opts = parser.parse_args(sub_args)
        with open(opts.job_file) as handle:
            job = json.load(handle)
        os.unlink(opts.job_file)  # it holds secrets: read once, then gone
        odoo.service.server.load_server_wide_modules()
        result = restore_job.run_job(job)
        _logger.info("restore job: %s", result.get("message"))
        return 0 if result.get("ok") else 1
