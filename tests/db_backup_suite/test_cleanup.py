"""clean_leftovers against the real PostgreSQL, SeaweedFS S3 and OpenSSH SFTP
servers: it removes exactly what killed runs of ONE database left (its own
temp files, .part files, multipart uploads, staging / scratch databases,
filestores and temp dirs), never a complete archive, a foreign file,
another database's leftovers, a sandbox or a safety copy, and never what a
live run (holding the backup lock or the work lock) is writing. A database
merely NAMED like a staging or scratch database (not in the suite's
registry) is left alone by every cleanup path, with its data."""

import json
import os
import time
from pathlib import Path

import pytest

from db_backup_suite.lib import backup, cleanup, crypto, lock, registry, safety
from db_backup_suite.lib.pgtools import PgParams, create_database, drop_database
from db_backup_suite.lib.sinks import make_sink
from tests.db_backup_suite.cli_runner import run_cli
from tests.fixtures.odoo_db import (
    create_lookalike,
    database_exists,
    list_databases,
    lookalike_intact,
)

PREFIX = "h12_cl_"
STAMP = "20260102030405"
ARCHIVE = "{db}/{db}_manual_20260101T000000Z.tar.zst.enc"


@pytest.fixture
def pg():
    return PgParams.from_env()


@pytest.fixture
def keyring():
    return crypto.Keyring.parse(crypto.generate_key_line())


@pytest.fixture
def made_databases(pg):
    names = []
    yield names
    for name in names:
        drop_database(pg, name)


def _temp_file(root: Path, name: str, hexpart="0123456789ab", age=0.0) -> Path:
    folder, _, base = name.rpartition("/")
    path = root / folder / f".dbbs-{base}.{hexpart}.tmp"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"partial ciphertext")
    if age:
        moment = time.time() - age
        os.utime(path, (moment, moment))
    return path


def _part_file(root: Path, name: str) -> Path:
    path = root / f"{name}.part"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"partial upload")
    return path


def _upload(server, bucket, key) -> str:
    client = server.client()
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)
    client.upload_part(
        Bucket=bucket,
        Key=key,
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"x" * 1024,
    )
    return key


def _uploads(server, bucket) -> set[str]:
    listed = server.client().list_multipart_uploads(Bucket=bucket)
    return {u["Key"] for u in listed.get("Uploads", [])}


def _made(pg, data_dir, name, kind, production, made_databases=None):
    """A database as the suite makes it: registered, then created."""
    registry.register(data_dir, name, kind, production)
    if made_databases is not None:
        create_database(pg, name)
        made_databases.append(name)


