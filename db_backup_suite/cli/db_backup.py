"""``odoo-bin db_backup``: the backup engine from Odoo's command line.

For the day nobody can log in. Odoo's own options (``-c``, ``-d``,
``--db_host``, ``--data-dir``, ...) come first, then a subcommand:

- ``archives``: list this database's archives at its configured
  destinations (``-d`` names the database), full archives and incremental
  snapshots alike (a snapshot is restored by its name like an archive);
- ``restore --archive NAME --confirm DBNAME [--sandbox [NAME]]
  [--allow-foreign-archive SOURCE_DB]``: the same verified restore as the
  wizard (pre-restore backup, swap, hooks, mail), reading the destinations
  and their encrypted credentials from the database itself. An archive of
  another database (another uuid) is refused, showing its source name, uuid
  and date, unless ``--allow-foreign-archive`` names its source database;
  a sandbox name must be one the suite gives (``<db>-sandbox-<YYYYmmdd>``);
- ``engine <args>``: the engine's CLI (``python -m db_backup_suite.lib``:
  backup, restore, verify, list, prune, decrypt, keygen, export-odoo-zip)
  with the database server, data directory and keyring taken from the Odoo
  configuration, for when the database itself is damaged;
- ``restore-job --job-file F``: the restore started by the restore wizard
  (internal: the wizard writes F, mode 0600, and this command removes it).

Examples::

    odoo-bin --addons-path=... db_backup -c /etc/odoo/odoo.conf -d prod archives
    odoo-bin --addons-path=... db_backup -c /etc/odoo/odoo.conf -d prod restore \
        --archive prod/prod_24h_20260101T020000Z.tar.zst.enc --confirm prod
    odoo-bin --addons-path=... db_backup -c /etc/odoo/odoo.conf engine \
        verify --from /backups prod/prod_manual_20260101T020000Z.tar.zst.enc
"""

# A command line answers on stdout. pylint: disable=print-used

import json
import logging
import os
import sys
from pathlib import Path

import odoo
from odoo.cli import Command
from odoo.tools import config

_logger = logging.getLogger(__name__)
SUBCOMMANDS = ("archives", "restore", "engine", "restore-job")


