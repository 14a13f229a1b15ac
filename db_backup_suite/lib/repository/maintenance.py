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
        used = _used_blobs(repo, refs)
        now = time.time() if now is None else now
        plan = _plan_collection(
            repo,
            listed,
            used,
            cutoff=now - grace,
            repack_threshold=repack_threshold,
            pack_size=pack_size,
            result=result,
        )
        if dry_run:
            result.duration = time.monotonic() - started
            return result
        written = _repack(repo, plan.repack, pack_size, result)
        result.written_packs = [r.name for r in written]
        _replace_index(
            repo,
            old_index_files,
            plan.keep + written,
            [r.name for r in plan.delete] + result.repacked_packs + plan.orphans,
            grace=grace,
            result=result,
        )
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


@dataclass
class _GcPlan:
    """What a collection does with each pack at the destination: ``keep``
    and ``delete`` hold index records, ``repack`` (record, its live entries)
    pairs, ``orphans`` the names of old packs no index lists."""

    keep: list[fmt.PackRecord]
    delete: list[fmt.PackRecord]
    repack: list[tuple[fmt.PackRecord, list[fmt.Entry]]]
    orphans: list[str]


def _used_blobs(repo: Repository, refs) -> set[bytes]:
    """Every blob a snapshot of ``refs`` references (an unreadable snapshot
    raises: nothing is deleted on incomplete knowledge)."""
    used: set[bytes] = set()
    for ref in refs:
        snap = repo.load_snapshot(ref)
        for blob_id in repo.snapshot_blobs(snap):
            used.add(blob_id)
    return used


def _home_packs(
    repo: Repository, order: list[str], listed: dict, used: set[bytes]
) -> dict[bytes, str]:
    """One home pack per live blob: the first of ``order`` (old packs
    first) present at the destination that holds it."""
    home: dict[bytes, str] = {}
    for name in order:
        if name not in listed:
            continue
        for entry in repo.index.packs[name].entries:
            if entry.blob_id in used and entry.blob_id not in home:
                home[entry.blob_id] = name
    return home


def _plan_collection(
    repo: Repository,
    listed: dict,
    used: set[bytes],
    *,
    cutoff: float,
    repack_threshold: float,
    pack_size: int,
    result: GcResult,
) -> _GcPlan:
    """Steps 2 to 4 of the module doc, nothing written yet: which packs are
    kept, deleted or repacked, and the counts and problems in ``result``."""
    young = {n for n, o in listed.items() if o.modified.timestamp() > cutoff}
    result.young_packs = len(young)

    # one home per live blob, old packs first
    order = sorted(repo.index.packs, key=lambda n: (n in young, n))
    home = _home_packs(repo, order, listed, used)
    result.live_blobs = len(home)
    lost = len(used) - len(home)
    if lost:
        result.problems.append(
            f"{lost} blob(s) referenced by snapshots are in no pack present "
            "at the destination: run verify"
        )

    keep, delete, repack = _sort_indexed_packs(
        repo,
        order,
        listed,
        young,
        home,
        repack_threshold=repack_threshold,
        pack_size=pack_size,
        problems=result.problems,
    )
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
    return _GcPlan(keep=keep, delete=delete, repack=repack, orphans=orphans)


def _sort_indexed_packs(
    repo: Repository,
    order: list[str],
    listed: dict,
    young: set[str],
    home: dict[bytes, str],
    *,
    repack_threshold: float,
    pack_size: int,
    problems: list[str],
) -> tuple[list, list, list]:
    """The indexed packs (in ``order``) as (keep, delete, repack): young
    ones kept, those without a live blob deleted, mostly-dead ones repacked,
    small ones merged when there are two or more; an indexed pack missing
    at the destination is dropped with a line in ``problems``."""
    keep, delete, repack = [], [], []
    small = []
    for name in order:
        rec = repo.index.packs[name]
        if name not in listed:
            problems.append(f"indexed pack {name} is missing: dropped")
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
    return keep, delete, repack


