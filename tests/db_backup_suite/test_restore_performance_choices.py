"""Restore performance choices that must not cost safety: one decryption
pass with ``jobs > 1`` (verify + extract, then pg_restore), the source's
locale kept, ``synchronous_commit=off`` only for pg_restore's sessions."""

import io
import json
import os
import time
import uuid

import pytest

from db_backup_suite.lib import backup, crypto, pgtools, restore
from db_backup_suite.lib import manifest as mf
from db_backup_suite.lib.errors import SuiteError
from db_backup_suite.lib.payload.reader import PayloadReader
from db_backup_suite.lib.payload.writer import PayloadWriter
from db_backup_suite.lib.sinks import make_sink
from tests.fixtures.odoo_db import (
    connect,
    data_checksum,
    drop_database,
    list_databases,
)

PREFIX = "h9_rf_"


@pytest.fixture
def keyring():
    return crypto.Keyring.parse(crypto.generate_key_line())


@pytest.fixture
def c_collated_db():
    """A small non-Odoo database created with LC_COLLATE 'C' (as Odoo
    creates its own), which differs from this server's default."""
    name = f"{PREFIX}{uuid.uuid4().hex[:10]}"
    admin = connect("postgres")
    with admin.cursor() as cr:
        cr.execute(
            f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE 'C'"
            " TEMPLATE template0"
        )
    admin.close()
    conn = connect(name)
    with conn.cursor() as cr:
        cr.execute("CREATE TABLE word (id serial PRIMARY KEY, w text)")
        cr.execute("CREATE INDEX word_w ON word (w)")
        cr.execute(
            "INSERT INTO word (w) SELECT md5(g::text) FROM generate_series(1, 500) g"
        )
        cr.execute("INSERT INTO word (w) VALUES ('a'), ('B'), ('_'), ('é')")
    conn.close()
    yield name
    for db in list_databases(name):
        drop_database(db)


def _request(**kw):
    """A restore request for the test database, which has no uuid (not an
    Odoo database): its archives carry the empty tenant."""
    kw.setdefault("expected_uuid", "")
    return restore.RestoreRequest(**kw)


def _collate(dbname):
    conn = connect("postgres")
    with conn.cursor() as cr:
        cr.execute(
            "SELECT datcollate, datctype FROM pg_database WHERE datname = %s",
            (dbname,),
        )
        row = cr.fetchone()
    conn.close()
    return row


def _backup(dbname, tmp_path, keyring):
    sink = make_sink({"type": "local", "path": str(tmp_path / "dest")})
    result = backup.run_backup(
        backup.BackupRequest(database=dbname, sink=sink, keyring=keyring)
    )
    return tmp_path / "dest" / result.name


@pytest.mark.parametrize("jobs", [1, 2])
def test_restore_keeps_the_source_locale(c_collated_db, tmp_path, keyring, jobs):
    archive = _backup(c_collated_db, tmp_path, keyring)
    target = f"{c_collated_db}_sbx{jobs}"
    res = restore.run_restore(
        _request(
            target=target, mode="sandbox", path=archive, keyring=keyring, jobs=jobs
        )
    )
    assert _collate(c_collated_db)[0] == "C"
    assert _collate(target) == _collate(c_collated_db)
    assert data_checksum(target) == data_checksum(c_collated_db)
    assert not [w for w in res.warnings if "locale" in w]


def test_restore_skip_verify_streaming_keeps_the_locale(
    c_collated_db, tmp_path, keyring
):
    archive = _backup(c_collated_db, tmp_path, keyring)
    target = f"{c_collated_db}_sv"
    restore.run_restore(
        _request(
            target=target,
            mode="sandbox",
            path=archive,
            keyring=keyring,
            jobs=1,
            skip_verify=True,
        )
    )
    assert _collate(target) == _collate(c_collated_db)


def _repack_manifests(raw, keyring, change):
    reader = crypto.open_archive(io.BytesIO(raw), keyring=keyring, tenant="")
    members = [(m.name, m.read()) for m in PayloadReader(reader) if m.type == "file"]
    out = io.BytesIO()
    enc = crypto.encrypting_writer(out, keyring=keyring, tenant=reader.header.tenant)
    pw = PayloadWriter(enc)
    for name, data in members:
        if name in (mf.HEAD_MEMBER, mf.MANIFEST_MEMBER):
            m = json.loads(data)
            change(m)
            data = mf.dumps(m)
        pw.add_bytes(name, data)
    pw.close()
    enc.close()
    return out.getvalue()


