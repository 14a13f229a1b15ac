"""The backup pipeline against the real PostgreSQL: archive content, standard
tools taking over, failures that must leave no archive, the backup lock."""

import io
import os
import subprocess
import tarfile
import threading

import pytest
import zstandard

from db_backup_suite.lib import backup, crypto, errors, lock
from db_backup_suite.lib import manifest as mf
from db_backup_suite.lib.errors import BackupLockedError, DumpError
from db_backup_suite.lib.payload.reader import PayloadReader
from db_backup_suite.lib.pgtools import PgParams
from db_backup_suite.lib.sinks import make_sink
from tests.fixtures import live_children
from tests.fixtures.odoo_db import connect, referenced_files

PREFIX = "h3_pl_"


@pytest.fixture
def keyring():
    return crypto.Keyring.parse(crypto.generate_key_line())


@pytest.fixture
def sink(tmp_path):
    return make_sink({"type": "local", "path": str(tmp_path / "dest")})


def _request(db, sink, keyring, **kw):
    return backup.BackupRequest(
        database=db.dbname, sink=sink, data_dir=db.data_dir, keyring=keyring, **kw
    )


def decrypt_members(raw: bytes, *, tenant, keyring=None, password=None) -> dict:
    reader = crypto.open_archive(
        io.BytesIO(raw), keyring=keyring, password=password, tenant=tenant
    )
    out = {}
    for member in PayloadReader(reader):
        if member.type == "file":
            out[member.name] = member.read()
    return out


def test_backup_writes_complete_manifest_and_members(odoo_db_factory, sink, keyring):
    db = odoo_db_factory(prefix=PREFIX, partners=300, attachments=12)
    progress = []
    result = backup.run_backup(
        _request(db, sink, keyring, progress=lambda d, t, m: progress.append((d, m)))
    )
    assert [o.name for o in sink.list()] == [result.name]
    assert sink.stat(result.name).size == result.size
    assert result.name.startswith(f"{db.dbname}/{db.dbname}_manual_")
    assert progress and progress[-1] == (result.size, "done")
    assert all(b[0] >= a[0] for a, b in zip(progress, progress[1:], strict=False))

    m = result.manifest
    assert m["complete"] is True and m["database"] == db.dbname
    assert m["uuid"] == db.uuid
    assert m["odoo_version"] == "18.0.1.3"
    assert m["modules"]["mail"] == "18.0.1.15" and "sale" not in m["modules"]
    assert m["postgresql"]["version_num"] >= 150000
    assert m["row_counts"]["res_partner"] == 300
    assert m["row_counts"]["ir_attachment"] == 12 + 3  # + shared, url, in-db
    assert m["encryption"] == {
        "mode": "keyring",
        "key_id": keyring.active.key_id,
        "tenant": db.uuid,
    }
    refs = referenced_files(db.dbname)
    assert m["filestore"]["files"] == len(refs) == 12
    assert m["filestore"]["missing"] == []

    with sink.open_read(result.name) as fh:
        raw = fh.read()
    import hashlib

    assert hashlib.sha256(raw).hexdigest() == result.sha256
    members = decrypt_members(raw, keyring=keyring, tenant=db.uuid)
    names = list(members)
    assert names[0] == mf.HEAD_MEMBER and names[-1] == mf.MANIFEST_MEMBER
    head = mf.loads(members[mf.HEAD_MEMBER])
    assert head["complete"] is False and head["uuid"] == db.uuid
    files = {n[len("filestore/") :] for n in names if n.startswith("filestore/")}
    assert files == refs  # the orphan file no row references is not taken
    for fname in refs:
        assert members["filestore/" + fname] == (db.filestore / fname).read_bytes()
    dump = b"".join(
        v for k, v in members.items() if k.startswith("database.dump.part-")
    )
    assert dump.startswith(b"PGDMP")
    assert hashlib.sha256(dump).hexdigest() == m["dump"]["sha256"]