def _repack(
    repo: Repository, repack: list, pack_size: int, result: GcResult
) -> list[fmt.PackRecord]:
    """Store the live blobs of ``repack``'s (record, live entries) pairs,
    authenticated and re-encrypted, in new packs; their records, in the
    order written."""
    written: list[fmt.PackRecord] = []
    if not repack:
        return written
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
    return written


def _replace_index(
    repo: Repository,
    old_index_files: list[str],
    records: list[fmt.PackRecord],
    obsolete_packs: list[str],
    *,
    grace: float,
    result: GcResult,
) -> None:
    """Step 5 of the module doc: the new index first (``records``), then
    what it replaces: the old index files, the ``obsolete_packs`` and the
    sink's leftovers older than ``grace``."""
    new_files = repo.write_index(records)
    result.written_index_files = len(new_files)
    for rel in old_index_files:
        if rel not in new_files:
            repo.store.delete(rel)
            result.deleted_index_files += 1
    for name in obsolete_packs:
        repo.store.delete(pack_path(name))
    repo.store.cleanup_incomplete(older_than=grace)
    repo.load_index()


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
        problems.extend(_indexed_pack_problems(repo, listed))
        refs = repo.list_snapshots()
        users = _check_snapshots(repo, refs, listed, damaged, problems)
        chosen = _packs_to_read(repo, listed, sample=sample, deep=deep, rng=rng)
        bytes_read, blobs = _read_packs(repo, chosen, listed, users, damaged, problems)
        _add_snapshot_problems(damaged, problems)
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


def _indexed_pack_problems(repo: Repository, listed: dict) -> list[str]:
    """One line per indexed pack missing at the destination or of another
    size there than indexed."""
    problems = []
    for name, rec in repo.index.packs.items():
        obj = listed.get(name)
        if obj is None:
            problems.append(f"pack {name} is missing")
        elif obj.size != rec.size:
            problems.append(
                f"pack {name} has {obj.size} bytes, {rec.size} expected "
                "(truncated or altered)"
            )
    return problems


def _check_snapshots(
    repo: Repository,
    refs,
    listed: dict,
    damaged: dict[str, list[str]],
    problems: list[str],
) -> dict[str, list[str]]:
    """Read each snapshot of ``refs`` and check its blobs are indexed and
    in a present pack (``check_snapshot``); what breaks a snapshot goes to
    ``damaged`` (an unreadable one to ``problems`` too). Returns pack name
    -> the snapshots using it."""
    users: dict[str, list[str]] = {}
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
    return users


def _packs_to_read(
    repo: Repository,
    listed: dict,
    *,
    sample: float,
    deep: bool,
    rng: random.Random | None,
) -> list[str]:
    """The indexed packs present at the destination (all with ``deep``,
    else a ``sample`` fraction drawn with ``rng``), sorted."""
    candidates = sorted(n for n in repo.index.packs if n in listed)
    if deep:
        return candidates
    count = math.ceil(len(candidates) * max(0.0, min(sample, 1.0)))
    return sorted((rng or random.SystemRandom()).sample(candidates, count))


def _read_packs(
    repo: Repository,
    chosen: list[str],
    listed: dict,
    users: dict[str, list[str]],
    damaged: dict[str, list[str]],
    problems: list[str],
) -> tuple[int, int]:
    """Read each pack of ``chosen`` whole and check it (``_check_pack``);
    each problem names the snapshots it breaks (``users``), which get it in
    ``damaged`` too. Returns (bytes read, blobs checked)."""
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
                line + (f" (breaks {', '.join(snaps)})" if snaps else " (no snapshot)")
            )
            for snap_rel in snaps:
                damaged.setdefault(snap_rel, []).append(line)
    return bytes_read, blobs


def _add_snapshot_problems(damaged: dict[str, list[str]], problems: list[str]) -> None:
    """A line in ``problems`` for each problem of a damaged snapshot that
    no line there already tells."""
    for rel, lines in damaged.items():
        for line in lines:
            text = f"snapshot {rel}: {line}"
            if text not in problems and not any(line in p for p in problems):
                problems.append(text)


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
