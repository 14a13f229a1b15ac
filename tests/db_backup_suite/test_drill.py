"""The restore drill engine (lib/drill.py) against the real PostgreSQL: a
drill restores, counts and drops; a damaged archive or counts that disagree
fail and leave nothing; what a killed drill left is removed only while no
drill of the database is alive, and nothing else is ever touched."""

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from db_backup_suite.lib import backup, cleanup, crypto, drill, lock, registry, safety
from db_backup_suite.lib.errors import SuiteError, VerificationError
from db_backup_suite.lib.pgtools import PgParams, create_database, drop_database
from db_backup_suite.lib.sinks import make_sink
from tests.fixtures import wait_until
from tests.fixtures.odoo_db import (
    create_lookalike,
    database_exists,
    list_databases,
    lookalike_intact,
)

PREFIX = "drill_t_"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg():
    return PgParams.from_env()


@pytest.fixture
def keyring():
    return crypto.Keyring.parse(crypto.generate_key_line())


@pytest.fixture
def local_sink(tmp_path):
    return make_sink({"type": "local", "path": str(tmp_path / "dest")})


@pytest.fixture
def archive(odoo_db_factory, local_sink, keyring):
    db = odoo_db_factory(prefix=PREFIX, partners=30, attachments=3)
    result = backup.run_backup(
        backup.BackupRequest(
            database=db.dbname, sink=local_sink, data_dir=db.data_dir, keyring=keyring
        )
    )
    return db, result


def _request(db, result, sink, keyring, **kw):
    return drill.DrillRequest(
        database=db.dbname,
        sink=sink,
        name=result.name,
        keyring=keyring,
        data_dir=db.data_dir,
        expected_uuid=db.uuid,
        **kw,
    )


def _leftovers(db):
    fs = db.data_dir / "filestore"
    return (
        [n for n in list_databases(db.dbname) if "_drill_" in n]
        + [n for n in os.listdir(fs) if "_drill_" in n]
        + [e.name for e in registry.entries_for(db.data_dir, db.dbname)]
    )


def test_drill_restores_counts_and_drops(archive, local_sink, keyring):
    db, result = archive
    steps = []
    done = drill.run_drill(
        _request(
            db,
            result,
            local_sink,
            keyring,
            expected_row_counts=result.manifest["row_counts"],
            on_step=steps.append,
        )
    )
    assert done.tables == len(result.manifest["row_counts"])
    assert done.rows == sum(result.manifest["row_counts"].values())
    assert done.filestore["files"] == result.manifest["filestore"]["files"]
    assert steps == ["count", "drop"]
    assert done.drill_database.startswith(db.dbname + "_drill_")
    assert not database_exists(done.drill_database)
    assert _leftovers(db) == []
    assert database_exists(db.dbname)


def test_counts_that_disagree_fail_and_leave_nothing(archive, local_sink, keyring):
    db, result = archive
    recorded = dict(result.manifest["row_counts"])
    recorded["res_partner"] += 1
    with pytest.raises(VerificationError, match="res_partner"):
        drill.run_drill(
            _request(db, result, local_sink, keyring, expected_row_counts=recorded)
        )
    assert _leftovers(db) == []


def test_truncated_archive_fails_and_leaves_nothing(archive, local_sink, keyring):
    db, result = archive
    path = os.path.join(local_sink.root, result.name)
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)
    with pytest.raises(SuiteError):
        drill.run_drill(_request(db, result, local_sink, keyring))
    assert _leftovers(db) == []