def test_standard_tools_take_over(odoo_db_factory, sink, keyring, tmp_path):
    """Decrypted, the payload is a zstd tar that zstd, tar and pg_restore read."""
    db = odoo_db_factory(prefix=PREFIX, partners=50, attachments=4)
    result = backup.run_backup(_request(db, sink, keyring))
    with sink.open_read(result.name) as fh:
        reader = crypto.open_archive(fh, keyring=keyring, tenant=db.uuid)
        plain = reader.read()
    (tmp_path / "p.tar.zst").write_bytes(plain)
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(
        ["tar", "--zstd", "-xf", str(tmp_path / "p.tar.zst"), "-C", str(out)],
        check=True,
    )
    assert (out / "manifest.json").is_file() and (out / "backup.json").is_file()
    parts = sorted(out.glob("database.dump.part-*"))
    joined = b"".join(p.read_bytes() for p in parts)
    (tmp_path / "db.dump").write_bytes(joined)
    listing = subprocess.run(
        ["pg_restore", "--list", str(tmp_path / "db.dump")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "TABLE DATA public res_partner" in listing
    assert len(list((out / "filestore").rglob("*"))) >= 4


def test_password_mode_and_gzip(odoo_db_factory, sink):
    db = odoo_db_factory(prefix=PREFIX, partners=20, attachments=2)
    result = backup.run_backup(
        backup.BackupRequest(
            database=db.dbname,
            sink=sink,
            data_dir=db.data_dir,
            password="correct horse battery",
            compression="gzip",
        )
    )
    assert result.name.endswith(".tar.gz.enc")
    assert result.manifest["encryption"]["mode"] == "password"
    with sink.open_read(result.name) as fh:
        members = decrypt_members(
            fh.read(), password="correct horse battery", tenant=db.uuid
        )
    assert mf.loads(members["manifest.json"])["compression"] == "gzip"


def test_no_key_is_refused_before_anything(odoo_db_factory, sink):
    db = odoo_db_factory(prefix=PREFIX, partners=5, attachments=1)
    with pytest.raises(errors.KeyringError, match="keygen"):
        backup.run_backup(backup.BackupRequest(database=db.dbname, sink=sink))
    assert sink.list() == []


def test_missing_filestore_file_is_recorded(odoo_db_factory, sink, keyring):
    db = odoo_db_factory(prefix=PREFIX, partners=5, attachments=5)
    gone = sorted(referenced_files(db.dbname))[1]
    (db.filestore / gone).unlink()
    result = backup.run_backup(_request(db, sink, keyring))
    fs = result.manifest["filestore"]
    assert fs["files"] == 4
    assert [m["store_fname"] for m in fs["missing"]] == [gone]
    assert any(gone in w for w in result.warnings)


def test_bad_database_name_yields_no_archive(sink, keyring, tmp_path):
    with pytest.raises(DumpError, match="h3_pl_does_not_exist"):
        backup.run_backup(
            backup.BackupRequest(
                database="h3_pl_does_not_exist",
                sink=sink,
                keyring=keyring,
                data_dir=tmp_path,
            )
        )
    assert sink.list() == []


def _wait_for(predicate, timeout=30.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize("how", ["sigkill", "terminate_backend"])
def test_failed_pg_dump_yields_no_archive(
    odoo_db_factory, sink, keyring, how, tmp_path
):
    """pg_dump killed mid-run (client SIGKILL, or its server session killed):
    DumpError, nothing listed, nothing left in the destination, pg_dump reaped."""
    db = odoo_db_factory(prefix=PREFIX, partners=200, attachments=3)
    blocker = connect(db.dbname, autocommit=False)
    with blocker.cursor() as cr:  # pg_dump will wait for this lock
        cr.execute("LOCK TABLE res_partner IN ACCESS EXCLUSIVE MODE")
    errors = []

    def run():
        try:
            backup.run_backup(_request(db, sink, keyring))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        admin = connect("postgres")
        with admin.cursor() as cr:

            def waiting_dump():
                cr.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND"
                    " application_name = 'pg_dump' AND wait_event_type = 'Lock'",
                    (db.dbname,),
                )
                return cr.fetchone()

            backend = _wait_for(waiting_dump)[0]
            if how == "sigkill":
                (pid,) = live_children("pg_dump")
                os.kill(pid, 9)
            else:
                cr.execute("SELECT pg_terminate_backend(%s)", (backend,))
        admin.close()
    finally:
        blocker.rollback()
        blocker.close()
        thread.join(60)
    assert len(errors) == 1 and isinstance(errors[0], DumpError), errors
    assert "pg_dump" in str(errors[0])
    if how == "sigkill":
        assert "signal 9" in str(errors[0])
    assert sink.list() == []
    assert list((tmp_path / "dest").rglob("*.enc")) == []
    assert live_children("pg_dump") == []


def test_exception_mid_run_aborts_and_reaps(odoo_db_factory, sink, keyring, tmp_path):
    db = odoo_db_factory(
        prefix=PREFIX, partners=2000, attachments=6, attachment_size=60000
    )
    calls = []

    def progress(done, total, message):
        calls.append(message)
        if message == "copying the filestore":
            raise RuntimeError("operator pressed stop")

    with pytest.raises(RuntimeError, match="operator pressed stop"):
        backup.run_backup(
            _request(
                db,
                sink,
                keyring,
                part_size=64 * 1024,
                chunk_size=64 * 1024,
                progress=progress,
            )
        )
    assert sink.list() == []
    assert [p for p in (tmp_path / "dest").rglob("*") if p.is_file()] == []
    assert live_children("pg_dump") == []


def test_two_concurrent_backups_one_is_locked(odoo_db_factory, sink, keyring):
    db = odoo_db_factory(prefix=PREFIX, partners=50, attachments=2)
    inside, release = threading.Event(), threading.Event()
    results, errors = [], []

    def slow_progress(done, total, message):
        inside.set()
        release.wait(30)

    def first():
        try:
            results.append(
                backup.run_backup(_request(db, sink, keyring, progress=slow_progress))
            )
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert inside.wait(30)
        with pytest.raises(BackupLockedError, match="another backup") as info:
            backup.run_backup(_request(db, sink, keyring))
        assert "db_backup_suite" in str(info.value)  # who holds it
    finally:
        release.set()
        thread.join(60)
    assert not errors and len(results) == 1
    assert [o.name for o in sink.list()] == [results[0].name]
    # released: the next backup runs (named by second: give it another label)
    assert backup.run_backup(_request(db, sink, keyring, label="daily")).size > 0


def test_lock_is_usable_on_its_own_cursor(odoo_db_factory):
    db = odoo_db_factory(prefix=PREFIX, partners=1, attachments=0)
    with lock.backup_lock(PgParams.from_env(), db.dbname):
        conn = connect(db.dbname)
        with conn.cursor() as cr:
            assert lock.try_advisory_lock(cr) is False
            assert lock.lock_holder(cr)["application_name"] == "db_backup_suite"
        conn.close()
    conn = connect(db.dbname)
    with conn.cursor() as cr:
        assert lock.try_advisory_lock(cr) is True
        assert lock.release_advisory_lock(cr) is True
    conn.close()


def test_dump_is_stored_in_parts_with_constant_buffers(odoo_db_factory, sink, keyring):
    db = odoo_db_factory(prefix=PREFIX, partners=3000, attachments=1)
    result = backup.run_backup(_request(db, sink, keyring, part_size=100_000))
    parts = result.manifest["dump"]["parts"]
    assert len(parts) == -(-result.manifest["dump"]["size"] // 100_000) > 3
    assert parts[0] == "database.dump.part-000001"


def test_payload_is_a_plain_tar_after_decompression(odoo_db_factory, sink, keyring):
    db = odoo_db_factory(prefix=PREFIX, partners=10, attachments=3)
    result = backup.run_backup(_request(db, sink, keyring))
    with sink.open_read(result.name) as fh:
        plain = crypto.open_archive(fh, keyring=keyring, tenant=db.uuid).read()
    tar_bytes = (
        zstandard.ZstdDecompressor()
        .stream_reader(io.BytesIO(plain), read_across_frames=True)
        .read()
    )
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        names = tar.getnames()
    assert names[0] == "backup.json" and names[-1] == "manifest.json"


def test_odoo_series_read_from_modules_when_base_has_no_version(odoo_db_factory):
    """Odoo 18 can leave base's latest_version empty: the series still shows."""
    from db_backup_suite.lib.pgtools import database_info

    db = odoo_db_factory(prefix="h3_pl_", partners=5, attachments=1)
    conn = db.connect()
    try:
        with conn.cursor() as cr:
            cr.execute(
                "UPDATE ir_module_module SET latest_version = NULL WHERE name = 'base'"
            )
        info = database_info(conn)
    finally:
        conn.close()
    assert info["modules"]["base"] is None
    assert info["odoo_version"] == "18.0"
