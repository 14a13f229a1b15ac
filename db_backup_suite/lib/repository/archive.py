"""Snapshots read back as standard archives.

:func:`iter_payload` rebuilds the tar payload a full archive would hold
(layout.py) from a snapshot's blobs, streamed, in constant memory: blobs
are fetched in order, adjacent ones of one pack in a single ranged read,
each authenticated (AES-GCM with its id as associated data) before a byte
of it is handed out.

:class:`SnapshotArchiveStream` encrypts that payload on the fly into the
suite's archive format (the same header and chunks as a full archive, key
of the database, content type ``tar`` or ``tar+zstd``), so every reader of
archives takes a snapshot unchanged: restore.run_restore, verify.run_verify,
the CLI's decrypt, --extract and export-odoo-zip, and the Odoo screens.

:class:`SnapshotArchiveSink` is the glue: a read-only sink over the real one
whose objects are the snapshots, named like archives
(``<db>/repo-<uuid>/<db>/<db>_<label>_<YYYYmmddTHHMMSSZ>.tar.enc``, so
naming.parse_archive_name and retention.plan_retention accept them);
``open_read`` first checks that every blob the snapshot needs is indexed
and every pack is present with its size (a damaged snapshot is refused
before the first byte), and ``delete`` forgets the snapshot (the data goes
at the next garbage collection).
"""

from __future__ import annotations

import io
import itertools
import logging
import queue
import re
import threading
from datetime import UTC

from .. import crypto, naming
from .. import manifest as mf
from ..errors import ArchiveTamperedError, SinkError, SinkObjectNotFound
from ..sinks.base import Sink, StoredObject
from . import layout
from .repo import (
    Repository,
    RepositoryDamagedError,
    RepositoryNotFound,
    SnapshotRef,
)

_logger = logging.getLogger(__name__)

#: largest ranged read (adjacent blobs of one pack are read together)
MAX_SPAN = 8 * 1024 * 1024
#: blobs closer than this in a pack are read together, the gap discarded
MAX_GAP = 256 * 1024
_QUEUE_PIECES = 16
EXTENSIONS = {"none": ".tar.enc", "zstd": ".tar.zst.enc"}


def virtual_name(root: str, database: str, ref: SnapshotRef, ext=".tar.enc") -> str:
    return f"{root}/{database}/{database}_{ref.label}_{ref.stamp}{ext}"


# ---------------------------------------------------------------------------
# Reading blobs in order
# ---------------------------------------------------------------------------
def iter_blobs(repo: Repository, refs):
    """Plaintext of each ``(blob id, raw length)`` of ``refs``, in order."""
    batch: list = []
    for blob_id, raw in refs:
        loc = repo.index.locate(blob_id)
        if loc is None:
            raise RepositoryDamagedError(
                f"blob {blob_id.hex()} is in no index of {repo.store.describe()}: "
                "the data it holds is lost"
            )
        if loc.entry.raw != raw:
            raise ArchiveTamperedError(
                f"blob {blob_id.hex()}: {loc.entry.raw} bytes in the index, "
                f"{raw} in the snapshot"
            )
        if batch:
            first, last = batch[0], batch[-1]
            end = last.entry.offset + last.entry.stored
            if (
                loc.pack != first.pack
                or loc.entry.offset < end
                or loc.entry.offset - end > MAX_GAP
                or loc.entry.offset + loc.entry.stored - first.entry.offset > MAX_SPAN
            ):
                yield from _read_batch(repo, batch)
                batch = []
        batch.append(loc)
    if batch:
        yield from _read_batch(repo, batch)


def _read_batch(repo: Repository, batch):
    start = batch[0].entry.offset
    end = batch[-1].entry.offset + batch[-1].entry.stored
    data = memoryview(repo.read_pack_range(batch[0].pack, start, end - start))
    for loc in batch:
        off = loc.entry.offset - start
        yield repo.open_located(loc, data[off : off + loc.entry.stored])


