"""Restore and verify of a snapshot read its payload straight from the
repository (no encryption into an archive stream, no second decryption),
with the checks the archive header gives: same report, same refusals.

The reference is the same snapshot read as a standard archive (its stream
behind a buffered reader, which does not offer the fast path).
"""

from __future__ import annotations

import io

import pytest

from db_backup_suite.lib import backup, crypto, scan
from db_backup_suite.lib import repository as repo_mod
from db_backup_suite.lib.errors import SuiteError, WrongKeyError
from db_backup_suite.lib.repository.archive import SnapshotPayloadReader
from db_backup_suite.lib.repository.repo import pack_path
from db_backup_suite.lib.repository.stored import StoredBackupsSink
from db_backup_suite.lib.sinks import make_sink

PREFIX = "fp_rp_"
OTHER_UUID = "0b0b0b0b-0000-4000-8000-00000000000b"


@pytest.fixture
def keyring():
    return crypto.Keyring.parse(crypto.generate_key_line("k-fast"))


@pytest.fixture
def snapshot(tmp_path, odoo_db_factory, keyring):
    db = odoo_db_factory(
        prefix=PREFIX, partners=600, attachments=20, attachment_size=30_000
    )
    dest = tmp_path / "dest"
    sink = make_sink({"type": "local", "path": str(dest)})
    result = repo_mod.run_incremental_backup(
        backup.BackupRequest(
            database=db.dbname, sink=sink, data_dir=db.data_dir, keyring=keyring
        ),
        pack_size=256 * 1024,
    )
    return db, dest, sink, result


def _scan(vsink, name, *, standard, tenant, **kw):
    """(report or exception, whether the fast path served it)."""
    with vsink.open_read(name) as stream:
        raw = io.BufferedReader(stream) if standard else stream
        try:
            report = scan.scan_archive(raw, tenant=tenant, **kw)
        except SuiteError as exc:
            report = exc
        return report, stream._plain is not None


def _same(report):
    if isinstance(report, Exception):
        return type(report), str(report)
    out = report.as_dict()
    out.pop("duration")
    # the salt is random per stream
    out["header"] = {k: v for k, v in out["header"].items() if k != "salt"}
    return out


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_fast_path_reports_what_the_archive_stream_reports(
    snapshot, keyring, compression
):
    db, _dest, sink, result = snapshot
    vsink = repo_mod.SnapshotArchiveSink(sink, keyring, compression=compression)
    name = result.name
    if compression == "none":
        name = name.replace(".tar.zst.enc", ".tar.enc")
    fast, used = _scan(vsink, name, standard=False, keyring=keyring, tenant=db.uuid)
    assert used
    slow, used = _scan(vsink, name, standard=True, keyring=keyring, tenant=db.uuid)
    assert not used
    assert _same(fast) == _same(slow)
    assert fast.manifest["dump"]["sha256"] == result.manifest["dump"]["sha256"]
    # ANY_TENANT explicitly: the same
    fast_any, _ = _scan(
        vsink, name, standard=False, keyring=keyring, tenant=crypto.ANY_TENANT
    )
    assert _same(fast_any) == _same(fast)
    # the plaintext reader is what scan_archive reads
    with vsink.open_read(name) as stream:
        reader = scan._open_payload(
            stream, keyring=keyring, password=None, tenant=db.uuid
        )
        assert isinstance(reader, SnapshotPayloadReader)
        assert reader.header.tenant == db.uuid
        # once opened as plaintext, not again (nor as an archive)
        assert (
            stream.open_authenticated_payload(keyring=keyring, tenant=db.uuid) is None
        )


def test_fast_path_refuses_what_the_archive_header_refuses(snapshot, keyring):
    db, _dest, sink, result = snapshot
    vsink = repo_mod.SnapshotArchiveSink(sink, keyring)
    name = result.name
    impostor = crypto.Keyring.parse(crypto.generate_key_line("k-fast"))
    stranger = crypto.Keyring.parse(crypto.generate_key_line("k-other"))
    cases = [
        {"keyring": keyring, "tenant": OTHER_UUID},  # another database's
        {"keyring": impostor, "tenant": db.uuid},  # same id, other key
        {"keyring": stranger, "tenant": db.uuid},  # key not in the keyring
        {"password": "correct horse battery", "tenant": db.uuid},
    ]
    for kw in cases:
        fast, _ = _scan(vsink, name, standard=False, **kw)
        slow, _ = _scan(vsink, name, standard=True, **kw)
        assert isinstance(fast, SuiteError), kw
        assert _same(fast) == _same(slow), kw
    fast, _ = _scan(vsink, name, standard=False, keyring=keyring, tenant=OTHER_UUID)
    assert isinstance(fast, WrongKeyError)


def test_fast_path_refuses_a_tampered_pack_as_the_archive_stream_does(
    snapshot, keyring
):
    db, dest, sink, result = snapshot
    repo = repo_mod.Repository.open(sink, db.dbname, db.uuid, keyring)
    repo.load_index()
    snap = repo.load_snapshot(repo.list_snapshots()[0])
    rec = next(iter(repo.iter_list(snap["filestore"]["lists"])))
    loc = repo.index.locate(rec.blobs[0][0])
    path = dest.joinpath(repo.store.root, pack_path(loc.pack))
    data = bytearray(path.read_bytes())
    data[loc.entry.offset + 40] ^= 0x01
    path.write_bytes(bytes(data))
    vsink = repo_mod.SnapshotArchiveSink(sink, keyring)
    fast, used = _scan(
        vsink, result.name, standard=False, keyring=keyring, tenant=db.uuid
    )
    assert used
    slow, _ = _scan(vsink, result.name, standard=True, keyring=keyring, tenant=db.uuid)
    assert isinstance(fast, SuiteError)
    assert _same(fast) == _same(slow)
    assert loc.entry.blob_id.hex() in str(fast)


def test_a_snapshot_is_read_in_place_at_any_destination(snapshot, keyring):
    _db, _dest, sink, result = snapshot
    stored = StoredBackupsSink(sink, keyring=keyring, storage="incremental")
    assert stored.reads_in_place(result.name)
    assert not stored.reads_in_place(f"{_db.dbname}/{_db.dbname}_x.tar.zst.enc")
