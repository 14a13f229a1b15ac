"""The restore pipeline against the real PostgreSQL (and the S3 / SFTP
servers of the fixtures): round trips, production swap and safety copy,
sandbox, and every failure leaving the live database and filestore as they
were."""

import io
import json
import os
import tarfile

import pytest
import zstandard

from db_backup_suite.lib import backup, crypto, restore, scan, verify
from db_backup_suite.lib import manifest as mf
from db_backup_suite.lib.errors import (
    RestoreError,
    StreamCryptError,
    SuiteError,
    VerificationError,
)
from db_backup_suite.lib.payload.reader import PayloadReader
from db_backup_suite.lib.payload.writer import PayloadWriter
from db_backup_suite.lib.sinks import make_sink
from tests.fixtures.odoo_db import (
    add_attachment,
    connect,
    data_checksum,
    database_exists,
    drop_odoo_db,
    filestore_listing,
    filestore_path,
    list_databases,
    referenced_files,
)

PREFIX = "h3_rs_"


@pytest.fixture
def keyring():
    return crypto.Keyring.parse(crypto.generate_key_line())


@pytest.fixture
def local_sink(tmp_path):
    return make_sink({"type": "local", "path": str(tmp_path / "dest")})


def _backup(db, sink, keyring, **kw):
    return backup.run_backup(
        backup.BackupRequest(
            database=db.dbname, sink=sink, data_dir=db.data_dir, keyring=keyring, **kw
        )
    )


def _restore(db, keyring, **kw):
    kw.setdefault("target", db.dbname)
    kw.setdefault("data_dir", db.data_dir)
    kw.setdefault("expected_uuid", db.uuid)  # the database restored for
    return restore.run_restore(restore.RestoreRequest(keyring=keyring, **kw))


def _state(db):
    """Everything a failed restore must leave untouched."""
    return (
        data_checksum(db.dbname),
        filestore_listing(db.filestore),
        list_databases(db.dbname),
        sorted(p.name for p in (db.data_dir / "filestore").iterdir()),
    )


def _mutate(db):
    """After the backup: one partner added, one deleted, one attachment added."""
    conn = connect(db.dbname)
    with conn.cursor() as cr:
        cr.execute("INSERT INTO res_partner (name) VALUES ('after backup')")
        cr.execute(
            "DELETE FROM res_partner WHERE id = (SELECT max(id) FROM res_partner"
            " WHERE id NOT IN (SELECT partner_id FROM res_users)"
            " AND name <> 'after backup') RETURNING name"
        )
        deleted = cr.fetchone()[0]
    add_attachment(conn, db.filestore, b"new after backup", name="late.txt")
    conn.close()
    return deleted


def _partner_names(dbname):
    conn = connect(dbname)
    with conn.cursor() as cr:
        cr.execute("SELECT name FROM res_partner")
        names = {r[0] for r in cr.fetchall()}
    conn.close()
    return names


@pytest.mark.parametrize("jobs", [1, 2])
def test_production_restore_swaps_and_keeps_safety_copy(
    odoo_db_factory, local_sink, keyring, jobs
):
    db = odoo_db_factory(prefix=PREFIX, partners=400, attachments=10)
    result = _backup(db, local_sink, keyring)
    at_backup = (data_checksum(db.dbname), filestore_listing(db.filestore))
    deleted = _mutate(db)
    before_restore = (data_checksum(db.dbname), filestore_listing(db.filestore))

    res = _restore(db, keyring, sink=local_sink, name=result.name, jobs=jobs)

    assert res.mode == "production" and res.database == db.dbname
    names = _partner_names(db.dbname)
    assert "after backup" not in names and deleted in names
    assert data_checksum(db.dbname) == at_backup[0]
    # the filestore is exactly the files the backup's rows reference
    restored_fs = filestore_listing(db.filestore)
    assert set(restored_fs) == referenced_files(db.dbname)
    assert all(at_backup[1][k] == v for k, v in restored_fs.items())
    # the safety copy holds the pre-restore state, database and filestore
    assert (
        res.safety_database == f"{db.dbname}_pre_restore_" + res.safety_database[-14:]
    )
    assert data_checksum(res.safety_database) == before_restore[0]
    assert filestore_listing(res.safety_filestore) == before_restore[1]
    assert res.archive_created_at.isoformat().startswith(
        result.manifest["created_at"][:19]
    )
    info = res.restore_info()
    assert info["target"] == "production" and info["archive_name"] == result.name
    assert not [n for n in list_databases(db.dbname) if "_restoring_" in n]