def iter_payload(repo: Repository, snap: dict):
    """The tar payload of ``snap`` as a sequence of bytes objects."""
    count = 0
    for piece in _members(repo, snap):
        count += len(piece)
        yield piece
    tail = layout.tail(count)
    if count + len(tail) != snap["tar_size"]:
        raise ArchiveTamperedError(
            f"the snapshot's payload has {count + len(tail)} bytes, "
            f"{snap['tar_size']} recorded"
        )
    yield tail


def _members(repo: Repository, snap: dict):
    head = mf.dumps(snap["head"])
    final = mf.dumps(snap["manifest"])
    stamp = int(mf.parse_iso(snap["created_at"]).timestamp())
    yield layout.tar_header(mf.HEAD_MEMBER, len(head), stamp) + head
    yield layout.padding(len(head))
    # the dump, cut in the parts the manifest lists
    parts = layout.dump_parts(snap["dump"]["size"])
    if [n for n, _s in parts] != snap["manifest"]["dump"].get("parts"):
        raise ArchiveTamperedError("the snapshot's dump parts do not match its size")
    pieces = iter_blobs(repo, repo.iter_list(snap["dump"]["lists"]))
    carry = b""
    for name, size in parts:
        yield layout.tar_header(name, size, stamp)
        left = size
        while left > 0:
            if not carry:
                carry = next(pieces, None)
                if carry is None:
                    raise ArchiveTamperedError(
                        "the snapshot's dump is shorter than its size"
                    )
            if len(carry) <= left:
                take, carry = carry, b""
            else:
                take, carry = carry[:left], carry[left:]
            left -= len(take)
            yield take
        yield layout.padding(size)
    if carry or next(pieces, None) is not None:
        raise ArchiveTamperedError("the snapshot's dump is longer than its size")
    # the filestore, one blob stream over all files (reads stay batched)
    records, for_blobs = itertools.tee(repo.iter_list(snap["filestore"]["lists"]))
    blobs = iter_blobs(repo, (ref for rec in for_blobs for ref in rec.blobs))
    for rec in records:
        name = mf.filestore_member(rec.store_fname)
        yield layout.tar_header(name, rec.size, rec.mtime_ns // 10**9)
        for _ref in rec.blobs:
            yield next(blobs)
        yield layout.padding(rec.size)
    yield layout.tar_header(mf.MANIFEST_MEMBER, len(final), stamp) + final
    yield layout.padding(len(final))


# ---------------------------------------------------------------------------
# Checks before reading
# ---------------------------------------------------------------------------
def check_snapshot(repo: Repository, snap: dict, packs=None) -> list[str]:
    """Problems that would stop a restore of ``snap``: blobs in no index,
    packs missing or of another size. Empty when it can be read back (up to
    the content of the blobs, authenticated as they are read)."""
    packs = repo.list_packs() if packs is None else packs
    problems, seen = [], set()
    try:
        for blob_id in repo.snapshot_blobs(snap):
            if blob_id in seen:
                continue
            seen.add(blob_id)
            loc = repo.index.locate(blob_id)
            if loc is None:
                problems.append(f"blob {blob_id.hex()} is in no index (lost)")
                continue
            obj = packs.get(loc.pack)
            if obj is None:
                problems.append(f"pack {loc.pack} is missing")
            elif obj.size != repo.index.packs[loc.pack].size:
                problems.append(
                    f"pack {loc.pack} has {obj.size} bytes, "
                    f"{repo.index.packs[loc.pack].size} expected (truncated or "
                    "altered)"
                )
    except Exception as exc:  # a list blob itself unreadable
        problems.append(str(exc))
    # one line per pack is enough
    return list(dict.fromkeys(problems))


# ---------------------------------------------------------------------------
# The encrypted archive stream
# ---------------------------------------------------------------------------
class _QueueRaw:
    """The EncryptingWriter's output: before the producer starts (the
    header) into a list, then into a bounded queue."""

    def __init__(self, stream):
        self._stream = stream
        self.early: list[bytes] = []
        self.queue: queue.Queue | None = None

    def write(self, data):
        piece = bytes(data)
        if self.queue is None:
            self.early.append(piece)
        else:
            self._stream._put(piece)
        return len(piece)

    def flush(self):
        pass


_EOF = object()


class SnapshotArchiveStream(io.RawIOBase):
    """A readable archive (format v1) of a snapshot, produced on demand.

    The first ``PROLOGUE`` bytes are produced in the reader's own thread,
    without a repository lock: callers that only sniff the header or read
    the head manifest (restore does both before its real pass) cost one
    chunk. Past that, a producer thread holding a shared repository lock
    fetches, authenticates and re-encrypts the rest while the reader
    consumes. Any error of the production is raised by ``read``.
    """

    PROLOGUE = 2 * 1024 * 1024

    def __init__(
        self,
        repo: Repository,
        snap: dict,
        *,
        keyring=None,
        password=None,
        compression: str = "none",
        chunk_size: int = crypto.DEFAULT_CHUNK_SIZE,
        lock_options: dict | None = None,
    ):
        super().__init__()
        self._repo = repo
        self._snap = snap
        self._lock_options = lock_options or {}
        self._raw = _QueueRaw(self)
        self._enc = crypto.encrypting_writer(
            self._raw,
            keyring=keyring if password is None else None,
            password=password,
            tenant=repo.tenant,
            compression=compression,
            chunk_size=chunk_size,
        )
        self._out = self._enc
        self._zwriter = None
        if compression == "zstd":
            import zstandard

            self._zwriter = zstandard.ZstdCompressor(level=3).stream_writer(
                self._enc, closefd=False
            )
            self._out = self._zwriter
        self._pieces = iter_payload(repo, snap)
        self._buffer = memoryview(self._take_early())
        self._served = 0
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_PIECES)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._produced_all = False
        self._done = False

    def readable(self):
        return True

    def _take_early(self) -> bytes:
        data = b"".join(self._raw.early)
        self._raw.early = []
        return data

    def _finish_output(self):
        if self._zwriter is not None:
            import zstandard

            self._zwriter.flush(zstandard.FLUSH_FRAME)
        self._enc.close()

    def _fail(self):
        try:
            self._enc.abort()
        except Exception as exc:  # the stream is dead anyway
            _logger.debug("aborting the snapshot stream: %s", exc)

    def _pull_sync(self) -> bytes:
        """Produce in this thread until some output is ready (or the end)."""
        try:
            while not self._raw.early:
                piece = next(self._pieces, None)
                if piece is None:
                    self._finish_output()
                    self._produced_all = True
                    break
                if piece:
                    self._out.write(piece)
        except BaseException:
            self._done = True
            self._fail()
            raise
        return self._take_early()

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise _Stopped()

    def _produce(self):
        try:
            with self._repo.lock("shared", purpose="read", **self._lock_options):
                for piece in self._pieces:
                    if piece:
                        self._out.write(piece)
                self._finish_output()
            self._put(_EOF)
        except _Stopped:
            self._fail()  # the reader went away
        except BaseException as exc:  # handed to the reader
            self._fail()
            try:
                self._put(exc)
            except _Stopped:
                return

    def _start(self):
        self._raw.queue = self._queue
        self._thread = threading.Thread(
            target=self._produce, name="snapshot-stream", daemon=True
        )
        self._thread.start()

    def _next(self) -> bytes | None:
        if self._thread is None:
            if self._produced_all:
                return None
            if self._served < self.PROLOGUE:
                data = self._pull_sync()
                return data if data or not self._produced_all else None
            self._start()
        item = self._queue.get()
        if item is _EOF:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        if not len(view):
            return 0
        while not len(self._buffer):
            if self._done:
                return 0
            try:
                data = self._next()
            except BaseException:
                self._done = True
                raise
            if data is None:
                self._done = True
                return 0
            self._buffer = memoryview(data)
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        self._served += n
        return n

    def close(self):
        if not self.closed:
            self._stop.set()
            if self._thread is not None:
                try:
                    while True:
                        self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=30)
            elif not self._produced_all and not self._done:
                self._fail()  # never finished: leave it detectably cut
        super().close()


