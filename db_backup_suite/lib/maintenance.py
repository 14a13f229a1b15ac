"""Maintenance mode of a database while a production restore replaces it.

From the pre-restore backup to the swap, the live database must refuse
writes: a change made then would land in the database that is about to be
renamed ``<db>_pre_restore_<ts>`` (the safety copy) and vanish from what
users see afterwards, without a word. While a restore job holds it:

* a **marker** file ``<data_dir>/db_backup_suite/maintenance/<db>.json``
  names the database, the archive, when it started and the process (pid,
  host, process start time) of the restore. Odoo reads it (``ir.http``, the
  ORM guard, the cron runner) to refuse writes with a clear message and to
  show a banner;
* PostgreSQL itself is told: ``ALTER DATABASE <db> SET
  default_transaction_read_only = on``, and every session of the database
  is terminated, so a transaction begun before the maintenance cannot
  commit after the pre-restore backup's snapshot, and any client that does
  not ask for ``READ WRITE`` explicitly (psql, scripts, reporting tools)
  gets read-only sessions. Odoo's own cursors begin every transaction with
  an explicit ``READ WRITE`` (``odoo.sql_db.Cursor`` sets
  ``readonly=False`` on its connection), which overrides that default: the
  Odoo side of the maintenance is enforced by the addon (see
  ``models/ir_http.py``).

The marker is written before the database setting and removed after it is
reset, so a database left read-only by the suite always has a marker. A
marker whose process is dead (or a zombie, or whose pid was reused by
another process) is *stale*: :func:`current` clears it, with the database
setting, the next time anyone checks. A restore killed half-way therefore
cannot keep the database read-only.

Pure Python: no Odoo import.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from datetime import UTC, datetime

import psycopg2.errors
from psycopg2 import sql

from . import pgtools, safety

SETTING = "default_transaction_read_only"
FOLDER = ("db_backup_suite", "maintenance")
# a marker written on another host cannot have its process checked here:
# it is trusted this long, then considered stale
FOREIGN_MAX_AGE = 24 * 3600


def marker_dir(data_dir) -> str:
    return os.path.join(os.fspath(data_dir), *FOLDER)


def marker_path(data_dir, dbname: str) -> str:
    """The marker file of ``dbname`` (a name the suite accepts only)."""
    safety.check_database_name(dbname)
    return os.path.join(marker_dir(data_dir), dbname + ".json")


def _proc_stat(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3,
    the state, first), or None when it cannot be read (no /proc, no such
    process)."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as handle:
            data = handle.read()
    except (OSError, OverflowError, ValueError, TypeError):
        return None
    # the command name (field 2) is in parentheses and may hold spaces
    return data[data.rfind(b")") + 2 :].split()


def _proc_start(pid: int) -> int | None:
    """The start time (clock ticks since boot) of process ``pid``, or None
    when it cannot be read (no /proc, no such process)."""
    fields = _proc_stat(pid)
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, TypeError, ValueError):
        return None


# a process that ended but was not waited for yet (zombie) or is being
# reaped: ``kill(pid, 0)`` still succeeds on it, it holds nothing any more
DEAD_STATES = (b"Z", b"X", b"x")


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs: it exists and, where /proc tells, is
    neither a zombie nor being reaped (a restore killed by SIGKILL stays a
    zombie as long as its parent, the Odoo server, does not wait for it)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    except (OverflowError, ValueError, TypeError):
        return False
    fields = _proc_stat(pid)
    return not (fields and fields[0] in DEAD_STATES)


def _write_marker(path: str, marker: dict) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".marker-", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(marker, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read(data_dir, dbname: str) -> dict | None:
    """The marker of ``dbname`` (a dict), None when there is none.

    One ``stat`` when there is no maintenance. A marker that cannot be
    parsed is returned as ``{"database": dbname, "corrupt": True}`` (it is
    stale: see :func:`is_stale`)."""
    path = marker_path(data_dir, dbname)
    try:
        with open(path, encoding="utf-8") as handle:
            marker = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"database": dbname, "corrupt": True}
    if not isinstance(marker, dict) or marker.get("database") != dbname:
        return {"database": dbname, "corrupt": True}
    return marker


def started_at(marker: dict) -> datetime | None:
    """When the maintenance started (aware UTC), None when unknown."""
    try:
        return datetime.fromisoformat(marker["started"]).astimezone(UTC)
    except (KeyError, TypeError, ValueError):
        return None


def is_stale(marker: dict, now: float | None = None) -> bool:
    """True when the process that holds the marker is gone: a dead pid (or
    a zombie: ended, not waited for by its parent), a pid now used by
    another process (its start time differs), a corrupt marker, or a
    marker of another host older than ``FOREIGN_MAX_AGE``."""
    if marker.get("corrupt") or not marker.get("pid"):
        return True
    if marker.get("host") and marker["host"] != socket.gethostname():
        started = started_at(marker)
        now = time.time() if now is None else now
        return started is None or now - started.timestamp() > FOREIGN_MAX_AGE
    if not _pid_alive(marker["pid"]):
        return True
    recorded = marker.get("proc_start")
    return recorded is not None and _proc_start(marker["pid"]) not in (
        None,
        recorded,
    )


def read_only_setting(cr, dbname: str) -> bool:
    """Whether ``dbname`` carries ``default_transaction_read_only = on`` as
    a database setting (``cr``: any cursor of the cluster)."""
    cr.execute(
        "SELECT s.setconfig FROM pg_db_role_setting s "
        "JOIN pg_database d ON d.oid = s.setdatabase "
        "WHERE d.datname = %s AND s.setrole = 0",
        (dbname,),
    )
    row = cr.fetchone()
    return bool(row and row[0] and f"{SETTING}=on" in row[0])


def _terminate(cr, dbname: str, keep_pids=()) -> int:
    cr.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid() AND NOT pid = ANY(%s)",
        (dbname, [int(p) for p in keep_pids]),
    )
    return cr.fetchone()[0]


def enter(
    pg: pgtools.PgParams,
    data_dir,
    dbname: str,
    archive: str,
    pid: int | None = None,
) -> dict:
    """Put ``dbname`` in maintenance for the restore of ``archive`` by the
    process ``pid`` (default: this one); return the marker.

    Writes the marker, sets the database read-only by default and
    terminates every session of it (a transaction begun before cannot
    commit after this returns). On any failure the maintenance is left
    again and the error raised: nothing stays read-only."""
    pid = os.getpid() if pid is None else int(pid)
    path = marker_path(data_dir, dbname)
    marker = {
        "database": dbname,
        "archive": str(archive or "")[:500],
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "pid": pid,
        "host": socket.gethostname(),
        "proc_start": _proc_start(pid),
    }
    _write_marker(path, marker)
    try:
        with pgtools.admin_cursor(pg) as cr:
            # renames keep the oid: leaving finds the database wherever the
            # swap put it (the safety copy)
            cr.execute("SELECT oid FROM pg_database WHERE datname = %s", (dbname,))
            row = cr.fetchone()
            if row is None:
                raise psycopg2.errors.InvalidCatalogName(
                    f"database {dbname!r} does not exist"
                )
            marker["oid"] = int(row[0])
            _write_marker(path, marker)
            cr.execute(
                sql.SQL("ALTER DATABASE {} SET {} = on").format(
                    sql.Identifier(dbname), sql.Identifier(SETTING)
                )
            )
            _terminate(cr, dbname)
        # from here on, no session opened before the maintenance is alive
        marker["enforced_at"] = time.time()
        _write_marker(path, marker)
    except BaseException:
        leave(pg, data_dir, dbname)
        raise
    return marker


def leave(
    pg: pgtools.PgParams, data_dir, dbname: str, also=(), pid: int | None = None
) -> list[str]:
    """End the maintenance of ``dbname``: reset the read-only setting on it,
    on the database the marker names by oid wherever it is now (the swap
    renames the live database to the safety copy, its settings go with it)
    and on the databases ``also``, then remove the marker. Idempotent; returns the
    databases whose setting was reset. The marker is removed even when the
    reset fails (the error is raised after); with ``pid``, only a marker of
    that process is removed (a stale marker cleared while a new restore
    starts leaves the new one alone)."""
    reset = []
    held = read(data_dir, dbname) or {}
    try:
        with pgtools.admin_cursor(pg) as cr:
            names = [dbname, *[a for a in also if a]]
            if held.get("oid"):
                # where the database of the maintenance is now (renamed to
                # the safety copy by a swap, or still the live one)
                cr.execute(
                    "SELECT datname FROM pg_database WHERE oid = %s",
                    (int(held["oid"]),),
                )
                names.extend(row[0] for row in cr.fetchall())
            for name in dict.fromkeys(names):
                if read_only_setting(cr, name):
                    cr.execute(
                        sql.SQL("ALTER DATABASE {} RESET {}").format(
                            sql.Identifier(name), sql.Identifier(SETTING)
                        )
                    )
                    reset.append(name)
    finally:
        marker = read(data_dir, dbname) if pid is not None else None
        if marker is None or marker.get("pid") in (None, pid):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(marker_path(data_dir, dbname))
    return reset


def current(pg: pgtools.PgParams, data_dir, dbname: str) -> dict | None:
    """The live maintenance marker of ``dbname``, None when there is none;
    a stale marker is cleared here (setting reset, marker removed)."""
    marker = read(data_dir, dbname)
    if marker is None:
        return None
    if is_stale(marker):
        leave(pg, data_dir, dbname, pid=marker.get("pid"))
        return None
    return marker
