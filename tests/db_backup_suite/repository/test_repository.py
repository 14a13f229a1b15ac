"""The incremental repository against the real PostgreSQL, SeaweedFS S3 and
OpenSSH SFTP: snapshots with changes in between restored through the
standard restore, garbage collection, tampering at the destination, a
backup killed with SIGKILL, and tenants that share nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from db_backup_suite.lib import backup, crypto, restore, scan, verify
from db_backup_suite.lib import repository as repo_mod
from db_backup_suite.lib.errors import (
    StreamCryptError,
    SuiteError,
    UnknownKeyError,
    WrongKeyError,
)
from db_backup_suite.lib.repository import format as fmt
from db_backup_suite.lib.repository.repo import pack_path
from db_backup_suite.lib.retention import RetentionPolicy
from db_backup_suite.lib.sinks import make_sink
from tests.fixtures.odoo_db import (
    add_attachment,
    connect,
    data_checksum,
    delete_attachment,
    filestore_listing,
    filestore_path,
    list_databases,
    referenced_files,
)

PREFIX = "h15_rp_"
REPO = Path(__file__).resolve().parents[3]
SMALL_PACK = 256 * 1024


@pytest.fixture
def keyring():
    return crypto.Keyring.parse(crypto.generate_key_line("k-test"))


def _sink(request, kind, tmp_path):
    if kind == "local":
        return make_sink({"type": "local", "path": str(tmp_path / "dest")})
    if kind == "s3":
        return make_sink(request.getfixturevalue("s3_config"))
    return make_sink(request.getfixturevalue("sftp_config"))


def _backup(db, sink, keyring, **kw):
    options = {"pack_size": kw.pop("pack_size", SMALL_PACK)}
    return repo_mod.run_incremental_backup(
        backup.BackupRequest(
            database=db.dbname, sink=sink, data_dir=db.data_dir, keyring=keyring, **kw
        ),
        **options,
    )


def _state(db):
    """Tables (the sandbox gets its own uuid in ir_config_parameter) and the
    filestore files the rows reference, with their content hashes."""
    tables = data_checksum(db.dbname)
    tables.pop("ir_config_parameter")
    files = filestore_listing(db.filestore)
    refs = referenced_files(db.dbname)
    return tables, {k: v for k, v in files.items() if k in refs}


def _restored_state(dbname, data_dir):
    tables = data_checksum(dbname)
    tables.pop("ir_config_parameter")
    return tables, filestore_listing(filestore_path(data_dir, dbname))


def _restore_sandbox(db, vsink, name, keyring, target):
    return restore.run_restore(
        restore.RestoreRequest(
            target=target,
            mode="sandbox",
            sink=vsink,
            name=name,
            keyring=keyring,
            data_dir=db.data_dir,
            expected_uuid=db.uuid,
        )
    )


def _change(db, step: int):
    """Edit 1 partner in 10, add partners, add and delete attachments."""
    conn = connect(db.dbname)
    with conn.cursor() as cr:
        cr.execute(
            "UPDATE res_partner SET comment = comment || %s WHERE id %% 10 = %s",
            (f" edit {step}", step % 10),
        )
        cr.execute(
            "INSERT INTO res_partner (name) SELECT 'new %s ' || g"
            " FROM generate_series(1, 50) g",
            (step,),
        )
        cr.execute(
            "SELECT id FROM ir_attachment WHERE store_fname IS NOT NULL"
            " ORDER BY id LIMIT 1 OFFSET %s",
            (step,),
        )
        victim = cr.fetchone()[0]
    add_attachment(conn, db.filestore, os.urandom(70_000), name=f"img{step}.bin")
    add_attachment(conn, db.filestore, b"text %d\n" % step * 5000, name="t.txt")
    delete_attachment(conn, victim, db.filestore)
    conn.close()


def _used_packs(repo) -> set[str]:
    """The packs holding a blob some snapshot references."""
    repo.load_index()
    used = set()
    for ref in repo.list_snapshots():
        snap = repo.load_snapshot(ref)
        used |= {repo.index.locate(b).pack for b in repo.snapshot_blobs(snap)}
    return used


def _packs_on_disk(root: Path) -> set[str]:
    """Pack files (not the sink's hidden temp files of writes in progress)."""
    return {
        p.name
        for p in root.rglob("packs/*/*")
        if p.is_file() and not p.name.startswith(".")
    }


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["local", "s3", "sftp"])
def test_snapshots_with_changes_restore_through_the_standard_restore(
    request, tmp_path, odoo_db_factory, keyring, kind
):
    db = odoo_db_factory(
        prefix=PREFIX, partners=3000, attachments=40, attachment_size=40_000
    )
    sink = _sink(request, kind, tmp_path)
    results, states = [], []
    for step in range(3):
        if step:
            _change(db, step)
        results.append(_backup(db, sink, keyring, label="daily"))
        states.append(_state(db))
    first, second, third = results
    # the second run stores what changed, not what exists
    assert second.size < first.size / 3
    assert second.stats["reused_files"] >= 38
    assert second.stats["read_files"] == 2
    assert third.manifest["filestore"]["files"] == len(states[2][1])
    vsink = repo_mod.SnapshotArchiveSink(sink, keyring)
    names = [o.name for o in vsink.list(f"{db.dbname}/")]
    assert names == sorted(r.name for r in results)
    # what a listing shows as "new data" is what each run added
    info = vsink.info(second.name)
    assert 0 < info["new_data"] <= second.size and info["reused_files"] >= 38
    assert info["logical_size"] == second.logical_size
    assert vsink.info(first.name)["new_data"] > 3 * info["new_data"]
    for index, (result, state) in enumerate(zip(results, states, strict=True)):
        target = f"{db.dbname}_sb{index}"
        res = _restore_sandbox(db, vsink, result.name, keyring, target)
        assert res.archive_name == result.name
        assert _restored_state(target, db.data_dir) == state
    # the stat size is the exact size of the archive the sink streams
    with vsink.open_read(third.name) as fh:
        streamed = sum(len(c) for c in iter(lambda: fh.read(1 << 20), b""))
    assert streamed == vsink.stat(third.name).size


