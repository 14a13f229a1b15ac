"""The repository format without PostgreSQL: chunk boundaries, codecs,
sealed objects and blobs, and (hypothesis, stateful) the safety of garbage
collection over random sequences of snapshots, forgets and collections."""

from __future__ import annotations

import hashlib
import io
import random
import tempfile
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db_backup_suite.lib import crypto
from db_backup_suite.lib import manifest as mf
from db_backup_suite.lib import repository as repo_mod
from db_backup_suite.lib.errors import (
    StreamCryptError,
    SuiteError,
    TamperedError,
    WrongKeyError,
)
from db_backup_suite.lib.payload.reader import PayloadReader
from db_backup_suite.lib.repository import format as fmt
from db_backup_suite.lib.repository import incremental, layout
from db_backup_suite.lib.repository.repo import KIND_SNAPSHOT, pack_path
from db_backup_suite.lib.sinks import make_sink

TENANT = "00000000-0000-4000-8000-0000000000aa"
RING = crypto.Keyring.parse("k1:" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU=")


def _data(seed: int, size: int) -> bytes:
    """Half text-like, half random: boundaries in both kinds of content."""
    rng = random.Random(seed)
    text = b"".join(
        b"row %d partner@example.com\n" % rng.randrange(10**6)
        for _ in range(size // 50 + 1)
    )
    return (text[: size // 2] + rng.randbytes(size))[:size]


class _Trickle(io.RawIOBase):
    """A pipe-like reader: short reads of the sizes given, cycled."""

    def __init__(self, data, sizes):
        self._data = memoryview(data)
        self._sizes = sizes or [65536]
        self._n = 0

    def readable(self):
        return True

    def readinto(self, buf):
        want = min(len(buf), self._sizes[self._n % len(self._sizes)])
        self._n += 1
        piece = self._data[:want]
        buf[: len(piece)] = piece
        self._data = self._data[len(piece) :]
        return len(piece)


def _cuts(chunks) -> list[int]:
    return [c.offset + c.length for c in chunks]


# ---------------------------------------------------------------------------
# Chunk boundaries
# ---------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(0, 3 * fmt.CHUNK_MAX),
    reads=st.lists(st.integers(1, 300_000), min_size=1, max_size=6),
    key_seed=st.integers(0, 2**63 - 1),
)
def test_chunks_cover_the_input_within_bounds_whatever_the_reads(
    seed, size, reads, key_seed
):
    data = _data(seed, size)
    chunker = fmt.make_chunker(key_seed)
    streamed = []
    joined = bytearray()
    for chunk in chunker.cut_stream(_Trickle(data, reads)):
        streamed.append(chunk.offset + chunk.length)
        joined += chunk.data
    assert bytes(joined) == data
    assert streamed == _cuts(fmt.make_chunker(key_seed).cut_buf(data))
    sizes = [b - a for a, b in zip([0, *streamed], streamed, strict=False)]
    assert all(s <= fmt.CHUNK_MAX for s in sizes)
    assert all(s >= fmt.CHUNK_MIN for s in sizes[:-1])


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    where=st.floats(0, 1),
    insert=st.binary(min_size=1, max_size=5000),
)
def test_after_a_common_boundary_the_chunks_are_the_same(seed, where, insert):
    """An edit changes the chunks around it only: once the edited and the
    original stream cut at the same place, every later cut is the same."""
    data = _data(seed, 4 * fmt.CHUNK_MAX)
    pos = int(where * len(data))
    edited = data[:pos] + insert + data[pos:]
    before = _cuts(fmt.make_chunker(1).cut_buf(data))
    after = [c - len(insert) for c in _cuts(fmt.make_chunker(1).cut_buf(edited))]
    common = [c for c in after if c > pos and c in set(before)]
    if common:
        first = common[0]
        assert [c for c in after if c >= first] == [c for c in before if c >= first]


def test_chunks_resynchronise_and_depend_on_the_secret_seed():
    data = _data(5, 8 * fmt.CHUNK_MAX)
    edited = data[:1000] + b"one more row\n" + data[1000:]
    a = {hashlib.sha256(c.data).digest() for c in fmt.make_chunker(9).cut_buf(data)}
    b = [hashlib.sha256(c.data).digest() for c in fmt.make_chunker(9).cut_buf(edited)]
    assert sum(h in a for h in b) >= len(b) - 2
    other = _cuts(fmt.make_chunker(10).cut_buf(data))
    assert other != _cuts(fmt.make_chunker(9).cut_buf(data))


# ---------------------------------------------------------------------------
# Codecs, sealed objects, blobs
# ---------------------------------------------------------------------------
_ids = st.binary(min_size=32, max_size=32)


@settings(max_examples=50, deadline=None)
@given(
    records=st.lists(
        st.tuples(
            st.text(min_size=1, max_size=80),
            st.lists(st.tuples(_ids, st.integers(0, fmt.MAX_BLOB_SIZE)), max_size=4),
            st.integers(0, 2**62),
            _ids,
        ),
        max_size=20,
    )
)
def test_file_lists_round_trip(records):
    recs = [
        fmt.FileRecord(name, sum(n for _b, n in blobs), mtime, sha, tuple(blobs))
        for name, blobs, mtime, sha in records
    ]
    data = fmt.encode_list(fmt.LIST_FILES, [fmt.encode_file_record(r) for r in recs])
    kind, out = fmt.decode_list(data, "test")
    assert kind == fmt.LIST_FILES and out == recs


def _keys(tenant=TENANT, ring=RING):
    return fmt.RepoKeys(ring, tenant, salt=b"s" * 32, id_key_id="k1")


@settings(max_examples=60, deadline=None)
@given(pos=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_a_sealed_object_with_any_bit_flipped_is_refused(pos, bit):
    keys = _keys()
    sealed = bytearray(fmt.seal_json(keys, fmt.TYPE_SNAPSHOT, {"a": "b" * 100}))
    sealed[pos % len(sealed)] ^= 1 << bit
    with pytest.raises(SuiteError):
        fmt.open_json(
            keys,
            bytes(sealed),
            fmt.TYPE_SNAPSHOT,
            tenant=TENANT,
            purpose="repo-snapshot",
            what="x",
        )


def test_sealed_objects_name_tenant_and_purpose():
    keys = _keys()
    sealed = fmt.seal_json(keys, fmt.TYPE_INDEX, {"n": 1})
    assert fmt.open_json(
        keys, sealed, fmt.TYPE_INDEX, tenant=TENANT, purpose="repo-index", what="x"
    ) == {"n": 1}
    other = _keys(tenant="00000000-0000-4000-8000-0000000000bb")
    with pytest.raises(WrongKeyError):
        fmt.open_json(
            other,
            sealed,
            fmt.TYPE_INDEX,
            tenant=other.tenant,
            purpose="repo-index",
            what="x",
        )
    with pytest.raises(StreamCryptError):  # an index is not a snapshot
        fmt.open_json(
            keys,
            sealed,
            fmt.TYPE_SNAPSHOT,
            tenant=TENANT,
            purpose="repo-snapshot",
            what="x",
        )
    with pytest.raises(WrongKeyError):  # the caller must name its tenant
        fmt.open_json(
            keys, sealed, fmt.TYPE_INDEX, tenant="other", purpose="repo-index", what="x"
        )


def test_a_blob_opens_only_under_its_own_id():
    keys = _keys()
    key = keys.purpose_key(fmt.PURPOSE_PACK, "k1")[0]
    plain = b"attachment bytes" * 100
    blob_id = keys.blob_id(fmt.BLOB_DATA, hashlib.sha256(plain).digest())
    other_id = keys.blob_id(fmt.BLOB_DATA, hashlib.sha256(b"x").digest())
    buf = bytearray(len(plain) + 64)
    n = fmt.BlobSealer(key).seal_into(memoryview(buf), blob_id, 0, 0, plain)
    stored = bytes(buf[:n])
    assert fmt.open_blob(key, stored, blob_id, 0, 0, len(plain), what="b") == plain
    with pytest.raises(TamperedError):
        fmt.open_blob(key, stored, other_id, 0, 0, len(plain), what="b")
    with pytest.raises(TamperedError):  # the compression flag is bound
        fmt.open_blob(key, stored, blob_id, 0, fmt.FLAG_ZSTD, len(plain), what="b")
    # ids are keyed: another tenant names the same content differently
    assert _keys(tenant="t2").blob_id(0, hashlib.sha256(plain).digest()) != blob_id


# ---------------------------------------------------------------------------
# Garbage collection safety (stateful, on a local destination)
# ---------------------------------------------------------------------------
POOL = [
    random.Random(i).randbytes(random.Random(i).randrange(1, 400_000)) for i in range(8)
]


def synthetic_snapshot(repo, label, created_at, dump: bytes, files: dict):
    """A snapshot as run_incremental_backup writes it, from bytes (no
    PostgreSQL): the same pipeline, lists and layout."""
    repo.load_index()
    pipe = incremental._Pipeline(repo, 128 * 1024, 1, 2)
    try:
        dumper = incremental._DumpThread(pipe, io.BytesIO(dump), None)
        fs = incremental._Files(pipe, None, (), None)
        for name, data in sorted(files.items()):
            digest = hashlib.sha256(data).digest()
            blob = pipe.store_digested(fmt.BLOB_DATA, data, digest, "files", True)
            rec = fmt.FileRecord(name, len(data), 10**18, digest, ((blob, len(data)),))
            fs.list.add(fmt.encode_file_record(rec))
            fs.digest.add(name, len(data), digest.hex())
            fs.sizes.add(mf.filestore_member(name), len(data), 10**9)
        size, sha, lists = dumper.result()
        fs.list.flush()
        pipe.finish()
    finally:
        pipe.close(abort=False)
    parts = layout.dump_parts(size)
    head = {"kind": mf.KIND, "layout": mf.LAYOUT_VERSION, "dump": {}}
    final = {
        **head,
        "complete": True,
        "dump": {"parts": [n for n, _ in parts], "size": size, "sha256": sha},
        "filestore": {"files": len(files)},
    }
    sizes = layout.SizeCounter()
    stamp = int(created_at.timestamp())
    sizes.add(mf.HEAD_MEMBER, len(mf.dumps(head)), stamp)
    for name, psize in parts:
        sizes.add(name, psize, stamp)
    sizes.total += fs.sizes.total
    sizes.add(mf.MANIFEST_MEMBER, len(mf.dumps(final)), stamp)
    return repo.write_snapshot(
        {
            "kind": KIND_SNAPSHOT,
            "version": 1,
            "tenant": repo.tenant,
            "database": "gcdb",
            "label": label,
            "created_at": mf.iso(created_at),
            "head": head,
            "manifest": final,
            "dump": {"lists": lists, "size": size, "sha256": sha},
            "filestore": {"lists": fs.list.ids, "files": len(files)},
            "tar_size": sizes.finish(),
        }
    )


def _read_back(repo, ref) -> tuple[bytes, dict]:
    snap = repo.load_snapshot(ref)
    tar = b"".join(bytes(p) for p in repo_mod.iter_payload(repo, snap))
    dump, files = b"", {}
    for member in PayloadReader(io.BytesIO(tar), "none"):
        data = member.read()
        if member.name.startswith(mf.FILESTORE_DIR):
            files[member.name[len(mf.FILESTORE_DIR) :]] = data
        elif member.name.startswith(mf.DUMP_MEMBER):
            dump += data
    return dump, files


_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("backup"), st.sets(st.integers(0, 7), max_size=5), st.integers(0, 3)
        ),
        st.tuples(st.just("forget"), st.integers(0, 50)),
        st.tuples(st.just("gc"), st.floats(0.1, 0.9)),
    ),
    min_size=2,
    max_size=9,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_ops)