def _lookalike(name, made_databases):
    """A database someone else made under a suite-like name, with data."""
    create_lookalike(name)
    made_databases.append(name)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_removes_only_its_own_leftovers_of_this_database(
    odoo_db_factory,
    keyring,
    tmp_path,
    pg,
    made_databases,
    s3_server,
    s3_config,
    sftp_config,
):
    db = odoo_db_factory(prefix=PREFIX, partners=50, attachments=2)
    d = db.dbname
    e = d + "_x"  # shares d's prefix: the classic trap
    local_root = tmp_path / "dest"
    local = {"type": "local", "path": str(local_root)}
    # a complete archive of d at every destination
    done = backup.run_backup(
        backup.BackupRequest(
            database=d,
            sinks=[local, s3_config, sftp_config],
            data_dir=db.data_dir,
            keyring=keyring,
            cleanup=False,
        )
    )
    # -- local: ours, another database's, foreign, the repository's
    ours_local = _temp_file(local_root, ARCHIVE.format(db=d))
    _temp_file(local_root, ARCHIVE.format(db=e))
    _temp_file(local_root, f"{d}/notanarchive.bin")
    _temp_file(local_root, f"{d}/repo-abc/packs/0a/0abc")
    (local_root / d / ".user-notes").write_text("mine")
    (local_root / d / f"{d}_manual_20260101T000000Z.tar.zst.enc.bak").write_text("x")
    # -- sftp
    sftp_root = Path(sftp_config["path"])
    ours_part = _part_file(sftp_root, ARCHIVE.format(db=d))
    _part_file(sftp_root, ARCHIVE.format(db=e))
    _part_file(sftp_root, f"{d}/upload-of-someone-else")
    # -- s3
    bucket = s3_config["bucket"]
    _upload(s3_server, bucket, ARCHIVE.format(db=d))
    _upload(s3_server, bucket, ARCHIVE.format(db=e))
    _upload(s3_server, bucket, f"{d}/random.bin")
    # -- PostgreSQL
    staging = safety.derived_name(d, f"restoring_{STAMP}")
    scratch = safety.derived_name(d, f"verify_{STAMP}")
    sandbox = safety.sandbox_name(d, "20260101")
    sandbox_staging = safety.derived_name(sandbox, f"restoring_{STAMP}")
    safety_copy = safety.derived_name(d, f"pre_restore_{STAMP}")
    others = safety.derived_name(e, f"restoring_{STAMP}")
    _made(pg, db.data_dir, staging, "staging", d)
    _made(pg, db.data_dir, scratch, "drill", d)
    _made(pg, db.data_dir, sandbox_staging, "staging", sandbox)
    _made(pg, db.data_dir, others, "staging", e)
    for name in (staging, scratch, sandbox, sandbox_staging, safety_copy, others):
        create_database(pg, name)
        made_databases.append(name)
    # look-alikes: named like d's staging / scratch databases, not the suite's
    fake_staging = safety.derived_name(d, "restoring_20250101000000")
    fake_scratch = safety.derived_name(d, "verify_20250101000000")
    for name in (fake_staging, fake_scratch):
        _lookalike(name, made_databases)
    # -- filestores
    fs = Path(db.data_dir) / "filestore"
    for name in (staging, safety_copy, others, sandbox_staging, fake_staging):
        (fs / name / "ab").mkdir(parents=True)
        (fs / name / "ab" / "file").write_text("x")
    live_files = _files(fs / d)
    # -- temp dirs
    work = tmp_path / "work"
    for name in (
        f"dbbs-restore+{d}+abc123",
        f"dbbs-fetch+{sandbox}+q1",
        f"dbbs-restore+{e}+abc123",
        f"dbbs-restore-{d}-old",
        "unrelated",
    ):
        (work / name).mkdir(parents=True)
        (work / name / "database.dump").write_bytes(b"PGDMP")

    before_local, before_sftp = _files(local_root), _files(sftp_root)
    dry = cleanup.clean_leftovers(
        [local, s3_config, sftp_config],
        d,
        pg=pg,
        data_dir=db.data_dir,
        work_dir=work,
        dry_run=True,
    )
    assert {i.action for i in dry.leftovers} == {"would remove", "left alone"}
    assert _files(local_root) == before_local and _files(sftp_root) == before_sftp
    assert database_exists(staging) and (work / f"dbbs-restore+{d}+abc123").exists()

    result = cleanup.clean_leftovers(
        [local, s3_config, sftp_config],
        d,
        pg=pg,
        data_dir=db.data_dir,
        work_dir=work,
    )
    assert result.errors == [] and result.skipped == []
    assert result.evidence == "backup lock"
    removed = {(i.kind, i.name) for i in result.removed}
    assert removed == {
        ("temp-file", ARCHIVE.format(db=d)),
        ("part-file", ARCHIVE.format(db=d)),
        ("multipart-upload", ARCHIVE.format(db=d)),
        ("staging-database", staging),
        ("scratch-database", scratch),
        ("staging-database", sandbox_staging),
        ("staging-filestore", staging),
        ("staging-filestore", sandbox_staging),
        ("work-dir", f"dbbs-restore+{d}+abc123"),
        ("work-dir", f"dbbs-fetch+{sandbox}+q1"),
    }
    assert result.kept == [] and result.failed == []
    assert sorted((i.kind, i.name) for i in result.left_alone) == [
        ("scratch-database", fake_scratch),
        ("staging-database", fake_staging),
        ("staging-filestore", fake_staging),
    ]
    assert "not in its registry" in result.left_alone[0].reason
    assert "left alone 3 not provably made by the suite" in result.summary()
    assert lookalike_intact(fake_staging) and lookalike_intact(fake_scratch)
    assert (fs / fake_staging / "ab" / "file").read_text() == "x"
    # what was removed is forgotten; another database's entry stays
    assert registry.entries_for(db.data_dir, d) == []
    assert [x.name for x in registry.entries_for(db.data_dir, e)] == [others]
    # removed: exactly those
    assert not ours_local.exists() and not ours_part.exists()
    assert _files(local_root) == before_local - {
        str(ours_local.relative_to(local_root))
    }
    assert _files(sftp_root) == before_sftp - {str(ours_part.relative_to(sftp_root))}
    assert _uploads(s3_server, bucket) == {ARCHIVE.format(db=e), f"{d}/random.bin"}
    for name in (staging, scratch, sandbox_staging):
        assert not database_exists(name)
    # kept: everything else
    for name in (sandbox, safety_copy, others, d):
        assert database_exists(name)
    assert sorted(p.name for p in fs.iterdir()) == sorted(
        [d, safety_copy, others, fake_staging]
    )
    assert _files(fs / d) == live_files
    assert sorted(p.name for p in work.iterdir()) == sorted(
        [f"dbbs-restore+{e}+abc123", f"dbbs-restore-{d}-old", "unrelated"]
    )
    for cfg in (local, s3_config, sftp_config):
        assert [o.name for o in make_sink(cfg).list(f"{d}/") if o.name == done.name]
    # idempotent
    again = cleanup.clean_leftovers(
        [local, s3_config, sftp_config], d, pg=pg, data_dir=db.data_dir, work_dir=work
    )
    assert {i.action for i in again.leftovers} == {"left alone"}