def test_verify_and_export_of_a_snapshot_as_one_standard_archive(
    tmp_path, odoo_db_factory, keyring
):
    db = odoo_db_factory(prefix=PREFIX, partners=500, attachments=12)
    sink = make_sink({"type": "local", "path": str(tmp_path / "dest")})
    result = _backup(db, sink, keyring)
    vsink = repo_mod.SnapshotArchiveSink(sink, keyring)
    checked = verify.run_verify(
        verify.VerifyRequest(
            sink=vsink, name=result.name, keyring=keyring, tenant=db.uuid
        )
    )
    assert (
        checked.report.manifest["dump"]["sha256"] == result.manifest["dump"]["sha256"]
    )
    assert checked.report.filestore["digest"] == result.manifest["filestore"]["digest"]
    # downloaded as one file (a plain tar, password for off-site), read back
    # alone
    off = repo_mod.SnapshotArchiveSink(
        sink, keyring, password="correct horse battery", compression="none"
    )
    zname = result.name.replace(".tar.zst.enc", ".tar.enc")
    out = tmp_path / "download.tar.enc"
    with open(out, "wb") as fh:
        off.get(zname, fh)
    with open(out, "rb") as fh:
        report = scan.scan_archive(fh, password="correct horse battery", tenant=db.uuid)
    assert (
        report.manifest["filestore"]["digest"] == result.manifest["filestore"]["digest"]
    )
    assert report.header["content_type"] == "tar"
    assert out.stat().st_size == off.stat(zname).size
    with open(out, "rb") as fh, pytest.raises(WrongKeyError):
        scan.scan_archive(fh, password="wrong password!!", tenant=db.uuid)


# ---------------------------------------------------------------------------
# Retention and garbage collection
# ---------------------------------------------------------------------------
def test_old_snapshot_restores_after_gc_of_newer_and_older_ones(
    tmp_path, odoo_db_factory, keyring
):
    db = odoo_db_factory(
        prefix=PREFIX, partners=2000, attachments=30, attachment_size=30_000
    )
    dest = tmp_path / "dest"
    sink = make_sink({"type": "local", "path": str(dest)})
    results, states = [], []
    for step in range(4):
        if step:
            _change(db, step)
        results.append(_backup(db, sink, keyring))
        states.append(_state(db))
    vsink = repo_mod.SnapshotArchiveSink(sink, keyring)
    vsink.delete(results[0].name)  # older than the one we keep
    vsink.delete(results[2].name)  # newer
    repo = repo_mod.Repository.open(sink, db.dbname, db.uuid, keyring)
    gc = repo_mod.collect_garbage(repo, grace=0, repack_threshold=0.3)
    assert gc.snapshots == 2 and gc.freed_bytes > 0
    assert gc.deleted_packs or gc.repacked_packs
    # nothing unreferenced is left, and nothing referenced is gone
    report = repo_mod.verify_repository(repo, deep=True)
    assert report.ok, report.problems
    assert _packs_on_disk(dest) == set(repo.index.packs)
    used = set()
    for ref in repo.list_snapshots():
        used |= {
            repo.index.locate(b).pack
            for b in repo.snapshot_blobs(repo.load_snapshot(ref))
        }
    assert used == set(repo.index.packs)
    vsink = repo_mod.SnapshotArchiveSink(sink, keyring)
    for index in (1, 3):
        target = f"{db.dbname}_gc{index}"
        _restore_sandbox(db, vsink, results[index].name, keyring, target)
        assert _restored_state(target, db.data_dir) == states[index]


