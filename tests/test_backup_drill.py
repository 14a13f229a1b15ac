"""The restore drill engine (lib/drill.py) against the real PostgreSQL: a
drill restores, counts and drops; a damaged archive or counts that disagree
fail and leave nothing; what a killed drill left is removed only while no
drill of the database is alive, and nothing else is ever touched."""

import os

import pytest

from db_backup_suite.lib import backup, crypto, drill, lock, registry, safety
from db_backup_suite.lib.errors import BackupSuiteError, VerificationError
from db_backup_suite.lib.pgtools import PgParams, create_database, drop_database
from db_backup_suite.lib.sinks import make_sink
from tests.fixtures.odoo_db import database_exists, list_databases

PREFIX = "drill_t_"


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
    with pytest.raises(BackupSuiteError):
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
        out = drill.clean_drill_leftovers(pg, database, known=[dead])
        assert staging in out["removed"]
        assert not database_exists(staging)
    finally:
        drop_database(pg, staging)
