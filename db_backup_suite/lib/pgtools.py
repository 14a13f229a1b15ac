"""PostgreSQL helpers of the backup engine: connections, database facts, the
consistent snapshot, and the ``pg_dump`` / ``pg_restore`` child processes.

Connections take host/port/user/password from the arguments or the usual
``PG*`` environment variables (``PGHOST``, ``PGPORT``, ``PGUSER``,
``PGPASSWORD``; ``~/.pgpass`` works too since libpq reads it). A password
given to :class:`PgParams` reaches the child processes through their
environment (``PGPASSWORD``), never their command line.

The snapshot
============

Odoo's own backup copies the filestore, then dumps the database: a file
added in between has no row, a row added in between has no file.
:func:`exported_snapshot` captures both at one instant::

    BEGIN ISOLATION LEVEL REPEATABLE READ;
    SET LOCAL lock_timeout = '60s';
    LOCK TABLE ir_attachment IN SHARE UPDATE EXCLUSIVE MODE;
    SELECT pg_export_snapshot();

``LOCK`` comes first, before any statement that takes the transaction's
snapshot, so the snapshot is taken once the lock is held. ``pg_dump
--snapshot=<id>`` then dumps exactly that state, and the list of filestore
files (``ir_attachment.store_fname``) and the row count of every table are
read in the same transaction, which stays open until the last filestore
file is read.

Why that lock: Odoo deletes filestore files only in its garbage collector,
``ir.attachment._gc_file_store`` (odoo/addons/base/models/ir_attachment.py),
which runs ``SET LOCAL lock_timeout TO '10s'`` then ``LOCK ir_attachment IN
SHARE MODE`` and gives up (retrying at the next autovacuum) when the lock is
not granted within those 10 s. SHARE UPDATE EXCLUSIVE conflicts with SHARE,
so while a backup runs the collector cannot remove a file the snapshot
lists; it does NOT conflict with the ROW EXCLUSIVE lock of INSERT / UPDATE /
DELETE, so users keep creating and deleting attachments meanwhile (new
files are simply not part of this backup; deleted rows' files stay on disk
until the next collection). The lock also conflicts with itself, VACUUM /
ANALYZE of that one table (autovacuum skips it and comes back later) and
schema changes of ``ir_attachment`` (a module upgrade waits for the backup).
If the collector is running when the backup starts, the backup waits for it
(at most ``lock_timeout``, default 60 s) so the snapshot never lists a file
the collector is about to remove.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shutil
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from .errors import DumpError, RestoreError

_logger = logging.getLogger(__name__)

#: Schemas whose tables are not user data.
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
#: Kill a child process that does not exit this long after being asked to.
REAP_TIMEOUT = 10
#: Lines of stderr kept from a child process for the error message.
STDERR_LINES = 40


# ---------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PgParams:
    """Where PostgreSQL is and who we are; ``None`` = libpq's default."""

    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    maintenance_db: str = "postgres"

    @classmethod
    def from_env(cls, environ=None, **overrides) -> PgParams:
        """From ``PGHOST``/``PGPORT``/``PGUSER``/``PGPASSWORD``; explicit
        keyword arguments that are not None win."""
        env = os.environ if environ is None else environ
        values = {
            "host": env.get("PGHOST") or None,
            "port": int(env["PGPORT"]) if env.get("PGPORT") else None,
            "user": env.get("PGUSER") or None,
            "password": env.get("PGPASSWORD") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("port") is not None:
            values["port"] = int(values["port"])
        return cls(**values)

    def connect_kwargs(self, dbname: str) -> dict:
        kwargs = {"dbname": dbname, "application_name": "db_backup_suite"}
        for key in ("host", "port", "user", "password"):
            value = getattr(self, key)
            if value is not None:
                kwargs[key] = value
        return kwargs

    def connect(self, dbname: str, autocommit: bool = True):
        """A psycopg2 connection; a failure is a clear :class:`DumpError`."""
        try:
            conn = psycopg2.connect(**self.connect_kwargs(dbname))
        except psycopg2.OperationalError as exc:
            raise DumpError(
                f"cannot connect to database {dbname!r}"
                f"{self._where()}: {_first_line(exc)}"
            ) from exc
        conn.autocommit = autocommit
        return conn

    def env(self, base=None) -> dict:
        """Environment for a child process (password never on argv)."""
        env = dict(os.environ if base is None else base)
        mapping = {
            "PGHOST": self.host,
            "PGPORT": self.port,
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
        }
        for key, value in mapping.items():
            if value is not None:
                env[key] = str(value)
        return env

    def _where(self) -> str:
        host = self.host or os.environ.get("PGHOST") or "local socket"
        port = self.port or os.environ.get("PGPORT") or 5432
        return f" on {host}:{port}"


def _first_line(exc) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]