def test_gc_never_loses_a_kept_snapshot_and_leaves_no_garbage(ops):
    with tempfile.TemporaryDirectory() as tmp:
        sink = make_sink({"type": "local", "path": tmp})
        repo = repo_mod.Repository.open_or_create(sink, "gcdb", TENANT, RING)
        expected: dict[str, tuple] = {}
        clock = datetime(2026, 1, 1, tzinfo=UTC)
        for op in ops + [("gc", 0.5)]:
            if op[0] == "backup":
                files = {
                    f"{i:02x}/{hashlib.sha1(POOL[i]).hexdigest()}": POOL[i]
                    for i in op[1]
                }
                dump = b"".join(POOL[j][:150_000] for j in range(op[2] + 1))
                clock += timedelta(hours=1)
                ref = synthetic_snapshot(repo, "daily", clock, dump, files)
                expected[ref.rel] = (dump, files)
            elif op[0] == "forget" and expected:
                rel = sorted(expected)[op[1] % len(expected)]
                repo.store.delete(rel)
                del expected[rel]
            elif op[0] == "gc":
                repo_mod.collect_garbage(repo, grace=0, repack_threshold=op[1])
                repo.load_index()
                on_disk = set(repo.list_packs())
                assert on_disk == set(repo.index.packs)
                used = set()
                for ref in repo.list_snapshots():
                    snap = repo.load_snapshot(ref)
                    used |= {
                        repo.index.locate(b).pack for b in repo.snapshot_blobs(snap)
                    }
                assert used == on_disk  # no pack without a live blob
            repo.load_index()
            for ref in repo.list_snapshots():
                assert _read_back(repo, ref) == expected[ref.rel]
        assert repo_mod.verify_repository(repo, deep=True).ok


def test_pack_paths_fan_out():
    name = "ab" + "0" * 62
    assert pack_path(name) == f"packs/ab/{name}"
