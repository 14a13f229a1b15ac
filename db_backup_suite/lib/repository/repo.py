"""A repository: the config, the index, packs, snapshots and locks of one
database (tenant) at one destination.

Layout under ``<database>/repo-<tenant>/`` (see docs/repository-format.md)::

    config                                  sealed, written once
    packs/<xx>/<sha256 of the pack>         blobs + sealed pack header
    index/<sha256 of the object>            sealed: which blob is where
    snapshots/<YYYYmmddTHHMMSSZ>_<label>_<sha256 of the object>
    locks/<kind>-<random>                   sealed: who works on it
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from .. import manifest as mf
from .. import naming
from ..errors import (
    BackupLockedError,
    FormatError,
    SinkObjectNotFound,
    SuiteError,
    TamperedError,
    TruncatedError,
)
from . import format as fmt
from .store import RepoStore

_logger = logging.getLogger(__name__)

CONFIG = "config"
PACKS = "packs/"
INDEX = "index/"
SNAPSHOTS = "snapshots/"
LOCKS = "locks/"
KIND_CONFIG = "db_backup_suite.repository"
KIND_SNAPSHOT = "db_backup_suite.snapshot"
DEFAULT_PACK_SIZE = 8 * 1024 * 1024
#: a lock not refreshed for this long belongs to a dead process
LOCK_STALE_AFTER = 30 * 60
LOCK_REFRESH_EVERY = 5 * 60
_TAG_RE = re.compile(r"[0-9A-Za-z-]{1,64}\Z")
_SNAP_RE = re.compile(
    r"(?P<ts>\d{8}T\d{6}Z)_(?P<label>[a-z0-9][a-z0-9-]{0,31})_(?P<sha>[0-9a-f]{64})\Z"
)


class RepositoryLockedError(BackupLockedError):
    """Another process holds a conflicting lock on the repository."""


class RepositoryDamagedError(TamperedError):
    """Data a snapshot needs is missing or does not match at the destination."""


class RepositoryNotFound(SinkObjectNotFound):
    """No repository of this database at the destination."""


def repo_root(database: str, tenant: str) -> str:
    """``<database>/repo-<tag>``: the tag is the uuid itself when it is
    made of letters, digits and dashes, else a hash of it."""
    naming.check_database_name(database)
    if not tenant:
        tag = "none"
    elif _TAG_RE.match(tenant):
        tag = tenant
    else:
        tag = hashlib.sha256(tenant.encode()).hexdigest()[:32]
    return f"{database}/repo-{tag}"


def pack_path(name: str) -> str:
    return f"{PACKS}{name[:2]}/{name}"


@dataclass(frozen=True)
class SnapshotRef:
    """A snapshot as its object name tells it (no key needed)."""

    rel: str  # snapshots/<ts>_<label>_<sha>
    created_at: datetime
    label: str
    sha256: str
    size: int = 0
    modified: datetime | None = None

    @classmethod
    def parse(cls, rel: str, size=0, modified=None) -> SnapshotRef | None:
        if not rel.startswith(SNAPSHOTS):
            return None
        m = _SNAP_RE.match(rel[len(SNAPSHOTS) :])
        if not m:
            return None
        created = datetime.strptime(m["ts"], naming.TIMESTAMP_FORMAT).replace(
            tzinfo=UTC
        )
        return cls(rel, created, m["label"], m["sha"], size, modified)

    @property
    def stamp(self) -> str:
        return self.created_at.strftime(naming.TIMESTAMP_FORMAT)


@dataclass
class Location:
    pack: str
    key_id: str
    entry: fmt.Entry


class MasterIndex:
    """Every blob the repository's index files list (in memory)."""

    def __init__(self):
        self.packs: dict[str, fmt.PackRecord] = {}
        self._pack_names: list[str] = []
        self._pack_no: dict[str, int] = {}
        # blob id -> (pack number, entry)
        self.blobs: dict[bytes, tuple[int, fmt.Entry]] = {}
        self.files: list[str] = []  # index objects read

    def add_pack(self, rec: fmt.PackRecord):
        if rec.name in self._pack_no:
            return
        no = len(self._pack_names)
        self._pack_names.append(rec.name)
        self._pack_no[rec.name] = no
        self.packs[rec.name] = rec
        for entry in rec.entries:
            self.blobs.setdefault(entry.blob_id, (no, entry))

    def remove_packs(self, names):
        gone = set(names) & set(self.packs)
        if not gone:
            return
        for name in gone:
            del self.packs[name]
        gone_no = {self._pack_no[n] for n in gone}
        stale = [b for b, (no, _e) in self.blobs.items() if no in gone_no]
        for blob_id in stale:
            del self.blobs[blob_id]
        # blobs also present in a surviving pack come back
        for rec in self.packs.values():
            no = self._pack_no[rec.name]
            for entry in rec.entries:
                self.blobs.setdefault(entry.blob_id, (no, entry))

    def __contains__(self, blob_id) -> bool:
        return blob_id in self.blobs

    def locate(self, blob_id: bytes) -> Location | None:
        found = self.blobs.get(blob_id)
        if found is None:
            return None
        no, entry = found
        name = self._pack_names[no]
        return Location(name, self.packs[name].key_id, entry)