def test_killed_drill_leftovers_go_only_when_no_drill_is_alive(
    odoo_db_factory, pg, tmp_path
):
    db = odoo_db_factory(prefix=PREFIX, partners=1, attachments=0)
    dead = safety.drill_name(db.dbname, "20260101000000")
    staging = safety.derived_name(dead, "restoring_20260101000001")
    other = safety.drill_name(db.dbname + "x", "20260101000000")  # another db's
    for name in (dead, staging, other):
        create_database(pg, name)
    fs = db.data_dir / "filestore"
    (fs / dead).mkdir()
    (fs / staging).mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / f"dbbs-restore+{dead}+abc").mkdir()
    (work / f"dbbs-restore+{db.dbname}+abc").mkdir()  # a live restore's: kept
    registry.register(db.data_dir, dead, "drill", db.dbname)
    registry.register(db.data_dir, staging, "staging", dead)
    try:
        # a drill of the database is alive: nothing is touched
        with lock.work_lock(pg, db.dbname):
            out = drill.clean_drill_leftovers(
                pg, db.dbname, data_dir=db.data_dir, work_dir=work
            )
        assert out["skipped"] and out["removed"] == []
        assert database_exists(dead) and database_exists(staging)
        # dead: everything it left goes, nothing else
        out = drill.clean_drill_leftovers(
            pg, db.dbname, data_dir=db.data_dir, work_dir=work
        )
        assert out["errors"] == []
        assert not database_exists(dead) and not database_exists(staging)
        assert not (fs / dead).exists() and not (fs / staging).exists()
        assert sorted(os.listdir(work)) == [f"dbbs-restore+{db.dbname}+abc"]
        assert registry.entries_for(db.data_dir, db.dbname) == []
        assert database_exists(other) and database_exists(db.dbname)
    finally:
        for name in (dead, staging, other):
            drop_database(pg, name)


def test_a_long_database_name_finds_its_cut_staging_through_the_record(pg, tmp_path):
    """A long name's drill staging copy is cut and tagged: found through the
    drill name the caller recorded."""
    database = PREFIX + "l" * (50 - len(PREFIX))
    dead = safety.drill_name(database, "20260101000000")
    staging = safety.derived_name(dead, "restoring_20260101000001")
    assert staging[: len(dead)] != dead  # cut
    create_database(pg, staging)
    try:
        # the record alone proves nothing: without the registry, left alone
        out = drill.clean_drill_leftovers(pg, database, known=[dead])
        assert out["removed"] == [] and database_exists(staging)
        assert [x.split(" ")[0] for x in out["left_alone"]] == [staging]
        registry.register(tmp_path, dead, "drill", database)
        registry.register(tmp_path, staging, "staging", dead)
        out = drill.clean_drill_leftovers(pg, database, data_dir=tmp_path, known=[dead])
        assert staging in out["removed"]
        assert not database_exists(staging)
        assert registry.entries_for(tmp_path, database) == []
    finally:
        drop_database(pg, staging)


