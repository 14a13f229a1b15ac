"""One backup of a database at a time; restores announce themselves.

A session-level PostgreSQL advisory lock on a fixed key, taken in the
database being backed up, on a connection held for the whole run. It lives
in PostgreSQL, so it works across processes and hosts (the CLI, several
Odoo workers, a cron on another machine) and it is released by PostgreSQL
itself if the process dies: no stale lock file to clean up.

The Odoo layer can use the same key on its own cursor (session-level: the
lock is held until released or the connection closes, whatever the
transactions do)::

    from odoo.addons.db_backup_suite.lib import lock
    if not lock.try_advisory_lock(cr):
        raise UserError(lock.locked_message(cr.dbname, lock.lock_holder(cr)))

The work lock
=============

A restore (and the scratch restore of ``verify --test-restore``) creates
databases and directories named after the database it works for
(``<db>_restoring_<ts>``, ``<db>_verify_<ts>``, see safety.py) before they
exist under their final name. :func:`work_lock` is how such a run says "I
am alive": a session-level advisory lock keyed by the database NAME, taken
in the maintenance database (the staging database does not exist yet and
advisory locks are per database), SHARED by every restore and verify of
that name for their whole duration. :mod:`.cleanup` takes the same key
EXCLUSIVELY and without waiting before it drops any staging or scratch
leftover of that database: granted means no restore or verify of it is
running anywhere on this PostgreSQL server; refused means one is, and
nothing is touched. Like the backup lock it dies with the process that
holds it (PostgreSQL ends the session), so a killed run never blocks the
next cleanup.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging

import psycopg2

from .errors import BackupLockedError
from .pgtools import PgParams

_logger = logging.getLogger(__name__)

#: The advisory lock key: the bytes "DBSUBAK1" as a signed 64-bit integer.
BACKUP_LOCK_KEY = int.from_bytes(b"DBSUBAK1", "big", signed=True)


def try_advisory_lock(cr, key: int = BACKUP_LOCK_KEY) -> bool:
    """Take the session-level lock without waiting; True when granted."""
    cr.execute("SELECT pg_try_advisory_lock(%s)", (key,))
    return bool(cr.fetchone()[0])


def release_advisory_lock(cr, key: int = BACKUP_LOCK_KEY) -> bool:
    cr.execute("SELECT pg_advisory_unlock(%s)", (key,))
    return bool(cr.fetchone()[0])


def lock_holder(cr, key: int = BACKUP_LOCK_KEY) -> dict | None:
    """Who holds the lock in the current database (pid, client, since)."""
    cr.execute(
        "SELECT a.pid, a.application_name, a.client_addr::text, a.backend_start"
        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted"
        " AND l.database = (SELECT oid FROM pg_database"
        "                   WHERE datname = current_database())"
        " AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
        ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
    )
    row = cr.fetchone()
    if row is None:
        return None
    pid, app, addr, since = row
    return {"pid": pid, "application_name": app, "client_addr": addr, "since": since}


def locked_message(dbname: str, holder: dict | None) -> str:
    msg = f"another backup of database {dbname!r} is running"
    if holder:
        since = (
            holder["since"].isoformat(timespec="seconds") if holder["since"] else "?"
        )
        msg += (
            f" (PostgreSQL backend pid {holder['pid']}, "
            f"{holder['application_name'] or 'unknown client'}, "
            f"connected since {since})"
        )
    return msg + "; wait for it to finish"


@contextlib.contextmanager
def backup_lock(params: PgParams, dbname: str, key: int = BACKUP_LOCK_KEY):
    """Hold the backup lock of ``dbname`` for the ``with`` block.

    Raises :class:`BackupLockedError` at once if another session holds it.
    Yields the (autocommit) connection holding the lock.
    """
    conn = params.connect(dbname)
    try:
        with conn.cursor() as cr:
            if not try_advisory_lock(cr, key):
                raise BackupLockedError(locked_message(dbname, lock_holder(cr, key)))
        yield conn
    finally:
        try:
            if not conn.closed:
                with conn.cursor() as cr:
                    release_advisory_lock(cr, key)
        except psycopg2.Error as exc:  # closing the session releases it anyway
            _logger.info("releasing the backup lock of %s: %s", dbname, exc)
        conn.close()


# ---------------------------------------------------------------------------
# The work lock (restores and scratch restores; see the module docstring)
# ---------------------------------------------------------------------------
def work_lock_key(dbname: str) -> int:
    """The advisory key of ``dbname``'s work lock: the first 8 bytes of
    sha256("db_backup_suite work\0" + name), signed (never the backup
    lock's key: that one lives in the database itself, this one in the
    maintenance database)."""
    digest = hashlib.sha256(b"db_backup_suite work\0" + dbname.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def work_lock(params: PgParams, dbname: str, *, exclusive: bool = False):
    """Hold ``dbname``'s work lock for the ``with`` block.

    Shared (the default, restores and verifies): waits while a cleanup
    holds it exclusively (a cleanup is short) and never excludes another
    restore. Exclusive (:mod:`.cleanup`): never waits; yields False when a
    restore or verify of ``dbname`` holds it, True when granted.
    """
    key = work_lock_key(dbname)
    conn = params.connect(params.maintenance_db)
    try:
        with conn.cursor() as cr:
            if exclusive:
                cr.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                granted = bool(cr.fetchone()[0])
            else:
                cr.execute("SELECT pg_advisory_lock_shared(%s)", (key,))
                granted = True
        yield granted
    finally:
        # closing the session releases whatever it holds
        conn.close()