class Repository:
    """Open with :meth:`open` (or :meth:`open_or_create` to back up)."""

    def __init__(self, store: RepoStore, keys: fmt.RepoKeys, config: dict):
        self.store = store
        self.keys = keys
        self.config = config
        self.index = MasterIndex()
        self._index_loaded = False

    # -- opening ----------------------------------------------------------------
    @classmethod
    def _keys_for(cls, keyring, tenant):
        return fmt.RepoKeys(keyring, tenant)

    @classmethod
    def open(cls, sink, database: str, tenant: str, keyring) -> Repository:
        """Open the repository of ``database`` (uuid ``tenant``); raises
        :class:`RepositoryNotFound` when there is none, WrongKeyError when
        this keyring or tenant does not open it."""
        store = RepoStore(sink, repo_root(database, tenant))
        try:
            data = store.get_bytes(CONFIG, limit=64 * 1024)
        except SinkObjectNotFound:
            raise RepositoryNotFound(
                f"no incremental repository for database {database!r} (uuid "
                f"{tenant or 'none'}) at {sink.describe()}"
            ) from None
        return cls._from_config(store, keyring, tenant, data)

    @classmethod
    def _from_config(cls, store, keyring, tenant, data):
        boot = fmt.RepoKeys(keyring, tenant)
        config = fmt.open_json(
            boot,
            data,
            fmt.TYPE_CONFIG,
            tenant=tenant,
            purpose="repo-config",
            what=f"{store.root}/config",
            salt=b"",
        )
        if config.get("kind") != KIND_CONFIG or config.get("tenant") != tenant:
            raise FormatError(f"{store.root}/config: not this tenant's config")
        if config.get("version") != fmt.FORMAT_VERSION:
            raise FormatError(
                f"{store.root}: repository version {config.get('version')!r} is "
                "not supported by this version of the suite"
            )
        keys = fmt.RepoKeys(
            keyring,
            tenant,
            salt=bytes.fromhex(config["salt"]),
            id_key_id=config["id_key_id"],
        )
        return cls(store, keys, config)

    @classmethod
    def open_or_create(cls, sink, database: str, tenant: str, keyring) -> Repository:
        try:
            return cls.open(sink, database, tenant, keyring)
        except RepositoryNotFound:
            pass
        store = RepoStore(sink, repo_root(database, tenant))
        boot = fmt.RepoKeys(keyring, tenant)
        config = {
            "kind": KIND_CONFIG,
            "version": fmt.FORMAT_VERSION,
            "tenant": tenant,
            "database": database,
            "created_at": mf.iso(mf.utc_now()),
            "id_key_id": keyring.active.key_id,
            "salt": secrets.token_bytes(32).hex(),
            "chunker": {
                "algorithm": "fastcdc-2020",
                "min": fmt.CHUNK_MIN,
                "avg": fmt.CHUNK_AVG,
                "max": fmt.CHUNK_MAX,
                "normalization": fmt.CHUNK_NORMALIZATION,
            },
        }
        data = fmt.seal_json(boot, fmt.TYPE_CONFIG, config, salt=b"")
        store.put_bytes(CONFIG, data)
        _logger.info("created the incremental repository %s", store.describe())
        return cls._from_config(store, keyring, tenant, data)

    @property
    def tenant(self) -> str:
        return self.keys.tenant

    @property
    def database(self) -> str:
        return self.store.root.split("/", 1)[0]

    # -- index -------------------------------------------------------------------
    def load_index(self, *, strict: bool = True) -> list[str]:
        """Read every index file; returns the problems (unreadable files),
        raising instead when ``strict``."""
        self.index = MasterIndex()
        problems = []
        for obj in self.store.list(INDEX):
            try:
                for rec in self.read_index_file(obj.name):
                    self.index.add_pack(rec)
                self.index.files.append(obj.name)
            except (SuiteError, SinkObjectNotFound) as exc:
                if strict:
                    raise
                problems.append(f"{obj.name}: {exc}")
        self._index_loaded = True
        return problems

    def read_index_file(self, rel: str) -> list[fmt.PackRecord]:
        data = self.store.get_bytes(rel)
        _check_named_hash(rel, data)
        plain = fmt.open_sealed(
            self.keys,
            data,
            fmt.TYPE_INDEX,
            tenant=self.tenant,
            purpose="repo-index",
            what=rel,
        )
        return fmt.decode_index(plain, rel)

    def write_index(self, packs: list[fmt.PackRecord]) -> list[str]:
        """Write index files (at most MAX_INDEX_ENTRIES entries each)."""
        written, batch, count = [], [], 0
        for rec in packs:
            if batch and count + len(rec.entries) > fmt.MAX_INDEX_ENTRIES:
                written.append(self._write_index_file(batch))
                batch, count = [], 0
            batch.append(rec)
            count += len(rec.entries)
        if batch:
            written.append(self._write_index_file(batch))
        return written

    def _write_index_file(self, packs) -> str:
        data = fmt.seal(self.keys, fmt.TYPE_INDEX, fmt.encode_index(packs))
        rel = INDEX + hashlib.sha256(data).hexdigest()
        self.store.put_bytes(rel, data)
        return rel

    def list_packs(self) -> dict[str, object]:
        """pack name -> StoredObject of every pack file at the destination."""
        out = {}
        for obj in self.store.list(PACKS):
            name = obj.name.rsplit("/", 1)[-1]
            if fmt.HEX64.match(name) and obj.name == pack_path(name):
                out[name] = obj
        return out

    # -- blobs -------------------------------------------------------------------
    def blob_key(self, key_id: str) -> bytes:
        return self.keys.purpose_key(fmt.PURPOSE_PACK, key_id)[0]

    def read_blob(self, blob_id: bytes) -> bytes:
        loc = self.index.locate(blob_id)
        if loc is None:
            raise RepositoryDamagedError(
                f"blob {blob_id.hex()} is in no index of {self.store.describe()}"
            )
        e = loc.entry
        data = self.read_pack_range(loc.pack, e.offset, e.stored)
        return self.open_located(loc, data)

    def decrypt_located(self, loc: Location, data) -> bytes:
        """The stored form of a located blob (authenticated, not unpacked)."""
        e = loc.entry
        return fmt.decrypt_blob(
            self.blob_key(loc.key_id),
            data,
            e.blob_id,
            e.btype,
            e.flags,
            what=f"pack {loc.pack}, blob {e.blob_id.hex()}",
        )

    def open_located(self, loc: Location, data) -> bytes:
        e = loc.entry
        return fmt.open_blob(
            self.blob_key(loc.key_id),
            data,
            e.blob_id,
            e.btype,
            e.flags,
            e.raw,
            what=f"pack {loc.pack}, blob {e.blob_id.hex()}",
        )

    def read_pack_range(self, pack: str, offset: int, length: int) -> bytes:
        try:
            data = self.store.read_range(pack_path(pack), offset, length)
        except SinkObjectNotFound as exc:
            raise RepositoryDamagedError(
                f"pack {pack} is missing at {self.store.describe()}"
            ) from exc
        if len(data) != length:
            raise TruncatedError(
                f"pack {pack} is truncated: {offset + len(data)} bytes where "
                f"{offset + length} are needed"
            )
        return data

    def read_pack_header(self, pack: str, size: int, data: bytes | None = None):
        """The entries a pack's own (sealed) header lists."""
        tail = self.read_pack_range(pack, size - 4, 4) if data is None else data[-4:]
        (hlen,) = fmt.PACK_TRAILER.unpack(tail)
        if hlen + 4 > size:
            raise TamperedError(f"pack {pack}: malformed header length")
        if data is None:
            sealed = self.read_pack_range(pack, size - 4 - hlen, hlen)
        else:
            sealed = data[size - 4 - hlen : size - 4]
        plain = fmt.open_sealed(
            self.keys,
            sealed,
            fmt.TYPE_PACK_HEADER,
            tenant=self.tenant,
            purpose="repo-pack",
            what=f"pack {pack} header",
        )
        return fmt.object_key_id(sealed), fmt.decode_pack_header(plain, f"pack {pack}")

    def verify_blob_id(self, entry: fmt.Entry, plain: bytes, what: str):
        expected = self.keys.blob_id(entry.btype, hashlib.sha256(plain).digest())
        if expected != entry.blob_id:
            raise TamperedError(f"{what}: content does not match its id")

    # -- snapshots ------------------------------------------------------------------
    def list_snapshots(self) -> list[SnapshotRef]:
        refs = []
        for obj in self.store.list(SNAPSHOTS):
            ref = SnapshotRef.parse(obj.name, obj.size, obj.modified)
            if ref is not None:
                refs.append(ref)
        refs.sort(key=lambda r: (r.created_at, r.rel))
        return refs

    def load_snapshot(self, ref: SnapshotRef) -> dict:
        """Decrypt and check a snapshot against its name."""
        data = self.store.get_bytes(ref.rel)
        _check_named_hash(ref.rel, data, ref.sha256)
        snap = fmt.open_json(
            self.keys,
            data,
            fmt.TYPE_SNAPSHOT,
            tenant=self.tenant,
            purpose="repo-snapshot",
            what=ref.rel,
        )
        if snap.get("kind") != KIND_SNAPSHOT or snap.get("tenant") != self.tenant:
            raise FormatError(f"{ref.rel}: not a snapshot of this database")
        created = mf.parse_iso(snap["created_at"])
        if (
            created.strftime(naming.TIMESTAMP_FORMAT) != ref.stamp
            or snap.get("label") != ref.label
        ):
            raise TamperedError(
                f"{ref.rel}: the name says {ref.label} {ref.stamp}, the content "
                f"{snap.get('label')} {snap.get('created_at')}: it was renamed"
            )
        return snap

    def write_snapshot(self, snap: dict) -> SnapshotRef:
        data = fmt.seal_json(self.keys, fmt.TYPE_SNAPSHOT, snap)
        created = mf.parse_iso(snap["created_at"])
        stamp = created.strftime(naming.TIMESTAMP_FORMAT)
        rel = f"{SNAPSHOTS}{stamp}_{snap['label']}_{hashlib.sha256(data).hexdigest()}"
        self.store.put_bytes(rel, data)
        return SnapshotRef.parse(rel, len(data), mf.utc_now())

    def forget(self, ref: SnapshotRef) -> bool:
        return self.store.delete(ref.rel)

    def iter_list(self, list_ids):
        """Records of the list blobs ``list_ids`` (hex), in order."""
        for hex_id in list_ids:
            blob_id = bytes.fromhex(hex_id)
            data = self.read_blob(blob_id)
            _kind, records = fmt.decode_list(data, f"list blob {hex_id}")
            yield from records

    def snapshot_blobs(self, snap: dict):
        """Every blob id a snapshot references (its list blobs too)."""
        for hex_id in snap["dump"]["lists"] + snap["filestore"]["lists"]:
            yield bytes.fromhex(hex_id)
        for blob_id, _raw in self.iter_list(snap["dump"]["lists"]):
            yield blob_id
        for rec in self.iter_list(snap["filestore"]["lists"]):
            for blob_id, _raw in rec.blobs:
                yield blob_id

    # -- locks ---------------------------------------------------------------------
    def lock(self, kind: str, **options) -> RepoLock:
        return RepoLock(self, kind, **options)