class DbBackup(Command):
    """Back up, restore and verify databases with the backup suite's engine."""

    name = "db_backup"

    def run(self, args):
        split = next((i for i, a in enumerate(args) if a in SUBCOMMANDS), None)
        if (
            split is None
            or "-h" in args[: split or len(args)]
            or "--help" in args[: split or len(args)]
        ):
            print(__doc__)
            sys.exit(0 if split is None and ("-h" in args or "--help" in args) else 2)
        odoo_args, sub, sub_args = args[:split], args[split], args[split + 1 :]
        config.parser.prog = f"{Path(sys.argv[0]).name} {self.name}"
        config.parse_config(odoo_args, setup_logging=True)
        handler = {
            "archives": self._archives,
            "restore": self._restore,
            "engine": self._engine,
            "restore-job": self._restore_job,
        }[sub]
        sys.exit(handler(sub_args))

    def _env_of(self, dbname):
        from odoo import SUPERUSER_ID, api
        from odoo.modules.registry import Registry

        registry = Registry(dbname)
        cr = registry.cursor()
        return api.Environment(cr, SUPERUSER_ID, {})

    def _database(self):
        dbname = config["db_name"]
        if not dbname or "," in dbname:
            sys.exit("Name one database with -d.")
        return dbname

    def _archives(self, sub_args):
        dbname = self._database()
        from ..lib import repository

        env = self._env_of(dbname)
        try:
            rows = []
            for dest in env["db.backup.destination"].search([("active", "=", True)]):
                try:
                    found = env["db.backup.run"]._find_archives(dest)
                except Exception as exc:
                    print("%s: cannot list: %s" % (dest.name, exc))
                    continue
                for name, (obj, info) in found.items():
                    kind = "snapshot" if repository.in_repository(name) else "archive"
                    rows.append((info.created_at, name, obj.size, dest.name, kind))
            for created, name, size, dest_name, kind in sorted(rows, reverse=True):
                print(
                    "%s  %12d  %-8s  %-20s  %s"
                    % (
                        created.strftime("%Y-%m-%d %H:%M:%SZ"),
                        size,
                        kind,
                        dest_name,
                        name,
                    )
                )
            return 0
        finally:
            env.cr.close()

    def _restore(self, sub_args):
        import argparse

        from odoo import fields

        from ..lib import errors, safety
        from ..service import backup_engine, restore_job

        parser = argparse.ArgumentParser(prog="db_backup restore")
        parser.add_argument("--archive", required=True, help="archive name")
        parser.add_argument(
            "--confirm",
            required=True,
            help="the database name again (production restore)",
        )
        parser.add_argument(
            "--sandbox",
            nargs="?",
            const="",
            metavar="NAME",
            help="restore to a new sandbox database instead (a name the suite "
            "gives: <db>-sandbox-<YYYYmmdd>[-N]; generated when omitted)",
        )
        parser.add_argument(
            "--allow-foreign-archive",
            metavar="SOURCE_DB",
            help="restore an archive of ANOTHER database, named here (its source "
            "database, as the refusal shows it); the database keeps its uuid",
        )
        opts = parser.parse_args(sub_args)
        dbname = self._database()
        if opts.sandbox is None and opts.confirm != dbname:
            sys.exit("--confirm must repeat the database name %r exactly." % dbname)
        if opts.sandbox:
            try:
                safety.check_sandbox_name(opts.sandbox, production_db=dbname)
            except errors.SafetyError as exc:
                sys.exit("--sandbox: %s" % exc)
        env = self._env_of(dbname)
        try:
            source = None
            dests = env["db.backup.destination"].search([("active", "=", True)])
            for dest in dests:
                try:
                    if opts.archive in env["db.backup.run"]._find_archives(dest):
                        source = {"sink": dest._sink_config(), "name": opts.archive}
                        break
                except Exception as exc:
                    _logger.warning("%s: cannot list: %s", dest.name, exc)
            if source is None:
                sys.exit(
                    "Archive %r not found at the destinations of %s."
                    % (opts.archive, dbname)
                )
            expected_uuid = (
                env["ir.config_parameter"].sudo().get_param("database.uuid") or ""
            )
            foreign_uuid = self._check_owner(
                source, dbname, expected_uuid, opts.allow_foreign_archive
            )
            job = {
                "database": dbname,
                "target": "sandbox" if opts.sandbox is not None else "production",
                "requested_by": "command line (%s)" % os.environ.get("USER", "?"),
                "archive_name": opts.archive,
                "db": backup_engine.db_params(dbname),
                "data_dir": backup_engine.data_dir(),
                "pre_restore_sinks": [
                    {"destination_id": d.id, "config": d._sink_config()} for d in dests
                ],
                "source": source,
                "expected_uuid": expected_uuid,
                "allow_foreign": foreign_uuid is not None,
            }
            if foreign_uuid is not None:
                # the restore job checks the archive is still the one confirmed
                job["foreign_source_uuid"] = foreign_uuid
            if opts.sandbox is not None:
                Sandbox = env["db.backup.sandbox"]
                name = opts.sandbox or Sandbox._unique_name(dbname)
                safety.check_sandbox_name(name, production_db=dbname)
                sandbox = Sandbox.create(
                    {
                        "name": name,
                        "archive_name": opts.archive,
                        "expires_at": fields.Datetime.add(
                            fields.Datetime.now(), days=7
                        ),
                    }
                )
                job.update(sandbox_name=name, sandbox_id=sandbox.id)
            env.cr.commit()
        finally:
            env.cr.close()
        result = restore_job.run_job(job)
        print(result.get("message"))
        return 0 if result.get("ok") else 1

    def _check_owner(self, source, dbname, expected_uuid, named):
        """Refuse (exit) an archive of another database than ``dbname``
        unless ``named`` is its source database; the source uuid when it is
        foreign and confirmed, else None. Reads the header and head manifest
        only."""
        from ..lib import owner as owner_lib
        from ..lib import sinks
        from ..service import backup_engine

        sink = sinks.make_sink(source["sink"])
        try:
            with sink.open_read(source["name"]) as raw:
                owner = owner_lib.describe_archive_owner(
                    raw, keyring=backup_engine.load_keyring()
                )
        finally:
            sink.close()
        if owner["uuid"] is None or owner["uuid"] == expected_uuid:
            return None  # its own (an Odoo zip is checked once restored)
        if named is not None and named == owner["database"]:
            return owner["uuid"]
        sys.exit(
            "Refused: %s is a backup of database %r (uuid %s, taken %s), not of "
            "%r (uuid %s). Nothing was restored.%s"
            % (
                source["name"],
                owner["database"] or "?",
                owner["uuid"] or "none",
                owner["created_at"] or "?",
                dbname,
                expected_uuid or "none",
                " To restore it anyway (the database keeps its own uuid), add "
                "--allow-foreign-archive %s." % owner["database"]
                if owner["database"]
                else " Its source database could not be read (no key?).",
            )
        )

    def _engine_env(self):
        from ..service import backup_engine

        env = backup_engine.child_env()
        for key, option in (
            ("PGHOST", "db_host"),
            ("PGPORT", "db_port"),
            ("PGUSER", "db_user"),
        ):
            if config.get(option):
                env[key] = str(config[option])
        return env

    def _engine(self, engine_args):
        """Run the engine CLI as a child with the Odoo configuration applied."""
        import subprocess

        from ..service import backup_engine

        engine_args = list(engine_args)
        if (
            engine_args
            and engine_args[0] in ("backup", "restore")
            and not {"--data-dir", "--filestore", "--no-filestore"}
            & {a.split("=", 1)[0] for a in engine_args}
        ):
            engine_args.insert(1, "--data-dir=%s" % backup_engine.data_dir())
        cmd = [sys.executable, "-m", "db_backup_suite.lib", *engine_args]
        return subprocess.call(
            cmd, cwd=str(backup_engine.ADDONS_PARENT), env=self._engine_env()
        )

    def _restore_job(self, sub_args):
        import argparse

        from ..service import restore_job

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