def test_prune_applies_the_archive_retention_rules(tmp_path, odoo_db_factory, keyring):
    db = odoo_db_factory(prefix=PREFIX, partners=300, attachments=6)
    sink = make_sink({"type": "local", "path": str(tmp_path / "dest")})
    now = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
    made = []
    for days in (3, 2, 1, 0):
        made.append(
            _backup(
                db, sink, keyring, label="daily", created_at=now - timedelta(days=days)
            )
        )
    manual = _backup(db, sink, keyring, label="manual", created_at=now)
    plan = repo_mod.prune(
        sink, db.dbname, keyring, RetentionPolicy(keep_daily=2), now=now, grace=0
    )
    assert sorted(plan.forgotten) == sorted(r.name for r in made[:2])
    left = {o.name for o in repo_mod.SnapshotArchiveSink(sink, keyring).list()}
    assert left == {made[2].name, made[3].name, manual.name}
    (gc,) = plan.gc.values()
    assert gc.snapshots == 3
    repo = repo_mod.Repository.open(sink, db.dbname, db.uuid, keyring)
    assert repo_mod.verify_repository(repo, deep=True).ok
    # a dry run changes nothing
    again = repo_mod.prune(
        sink,
        db.dbname,
        keyring,
        RetentionPolicy(keep_last=1),
        now=now,
        dry_run=True,
        grace=0,
    )
    assert again.forget and not again.forgotten
    assert {o.name for o in repo_mod.SnapshotArchiveSink(sink, keyring).list()} == left


def test_gc_waits_for_a_running_backup_and_spares_young_packs(
    tmp_path, odoo_db_factory, keyring
):
    db = odoo_db_factory(prefix=PREFIX, partners=300, attachments=6)
    dest = tmp_path / "dest"
    sink = make_sink({"type": "local", "path": str(dest)})
    _backup(db, sink, keyring)
    repo = repo_mod.Repository.open(sink, db.dbname, db.uuid, keyring)
    before = _packs_on_disk(dest)
    with (
        repo.lock("shared", purpose="backup"),
        pytest.raises(repo_mod.RepositoryLockedError),
    ):
        repo_mod.collect_garbage(repo, grace=0)
    # a pack no index lists (a backup still writing): kept within the grace
    orphan = os.urandom(1000)
    name = fmt.sha256_hex(orphan)
    repo.store.put_bytes(pack_path(name), orphan)
    result = repo_mod.collect_garbage(repo)
    assert result.young_packs >= 1 and name not in result.orphan_packs
    assert _packs_on_disk(dest) == before | {name}
    result = repo_mod.collect_garbage(repo, grace=0)
    assert result.orphan_packs == [name]
    # (the small packs of the run may have been merged meanwhile)
    assert name not in _packs_on_disk(dest)
    assert _packs_on_disk(dest) == set(repo.index.packs)
    assert repo_mod.verify_repository(repo, deep=True).ok
    # and a backup refuses while a GC holds the exclusive lock
    with (
        repo.lock("exclusive", purpose="gc"),
        pytest.raises(repo_mod.RepositoryLockedError),
    ):
        _backup(db, sink, keyring)
    assert len(repo.list_snapshots()) == 1


# ---------------------------------------------------------------------------
# Damage at the destination
# ---------------------------------------------------------------------------
def _data_pack(repo, dest: Path, ref, prefer_files=True):
    """A data pack the snapshot needs, and one of its blobs."""
    snap = repo.load_snapshot(ref)
    for rec in repo.iter_list(snap["filestore"]["lists"]):
        for blob_id, _raw in rec.blobs:
            loc = repo.index.locate(blob_id)
            return loc, dest.joinpath(repo.store.root, pack_path(loc.pack))
    raise AssertionError("no data blob")