def _check_named_hash(rel: str, data: bytes, expected: str | None = None):
    expected = expected or rel.rsplit("/", 1)[-1]
    if hashlib.sha256(data).hexdigest() != expected:
        raise TamperedError(
            f"{rel}: its content does not match its name (altered, truncated "
            "or swapped)"
        )


# ---------------------------------------------------------------------------
# Pack writing
# ---------------------------------------------------------------------------
class BufferPool:
    """At most ``count`` reusable buffers of ``size`` bytes (``get`` waits
    for one to come back once all exist)."""

    def __init__(self, size: int, count: int, check=None):
        import queue

        self.size = size
        self._free = queue.Queue()
        self._left = count
        self._lock = threading.Lock()
        #: called while waiting (raises when the consumer of buffers failed)
        self.check = check

    def get(self) -> bytearray:
        import queue

        with self._lock:
            if self._free.empty() and self._left > 0:
                self._left -= 1
                return bytearray(self.size)
        while True:
            try:
                return self._free.get(timeout=0.5)
            except queue.Empty:
                if self.check is not None:
                    self.check()

    def put(self, buffer: bytearray):
        self._free.put(buffer)


class PackWriter:
    """Collects encrypted blobs into one pack buffer; ``finish()`` seals the
    header and returns (buffer, data view, record); the record's ``name``
    (the SHA-256 of the data) is left for the caller to fill, and the
    buffer to give back to the pool once the data is written. Thread-safe
    ``add``."""

    def __init__(self, repo: Repository, target: int, pool: BufferPool | None = None):
        self._repo = repo
        self._target = max(target, 64 * 1024)
        self._pool = pool or BufferPool(self._target + fmt.MAX_BLOB_SIZE + 4096, 2)
        self._target = min(self._target, self._pool.size - fmt.MAX_BLOB_SIZE - 4096)
        self._key_id = repo.keys.active_key_id
        self._sealer = fmt.BlobSealer(repo.blob_key(self._key_id))
        self._lock = threading.Lock()
        self._buffer = None
        self._fill = 0
        self._entries: list[fmt.Entry] = []

    def _ensure_buffer(self):
        if self._buffer is None:
            self._buffer = self._pool.get()
            self._view = memoryview(self._buffer)
            self._fill = 0
            self._entries = []

    def add(self, blob_id, btype, flags, data, raw_len):
        """Append a blob; returns a finished pack (see the class) when this
        one reached the target size, else None."""
        with self._lock:
            self._ensure_buffer()
            n = self._sealer.seal_into(
                self._view[self._fill :], blob_id, btype, flags, data
            )
            self._entries.append(
                fmt.Entry(blob_id, btype, flags, self._fill, n, raw_len)
            )
            self._fill += n
            if self._fill >= self._target:
                return self._finish_locked()
            return None

    def finish(self):
        with self._lock:
            if not self._entries:
                if self._buffer is not None:
                    self._view.release()
                    self._pool.put(self._buffer)
                    self._buffer = None
                return None
            return self._finish_locked()

    def _finish_locked(self):
        header = fmt.seal(
            self._repo.keys,
            fmt.TYPE_PACK_HEADER,
            fmt.encode_pack_header(self._entries),
        )
        tail = header + fmt.PACK_TRAILER.pack(len(header))
        buffer, fill = self._buffer, self._fill
        self._view.release()
        if len(buffer) < fill + len(tail):  # a huge header: grow this once
            buffer.extend(b"\0" * (fill + len(tail) - len(buffer)))
        view = memoryview(buffer)
        view[fill : fill + len(tail)] = tail
        size = fill + len(tail)
        record = fmt.PackRecord("", size, self._key_id, self._entries)
        self._buffer = None
        self._entries = []
        self._fill = 0
        return buffer, view[:size], record