@pytest.mark.parametrize("jobs", [1, 2])
def test_unknown_source_locale_falls_back_with_a_warning(
    c_collated_db, tmp_path, keyring, jobs
):
    archive = _backup(c_collated_db, tmp_path, keyring)

    def change(m):
        m["postgresql"]["collate"] = m["postgresql"]["ctype"] = "xx_NOPE.UTF-8"

    other = tmp_path / "other-locale.tar.zst.enc"
    other.write_bytes(_repack_manifests(archive.read_bytes(), keyring, change))
    target = f"{c_collated_db}_fb{jobs}"
    res = restore.run_restore(
        _request(target=target, mode="sandbox", path=other, keyring=keyring, jobs=jobs)
    )
    assert any("xx_NOPE.UTF-8" in w and "locale" in w for w in res.warnings)
    server_default = _collate("template0")
    assert _collate(target) == server_default
    assert data_checksum(target) == data_checksum(c_collated_db)


def test_parallel_restore_decrypts_once(c_collated_db, tmp_path, keyring, monkeypatch):
    archive = _backup(c_collated_db, tmp_path, keyring)
    scans = []
    real_scan = restore.scan_archive

    def counting_scan(raw, **kw):
        scans.append(kw.get("handler"))
        return real_scan(raw, **kw)

    monkeypatch.setattr(restore, "scan_archive", counting_scan)
    work = tmp_path / "work"
    work.mkdir()
    restore.run_restore(
        _request(
            target=f"{c_collated_db}_once",
            mode="sandbox",
            path=archive,
            keyring=keyring,
            jobs=2,
            work_dir=work,
        )
    )
    assert len(scans) == 1 and scans[0] is not None  # verify + extract together
    assert list(work.iterdir()) == []  # the temp dump is gone
    scans.clear()
    restore.run_restore(
        _request(
            target=f"{c_collated_db}_twice",
            mode="sandbox",
            path=archive,
            keyring=keyring,
            jobs=1,
        )
    )
    assert len(scans) == 2 and scans[0] is None  # verify, then stream


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_parallel_restore_of_a_bad_archive_creates_no_database(
    c_collated_db, tmp_path, keyring, monkeypatch, damage
):
    raw = bytearray(_backup(c_collated_db, tmp_path, keyring).read_bytes())
    if damage == "truncated":
        raw = raw[:-100]
    else:
        raw[len(raw) * 2 // 3] ^= 0x10
    bad = tmp_path / "bad.tar.zst.enc"
    bad.write_bytes(bytes(raw))
    created = []
    real_create = pgtools.create_database
    monkeypatch.setattr(
        pgtools,
        "create_database",
        lambda *a, **kw: created.append(a) or real_create(*a, **kw),
    )
    work = tmp_path / "work"
    work.mkdir()
    data_dir = tmp_path / "data"
    target = f"{c_collated_db}_bad"
    with pytest.raises(SuiteError):
        restore.run_restore(
            _request(
                target=target,
                mode="sandbox",
                path=bad,
                keyring=keyring,
                jobs=2,
                work_dir=work,
                data_dir=data_dir,
            )
        )
    assert created == []
    assert list_databases(target) == []
    assert list(work.iterdir()) == []
    # (a small archive's damage may show while its head is read: then not
    # even the filestore folder was made)
    fs_root = data_dir / "filestore"
    assert not fs_root.exists() or list(fs_root.iterdir()) == []


def test_pg_restore_sessions_commit_asynchronously(monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=8MB")
    assert pgtools.restore_session_options() == (
        "-c work_mem=8MB -c synchronous_commit=off"
    )
    monkeypatch.delenv("PGOPTIONS")
    assert pgtools.restore_session_options() == "-c synchronous_commit=off"
    # the real child gets it (pg_restore waits on its stdin meanwhile)
    params = pgtools.PgParams.from_env()
    with pgtools.start_pg_restore(params, f"{PREFIX}never") as proc:
        deadline = time.monotonic() + 10
        environ = b""
        while time.monotonic() < deadline and b"PGOPTIONS=" not in environ:
            try:
                with open(f"/proc/{proc.proc.pid}/environ", "rb") as fh:
                    environ = fh.read()
            except FileNotFoundError:
                break
        assert b"PGOPTIONS=-c synchronous_commit=off\0" in environ
        proc.stdin.close()
        with pytest.raises(SuiteError):
            proc.check(timeout=30)


def test_swap_commit_is_synchronous():
    """The rename that makes a restore live runs with the server's default
    ``synchronous_commit`` (on), which flushes the restore's WAL too."""
    params = pgtools.PgParams.from_env()
    with pgtools.admin_cursor(params) as cr:
        cr.execute("SHOW synchronous_commit")
        assert cr.fetchone()[0] == "on"
    assert "synchronous_commit" not in os.environ.get("PGOPTIONS", "")
