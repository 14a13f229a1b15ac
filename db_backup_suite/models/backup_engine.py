"""Bridge between the Odoo layer and the pure-Python engine (``lib/``).

Everything here is plain helpers, no model: where the keyring comes from,
how to reach PostgreSQL and the filestore, and how to run an engine job in a
child process whose secrets travel through its stdin (never its argv) and
whose progress comes back as JSON lines on its stdout.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from odoo.tools import config

_logger = logging.getLogger(__name__)

ADDON_DIR = Path(__file__).resolve().parent.parent
ADDONS_PARENT = ADDON_DIR.parent
KEYRING_ENV_FILE = "DB_BACKUP_SUITE_KEYRING_FILE"
KEYRING_ENV_INLINE = "DB_BACKUP_SUITE_KEYRING"


class KeyringUnavailable(Exception):
    """No usable server keyring: backups must not run."""


def keyring_path():
    return config.get("backup_keyring_file") or os.environ.get(KEYRING_ENV_FILE)


def load_keyring():
    """Return the server keyring or raise ``KeyringUnavailable``."""
    from odoo.addons.audit_export.lib import keyring as keyring_lib

    try:
        return keyring_lib.Keyring.load(
            config_path=config.get("backup_keyring_file") or None, environ=os.environ
        )
    except Exception as exc:  # KeyringError, OSError, malformed text
        raise KeyringUnavailable(str(exc)) from exc


def keyring_status():
    """(ok, message) for the banner on the backups page."""
    try:
        keyring = load_keyring()
    except KeyringUnavailable as exc:
        return False, str(exc)
    return True, "active key %s (%s)" % (
        keyring.active.key_id,
        keyring.active.fingerprint,
    )


def db_params(dbname):
    """Connection parameters of ``dbname`` as the engine expects them."""
    return {
        "dbname": dbname,
        "host": config.get("db_host") or None,
        "port": int(config.get("db_port") or 5432),
        "user": config.get("db_user") or None,
        "password": config.get("db_password") or None,
    }


def filestore_dir(dbname):
    return config.filestore(dbname)


def child_env():
    """Environment of an engine child: keyring location, PYTHONPATH, PGPASSWORD."""
    env = dict(os.environ)
    path = keyring_path()
    if path:
        env[KEYRING_ENV_FILE] = os.path.abspath(path)
    pythonpath = [str(ADDONS_PARENT)]
    if env.get("PYTHONPATH"):
        pythonpath.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    if config.get("db_password") and not env.get("PGPASSWORD"):
        env["PGPASSWORD"] = config["db_password"]
    return env


def spawn_job(payload):
    """Start ``cli/engine_job.py`` with ``payload`` (secrets included) on stdin.

    The child runs in its own session so a worker restart does not kill a
    backup half-way; its stdout carries one JSON object per line.
    """
    proc = subprocess.Popen(  # noqa: S603 - fixed interpreter and module
        [sys.executable, "-m", "db_backup_suite.cli.engine_job"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(ADDONS_PARENT),
        env=child_env(),
        start_new_session=True,
    )
    proc.stdin.write(json.dumps(payload).encode())
    proc.stdin.close()
    return proc


def iter_events(proc):
    """Yield the JSON events of a job; a non-JSON line becomes a log event."""
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").strip()
        if not line:
            continue
        try:
            yield json.loads(line)
        except ValueError:
            yield {"event": "log", "message": line}


def run_job(payload, on_event=None):
    """Run a job to completion; return its final ``result`` event.

    Raises ``RuntimeError`` with the child's own error message when it fails.
    """
    proc = spawn_job(payload)
    result = None
    error = None
    try:
        for event in iter_events(proc):
            kind = event.get("event")
            if kind == "result":
                result = event
            elif kind == "error":
                error = event
            if on_event:
                on_event(event)
    finally:
        proc.stdout.close()
        stderr = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        returncode = proc.wait()
    if error:
        raise JobError(error.get("message") or "engine job failed", error)
    if result is None or returncode:
        tail = stderr.strip().splitlines()[-5:]
        raise JobError(
            "engine job exited with code %s: %s" % (returncode, " | ".join(tail)),
            {"type": "Crash"},
        )
    if stderr.strip():
        _logger.info("engine job stderr: %s", stderr.strip()[-2000:])
    return result


class JobError(Exception):
    def __init__(self, message, event):
        super().__init__(message)
        self.event = event


def data_dir():
    return config["data_dir"]


def jobs_dir():
    """Private folder (0700) for job files and uploads, in the data dir."""
    path = os.path.join(data_dir(), "db_backup_suite")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def odoo_args():
    """Options for a child ``python -m odoo db_backup`` to find the same
    databases, addons and keyring as this server (no password on argv: the
    child reads the config file, or PGPASSWORD from its environment)."""
    args = []
    if config.rcfile and os.path.exists(config.rcfile):
        args.append("--config=%s" % config.rcfile)
    for option, key in (
        ("--addons-path", "addons_path"),
        ("--data-dir", "data_dir"),
        ("--db_host", "db_host"),
        ("--db_port", "db_port"),
        ("--db_user", "db_user"),
    ):
        if config.get(key):
            args.append("%s=%s" % (option, config[key]))
    return args


def pg_params():
    from odoo.addons.db_backup_suite.lib import pgtools

    params = db_params("postgres")
    return pgtools.PgParams(
        host=params["host"],
        port=params["port"],
        user=params["user"],
        password=params["password"],
    )


def database_exists(dbname):
    from odoo.addons.db_backup_suite.lib import pgtools

    return pgtools.database_exists(pg_params(), dbname)


def drop_database(dbname):
    """Drop a database this suite created (sandbox, test copy) and its
    filestore; this process's registry and pooled connections go first.
    (``odoo.service.db.exp_drop`` only sees the databases ``list_dbs``
    exposes, which is just ``db_name`` on a server started with ``-d``.)"""
    import shutil

    import odoo
    from odoo.modules.registry import Registry

    from odoo.addons.db_backup_suite.lib import pgtools

    Registry.delete(dbname)
    odoo.sql_db.close_db(dbname)
    pgtools.drop_database(pg_params(), dbname)
    filestore = filestore_dir(dbname)
    if os.path.isdir(filestore):
        shutil.rmtree(filestore)


def list_databases(prefix):
    """Names of the databases starting with ``prefix`` (for cleanups)."""
    import psycopg2

    params = db_params("postgres")
    conn = psycopg2.connect(**{k: v for k, v in params.items() if v is not None})
    try:
        with conn.cursor() as cr:
            cr.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                [prefix.replace("_", r"\_") + "%"],
            )
            return [row[0] for row in cr.fetchall()]
    finally:
        conn.close()