@pytest.mark.parametrize("damage", ["altered", "truncated", "swapped", "removed"])
def test_damaged_pack_is_named_by_verify_and_refused_by_restore(
    tmp_path, odoo_db_factory, keyring, damage
):
    db = odoo_db_factory(
        prefix=PREFIX, partners=800, attachments=30, attachment_size=40_000
    )
    dest = tmp_path / "dest"
    sink = make_sink({"type": "local", "path": str(dest)})
    result = _backup(db, sink, keyring)
    repo = repo_mod.Repository.open(sink, db.dbname, db.uuid, keyring)
    repo.load_index()
    ref = repo.list_snapshots()[0]
    loc, path = _data_pack(repo, dest, ref)
    data = bytearray(path.read_bytes())
    broken = {loc.pack, loc.entry.blob_id.hex()}
    if damage == "altered":
        data[loc.entry.offset + 40] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "removed":
        path.unlink()
    else:  # two packs of the same size exchange their content
        other = next(
            p
            for p in sorted(path.parent.parent.rglob("*"))
            if p.is_file() and p != path
        )
        path.write_bytes(other.read_bytes())
        other.write_bytes(bytes(data))
        broken.add(other.name)
    report = repo_mod.verify_repository(repo, deep=True)
    assert not report.ok
    assert any(loc.pack in p for p in report.problems), report.problems
    if damage == "altered":
        assert any(loc.entry.blob_id.hex() in p for p in report.problems)
    assert ref.rel in report.damaged
    # the restore refuses before anything is replaced
    before = (
        _state(db),
        list_databases(db.dbname),
        sorted(os.listdir(db.data_dir / "filestore")),
    )
    vsink = repo_mod.SnapshotArchiveSink(sink, keyring)
    with pytest.raises(StreamCryptError) as info:
        restore.run_restore(
            restore.RestoreRequest(
                target=db.dbname,
                sink=vsink,
                name=result.name,
                keyring=keyring,
                data_dir=db.data_dir,
            )
        )
    assert any(name in str(info.value) for name in broken), info.value
    after = (
        _state(db),
        list_databases(db.dbname),
        sorted(os.listdir(db.data_dir / "filestore")),
    )
    assert after == before


def test_renamed_snapshot_and_altered_index_are_refused(
    tmp_path, odoo_db_factory, keyring
):
    db = odoo_db_factory(prefix=PREFIX, partners=200, attachments=4)
    dest = tmp_path / "dest"
    sink = make_sink({"type": "local", "path": str(dest)})
    _backup(db, sink, keyring, label="daily")
    repo = repo_mod.Repository.open(sink, db.dbname, db.uuid, keyring)
    (ref,) = repo.list_snapshots()
    root = dest / repo.store.root
    # renamed to look a day newer: the content says otherwise
    newer = ref.rel.replace(ref.stamp, "20991231T000000Z")
    (root / ref.rel).rename(root / newer)
    (fake,) = repo.list_snapshots()
    with pytest.raises(StreamCryptError, match="renamed"):
        repo.load_snapshot(fake)
    (root / newer).rename(root / ref.rel)
    # an index file with one byte changed
    (index_file,) = (root / "index").iterdir()
    data = bytearray(index_file.read_bytes())
    data[-5] ^= 0x80
    index_file.write_bytes(bytes(data))
    with pytest.raises(StreamCryptError, match="does not match its name"):
        repo.load_index()
    report = repo_mod.verify_repository(repo, deep=True)
    assert any(index_file.name in p for p in report.problems)
    # repair: a new index from the packs' own headers
    repo_mod.rebuild_index(repo)
    assert repo_mod.verify_repository(repo, deep=True).ok