def test_a_running_backup_keeps_its_uploads(odoo_db, tmp_path, pg):
    root = tmp_path / "dest"
    leftover = _temp_file(root, ARCHIVE.format(db=odoo_db.dbname), age=7200)
    with lock.backup_lock(pg, odoo_db.dbname):
        result = cleanup.clean_leftovers(
            [{"type": "local", "path": str(root)}], odoo_db.dbname, pg=pg
        )
        assert leftover.exists()
        assert result.leftovers == []
        assert "another backup of database" in result.skipped[0]
    result = cleanup.clean_leftovers(
        [{"type": "local", "path": str(root)}], odoo_db.dbname, pg=pg
    )
    assert not leftover.exists()
    assert [i.action for i in result.leftovers] == ["removed"]


def test_a_running_restore_keeps_its_staging(odoo_db, tmp_path, pg, made_databases):
    staging = safety.derived_name(odoo_db.dbname, f"restoring_{STAMP}")
    dd = odoo_db.data_dir
    _made(pg, dd, staging, "staging", odoo_db.dbname, made_databases)
    with lock.work_lock(pg, odoo_db.dbname):  # what run_restore holds
        result = cleanup.clean_leftovers([], odoo_db.dbname, pg=pg, data_dir=dd)
        assert [(i.name, i.action) for i in result.leftovers] == [(staging, "kept")]
        assert "a restore or verify of" in result.leftovers[0].reason
        assert database_exists(staging)
    # without the registry (no data dir) even a real leftover is only reported
    result = cleanup.clean_leftovers([], odoo_db.dbname, pg=pg)
    assert [(i.name, i.action) for i in result.leftovers] == [(staging, "left alone")]
    assert "no registry" in result.leftovers[0].reason
    result = cleanup.clean_leftovers([], odoo_db.dbname, pg=pg, data_dir=dd)
    assert [(i.name, i.action) for i in result.leftovers] == [(staging, "removed")]
    assert not database_exists(staging)


def test_without_postgresql_only_old_destination_leftovers_go(tmp_path):
    root = tmp_path / "dest"
    fresh = _temp_file(root, ARCHIVE.format(db="proddb"), hexpart="aaaaaaaaaaaa")
    old = _temp_file(
        root, ARCHIVE.format(db="proddb"), hexpart="bbbbbbbbbbbb", age=2 * 3600
    )
    result = cleanup.clean_leftovers([{"type": "local", "path": str(root)}], "proddb")
    assert fresh.exists() and not old.exists()
    assert result.evidence == "age >= 3600s (no lock to ask)"
    assert [i.action for i in result.leftovers] == ["kept", "removed"]
    assert "maybe still in progress" in result.leftovers[0].reason
    assert "staging and scratch databases" in result.skipped[0]


def test_older_than_spares_recent_leftovers_even_with_the_lock(odoo_db, tmp_path, pg):
    root = tmp_path / "dest"
    fresh = _temp_file(root, ARCHIVE.format(db=odoo_db.dbname))
    result = cleanup.clean_leftovers(
        [{"type": "local", "path": str(root)}], odoo_db.dbname, pg=pg, older_than=600
    )
    assert fresh.exists() and [i.action for i in result.leftovers] == ["kept"]