@contextlib.contextmanager
def admin_cursor(params: PgParams, dbname: str | None = None):
    """An autocommit cursor on the maintenance database (or ``dbname``)."""
    conn = params.connect(dbname or params.maintenance_db)
    try:
        with conn.cursor() as cr:
            yield cr
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Facts about a database
# ---------------------------------------------------------------------------
def _table_exists(cr, name: str) -> bool:
    cr.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
    return cr.fetchone()[0]


def _series_of(versions) -> str | None:
    """The Odoo series (``18.0``) most installed modules carry.

    Odoo 18 leaves ``base``'s ``latest_version`` empty on some databases;
    every module version starts with the series (``18.0.1.3``).
    """
    series = Counter(
        ".".join(v.split(".")[:2]) for v in versions if v and v.count(".") >= 2
    )
    return series.most_common(1)[0][0] if series else None


def database_info(conn) -> dict:
    """What the manifest records about the database, read from itself.

    ``odoo_version`` is the ``latest_version`` of the ``base`` module (e.g.
    ``18.0.1.3``), ``modules`` maps every installed module (states
    installed / to upgrade / to remove) to its version; ``uuid`` and
    ``create_date`` come from ``ir_config_parameter``. A database without
    those tables gets ``None`` values (``is_odoo`` False).
    """
    with conn.cursor() as cr:
        cr.execute(
            "SELECT current_database(), current_setting('server_version'),"
            " current_setting('server_version_num')::int,"
            " pg_encoding_to_char(d.encoding), d.datcollate, d.datctype"
            " FROM pg_database d WHERE d.datname = current_database()"
        )
        name, version, version_num, encoding, collate, ctype = cr.fetchone()
        info = {
            "database": name,
            "postgresql_version": version,
            "postgresql_version_num": version_num,
            "encoding": encoding,
            "collate": collate,
            "ctype": ctype,
            "is_odoo": False,
            "odoo_version": None,
            "modules": {},
            "uuid": None,
            "create_date": None,
        }
        if _table_exists(cr, "ir_module_module"):
            info["is_odoo"] = True
            cr.execute(
                "SELECT name, latest_version FROM ir_module_module"
                " WHERE state IN ('installed', 'to upgrade', 'to remove')"
                " ORDER BY name"
            )
            info["modules"] = dict(cr.fetchall())
            info["odoo_version"] = info["modules"].get("base") or _series_of(
                info["modules"].values()
            )
        if _table_exists(cr, "ir_config_parameter"):
            cr.execute(
                "SELECT key, value FROM ir_config_parameter WHERE key IN"
                " ('database.uuid', 'database.create_date')"
            )
            params = dict(cr.fetchall())
            info["uuid"] = params.get("database.uuid")
            info["create_date"] = params.get("database.create_date")
    return info


#: The ``ir_config_parameter`` keys that make a database itself: its uuid
#: (which IAP, the publisher warranty, mail gateways and the backup keys know
#: it by) and its secret (which signs sessions and access tokens).
IDENTITY_KEYS = ("database.uuid", "database.secret")