class _Stopped(Exception):
    pass


# ---------------------------------------------------------------------------
# The sink of snapshots
# ---------------------------------------------------------------------------
_ROOT_RE = re.compile(r"(?P<db>[^/]+)/repo-(?P<tag>[^/]+)/config\Z")


def archive_size(header_size: int, tar_size: int, chunk_size: int) -> int:
    """Bytes of a format v1 archive of ``tar_size`` plaintext bytes."""
    return header_size + tar_size + 20 * (tar_size // chunk_size + 1)


class SnapshotArchiveSink(Sink):
    """The snapshots of the repositories at ``sink`` as read-only archives.

    ``kind`` is ``"local"``: for restore.open_source that means "open it in
    place, as often as needed" (no download to a temp file first), which is
    what this sink offers whatever the destination below is.

    ``keyring``: opens the repositories and encrypts the archives (their
    tenant is the database uuid); ``password``: encrypt the archives with a
    password instead (an off-site download); ``compression``: ``none``
    (fastest to restore) or ``zstd`` (smaller download); ``tenants``:
    database uuid per repository folder tag for uuids that are not plain
    (their folder carries a hash).
    """

    kind = "local"

    def __init__(
        self,
        sink,
        keyring,
        *,
        password=None,
        compression: str = "none",
        chunk_size: int = crypto.DEFAULT_CHUNK_SIZE,
        tenants: dict | None = None,
        lock_options: dict | None = None,
    ):
        if compression not in EXTENSIONS:
            raise ValueError(f"compression is one of {', '.join(EXTENSIONS)}")
        self.sink = sink
        self.keyring = keyring
        self.password = password
        self.compression = compression
        self.chunk_size = chunk_size
        self.tenants = dict(tenants or {})
        self.lock_options = lock_options or {}
        self.warnings: list[str] = []
        self._repos: dict[str, Repository] = {}
        self._snaps: dict[tuple[str, str], dict] = {}
        self._checked: set = set()
        self._header_sizes: dict[str, int] = {}

    # helpers -------------------------------------------------------------------
    def describe(self):
        return f"{self.sink.describe()} (incremental snapshots)"

    def close(self):
        self.sink.close()

    def _tenant_of(self, root: str) -> str:
        tag = root.rsplit("/repo-", 1)[1]
        if tag in self.tenants:
            return self.tenants[tag]
        return "" if tag == "none" else tag

    def repository(self, root: str) -> Repository:
        repo = self._repos.get(root)
        if repo is None:
            database = root.split("/", 1)[0]
            repo = Repository.open(
                self.sink, database, self._tenant_of(root), self.keyring
            )
            if repo.store.root != root:
                raise RepositoryNotFound(f"no repository at {root}")
            self._repos[root] = repo
        return repo

    def roots(self, prefix: str = "") -> list[str]:
        database = prefix.split("/", 1)[0] if "/" in prefix else ""
        listing = self.sink.list(f"{database}/" if database else "")
        return sorted(
            obj.name[: -len("/config")] for obj in listing if _ROOT_RE.match(obj.name)
        )

    def snapshot(self, root: str, ref: SnapshotRef) -> dict:
        key = (root, ref.rel)
        snap = self._snaps.get(key)
        if snap is None:
            snap = self._snaps[key] = self.repository(root).load_snapshot(ref)
        return snap

    def _ext(self) -> str:
        return EXTENSIONS[self.compression]

    def _size(self, repo: Repository, snap: dict) -> int:
        """The archive's exact size (``none``); with ``zstd``, the size
        before compression (an upper bound)."""
        header = self._header_sizes.get(repo.tenant)
        if header is None:
            counter = _Counter()
            writer = crypto.encrypting_writer(
                counter,
                keyring=self.keyring if self.password is None else None,
                password=self.password,
                tenant=repo.tenant,
                compression=self.compression,
                chunk_size=self.chunk_size,
            )
            header = self._header_sizes[repo.tenant] = counter.count
            writer.close()  # an empty archive into the counter: discarded
        return archive_size(header, snap["tar_size"], self.chunk_size)

    def resolve(self, name: str) -> tuple[Repository, SnapshotRef]:
        parsed = naming.parse_archive_name(name)
        folder = name.rpartition("/")[0]
        root = folder.rpartition("/")[0]
        if (
            parsed is None
            or parsed.ext != self._ext()
            or not re.fullmatch(rf"{re.escape(parsed.database)}/repo-[^/]+", root)
        ):
            raise SinkObjectNotFound(f"{name!r} is not a snapshot name")
        try:
            repo = self.repository(root)
        except RepositoryNotFound as exc:
            raise SinkObjectNotFound(str(exc)) from exc
        stamp = parsed.created_at.strftime(naming.TIMESTAMP_FORMAT)
        for ref in repo.list_snapshots():
            if ref.stamp == stamp and ref.label == parsed.label:
                return repo, ref
        raise SinkObjectNotFound(f"no snapshot {name!r} at {self.sink.describe()}")

    # Sink API ----------------------------------------------------------------------
    def list(self, prefix=""):
        out = []
        for root in self.roots(prefix):
            try:
                repo = self.repository(root)
                refs = repo.list_snapshots()
            except Exception as exc:  # another keyring's repository
                self.warnings.append(f"{root}: {exc}")
                continue
            database = root.split("/", 1)[0]
            for ref in refs:
                name = virtual_name(root, database, ref, self._ext())
                if not name.startswith(prefix):
                    continue
                try:
                    size = self._size(repo, self.snapshot(root, ref))
                except Exception as exc:  # listed, but flagged
                    self.warnings.append(f"{ref.rel}: {exc}")
                    size = 0
                out.append(StoredObject(name, size, ref.created_at.astimezone(UTC)))
        return sorted(out, key=lambda o: o.name)

    def stat(self, name):
        repo, ref = self.resolve(name)
        snap = self.snapshot(repo.store.root, ref)
        return StoredObject(name, self._size(repo, snap), ref.created_at)

    def preflight(self, name) -> tuple[Repository, dict]:
        """Resolve ``name`` and check that its snapshot can be read back
        (RepositoryDamagedError naming the missing or damaged packs)."""
        repo, ref = self.resolve(name)
        snap = self.snapshot(repo.store.root, ref)
        if name not in self._checked:
            repo.load_index()
            problems = check_snapshot(repo, snap)
            if problems:
                raise RepositoryDamagedError(
                    f"snapshot {name} cannot be restored, the destination lost "
                    f"or altered data it needs: {'; '.join(problems[:5])}"
                    + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
                )
            self._checked.add(name)
        return repo, snap

    def open_read(self, name):
        repo, snap = self.preflight(name)
        return SnapshotArchiveStream(
            repo,
            snap,
            keyring=self.keyring,
            password=self.password,
            compression=self.compression,
            chunk_size=self.chunk_size,
            lock_options=self.lock_options,
        )

    def open_write(self, name, size_hint=None):
        raise SinkError(
            "snapshots are made by an incremental backup, not written as archives"
        )

    def delete(self, name):
        """Forget the snapshot; its data goes at the next garbage collection."""
        repo, ref = self.resolve(name)
        repo.forget(ref)
        self._snaps.pop((repo.store.root, ref.rel), None)

    def test_connection(self):
        return self.sink.test_connection()

    def cleanup_incomplete(self, prefix="", older_than=0.0):
        return 0


class _Counter:
    def __init__(self):
        self.count = 0

    def write(self, data):
        self.count += len(data)
        return len(data)

    def flush(self):
        pass
