"""Retention, garbage collection, verification and index repair.

Garbage collection (:func:`collect_garbage`), under an EXCLUSIVE
repository lock (no backup, restore or verify of this repository runs):

1. read every index file and every snapshot; any unreadable one stops it
   (nothing is deleted on incomplete knowledge);
2. mark every blob a snapshot references (its list blobs, the dump's
   chunks, every filestore file's chunks); each marked blob gets one home
   pack, an old one in preference;
3. packs younger than ``grace`` (by the destination's modification time)
   are left alone, indexed or not: a backup that ignored or outlived its
   lock may still be writing them;
4. older packs: without a live blob, deleted; with a dead fraction of at
   least ``repack_threshold`` (or small enough to merge), repacked: their
   live blobs are authenticated and re-encrypted into new packs;
5. new index files (every kept pack, written first), then the old index
   files, the dead and repacked packs and the old packs no index lists
   (left by a killed backup) are deleted, and the sink's own leftovers
   (temp files, multipart uploads) older than ``grace``.

A crash anywhere leaves at worst packs no index lists or index entries
duplicated: the next run removes them. The grace period (6 hours by
default) is the second line of defence after the lock.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import manifest as mf
from ..errors import SinkObjectNotFound, SuiteError, TamperedError
from ..retention import RetentionPolicy, plan_retention
from . import format as fmt
from .archive import SnapshotArchiveSink, check_snapshot
from .repo import DEFAULT_PACK_SIZE, BufferPool, PackWriter, Repository, pack_path

_logger = logging.getLogger(__name__)

DEFAULT_GRACE = 6 * 3600
DEFAULT_REPACK_THRESHOLD = 0.5


@dataclass
class GcResult:
    snapshots: int = 0
    packs: int = 0
    deleted_packs: list[str] = field(default_factory=list)
    repacked_packs: list[str] = field(default_factory=list)
    written_packs: list[str] = field(default_factory=list)
    orphan_packs: list[str] = field(default_factory=list)
    young_packs: int = 0
    deleted_index_files: int = 0
    written_index_files: int = 0
    freed_bytes: int = 0
    written_bytes: int = 0
    live_blobs: int = 0
    problems: list[str] = field(default_factory=list)
    dry_run: bool = False
    duration: float = 0.0

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out["duration"] = round(self.duration, 3)
        return out


def _stored_plain(repo: Repository, rec: fmt.PackRecord, entry: fmt.Entry, data):
    """The stored form (maybe compressed) of a blob, authenticated."""
    key = repo.blob_key(rec.key_id)
    piece = data[entry.offset : entry.offset + entry.stored]
    try:
        return AESGCM(key).decrypt(
            bytes(piece[: fmt.NONCE_SIZE]),
            bytes(piece[fmt.NONCE_SIZE :]),
            fmt.blob_aad(entry.blob_id, entry.btype, entry.flags),
        )
    except InvalidTag:
        raise TamperedError(
            f"pack {rec.name}, blob {entry.blob_id.hex()}: authentication failed"
        ) from None


def collect_garbage(
    repo: Repository,
    *,
    grace: float = DEFAULT_GRACE,
    repack_threshold: float = DEFAULT_REPACK_THRESHOLD,
    pack_size: int = DEFAULT_PACK_SIZE,
    dry_run: bool = False,
    lock_options: dict | None = None,
    now: float | None = None,
) -> GcResult:
    """Remove what no snapshot of ``repo`` references (see module doc)."""
    started = time.monotonic()
    result = GcResult(dry_run=dry_run)
    with repo.lock("exclusive", purpose="gc", **(lock_options or {})) as lock:
        result.problems.extend(lock.warnings)
        repo.load_index(strict=True)
        old_index_files = list(repo.index.files)
        listed = repo.list_packs()
        result.packs = len(listed)
        refs = repo.list_snapshots()
        result.snapshots = len(refs)
        used: set[bytes] = set()
        for ref in refs:
            snap = repo.load_snapshot(ref)
            for blob_id in repo.snapshot_blobs(snap):
                used.add(blob_id)
        now = time.time() if now is None else now
        cutoff = now - grace
        young = {n for n, o in listed.items() if o.modified.timestamp() > cutoff}
        result.young_packs = len(young)

        # one home per live blob, old packs first
        order = sorted(repo.index.packs, key=lambda n: (n in young, n))
        home: dict[bytes, str] = {}
        for name in order:
            if name not in listed:
                continue
            for entry in repo.index.packs[name].entries:
                if entry.blob_id in used and entry.blob_id not in home:
                    home[entry.blob_id] = name
        result.live_blobs = len(home)
        lost = len(used) - len(home)
        if lost:
            result.problems.append(
                f"{lost} blob(s) referenced by snapshots are in no pack present "
                "at the destination: run verify"
            )

        keep, delete, repack = [], [], []
        small = []
        for name in order:
            rec = repo.index.packs[name]
            if name not in listed:
                result.problems.append(f"indexed pack {name} is missing: dropped")
                continue
            if name in young:
                keep.append(rec)
                continue
            live = [e for e in rec.entries if home.get(e.blob_id) == name]
            if not live:
                delete.append(rec)
                continue
            live_bytes = sum(e.stored for e in live)
            dead = 1 - live_bytes / max(rec.size, 1)
            if dead >= repack_threshold:
                repack.append((rec, live))
            elif rec.size < pack_size // 4:
                small.append((rec, live))
            else:
                keep.append(rec)
        if len(small) > 1:
            repack.extend(small)
        else:
            keep.extend(rec for rec, _live in small)
        orphans = [
            n
            for n, o in listed.items()
            if n not in repo.index.packs and o.modified.timestamp() <= cutoff
        ]
        result.deleted_packs = [r.name for r in delete]
        result.repacked_packs = [r.name for r, _live in repack]
        result.orphan_packs = sorted(orphans)
        result.freed_bytes = (
            sum(r.size for r in delete)
            + sum(r.size for r, _l in repack)
            + sum(listed[n].size for n in orphans)
        )
        if dry_run:
            result.duration = time.monotonic() - started
            return result

        # repack the live blobs of mostly-dead packs
        written: list[fmt.PackRecord] = []
        if repack:
            pool = BufferPool(pack_size + fmt.MAX_BLOB_SIZE + 4096, 1)
            writer = PackWriter(repo, pack_size, pool)

            def put(done):
                buffer, data, record = done
                record.name = hashlib.sha256(data).hexdigest()
                repo.store.put_bytes(pack_path(record.name), data)
                written.append(record)
                result.written_bytes += len(data)
                data.release()
                pool.put(buffer)

            for rec, live in repack:
                data = memoryview(repo.read_pack_range(rec.name, 0, rec.size))
                for entry in live:
                    stored = _stored_plain(repo, rec, entry, data)
                    done = writer.add(
                        entry.blob_id, entry.btype, entry.flags, stored, entry.raw
                    )
                    if done is not None:
                        put(done)
            done = writer.finish()
            if done is not None:
                put(done)
        result.written_packs = [r.name for r in written]

        # the new index first, then what it replaces
        new_files = repo.write_index(keep + written)
        result.written_index_files = len(new_files)
        for rel in old_index_files:
            if rel not in new_files:
                repo.store.delete(rel)
                result.deleted_index_files += 1
        for name in [r.name for r in delete] + result.repacked_packs + orphans:
            repo.store.delete(pack_path(name))
        repo.store.cleanup_incomplete(older_than=grace)
        repo.load_index()
    result.duration = time.monotonic() - started
    _logger.info(
        "garbage collection of %s: %d pack(s) deleted, %d repacked into %d, "
        "%d orphan(s), %d bytes freed",
        repo.store.describe(),
        len(result.deleted_packs),
        len(result.repacked_packs),
        len(result.written_packs),
        len(result.orphan_packs),
        result.freed_bytes,
    )
    return result


# ---------------------------------------------------------------------------
# Retention
# ---------------------------------------------------------------------------
@dataclass
class PruneResult:
    keep: list[str]
    forget: list[str]
    forgotten: list[str]
    reasons: dict[str, str]
    gc: dict[str, GcResult]
    dry_run: bool

    def as_dict(self) -> dict:
        return {
            "keep": self.keep,
            "delete": self.forget,
            "deleted": self.forgotten,
            "reasons": self.reasons,
            "gc": {root: r.as_dict() for root, r in self.gc.items()},
            "dry_run": self.dry_run,
        }


def prune(
    sink,
    database: str,
    keyring,
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    gc: bool = True,
    tenants: dict | None = None,
    **gc_options,
) -> PruneResult:
    """Apply ``policy`` (retention.py, the same rules as for archives) to
    the snapshots of ``database`` at ``sink``, then collect the garbage of
    each of its repositories."""
    archives = SnapshotArchiveSink(sink, keyring, tenants=tenants)
    names = [o.name for o in archives.list(f"{database}/")]
    plan = plan_retention(names, policy, now or mf.utc_now(), database=database)
    forgotten = []
    if not dry_run:
        for name in plan.delete_names:
            archives.delete(name)
            forgotten.append(name)
    results = {}
    if gc:
        for root in archives.roots(f"{database}/"):
            repo = archives.repository(root)
            results[root] = collect_garbage(repo, dry_run=dry_run, **gc_options)
    return PruneResult(
        keep=list(plan.keep),
        forget=plan.delete_names,
        forgotten=forgotten,
        reasons=plan.reasons,
        gc=results,
        dry_run=dry_run,
    )


# ---------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------
@dataclass
class VerifyReport:
    """``problems``: one line each, naming the pack, blob or object and the
    snapshots it breaks; ``damaged``: snapshot object -> its problems."""

    ok: bool
    snapshots: int
    packs: int
    packs_read: int
    blobs_checked: int
    bytes_read: int
    problems: list[str]
    damaged: dict[str, list[str]]
    duration: float

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out["duration"] = round(self.duration, 3)
        return out


def verify_repository(
    repo: Repository,
    *,
    sample: float = 0.1,
    deep: bool = False,
    rng: random.Random | None = None,
    lock_options: dict | None = None,
) -> VerifyReport:
    """Check that every blob every snapshot references is indexed and in a
    pack present with its size; then read ``sample`` of the packs (all with
    ``deep``): the pack's content matches its name, its own header matches
    the index, every blob authenticates and matches its id."""
    started = time.monotonic()
    problems: list[str] = []
    damaged: dict[str, list[str]] = {}
    with repo.lock("shared", purpose="verify", **(lock_options or {})) as lock:
        problems.extend(lock.warnings)
        problems.extend(repo.load_index(strict=False))
        listed = repo.list_packs()
        for name, rec in repo.index.packs.items():
            obj = listed.get(name)
            if obj is None:
                problems.append(f"pack {name} is missing")
            elif obj.size != rec.size:
                problems.append(
                    f"pack {name} has {obj.size} bytes, {rec.size} expected "
                    "(truncated or altered)"
                )
        users: dict[str, list[str]] = {}
        refs = repo.list_snapshots()
        for ref in refs:
            try:
                snap = repo.load_snapshot(ref)
            except (SuiteError, SinkObjectNotFound) as exc:
                damaged[ref.rel] = [str(exc)]
                problems.append(f"snapshot {ref.rel}: {exc}")
                continue
            found = check_snapshot(repo, snap, listed)
            if found:
                damaged[ref.rel] = found
            try:
                for blob_id in set(repo.snapshot_blobs(snap)):
                    loc = repo.index.locate(blob_id)
                    if loc is not None:
                        users.setdefault(loc.pack, []).append(ref.rel)
            except (SuiteError, SinkObjectNotFound) as exc:
                damaged.setdefault(ref.rel, []).append(str(exc))
        candidates = sorted(n for n in repo.index.packs if n in listed)
        if deep:
            chosen = candidates
        else:
            count = math.ceil(len(candidates) * max(0.0, min(sample, 1.0)))
            chosen = sorted((rng or random.SystemRandom()).sample(candidates, count))
        bytes_read = blobs = 0
        for name in chosen:
            rec = repo.index.packs[name]
            size = listed[name].size
            try:
                data = repo.store.read_range(pack_path(name), 0, size)
            except (SuiteError, SinkObjectNotFound) as exc:
                problems.append(f"pack {name}: {exc}")
                continue
            bytes_read += len(data)
            pack_problems = _check_pack(repo, rec, data)
            blobs += len(rec.entries)
            for line in pack_problems:
                snaps = sorted(set(users.get(name, ())))
                problems.append(
                    line
                    + (f" (breaks {', '.join(snaps)})" if snaps else " (no snapshot)")
                )
                for snap_rel in snaps:
                    damaged.setdefault(snap_rel, []).append(line)
        for rel, lines in damaged.items():
            for line in lines:
                text = f"snapshot {rel}: {line}"
                if text not in problems and not any(line in p for p in problems):
                    problems.append(text)
    return VerifyReport(
        ok=not problems,
        snapshots=len(refs),
        packs=len(listed),
        packs_read=len(chosen),
        blobs_checked=blobs,
        bytes_read=bytes_read,
        problems=problems,
        damaged=damaged,
        duration=time.monotonic() - started,
    )


def _check_pack(repo: Repository, rec: fmt.PackRecord, data: bytes) -> list[str]:
    out = []
    if hashlib.sha256(data).hexdigest() != rec.name:
        out.append(f"pack {rec.name}: its content does not match its name")
    try:
        _kid, header = repo.read_pack_header(rec.name, len(data), data)
        if header != rec.entries:
            out.append(f"pack {rec.name}: its header differs from the index")
    except (SuiteError, ValueError) as exc:
        out.append(f"pack {rec.name}: header unreadable: {exc}")
    view = memoryview(data)
    for entry in rec.entries:
        what = f"blob {entry.blob_id.hex()} in pack {rec.name}"
        try:
            if entry.offset + entry.stored > len(data):
                raise TamperedError(f"{what}: beyond the end of the pack")
            plain = repo.open_located(
                _Loc(rec.name, rec.key_id, entry),
                view[entry.offset : entry.offset + entry.stored],
            )
            repo.verify_blob_id(entry, plain, what)
        except SuiteError as exc:
            out.append(str(exc) if what in str(exc) else f"{what}: {exc}")
    return out


@dataclass
class _Loc:
    pack: str
    key_id: str
    entry: fmt.Entry


def rebuild_index(repo: Repository, *, lock_options: dict | None = None) -> dict:
    """Write a new index from the packs' own headers (when index files were
    lost or damaged), then delete the old index files."""
    with repo.lock("exclusive", purpose="rebuild-index", **(lock_options or {})):
        old = [o.name for o in repo.store.list("index/")]
        records, problems = [], []
        for name, obj in sorted(repo.list_packs().items()):
            try:
                key_id, entries = repo.read_pack_header(name, obj.size)
            except (SuiteError, SinkObjectNotFound, ValueError) as exc:
                problems.append(f"pack {name}: {exc}")
                continue
            records.append(fmt.PackRecord(name, obj.size, key_id, entries))
        new_files = repo.write_index(records)
        for rel in old:
            if rel not in new_files:
                repo.store.delete(rel)
        repo.load_index()
    return {"packs": len(records), "index_files": len(new_files), "problems": problems}


def snapshot_age(ref, now: datetime) -> timedelta:
    return now - ref.created_at