def read_identity(params: PgParams, dbname: str) -> dict[str, str]:
    """``{key: value}`` of :data:`IDENTITY_KEYS` present in ``dbname``
    (empty for a database without ``ir_config_parameter``)."""
    conn = params.connect(dbname)
    try:
        with conn.cursor() as cr:
            if not _table_exists(cr, "ir_config_parameter"):
                return {}
            cr.execute(
                "SELECT key, value FROM ir_config_parameter WHERE key = ANY(%s)",
                (list(IDENTITY_KEYS),),
            )
            return dict(cr.fetchall())
    finally:
        conn.close()


def write_identity(params: PgParams, dbname: str, values: dict[str, str]) -> bool:
    """Set the ``ir_config_parameter`` ``values`` in ``dbname`` (inserted
    when missing); False when it has no ``ir_config_parameter`` table."""
    conn = params.connect(dbname, autocommit=False)
    try:
        with conn.cursor() as cr:
            if not _table_exists(cr, "ir_config_parameter"):
                return False
            for key, value in values.items():
                cr.execute(
                    "UPDATE ir_config_parameter SET value = %s WHERE key = %s",
                    (value, key),
                )
                if cr.rowcount == 0:
                    cr.execute(
                        "INSERT INTO ir_config_parameter (key, value) VALUES (%s, %s)",
                        (key, value),
                    )
        conn.commit()
        return True
    finally:
        conn.close()


def user_tables(cr) -> list[tuple[str, str]]:
    """``(schema, table)`` of every ordinary table holding user data."""
    cr.execute(
        "SELECT n.nspname, c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND n.nspname <> ALL(%s)"
        " AND n.nspname NOT LIKE 'pg\\_%%'"
        " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid ="
        "   'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')"
        " ORDER BY 1, 2",
        (list(SYSTEM_SCHEMAS),),
    )
    return cr.fetchall()


def table_key(schema: str, table: str) -> str:
    return table if schema == "public" else f"{schema}.{table}"


def row_counts(conn, batch: int = 50) -> dict[str, int]:
    """Exact ``count(*)`` of every user table (in the connection's snapshot).

    Keys are table names, schema-qualified outside ``public``. Tables of
    extensions are left out (their content comes with the extension).
    """
    counts: dict[str, int] = {}
    with conn.cursor() as cr:
        tables = user_tables(cr)
        for start in range(0, len(tables), batch):
            chunk = tables[start : start + batch]
            query = sql.SQL(" UNION ALL ").join(
                sql.SQL("SELECT {}, count(*) FROM {}").format(
                    sql.Literal(i), sql.Identifier(schema, table)
                )
                for i, (schema, table) in enumerate(chunk)
            )
            cr.execute(query)
            for i, count in cr.fetchall():
                schema, table = chunk[i]
                counts[table_key(schema, table)] = count
    return counts


def attachment_files(conn) -> list[dict]:
    """Distinct filestore files referenced by ``ir_attachment``.

    ``[{"store_fname", "file_size", "checksum"}]`` sorted by name. Several
    attachments may share one file (Odoo deduplicates by sha1); URL and
    in-database attachments have no ``store_fname`` and are skipped.
    """
    with conn.cursor() as cr:
        if not _table_exists(cr, "ir_attachment"):
            return []
        cr.execute(
            "SELECT store_fname, max(file_size), max(checksum) FROM ir_attachment"
            " WHERE store_fname IS NOT NULL AND store_fname <> ''"
            " GROUP BY store_fname ORDER BY store_fname"
        )
        return [
            {"store_fname": f, "file_size": s, "checksum": c}
            for f, s, c in cr.fetchall()
        ]