def test_lookalikes_with_data_survive_every_cleanup(
    odoo_db_factory, pg, tmp_path, keyring
):
    """Databases merely NAMED like the suite's (not in its registry) are
    never dropped: not by the drill cleanup, nor the backup's cleanup at its
    start, nor the command line's cleanup; they are reported."""
    db = odoo_db_factory(prefix=PREFIX, partners=1, attachments=0)
    d = db.dbname
    fake_drill = safety.drill_name(d, "20250101000000")
    fakes = [
        fake_drill,
        safety.derived_name(fake_drill, "restoring_20250101000001"),
        safety.derived_name(d, "restoring_20250101000000"),
        safety.derived_name(d, "verify_20250101000000"),
    ]
    try:
        for name in fakes:
            create_lookalike(name)
        (db.data_dir / "filestore" / fake_drill).mkdir()
        out = drill.clean_drill_leftovers(
            pg, d, data_dir=db.data_dir, known=[fake_drill]
        )
        assert out["removed"] == [] and out["errors"] == []
        assert sorted(x.split(" ")[0] for x in out["left_alone"]) == sorted(fakes[:2])
        result = backup.run_backup(
            backup.BackupRequest(
                database=d,
                sink=make_sink({"type": "local", "path": str(tmp_path / "d")}),
                data_dir=db.data_dir,
                keyring=keyring,
            )
        )
        assert result.cleanup.removed == []
        assert sorted(i.name for i in result.cleanup.left_alone) == sorted(fakes[2:])
        out = subprocess.run(
            [sys.executable, "-m", "db_backup_suite.lib", "cleanup"]
            + ["--database", d, "--data-dir", str(db.data_dir), "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["left_alone"] == 2
        for name in fakes:
            assert lookalike_intact(name), name
        assert (db.data_dir / "filestore" / fake_drill).is_dir()
    finally:
        for name in fakes:
            drop_database(pg, name)


_DRILL_SCRIPT = """
import os, sys
from db_backup_suite.lib import crypto, drill
from db_backup_suite.lib.sinks import make_sink
db, dest, name, data_dir, uuid = sys.argv[1:]
drill.run_drill(drill.DrillRequest(
    database=db, sink=make_sink({"type": "local", "path": dest}), name=name,
    keyring=crypto.Keyring.parse(os.environ["TEST_KEY_LINE"]),
    data_dir=data_dir, expected_uuid=uuid))
"""


def _kill_when(proc, prefix):
    wait_until(
        lambda: list_databases(prefix) or proc.poll() is not None,
        120,
        interval=0.01,
        what=f"a database {prefix}*",
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list_databases(prefix), "the run ended before it could be killed"


def _work_lock_free(pg, name):
    with lock.work_lock(pg, name, exclusive=True) as ok:
        return ok


def test_sigkilled_drill_and_verify_leftovers_are_still_removed(
    odoo_db_factory, pg, tmp_path
):
    """The real leftovers of a drill and a verify killed with SIGKILL are
    registered (before they were created): the next cleanup removes them."""
    line = crypto.generate_key_line()
    db = odoo_db_factory(
        prefix=PREFIX, partners=20_000, attachments=30, attachment_size=100_000
    )
    d = db.dbname
    dest = tmp_path / "dest"
    done = backup.run_backup(
        backup.BackupRequest(
            database=d,
            sink=make_sink({"type": "local", "path": str(dest)}),
            data_dir=db.data_dir,
            keyring=crypto.Keyring.parse(line),
        )
    )
    env = dict(os.environ, TEST_KEY_LINE=line)
    proc = subprocess.Popen(
        [sys.executable, "-c", _DRILL_SCRIPT, d, str(dest), done.name]
        + [str(db.data_dir), db.uuid],
        cwd=ROOT,
        env=env,
    )
    _kill_when(proc, f"{d}_drill_")
    wait_until(lambda: _work_lock_free(pg, d), 30, interval=0.05, what="no lock")
    left = list_databases(f"{d}_drill_")
    assert {e.name for e in registry.entries_for(db.data_dir, d)} and left
    out = drill.clean_drill_leftovers(pg, d, data_dir=db.data_dir)
    assert out["errors"] == [] and out["left_alone"] == []
    assert set(left) <= set(out["removed"])
    assert list_databases(f"{d}_drill_") == []
    assert not [n for n in os.listdir(db.data_dir / "filestore") if "_drill_" in n]
    assert registry.entries_for(db.data_dir, d) == []

    keyring_file = tmp_path / "keyring"
    keyring_file.write_text(line + "\n")
    keyring_file.chmod(0o600)
    env = dict(os.environ, SUITE_KEYRING_FILE=str(keyring_file))
    env.pop("SUITE_KEYRING", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "db_backup_suite.lib", "verify", done.name]
        + ["--from", f"local:{dest}", "--test-restore", "--no-deep"]
        + ["--data-dir", str(db.data_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _kill_when(proc, f"{d}_verify_")
    left = list_databases(f"{d}_verify_")
    for name in left:
        wait_until(
            lambda n=name: _work_lock_free(pg, n), 30, interval=0.05, what="no lock"
        )
    wait_until(lambda: _work_lock_free(pg, d), 30, interval=0.05, what="no lock")
    result = cleanup.clean_leftovers(
        [], d, pg=pg, data_dir=db.data_dir, work_dir=tempfile.gettempdir()
    )
    assert result.left_alone == [] and result.failed == [], result.as_dict()
    assert set(left) <= {i.name for i in result.removed}
    assert list_databases(f"{d}_verify_") == []
    assert registry.entries_for(db.data_dir, d) == []