def test_derived_names_fit_postgresql_and_stay_distinct():
    short = restore._derived_name("prod", "pre_restore_20260101000000")
    assert short == "prod_pre_restore_20260101000000"
    long_a = "a" * 60
    long_b = "a" * 59 + "b"
    names = {
        restore._derived_name(t, "pre_restore_20260101000000")
        for t in (long_a, long_b, "é" * 31)
    }
    assert len(names) == 3
    assert all(len(n.encode()) <= restore.MAX_DBNAME for n in names)
    assert all(n.endswith("_pre_restore_20260101000000") for n in names)


def test_restore_into_a_63_byte_database_name(odoo_db_factory, local_sink, keyring):
    db = odoo_db_factory(prefix=PREFIX, partners=20, attachments=2)
    result = _backup(db, local_sink, keyring)
    target = (db.dbname + "_long_" + "x" * 63)[:63]
    try:
        res = _restore(
            db,
            keyring,
            sink=local_sink,
            name=result.name,
            target=target,
            mode="sandbox",
            jobs=1,
        )
        assert res.database == target
        assert database_exists(target)
        assert not [n for n in list_databases(target[:20]) if "_restoring_" in n]
    finally:
        drop_odoo_db(target, db.data_dir)


def test_sandbox_restore_leaves_live_untouched(odoo_db_factory, local_sink, keyring):
    db = odoo_db_factory(prefix=PREFIX, partners=50, attachments=4)
    result = _backup(db, local_sink, keyring)
    _mutate(db)
    live = (data_checksum(db.dbname), filestore_listing(db.filestore))
    sandbox = db.dbname + "_sbx"
    res = _restore(
        db,
        keyring,
        sink=local_sink,
        name=result.name,
        target=sandbox,
        mode="sandbox",
        jobs=1,
    )
    assert res.safety_database is None
    assert (data_checksum(db.dbname), filestore_listing(db.filestore)) == live
    assert set(filestore_listing(filestore_path(db.data_dir, sandbox))) == (
        referenced_files(sandbox)
    )
    with pytest.raises(RestoreError, match="already exists"):
        _restore(
            db,
            keyring,
            sink=local_sink,
            name=result.name,
            target=sandbox,
            mode="sandbox",
        )


def test_round_trip_through_s3(odoo_db_factory, s3_config, keyring):
    db = odoo_db_factory(
        prefix=PREFIX, partners=100, attachments=6, attachment_size=30000
    )
    sink = make_sink(s3_config)
    result = _backup(db, sink, keyring)
    assert [o.name for o in sink.list()] == [result.name]
    original = (data_checksum(db.dbname), filestore_listing(db.filestore))
    _mutate(db)
    res = _restore(db, keyring, sink=s3_config, name=result.name)
    assert data_checksum(db.dbname) == original[0]
    fs = filestore_listing(db.filestore)
    assert fs and all(original[1][k] == v for k, v in fs.items())
    assert res.filestore["files"] == 6


def test_round_trip_through_sftp(odoo_db_factory, request, keyring):
    try:
        config = request.getfixturevalue("sftp_config")
    except pytest.FixtureLookupError:
        pytest.skip("the SFTP fixture (tests/fixtures/sftp_server.py) is not there")
    db = odoo_db_factory(prefix=PREFIX, partners=100, attachments=6)
    sink = make_sink(config)
    result = _backup(db, sink, keyring)
    original = data_checksum(db.dbname)
    _mutate(db)
    _restore(db, keyring, sink=config, name=result.name)
    assert data_checksum(db.dbname) == original
    assert set(filestore_listing(db.filestore)) == referenced_files(db.dbname)