class Snapshot:
    """An open repeatable-read transaction whose snapshot is exported."""

    def __init__(self, conn, snapshot_id: str, locked: bool):
        self.conn = conn
        self.id = snapshot_id
        #: True when ``ir_attachment`` exists and is locked against the GC.
        self.locked = locked

    def database_info(self) -> dict:
        return database_info(self.conn)

    def attachment_files(self) -> list[dict]:
        return attachment_files(self.conn)

    def row_counts(self) -> dict[str, int]:
        return row_counts(self.conn)


@contextlib.contextmanager
def exported_snapshot(conn, lock_timeout: str = "60s"):
    """Yield a :class:`Snapshot` (see the module docstring); the transaction
    is rolled back on exit. ``conn`` must be a fresh, idle connection used
    for nothing else meanwhile."""
    conn.autocommit = False
    conn.set_session(
        isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ
    )
    try:
        with conn.cursor() as cr:
            cr.execute("SELECT to_regclass('ir_attachment') IS NOT NULL")
            has_attachments = cr.fetchone()[0]
        conn.rollback()  # a new transaction: nothing before the LOCK
        with conn.cursor() as cr:
            # LOCK must be the first statement of the transaction: the
            # REPEATABLE READ snapshot is then taken after the lock is held.
            if has_attachments:
                cr.execute(
                    "SET LOCAL lock_timeout = %s; "
                    "LOCK TABLE ir_attachment IN SHARE UPDATE EXCLUSIVE MODE",
                    (lock_timeout,),
                )
            cr.execute("SELECT pg_export_snapshot()")
            snapshot_id = cr.fetchone()[0]
    except psycopg2.errors.LockNotAvailable as exc:
        conn.rollback()
        raise DumpError(
            "could not lock ir_attachment within "
            f"{lock_timeout}: the filestore garbage collector (or a schema "
            "change) holds it; try again later"
        ) from exc
    except psycopg2.Error as exc:
        conn.rollback()
        raise DumpError(f"cannot open the backup snapshot: {_first_line(exc)}") from exc
    try:
        yield Snapshot(conn, snapshot_id, has_attachments)
    finally:
        try:
            conn.rollback()
        except psycopg2.Error as exc:
            _logger.warning("ending the snapshot transaction failed: %s", exc)


# ---------------------------------------------------------------------------
# Databases: create, drop, rename, terminate
# ---------------------------------------------------------------------------
def database_exists(params: PgParams, dbname: str) -> bool:
    with admin_cursor(params) as cr:
        cr.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        return cr.fetchone() is not None


def create_database(
    params: PgParams,
    dbname: str,
    template: str = "template0",
    *,
    encoding: str = "UTF8",
    collate: str | None = None,
    ctype: str | None = None,
):
    """``CREATE DATABASE`` (UTF8 by default, from template0, with the given
    ``LC_COLLATE`` / ``LC_CTYPE`` or the server's defaults): a clear
    RestoreError."""
    query = sql.SQL("CREATE DATABASE {} ENCODING {}").format(
        sql.Identifier(dbname), sql.Literal(encoding)
    )
    if collate:
        query += sql.SQL(" LC_COLLATE {}").format(sql.Literal(collate))
    if ctype:
        query += sql.SQL(" LC_CTYPE {}").format(sql.Literal(ctype))
    query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    try:
        with admin_cursor(params) as cr:
            cr.execute(query)
    except psycopg2.Error as exc:
        raise RestoreError(
            f"cannot create database {dbname!r}: {_first_line(exc)}"
        ) from exc


def terminate_connections(cr, dbname: str) -> int:
    cr.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (dbname,),
    )
    return cr.fetchone()[0]


def drop_database(params: PgParams, dbname: str, missing_ok: bool = True):
    """Terminate its connections and drop it."""
    try:
        with admin_cursor(params) as cr:
            terminate_connections(cr, dbname)
            if missing_ok:
                query = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
            else:
                query = "DROP DATABASE {} WITH (FORCE)"
            cr.execute(sql.SQL(query).format(sql.Identifier(dbname)))
    except psycopg2.Error as exc:
        raise RestoreError(
            f"cannot drop database {dbname!r}: {_first_line(exc)}"
        ) from exc