def test_interrupted_swap_and_missing_target_are_kept_on_purpose(
    odoo_db, pg, made_databases
):
    d = odoo_db.dbname
    fs = Path(odoo_db.data_dir) / "filestore"
    # the swap renamed the databases (safety copy exists, staging is gone)
    # but not the directories: the staging filestore is the live one's
    safety_copy = safety.derived_name(d, f"pre_restore_{STAMP}")
    create_database(pg, safety_copy)
    made_databases.append(safety_copy)
    staging_fs = fs / safety.derived_name(d, f"restoring_{STAMP}")
    _made(pg, odoo_db.data_dir, staging_fs.name, "staging", d)
    staging_fs.mkdir()
    # a staging database of a target that does not exist (a new-database
    # restore or a swap stopped before the rename)
    ghost = PREFIX + "ghost" + odoo_db.dbname[-6:]
    ghost_staging = safety.derived_name(ghost, f"restoring_{STAMP}")
    _made(pg, odoo_db.data_dir, ghost_staging, "staging", ghost, made_databases)

    result = cleanup.clean_leftovers([], d, pg=pg, data_dir=odoo_db.data_dir)
    assert [(i.kind, i.action) for i in result.leftovers] == [
        ("staging-filestore", "kept")
    ]
    assert "stopped in the middle of its swap" in result.leftovers[0].reason
    assert staging_fs.exists()
    result = cleanup.clean_leftovers([], ghost, pg=pg, data_dir=odoo_db.data_dir)
    assert [(i.name, i.action) for i in result.leftovers] == [(ghost_staging, "kept")]
    assert "does not exist" in result.leftovers[0].reason
    assert database_exists(ghost_staging)


def test_unreachable_destination_is_reported_and_the_others_cleaned(
    odoo_db, tmp_path, pg
):
    root = tmp_path / "dest"
    leftover = _temp_file(root, ARCHIVE.format(db=odoo_db.dbname))
    dead_s3 = {
        "type": "s3",
        "bucket": "b",
        "endpoint_url": "http://127.0.0.1:9",
        "access_key": "a",
        "secret_key": "s",
        "connect_attempts": 1,
        "connect_timeout": 1,
    }
    result = cleanup.clean_leftovers(
        [dead_s3, {"type": "local", "path": str(root)}, {"type": "nope"}],
        odoo_db.dbname,
        pg=pg,
    )
    assert not leftover.exists()
    assert len(result.errors) == 2
    assert "unreachable" in result.errors[0] and "s3://b" in result.errors[0]
    assert "Unknown destination type" in result.errors[1]


def test_invalid_database_name_is_refused(tmp_path):
    with pytest.raises(safety.InvalidDatabaseNameError):
        cleanup.clean_leftovers([], "../etc")


def test_cli_cleanup_and_prune(odoo_db, tmp_path, pg, made_databases):
    root = tmp_path / "dest"
    d = odoo_db.dbname
    leftover = _temp_file(root, ARCHIVE.format(db=d))
    staging = safety.derived_name(d, f"verify_{STAMP}")
    _made(pg, odoo_db.data_dir, staging, "drill", d, made_databases)
    fake = safety.derived_name(d, "verify_20250101000000")
    _lookalike(fake, made_databases)
    dest = f"local:{root}"
    dd = ["--data-dir", str(odoo_db.data_dir)]
    out = run_cli(["cleanup", "--database", d, "--from", dest, "--dry-run", *dd])
    assert out.returncode == 0, out.stderr
    assert f"would remove: temp-file {ARCHIVE.format(db=d)}" in out.stdout
    assert f"would remove: scratch-database {staging} at postgresql" in out.stdout
    assert f"left alone: scratch-database {fake} at postgresql" in out.stdout
    assert leftover.exists() and database_exists(staging)
    # without --data-dir there is no registry: databases are only reported
    out = run_cli(["cleanup", "--database", d, "--json"])
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["removed"] == 0 and data["left_alone"] == 2
    assert database_exists(staging) and lookalike_intact(fake)
    out = run_cli(["cleanup", "--database", d, "--from", dest, "--json", *dd])
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["removed"] == 2 and data["evidence"] == "backup lock"
    assert data["left_alone"] == 1
    assert not leftover.exists() and not database_exists(staging)
    assert list_databases(d + "_verify") == [fake] and lookalike_intact(fake)
    # prune cleans the destination first
    leftover = _temp_file(root, ARCHIVE.format(db=d))
    out = run_cli(
        ["prune", "--from", dest, "--database", d, "--keep-last", "1", "--json"]
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["cleanup"]["removed"] == 1
    assert not leftover.exists()
    # an unreachable destination: exit 1, said on stderr
    out = run_cli(
        [
            "cleanup",
            "--database",
            d,
            "--from",
            f"local:{root}",
            "--from",
            "s3://b/p?endpoint=http://127.0.0.1:9",
        ]
    )
    assert out.returncode == 1
    assert "cannot list the interrupted uploads" in out.stderr