# -- failures: the live database and filestore stay exactly as they were -------
def _repack(raw, keyring, edit):
    """A test-only writer: decrypt, let ``edit(name, data)`` change members
    (return None to drop one), re-encrypt validly."""
    # a test tool: it re-encrypts for the archive's own tenant, whichever
    reader = crypto.open_archive(
        io.BytesIO(raw), keyring=keyring, tenant=crypto.ANY_TENANT
    )
    members = [(m.name, m.read()) for m in PayloadReader(reader) if m.type == "file"]
    members = edit(members)
    out = io.BytesIO()
    enc = crypto.encrypting_writer(out, keyring=keyring, tenant=reader.header.tenant)
    pw = PayloadWriter(enc)
    for name, data in members:
        pw.add_bytes(name, data)
    pw.close()
    enc.close()
    return out.getvalue()


def _read(sink, name):
    with sink.open_read(name) as fh:
        return fh.read()


def _truncated_dump(members):
    """Cut the dump to 60% and make the manifest agree: it verifies, then
    pg_restore fails midway."""
    import hashlib

    dump = b"".join(d for n, d in members if n.startswith("database.dump.part-"))
    cut = dump[: int(len(dump) * 0.6)]
    out = []
    for name, data in members:
        if name == "database.dump.part-000001":
            out.append((name, cut))
        elif name.startswith("database.dump.part-"):
            continue
        elif name == mf.MANIFEST_MEMBER:
            m = json.loads(data)
            m["dump"].update(
                size=len(cut),
                sha256=hashlib.sha256(cut).hexdigest(),
                parts=["database.dump.part-000001"],
            )
            out.append((name, mf.dumps(m)))
        else:
            out.append((name, data))
    return out


def _wrong_row_count(members):
    out = []
    for name, data in members:
        if name == mf.MANIFEST_MEMBER:
            m = json.loads(data)
            m["row_counts"]["res_partner"] += 1
            data = mf.dumps(m)
        out.append((name, data))
    return out


@pytest.mark.parametrize(
    "edit, jobs, error",
    [
        (_truncated_dump, 1, RestoreError),
        (_truncated_dump, 2, RestoreError),
        (_wrong_row_count, 1, VerificationError),
    ],
)
def test_restore_failing_midway_leaves_live_unchanged(
    odoo_db_factory, local_sink, keyring, tmp_path, edit, jobs, error
):
    db = odoo_db_factory(prefix=PREFIX, partners=3000, attachments=5)
    result = _backup(db, local_sink, keyring)
    _mutate(db)
    bad = tmp_path / "bad.tar.zst.enc"
    bad.write_bytes(_repack(_read(local_sink, result.name), keyring, edit))
    # the repacked archive is valid: it verifies
    with bad.open("rb") as fh:
        scan.scan_archive(fh, keyring=keyring, tenant=db.uuid)
    before = _state(db)
    with pytest.raises(error) as info:
        _restore(db, keyring, path=bad, jobs=jobs)
    if error is VerificationError:
        assert "res_partner" in str(info.value)
    else:
        assert "pg_restore" in str(info.value)
    assert _state(db) == before


def test_swap_failing_halfway_is_undone(
    odoo_db_factory, local_sink, keyring, monkeypatch
):
    db = odoo_db_factory(prefix=PREFIX, partners=100, attachments=4)
    result = _backup(db, local_sink, keyring)
    _mutate(db)
    before = _state(db)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        if str(dst).endswith("registry.json"):  # the registry's own update
            return real_rename(src, dst)
        calls.append((str(src), str(dst)))
        if "_restoring_" in str(src):  # the second filestore move fails
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(restore.os, "rename", rename)
    with pytest.raises(OSError, match="No space left"):
        _restore(db, keyring, sink=local_sink, name=result.name, jobs=1)
    monkeypatch.undo()
    assert len(calls) == 3  # live -> safety, staging -> live (failed), undo
    assert _state(db) == before
    # and the live database accepts connections again
    connect(db.dbname).close()