def set_allow_connections(cr, dbname: str, allow: bool):
    cr.execute(
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(dbname), sql.SQL("true" if allow else "false")
        )
    )


def rename_database(cr, old: str, new: str, attempts: int = 5):
    """Rename ``old`` (closing its connections first; retried a few times
    since a client may reconnect between the termination and the rename)."""
    last = None
    for _ in range(attempts):
        terminate_connections(cr, old)
        try:
            cr.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(old), sql.Identifier(new)
                )
            )
            return
        except psycopg2.errors.ObjectInUse as exc:
            last = exc
    raise RestoreError(
        f"cannot rename database {old!r} to {new!r}: {_first_line(last)}"
    )


# ---------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------
def find_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DumpError(
            f"{name} not found on PATH: install the PostgreSQL client tools "
            "(Debian: postgresql-client) matching the server's major version"
        )
    return path


class _StderrTail(threading.Thread):
    """Drains a child's stderr (so it never blocks) keeping the last lines."""

    def __init__(self, stream):
        super().__init__(name="pg-stderr", daemon=True)
        self._stream = stream
        self.lines: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self.start()

    def run(self):
        for raw in iter(self._stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.lines.append(line)
        self._stream.close()

    def summary(self) -> str:
        self.join(timeout=REAP_TIMEOUT)
        errors = [
            line
            for line in self.lines
            if "error" in line.lower() or "fatal" in line.lower()
        ]
        chosen = errors or list(self.lines)
        return " | ".join(chosen[-3:]) if chosen else "(no message)"


class PgProcess:
    """A ``pg_dump`` / ``pg_restore`` child that is always reaped.

    Use as a context manager: leaving it kills the child if it still runs
    and waits for it, whatever happened. ``check()`` waits for a normal
    exit and raises ``error_class`` with the summarised stderr otherwise.
    """

    def __init__(
        self,
        argv,
        params: PgParams,
        *,
        stdin=None,
        stdout=None,
        error_class=DumpError,
        what=None,
        extra_env=None,
    ):
        self.argv = argv
        self.what = what or os.path.basename(argv[0])
        self.error_class = error_class
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env={**params.env(), **(extra_env or {})},
                close_fds=True,
            )
        except OSError as exc:
            raise error_class(f"cannot start {self.what}: {exc}") from exc
        self._stderr = _StderrTail(self.proc.stderr)

    @property
    def stdout(self):
        return self.proc.stdout

    @property
    def stdin(self):
        return self.proc.stdin

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()

    def reap(self):
        """Kill if still running; wait; close pipes. Never raises."""
        try:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=REAP_TIMEOUT)
        except Exception as exc:  # a zombie is logged, never left silently
            _logger.error(
                "could not reap %s (pid %s): %s", self.what, self.proc.pid, exc
            )
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError as exc:
                    _logger.debug("closing a pipe of %s: %s", self.what, exc)
        self._stderr.join(timeout=REAP_TIMEOUT)

    def check(self, timeout=None):
        """Wait for the exit; raise ``error_class`` unless it is 0."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.kill()
            raise self.error_class(f"{self.what} did not finish in time") from exc
        if rc != 0:
            how = f"was killed by signal {-rc}" if rc < 0 else f"exited with {rc}"
            raise self.error_class(f"{self.what} {how}: {self._stderr.summary()}")
        return rc

    def stderr_summary(self) -> str:
        return self._stderr.summary()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.reap()


def pg_dump_argv(dbname: str, snapshot: str | None = None, extra=()) -> list[str]:
    """``pg_dump`` in custom format, uncompressed (compression happens once,
    in the payload), with owners and privileges kept in the dump (the
    restore decides whether to apply them; see restore.py)."""
    argv = [
        find_tool("pg_dump"),
        "--format=custom",
        "--compress=0",
        "--no-sync",
    ]
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    argv.extend(extra)
    argv.append(f"--dbname={dbname}")
    return argv


def start_pg_dump(params: PgParams, dbname: str, snapshot=None, extra=()) -> PgProcess:
    return PgProcess(
        pg_dump_argv(dbname, snapshot, extra),
        params,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        error_class=DumpError,
        what="pg_dump",
    )


def pg_restore_argv(
    dbname: str,
    *,
    jobs: int = 1,
    path: str | None = None,
    keep_privileges: bool = False,
) -> list[str]:
    """``pg_restore --exit-on-error --no-owner [--no-privileges]``.

    ``--exit-on-error``: stop at the first error (Odoo's restore pipes SQL
    into psql, which continues past errors and may report success on a
    partial restore). ``--no-owner``: objects belong to the restoring role,
    which is what Odoo connects as, so a dump from another server whose
    roles do not exist here restores. ``--no-privileges`` unless
    ``keep_privileges``: GRANTs naming roles missing on this server would
    otherwise stop the restore. ``-j`` needs a seekable file (``path``).
    """
    argv = [find_tool("pg_restore"), "--exit-on-error", "--no-owner"]
    if not keep_privileges:
        argv.append("--no-privileges")
    if jobs > 1:
        if path is None:
            raise ValueError("parallel pg_restore needs a seekable dump file")
        argv.append(f"--jobs={jobs}")
    argv.append(f"--dbname={dbname}")
    if path is not None:
        argv.append(path)
    return argv


def restore_session_options(environ=None) -> str:
    """``PGOPTIONS`` for pg_restore's sessions: the caller's own options plus
    ``synchronous_commit=off``.

    pg_restore commits every object separately (thousands of commits for an
    Odoo database), and each synchronous commit waits for a WAL flush; off,
    the restore takes about half the time. Nothing is at risk: the restore
    writes into a new staging database that is dropped on any failure, and
    the swap that makes it live (``ALTER DATABASE ... RENAME``) commits
    synchronously, which flushes the WAL up to that commit, every earlier
    asynchronous commit of the restore included.
    """
    env = os.environ if environ is None else environ
    own = env.get("PGOPTIONS", "").strip()
    return f"{own} -c synchronous_commit=off".strip()


def start_pg_restore(
    params: PgParams, dbname: str, *, jobs=1, path=None, keep_privileges=False
) -> PgProcess:
    return PgProcess(
        pg_restore_argv(dbname, jobs=jobs, path=path, keep_privileges=keep_privileges),
        params,
        stdin=subprocess.PIPE if path is None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        error_class=RestoreError,
        what="pg_restore",
        extra_env={"PGOPTIONS": restore_session_options()},
    )


def pg_restore_check_argv() -> list[str]:
    """``pg_restore --file=/dev/null``: the dump on stdin, no database.

    Tried on PostgreSQL 15 with a custom-format dump cut at 2 KB, 100 KB,
    4 MB and 1 byte short of its 8.9 MB: ``pg_restore -l`` reads the table
    of contents only and exits 0 for every cut after the TOC; ``pg_restore
    -f /dev/null`` reads and writes out every data block (from a pipe, in
    order) and exits 1 with "could not read from input file: end of file"
    for each of them. So this is the check that reads the whole dump.
    """
    return [find_tool("pg_restore"), f"--file={os.devnull}"]


def start_pg_restore_check(params: PgParams | None = None) -> PgProcess:
    """A ``pg_restore`` that reads a dump from its stdin and writes the
    script to /dev/null (:func:`pg_restore_check_argv`); it connects to no
    database. ``check()`` raises :class:`RestoreError` with its message."""
    return PgProcess(
        pg_restore_check_argv(),
        params or PgParams(),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        error_class=RestoreError,
        what="pg_restore",
    )