# ---------------------------------------------------------------------------
# Locks
# ---------------------------------------------------------------------------
class RepoLock:
    """A lock object in ``locks/``: ``shared`` (backup, restore, verify) or
    ``exclusive`` (garbage collection).

    Protocol: write our lock, THEN list the others; a conflicting live lock
    makes us delete ours and raise. Of two processes racing, the one that
    lists last sees the other's lock, so they never both proceed. A lock is
    live while refreshed (a thread rewrites it every ``refresh_every``
    seconds); one older than ``stale_after``, or of a dead process on this
    host, is stale: ignored and removed. Unreadable lock objects (not
    sealed with this tenant's keys) are ignored and reported.
    """

    def __init__(
        self,
        repo: Repository,
        kind: str,
        *,
        stale_after: float = LOCK_STALE_AFTER,
        refresh_every: float = LOCK_REFRESH_EVERY,
        purpose: str = "",
    ):
        if kind not in ("shared", "exclusive"):
            raise ValueError("a lock is 'shared' or 'exclusive'")
        self.repo = repo
        self.kind = kind
        self.stale_after = stale_after
        self.refresh_every = refresh_every
        self.purpose = purpose
        self.rel: str | None = None
        self.warnings: list[str] = []
        self._stop = threading.Event()
        self._thread = None

    def _content(self) -> dict:
        return {
            "kind": self.kind,
            "purpose": self.purpose,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "time": time.time(),
        }

    def _write(self) -> str:
        rel = f"{LOCKS}{self.kind}-{secrets.token_hex(8)}"
        data = fmt.seal_json(self.repo.keys, fmt.TYPE_LOCK, self._content())
        self.repo.store.put_bytes(rel, data, count=False)
        return rel

    def read_others(self) -> list[tuple[str, dict | None]]:
        out = []
        for obj in self.repo.store.list(LOCKS):
            if obj.name == self.rel:
                continue
            try:
                data = self.repo.store.get_bytes(obj.name, limit=64 * 1024)
                info = fmt.open_json(
                    self.repo.keys,
                    data,
                    fmt.TYPE_LOCK,
                    tenant=self.repo.tenant,
                    purpose="repo-lock",
                    what=obj.name,
                )
            except SinkObjectNotFound:
                continue  # released meanwhile
            except SuiteError as exc:
                self.warnings.append(f"ignored unreadable lock {obj.name}: {exc}")
                info = None
            out.append((obj.name, info))
        return out

    def is_stale(self, info: dict) -> bool:
        if time.time() - float(info.get("time", 0)) > self.stale_after:
            return True
        if info.get("host") == socket.gethostname():
            pid = int(info.get("pid", 0))
            if pid <= 0:
                return True
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def acquire(self):
        self.rel = self._write()
        try:
            for rel, info in self.read_others():
                if info is None:
                    continue
                if self.is_stale(info):
                    _logger.info("removing the stale repository lock %s", rel)
                    self.repo.store.delete(rel)
                    continue
                if self.kind == "exclusive" or info.get("kind") == "exclusive":
                    since = datetime.fromtimestamp(float(info["time"]), UTC)
                    raise RepositoryLockedError(
                        f"the repository {self.repo.store.describe()} is locked "
                        f"({info.get('kind')} lock for {info.get('purpose') or '?'}"
                        f" by {info.get('host')} pid {info.get('pid')}, refreshed "
                        f"{since.isoformat(timespec='seconds')}); try again when "
                        "it is done"
                    )
        except BaseException:
            self.repo.store.delete(self.rel)
            self.rel = None
            raise
        self._thread = threading.Thread(
            target=self._refresh_loop, name="repo-lock", daemon=True
        )
        self._thread.start()
        return self

    def _refresh_loop(self):
        while not self._stop.wait(self.refresh_every):
            try:
                old, self.rel = self.rel, self._write()
                self.repo.store.delete(old)
            except Exception as exc:  # the next round tries again
                _logger.warning("refreshing the repository lock failed: %s", exc)

    def release(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self.rel is not None:
            try:
                self.repo.store.delete(self.rel)
            except Exception as exc:  # stale in LOCK_STALE_AFTER anyway
                _logger.warning("removing the repository lock failed: %s", exc)
            self.rel = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
