"""Maintenance mode of a database during a production restore
(``db_backup_suite.lib.maintenance``) against the real PostgreSQL.

Entering writes the marker, makes the database read-only by default and
terminates its sessions (a transaction begun before cannot commit after);
leaving resets the setting (on the renamed safety copy too) and removes the
marker; a marker whose process died, or whose pid now belongs to another
process, is cleared by the next check and cannot keep the database
read-only.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import errors, sql

from db_backup_suite.lib import maintenance
from db_backup_suite.lib.errors import SafetyError
from db_backup_suite.lib.pgtools import PgParams
from tests.fixtures.odoo_db import connect, drop_database

PREFIX = "h3_mt_"


@pytest.fixture
def pg():
    return PgParams.from_env()


@pytest.fixture
def live():
    """A real database with one table, dropped after (its setting too)."""
    name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    admin = connect("postgres")
    with admin.cursor() as cr:
        cr.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()
    conn = connect(name)
    with conn.cursor() as cr:
        cr.execute("CREATE TABLE note (id serial PRIMARY KEY, body text)")
    conn.close()
    yield name
    drop_database(name)


def _setting_on(name):
    conn = connect("postgres")
    try:
        with conn.cursor() as cr:
            return maintenance.read_only_setting(cr, name)
    finally:
        conn.close()


def _insert(name, body, read_write=False):
    conn = connect(name, autocommit=False)
    try:
        if read_write:
            # what Odoo's cursors do: an explicit READ WRITE transaction
            conn.set_session(readonly=False)
        with conn.cursor() as cr:
            cr.execute("INSERT INTO note (body) VALUES (%s)", (body,))
        conn.commit()
    finally:
        conn.close()


def _bodies(name):
    conn = connect(name)
    try:
        with conn.cursor() as cr:
            cr.execute("SELECT body FROM note ORDER BY id")
            return [row[0] for row in cr.fetchall()]
    finally:
        conn.close()


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_enter_refuses_writes_and_cuts_open_transactions(pg, tmp_path, live):
    _insert(live, "before")
    # a transaction begun before the maintenance, not committed yet
    early = connect(live, autocommit=False)
    early_cr = early.cursor()
    early_cr.execute("INSERT INTO note (body) VALUES ('in flight')")

    marker = maintenance.enter(pg, tmp_path, live, "db-2026.dbbs", pid=os.getpid())

    assert marker["archive"] == "db-2026.dbbs"
    assert marker["pid"] == os.getpid()
    assert marker["enforced_at"] >= maintenance.started_at(marker).timestamp() - 1
    path = maintenance.marker_path(tmp_path, live)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert maintenance.read(tmp_path, live) == json.loads(Path(path).read_text())
    assert _setting_on(live)
    # the session opened before was terminated: its write never commits
    with pytest.raises(psycopg2.OperationalError):
        early_cr.execute("SELECT 1")
        early.commit()
    early.close()
    # a new session is read-only by default; reads work
    with pytest.raises(errors.ReadOnlySqlTransaction):
        _insert(live, "during")
    assert _bodies(live) == ["before"]
    # the live process holds it: the check keeps it
    assert maintenance.current(pg, tmp_path, live)["archive"] == "db-2026.dbbs"

    assert maintenance.leave(pg, tmp_path, live) == [live]
    assert not _setting_on(live)
    assert maintenance.read(tmp_path, live) is None
    _insert(live, "after")
    assert _bodies(live) == ["before", "after"]
    # idempotent
    assert maintenance.leave(pg, tmp_path, live) == []


def test_explicit_read_write_overrides_the_database_default(pg, tmp_path, live):
    """What the Odoo side must enforce itself: a client that begins its
    transactions READ WRITE (Odoo's cursors do) is not stopped by the
    database default alone."""
    maintenance.enter(pg, tmp_path, live, "a.dbbs")
    try:
        _insert(live, "explicit", read_write=True)
    finally:
        maintenance.leave(pg, tmp_path, live)
    assert _bodies(live) == ["explicit"]


def test_leave_resets_the_renamed_safety_copy(pg, tmp_path, live):
    """The swap renames the live database (its settings go with it): leaving
    resets the safety copy too (even when the restore died after the swap:
    the stale marker's check does the same), and the restored database
    under the live name never was read-only."""
    maintenance.enter(pg, tmp_path, live, "a.dbbs")
    safety_copy = live + "_pre_restore_20260101_000000"
    admin = connect("postgres")
    with admin.cursor() as cr:
        cr.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(live), sql.Identifier(safety_copy)
            )
        )
        cr.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(live)))
    admin.close()
    try:
        assert _setting_on(safety_copy)
        assert not _setting_on(live)
        # found by its oid: the caller need not know the safety copy's name
        reset = maintenance.leave(pg, tmp_path, live)
        assert reset == [safety_copy]
        assert not _setting_on(safety_copy)
        assert maintenance.read(tmp_path, live) is None
    finally:
        drop_database(safety_copy)


def test_dead_process_marker_is_cleared(pg, tmp_path, live):
    maintenance.enter(pg, tmp_path, live, "a.dbbs", pid=_dead_pid())
    assert _setting_on(live)
    assert maintenance.is_stale(maintenance.read(tmp_path, live))
    assert maintenance.current(pg, tmp_path, live) is None
    assert not _setting_on(live)
    assert maintenance.read(tmp_path, live) is None
    _insert(live, "writable again")


def _state(pid):
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return data[data.rfind(b")") + 2 :].split()[0]


def test_zombie_restore_marker_is_cleared(pg, tmp_path, live):
    """A restore killed by SIGKILL and not waited for by its parent (the
    Odoo server that spawned it) is a zombie: ``kill(pid, 0)`` still
    succeeds and its start time still matches, yet it holds nothing."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        maintenance.enter(pg, tmp_path, live, "a.dbbs", pid=child.pid)
        assert not maintenance.is_stale(maintenance.read(tmp_path, live))
        assert maintenance.current(pg, tmp_path, live) is not None
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _state(child.pid) != b"Z" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _state(child.pid) == b"Z"  # not waited for: a zombie
        os.kill(child.pid, 0)  # what the old liveness check relied on
        marker = maintenance.read(tmp_path, live)
        assert marker["proc_start"] == maintenance._proc_start(child.pid)
        assert maintenance.is_stale(marker)
        assert maintenance.current(pg, tmp_path, live) is None
        assert not _setting_on(live)
        assert maintenance.read(tmp_path, live) is None
        _insert(live, "writable after a zombie")
    finally:
        child.kill()
        child.wait()


def test_reused_pid_marker_is_stale(pg, tmp_path, live):
    """The pid is alive but is another process (its start time differs)."""
    maintenance.enter(pg, tmp_path, live, "a.dbbs")
    path = maintenance.marker_path(tmp_path, live)
    marker = json.loads(Path(path).read_text())
    assert marker["proc_start"] is not None
    marker["proc_start"] -= 1
    with open(path, "w") as handle:
        json.dump(marker, handle)
    assert maintenance.current(pg, tmp_path, live) is None
    assert not _setting_on(live)


def test_corrupt_marker_is_stale_and_cleared(pg, tmp_path, live):
    maintenance.enter(pg, tmp_path, live, "a.dbbs")
    with open(maintenance.marker_path(tmp_path, live), "w") as handle:
        handle.write("{not json")
    assert maintenance.read(tmp_path, live)["corrupt"]
    assert maintenance.current(pg, tmp_path, live) is None
    assert not _setting_on(live)


def test_foreign_host_marker_expires(tmp_path):
    marker = {
        "database": "x",
        "pid": os.getpid(),
        "host": "another-host.invalid",
        "started": "2026-01-01T00:00:00+00:00",
    }
    start = maintenance.started_at(marker).timestamp()
    assert not maintenance.is_stale(marker, now=start + 3600)
    assert maintenance.is_stale(marker, now=start + maintenance.FOREIGN_MAX_AGE + 1)


def test_clearing_a_stale_marker_keeps_a_new_restores_marker(pg, tmp_path, live):
    """``leave(pid=...)`` removes only the marker of that process."""
    maintenance.enter(pg, tmp_path, live, "new.dbbs")
    try:
        maintenance.leave(pg, tmp_path, live, pid=_dead_pid())
        assert maintenance.read(tmp_path, live)["archive"] == "new.dbbs"
    finally:
        maintenance.leave(pg, tmp_path, live)


def test_failed_enter_leaves_nothing(pg, tmp_path):
    missing = f"{PREFIX}missing_{uuid.uuid4().hex[:6]}"
    with pytest.raises(psycopg2.Error):
        maintenance.enter(pg, tmp_path, missing, "a.dbbs")
    assert maintenance.read(tmp_path, missing) is None


@pytest.mark.parametrize("name", ["../etc", "a/b", "", "x" * 80])
def test_marker_path_refuses_bad_names(tmp_path, name):
    with pytest.raises(SafetyError):
        maintenance.marker_path(tmp_path, name)