# ---------------------------------------------------------------------------
# Crash safety
# ---------------------------------------------------------------------------
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from db_backup_suite.lib import backup, crypto, repository
    from db_backup_suite.lib.sinks import make_sink

    dest = Path({dest!r})
    def progress(done, total, message):
        packs = [p for p in dest.rglob("packs/*/*") if not p.name.startswith(".")]
        if len(packs) >= {kill_after}:
            os.kill(os.getpid(), signal.SIGKILL)
    req = backup.BackupRequest(
        database={db!r}, sink=make_sink({{"type": "local", "path": str(dest)}}),
        data_dir={data_dir!r}, keyring=crypto.Keyring.parse({line!r}),
        label="daily", progress=progress)
    repository.run_incremental_backup(req, pack_size=128 * 1024)
    print("FINISHED")
    """
)


def test_backup_killed_mid_way_leaves_only_garbage_that_gc_removes(
    tmp_path, odoo_db_factory
):
    line = crypto.generate_key_line("k-kill")
    keyring = crypto.Keyring.parse(line)
    db = odoo_db_factory(
        prefix=PREFIX, partners=2000, attachments=60, attachment_size=60_000
    )
    dest = tmp_path / "dest"
    sink = make_sink({"type": "local", "path": str(dest)})
    first = _backup(db, sink, keyring)
    kept = _state(db)
    repo = repo_mod.Repository.open(sink, db.dbname, db.uuid, keyring)
    repo.load_index()
    referenced = set(repo.index.packs)
    for step in (1, 2):
        _change(db, step)
    for n in range(12):  # new data for the killed run to upload
        add_attachment(
            connect(db.dbname), db.filestore, os.urandom(90_000), name=f"late{n}.bin"
        )
    script = KILLER.format(
        repo=str(REPO),
        dest=str(dest),
        db=db.dbname,
        data_dir=str(db.data_dir),
        line=line,
        kill_after=len(referenced) + 3,
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -9, proc.stdout + proc.stderr
    assert "FINISHED" not in proc.stdout
    leftovers = _packs_on_disk(dest) - referenced
    assert len(leftovers) >= 3  # the killed run did upload packs
    assert len(repo.list_snapshots()) == 1  # but wrote no snapshot
    result = repo_mod.collect_garbage(repo, grace=0)
    assert set(result.orphan_packs) | set(result.deleted_packs) >= leftovers
    on_disk = _packs_on_disk(dest)
    assert not on_disk & leftovers
    # every pack left is one the remaining snapshot needs
    assert on_disk == set(repo.index.packs) == _used_packs(repo)
    assert not list(dest.rglob(".dbbs-*"))  # no temp file left either
    assert not list(dest.rglob("locks/*"))  # the dead process's lock is gone
    vsink = repo_mod.SnapshotArchiveSink(sink, keyring)
    _restore_sandbox(db, vsink, first.name, keyring, f"{db.dbname}_k")
    assert _restored_state(f"{db.dbname}_k", db.data_dir) == kept


# ---------------------------------------------------------------------------
# Tenants
# ---------------------------------------------------------------------------
def test_two_databases_with_different_keys_share_no_blob(tmp_path, odoo_db_factory):
    ring_a = crypto.Keyring.parse(crypto.generate_key_line("k-a"))
    ring_b = crypto.Keyring.parse(crypto.generate_key_line("k-b"))
    # same seed: the same attachment files, byte for byte
    db_a = odoo_db_factory(prefix=PREFIX, partners=400, attachments=10, seed=7)
    db_b = odoo_db_factory(
        prefix=PREFIX,
        partners=400,
        attachments=10,
        seed=7,
        data_dir=tmp_path / "data_b",
    )
    assert filestore_listing(db_a.filestore) == filestore_listing(db_b.filestore)
    db_b.uuid = "0b0b0b0b-0000-4000-8000-00000000000b"
    conn = connect(db_b.dbname)
    with conn.cursor() as cr:
        cr.execute(
            "UPDATE ir_config_parameter SET value = %s WHERE key = 'database.uuid'",
            (db_b.uuid,),
        )
    conn.close()
    dest = tmp_path / "dest"
    sink = make_sink({"type": "local", "path": str(dest)})
    _backup(db_a, sink, ring_a)
    _backup(db_b, sink, ring_b)
    repo_a = repo_mod.Repository.open(sink, db_a.dbname, db_a.uuid, ring_a)
    repo_b = repo_mod.Repository.open(sink, db_b.dbname, db_b.uuid, ring_b)
    repo_a.load_index()
    repo_b.load_index()
    assert repo_a.index.blobs and repo_b.index.blobs
    assert not set(repo_a.index.blobs) & set(repo_b.index.blobs)
    assert not set(repo_a.index.packs) & set(repo_b.index.packs)
    assert repo_a.store.root != repo_b.store.root
    # one database's key opens nothing of the other's: not under another
    # key id, not under the same key id with other key material
    with pytest.raises(UnknownKeyError):
        repo_mod.Repository.open(sink, db_b.dbname, db_b.uuid, ring_a)
    impostor = crypto.Keyring.parse(crypto.generate_key_line("k-b"))
    with pytest.raises(WrongKeyError):
        repo_mod.Repository.open(sink, db_b.dbname, db_b.uuid, impostor)
    # nor does the right key under the other tenant
    with pytest.raises((WrongKeyError, SuiteError)):
        repo_mod.Repository.open(sink, db_b.dbname, db_a.uuid, ring_b)
    # a snapshot object copied into the other repository is refused
    ref_b = repo_b.list_snapshots()[0]
    data = repo_b.store.get_bytes(ref_b.rel)
    repo_a.store.put_bytes(ref_b.rel, data)
    copied = [r for r in repo_a.list_snapshots() if r.rel == ref_b.rel][0]
    with pytest.raises(UnknownKeyError):
        repo_a.load_snapshot(copied)