@pytest.mark.parametrize("damage", ["wrong_key", "truncated", "flipped", "no_manifest"])
def test_bad_archive_refused_before_touching_any_database(
    odoo_db_factory, local_sink, keyring, tmp_path, damage
):
    db = odoo_db_factory(prefix=PREFIX, partners=50, attachments=3)
    result = _backup(db, local_sink, keyring)
    raw = _read(local_sink, result.name)
    use_keyring = keyring
    if damage == "wrong_key":
        use_keyring = crypto.Keyring.parse(
            crypto.generate_key_line(keyring.active.key_id)
        )
    elif damage == "truncated":
        raw = raw[: len(raw) - 100]
    elif damage == "flipped":
        raw = bytearray(raw)
        raw[len(raw) // 2] ^= 0x01
        raw = bytes(raw)
    else:
        raw = _repack(
            raw, keyring, lambda ms: [m for m in ms if m[0] != "manifest.json"]
        )
    path = tmp_path / "damaged.tar.zst.enc"
    path.write_bytes(raw)
    _mutate(db)
    before = _state(db)
    all_dbs = list_databases(PREFIX)
    with pytest.raises(SuiteError):
        _restore(db, use_keyring, path=path)
    assert _state(db) == before and list_databases(PREFIX) == all_dbs


def _hand_made_archive(keyring, members, tenant=""):
    """An encrypted zstd tar written with tarfile: any member name or type."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    out = io.BytesIO()
    enc = crypto.encrypting_writer(out, keyring=keyring, tenant=tenant)
    enc.write(zstandard.ZstdCompressor().compress(tar_buf.getvalue()))
    enc.close()
    return out.getvalue()


@pytest.mark.parametrize(
    "evil",
    [
        "filestore/../../escaped.txt",
        "/tmp/h3_escaped.txt",
        "filestore/ab/../../../x",
        "symlink",
    ],
)
def test_members_escaping_the_target_are_refused(
    odoo_db_factory, local_sink, keyring, tmp_path, evil
):
    db = odoo_db_factory(prefix=PREFIX, partners=20, attachments=2)
    good = _read(local_sink, _backup(db, local_sink, keyring).name)
    reader = crypto.open_archive(io.BytesIO(good), keyring=keyring, tenant=db.uuid)
    members = []
    for m in PayloadReader(reader):
        data = m.read()
        info = tarfile.TarInfo(m.name)
        info.size = len(data)
        members.append((info, data))
    if evil == "symlink":
        info = tarfile.TarInfo("filestore/zz")
        info.type = tarfile.SYMTYPE
        info.linkname = "/tmp"
        bad = (info, None)
    else:
        info = tarfile.TarInfo(evil)
        info.size = 5
        bad = (info, b"owned")
    members.insert(2, bad)
    path = tmp_path / "evil.tar.zst.enc"
    path.write_bytes(_hand_made_archive(keyring, members, tenant=db.uuid))
    before = _state(db)
    with pytest.raises(StreamCryptError):
        _restore(db, keyring, path=path)
    assert _state(db) == before
    assert not (tmp_path / "escaped.txt").exists()
    assert not os.path.exists("/tmp/h3_escaped.txt")
    assert not (db.data_dir / "escaped.txt").exists()


def test_legacy_plaintext_archive_restores_and_says_so(
    odoo_db_factory, local_sink, keyring, tmp_path
):
    db = odoo_db_factory(prefix=PREFIX, partners=30, attachments=3)
    result = _backup(db, local_sink, keyring)
    original = data_checksum(db.dbname)
    with local_sink.open_read(result.name) as fh:
        plain = crypto.open_archive(fh, keyring=keyring, tenant=db.uuid).read()
    legacy = tmp_path / f"{db.dbname}_manual_20240101T000000Z.tar.zst"
    legacy.write_bytes(plain)
    _mutate(db)
    res = _restore(db, None, path=legacy)
    assert res.encrypted is False
    assert any("WITHOUT encryption" in w for w in res.warnings)
    assert data_checksum(db.dbname) == original


def test_verify_with_test_restore(odoo_db_factory, local_sink, keyring):
    db = odoo_db_factory(prefix=PREFIX, partners=40, attachments=3)
    result = _backup(db, local_sink, keyring)
    dbs = list_databases(PREFIX)
    out = verify.run_verify(
        verify.VerifyRequest(
            name=result.name,
            sink=local_sink,
            keyring=keyring,
            tenant=db.uuid,
            test_restore=True,
        )
    )
    assert out.report.encrypted and out.report.filestore["files"] == 3
    assert out.test_restore["ok"] and out.test_restore["row_counts_checked"] == 8
    assert not database_exists(out.test_restore["database"])
    assert list_databases(PREFIX) == dbs
