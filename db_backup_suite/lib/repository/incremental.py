"""The incremental backup: a snapshot of the database and its filestore
whose data goes to the repository only when the destination lacks it.

::

    pg_dump -Fc -Z0 --snapshot=S --> FastCDC chunks --+ (thread "dump")
    filestore files listed in S --> whole or chunked -+-> new blob? -> zstd
         (unchanged since the parent snapshot: reused,  |   (or stored) ->
          not read: Odoo names files by their sha1)     |   AES-256-GCM into a
                                                        |   pack -> uploader
    lists of blob ids (dump, filestore tree) -----------+   thread -> sink
    then: index files, a check that every pack the snapshot needs is at the
    destination, and LAST the snapshot object.

The same consistency as a full backup (pg_dump on an exported snapshot,
the attachment list read in it while ir_attachment is locked against
Odoo's filestore GC) and the same manifest, so the snapshot can be read back
as a standard archive (archive.py). A process killed at any point leaves
only packs and index entries no snapshot references; the next garbage
collection removes them (maintenance.py). Memory: two pack buffers of
``pack_size``, ``upload_depth`` packs queued, one chunk per thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat as stat_mod
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import zstandard

from .. import backup as full
from .. import manifest as mf
from .. import naming
from ..errors import DumpError, KeyringError, SinkError, StreamCryptError
from ..lock import backup_lock
from ..payload.extract import safe_member_path
from ..payload.sampling import (
    SAMPLE_MIN,
    SAMPLE_MIN_SAVING,
    SAMPLE_SIZE,
    compressed_format,
)
from ..pgtools import exported_snapshot, start_pg_dump
from . import format as fmt
from . import layout
from .repo import (
    DEFAULT_PACK_SIZE,
    KIND_SNAPSHOT,
    BufferPool,
    PackWriter,
    Repository,
    RepositoryDamagedError,
    pack_path,
)
from .store import Uploader

_logger = logging.getLogger(__name__)

_ODOO_FNAME = re.compile(r"[0-9a-f]{2}/[0-9a-f]{40}")
READ_BLOCK = 1024 * 1024
#: index files are written every so many packs, so a killed backup's data
#: is found (and reused) by the next run until the GC collects it
INDEX_EVERY = 64
#: store a blob as is when zstd saves less than this fraction
MIN_SAVING = 0.03


@dataclass
class IncrementalResult:
    """What :func:`run_incremental_backup` made.

    ``size``: bytes this run added at the destination (the "new data":
    packs, index files and the snapshot object); ``logical_size``: the dump
    plus the filestore, what a full archive would hold before compression;
    ``name``: the snapshot as an archive name (see archive.py).
    """

    name: str
    snapshot: str
    repository: str
    size: int
    logical_size: int
    manifest: dict
    duration: float
    warnings: list[str]
    key_id: str
    destination: str
    stats: dict = field(default_factory=dict)
    encrypted: bool = True
    sha256: str = ""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "snapshot": self.snapshot,
            "repository": self.repository,
            "size": self.size,
            "new_data": self.size,
            "logical_size": self.logical_size,
            "sha256": self.sha256,
            "duration": round(self.duration, 3),
            "warnings": self.warnings,
            "encrypted": True,
            "key_id": self.key_id,
            "destination": self.destination,
            "stats": self.stats,
            "manifest": self.manifest,
        }


class _Stats:
    def __init__(self):
        self._lock = threading.Lock()
        self.values = {
            "new_blobs": 0,
            "new_raw_bytes": 0,
            "new_stored_bytes": 0,
            "reused_blobs": 0,
            "reused_files": 0,
            "read_files": 0,
            "packs": 0,
            "pack_bytes": 0,
        }

    def add(self, **values):
        with self._lock:
            for key, value in values.items():
                self.values[key] += value


class _ListWriter:
    """Cuts a list of records into list blobs (content-defined)."""

    def __init__(self, pipe, kind: bytes):
        self._pipe = pipe
        self._kind = kind
        self._records: list[bytes] = []
        self._size = 0
        self.ids: list[str] = []

    def add(self, record: bytes):
        self._records.append(record)
        self._size += len(record)
        cut = fmt.list_cut_value(self._kind, record) % fmt.LIST_CUT[self._kind] == 0
        if cut or self._size >= fmt.LIST_MAX_BYTES:
            self.flush()

    def flush(self):
        if not self._records:
            return
        data = fmt.encode_list(self._kind, self._records)
        self.ids.append(self._pipe.store_blob(fmt.BLOB_TREE, data, "tree").hex())
        self._records, self._size = [], 0


class _Pipeline:
    def __init__(self, repo: Repository, pack_size: int, level: int, depth: int):
        self.repo = repo
        self.level = level
        self.stats = _Stats()
        self.uploader = Uploader(repo.store, depth)
        # pack buffers: one per packer being filled, ``depth`` queued and
        # one uploading; recycled, so memory stays at that many buffers
        self.pool = BufferPool(
            pack_size + fmt.MAX_BLOB_SIZE + 4096, 3 + depth + 1, self.uploader.check
        )
        self.packers = {
            "dump": PackWriter(repo, pack_size, self.pool),
            "files": PackWriter(repo, pack_size, self.pool),
            "tree": PackWriter(repo, max(pack_size // 4, 256 * 1024), self.pool),
        }
        self._new: dict[bytes, object] = {}
        self._local = threading.local()
        self._index_lock = threading.Lock()
        self.pending_index: list[fmt.PackRecord] = []
        self.written: list[fmt.PackRecord] = []
        self.used_packs: set[str] = set()
        self._used_lock = threading.Lock()

    # -- blobs ---------------------------------------------------------------------
    def _compressor(self):
        cctx = getattr(self._local, "cctx", None)
        if cctx is None:
            cctx = self._local.cctx = zstandard.ZstdCompressor(level=self.level)
        return cctx

    def incompressible(self, sample) -> bool:
        """payload.sampling.looks_incompressible with this thread's compressor
        (the sampling module's sampler is one object, not safe across
        threads)."""
        if len(sample) < SAMPLE_MIN:
            return False
        packed = self._compressor().compress(sample)
        return 1 - len(packed) / len(sample) < SAMPLE_MIN_SAVING

    def should_store(self, head) -> bool:
        """payload.sampling.should_store, thread-safe: known compressed formats and
        samples that do not compress are stored as they are."""
        return compressed_format(bytes(head[:16])) is not None or (
            self.incompressible(head)
        )

    def known(self, blob_id: bytes) -> bool:
        """True when the destination already has ``blob_id`` (or this run
        stored it); records the pack it is in."""
        loc = self.repo.index.blobs.get(blob_id)
        if loc is not None:
            with self._used_lock:
                self.used_packs.add(self.repo.index._pack_names[loc[0]])
            return True
        return False

    def store_blob(self, btype, data, packer: str, compress: bool | None = None):
        """The blob id of ``data``; stores it unless the repository (or this
        run) has it. ``compress``: None tries when a sample compresses."""
        digest = hashlib.sha256(data).digest()
        return self.store_digested(btype, data, digest, packer, compress)

    def store_digested(self, btype, data, digest, packer, compress=None) -> bytes:
        blob_id = self.repo.keys.blob_id(btype, digest)
        if self.known(blob_id):
            self.stats.add(reused_blobs=1)
            return blob_id
        mine = object()
        if self._new.setdefault(blob_id, mine) is not mine:
            self.stats.add(reused_blobs=1)
            return blob_id
        raw_len = len(data)
        flags, stored = 0, data
        if compress is None:
            compress = not self.incompressible(data[:SAMPLE_SIZE])
        if compress and raw_len:
            packed = self._compressor().compress(data)
            if len(packed) <= raw_len * (1 - MIN_SAVING):
                flags, stored = fmt.FLAG_ZSTD, packed
        done = self.packers[packer].add(blob_id, btype, flags, stored, raw_len)
        self.stats.add(
            new_blobs=1,
            new_raw_bytes=raw_len,
            new_stored_bytes=len(stored) + fmt.BLOB_OVERHEAD,
        )
        if done is not None:
            self.ship(done)
        return blob_id

    # -- packs -----------------------------------------------------------------------
    def ship(self, done):
        buffer, data, record = done
        self.stats.add(packs=1, pack_bytes=len(data))

        def name_it():
            record.name = hashlib.sha256(data).hexdigest()
            return pack_path(record.name)

        def committed():
            data.release()
            self.pool.put(buffer)
            with self._index_lock:
                self.written.append(record)
                self.pending_index.append(record)
                if len(self.pending_index) >= INDEX_EVERY:
                    batch, self.pending_index = self.pending_index, []
                    self.repo.write_index(batch)

        self.uploader.submit(name_it, data, committed)

    def finish(self):
        for packer in self.packers.values():
            done = packer.finish()
            if done is not None:
                self.ship(done)
        self.uploader.drain()
        with self._index_lock:
            batch, self.pending_index = self.pending_index, []
        if batch:
            self.repo.write_index(batch)

    def close(self, abort: bool):
        self.uploader.close(abort=abort)


class _DumpThread(threading.Thread):
    """Chunks pg_dump's output and stores the new chunks."""

    def __init__(self, pipe: _Pipeline, stream, progress):
        super().__init__(name="repo-dump", daemon=True)
        self._pipe = pipe
        self._stream = stream
        self._progress = progress
        self.list = _ListWriter(pipe, fmt.LIST_DUMP)
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.error: BaseException | None = None
        self.start()

    def run(self):
        try:
            chunker = fmt.make_chunker(self._pipe.repo.keys.chunker_seed())
            for chunk in chunker.cut_stream(self._stream):
                data = chunk.data
                self.sha256.update(data)
                self.size += len(data)
                blob_id = self._pipe.store_blob(fmt.BLOB_DATA, data, "dump")
                self.list.add(fmt.encode_dump_record(blob_id, len(data)))
                if self._progress is not None:
                    self._progress(len(data), "dumping the database")
            self.list.flush()
        except BaseException as exc:  # handed to the main thread
            self.error = exc

    def result(self):
        self.join()
        if self.error is not None:
            if isinstance(self.error, DumpError | StreamCryptError):
                raise self.error
            raise DumpError(f"reading pg_dump's output: {self.error}") from self.error
        return self.size, self.sha256.hexdigest(), self.list.ids


class _Files:
    """The filestore part: reuse what the parent snapshot holds unchanged,
    read and store the rest; write the filestore tree."""

    def __init__(self, pipe: _Pipeline, root: Path | None, parent_records, progress):
        self._pipe = pipe
        self._root = root
        self._parent = iter(parent_records)
        self._next_parent = next(self._parent, None)
        self._progress = progress
        self.list = _ListWriter(pipe, fmt.LIST_FILES)
        self.digest = mf.FilestoreDigest()
        self.missing: list[dict] = []
        self.sizes = layout.SizeCounter()
        self._chunkers = threading.local()
        self._workers = None
        self._pending = ()

    def _parent_for(self, fname: str):
        while self._next_parent is not None and self._next_parent.store_fname < fname:
            self._next_parent = next(self._parent, None)
        if self._next_parent is not None and self._next_parent.store_fname == fname:
            return self._next_parent
        return None

    def _path(self, fname: str) -> Path:
        if _ODOO_FNAME.fullmatch(fname):
            return self._root / fname
        return safe_member_path(self._root, fname)

    # Files are read, hashed, compressed and encrypted by ``WORKERS``
    # threads (hashlib, zstd, AES and file reads release the GIL), at most
    # ``WINDOW`` ahead of the main thread, which records them in name order.
    WORKERS = 2
    WINDOW = 16

    def add(self, entry: dict):
        if self._workers is None:
            import collections
            from concurrent.futures import ThreadPoolExecutor

            self._workers = ThreadPoolExecutor(self.WORKERS, "repo-files")
            self._pending = collections.deque()
        parent = self._parent_for(entry["store_fname"])
        self._pending.append(self._workers.submit(self._prepare, entry, parent))
        while len(self._pending) > self.WINDOW:
            self._record(self._pending.popleft().result())

    def finish(self):
        """Wait for the files in flight and record them."""
        try:
            while self._pending:
                self._record(self._pending.popleft().result())
        finally:
            self.close()

    def close(self):
        if self._workers is not None:
            for future in self._pending:
                future.cancel()
            self._workers.shutdown(wait=True, cancel_futures=True)
            self._workers = None

    def _record(self, result):
        if isinstance(result, dict):
            self.missing.append(result)
            return
        record = result
        fname = record.store_fname
        self.list.add(fmt.encode_file_record(record))
        self.digest.add(fname, record.size, record.sha256.hex())
        member = mf.filestore_member(fname)
        self.sizes.add(member, record.size, record.mtime_ns // 10**9)

    def _prepare(self, entry: dict, parent):
        """In a worker: the file's record (reused from the parent snapshot
        when unchanged, else read and stored), or a "missing" dict."""
        fname = entry["store_fname"]
        try:
            path = self._path(fname)
        except StreamCryptError as exc:
            return {"store_fname": fname, "reason": f"unsafe name: {exc}"}
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            return {
                "store_fname": fname,
                "file_size": entry.get("file_size"),
                "reason": "missing on disk",
            }
        except OSError as exc:
            raise DumpError(f"cannot read {path}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb", buffering=0) as fh:
            st = os.fstat(fd)
            if not stat_mod.S_ISREG(st.st_mode):
                raise DumpError(f"{path} is not a regular file")
            if (
                parent is not None
                and parent.size == st.st_size
                and parent.mtime_ns == st.st_mtime_ns
                and all(self._pipe.known(b) for b, _n in parent.blobs)
            ):
                self._pipe.stats.add(reused_files=1)
                return parent
            record = self._read(fname, fh, st)
            self._pipe.stats.add(read_files=1)
            return record

    def _read(self, fname, fh, st) -> fmt.FileRecord:
        size = st.st_size
        pipe = self._pipe
        whole = hashlib.sha256()
        blobs = []
        if size <= fmt.CHUNK_MAX:
            data = fh.read(size + 1)
            if len(data) != size:
                raise DumpError(
                    f"{fname}: {size} bytes announced but {len(data)} read (the "
                    "file changed while it was backed up)"
                )
            digest = hashlib.sha256(data).digest()
            whole_digest = digest
            if size:
                compress = not pipe.should_store(data[:SAMPLE_SIZE])
                blob_id = pipe.store_digested(
                    fmt.BLOB_DATA, data, digest, "files", compress
                )
                blobs.append((blob_id, size))
        else:
            chunker = getattr(self._chunkers, "chunker", None)
            if chunker is None:
                chunker = fmt.make_chunker(pipe.repo.keys.chunker_seed())
                self._chunkers.chunker = chunker
            compress = None
            total = 0
            for chunk in chunker.cut_stream(fh):
                data = chunk.data
                if compress is None:
                    compress = not pipe.should_store(data[:SAMPLE_SIZE])
                whole.update(data)
                total += len(data)
                blob_id = pipe.store_blob(fmt.BLOB_DATA, data, "files", compress)
                blobs.append((blob_id, len(data)))
            if total != size:
                raise DumpError(
                    f"{fname}: {size} bytes announced but {total} read (the file "
                    "changed while it was backed up)"
                )
            whole_digest = whole.digest()
        if self._progress is not None:
            self._progress(size, "copying the filestore")
        return fmt.FileRecord(fname, size, st.st_mtime_ns, whole_digest, tuple(blobs))

    def summary(self, warnings: list) -> dict:
        if self.missing:
            warnings.append(
                f"{len(self.missing)} attachment file(s) listed in the database "
                "are missing from the filestore or refused (recorded in the "
                "manifest): "
                + ", ".join(m["store_fname"] for m in self.missing[:5])
                + (" ..." if len(self.missing) > 5 else "")
            )
        return {
            "files": self.digest.files,
            "bytes": self.digest.bytes,
            "digest": self.digest.hexdigest(),
            "digest_method": "sha256 of '<store_fname>\\t<size>\\t<sha256>\\n' lines",
            "missing": self.missing,
        }


class _Progress:
    def __init__(self, callback):
        self._callback = callback
        self._lock = threading.Lock()
        self.done = 0

    def __call__(self, n, message):
        if self._callback is None:
            return
        with self._lock:
            self.done += n
            done = self.done
        self._callback(done, None, message)


def run_incremental_backup(
    req: full.BackupRequest,
    *,
    pack_size: int | None = None,
    upload_depth: int = 1,
    lock_options: dict | None = None,
) -> IncrementalResult:
    """Back up ``req.database`` as a snapshot in its repository at
    ``req.sink`` (a Sink or a sink config). ``req.keyring`` is required
    (``password`` is refused: repositories are for the server keyring);
    ``req.level`` is the zstd level of compressible blobs; ``compression``,
    ``threads``, ``part_size``, ``prefetch`` and ``chunk_size`` do not apply.
    """
    started = time.monotonic()
    if req.keyring is None or req.password is not None:
        raise KeyringError(
            "an incremental backup needs the server keyring (not a password); "
            + full.crypto.keyring.KEYGEN_HINT
        )
    naming.check_database_name(req.database)
    naming.check_label(req.label)
    sink, own_sink = _resolve_sink(req)
    try:
        with backup_lock(req.pg, req.database):
            return _run_locked(
                req,
                sink,
                started,
                pack_size or DEFAULT_PACK_SIZE,
                upload_depth,
                lock_options or {},
            )
    finally:
        if own_sink:
            sink.close()


def _resolve_sink(req):
    """The one destination of an incremental backup (a repository lives at
    one destination: several destinations are several runs)."""
    if req.sink is None or getattr(req, "sinks", None):
        raise SinkError(
            "an incremental backup goes to exactly one destination (sink); "
            "run one per destination"
        )
    if isinstance(req.sink, dict):
        from ..sinks import make_sink

        return make_sink(req.sink), True
    return req.sink, False


def _unique_time(repo: Repository, label: str, created_at):
    taken = {(r.stamp, r.label) for r in repo.list_snapshots()}
    created_at = created_at.replace(microsecond=0)
    while (created_at.strftime(naming.TIMESTAMP_FORMAT), label) in taken:
        created_at += timedelta(seconds=1)
    return created_at


def _run_locked(req, sink, started, pack_size, depth, lock_options):
    warnings: list[str] = []
    filestore = req.filestore_path() if req.include_filestore else None
    if req.include_filestore and filestore is None:
        warnings.append("no data directory given: the filestore is not backed up")
    if filestore is not None and not filestore.is_dir():
        warnings.append(f"filestore {filestore} does not exist: no files backed up")
    conn = req.pg.connect(req.database, autocommit=False)
    try:
        with exported_snapshot(conn, req.lock_timeout) as snap:
            info = snap.database_info()
            files = snap.attachment_files() if filestore is not None else []
            files.sort(key=lambda f: f["store_fname"])
            if not info["is_odoo"]:
                warnings.append(
                    f"{req.database} has no ir_module_module table: not an Odoo "
                    "database (backed up anyway)"
                )
            tenant = info["uuid"] or ""
            repo = Repository.open_or_create(sink, req.database, tenant, req.keyring)
            with repo.lock("shared", purpose="backup", **lock_options) as lock:
                warnings.extend(lock.warnings)
                return _snapshot(
                    req,
                    repo,
                    snap,
                    info,
                    files,
                    filestore,
                    warnings,
                    started,
                    pack_size,
                    depth,
                )
    finally:
        conn.close()


def _latest_parent(repo: Repository, warnings):
    """The newest readable snapshot (its filestore tree lets unchanged files
    be reused without reading them)."""
    for ref in reversed(repo.list_snapshots()):
        try:
            return repo.load_snapshot(ref)
        except Exception as exc:  # a damaged snapshot: files are read again
            warnings.append(f"snapshot {ref.rel} unreadable, not used: {exc}")
    return None


def _snapshot(req, repo, snap, info, files, filestore, warnings, started, pack, depth):
    written_before = repo.store.bytes_written
    sent_before = repo.store.bytes_sent
    repo.load_index()
    # index entries of packs that are gone (a damaged destination) must not
    # make this run skip data it should store
    present = repo.list_packs()
    gone = [name for name in repo.index.packs if name not in present]
    if gone:
        warnings.append(
            f"{len(gone)} pack(s) listed in the index are missing at the "
            "destination; their data is stored again"
        )
        repo.index.remove_packs(gone)
    parent = _latest_parent(repo, warnings)
    created_at = _unique_time(
        repo, req.label, naming.to_utc(req.created_at or mf.utc_now())
    )
    key_id = req.keyring.active.key_id
    head = full._head_manifest(req, info, files, created_at, key_id)
    head["compression"] = "none"
    head["storage"] = {"kind": "incremental", "format": fmt.FORMAT_VERSION}
    progress = _Progress(req.progress)
    pipe = _Pipeline(repo, pack, req.level, depth)
    ok = False
    try:
        progress(0, "starting pg_dump")
        with start_pg_dump(req.pg, req.database, snap.id) as dump:
            counter = full._Counter(snap)
            try:
                dumper = _DumpThread(pipe, dump.stdout, progress)
                parent_records = (
                    repo.iter_list(parent["filestore"]["lists"]) if parent else ()
                )
                fs = _Files(pipe, filestore, parent_records, progress)
                try:
                    for entry in files:
                        fs.add(entry)
                        if dumper.error is not None:
                            break
                    fs.finish()
                except BaseException:
                    fs.close()
                    dump.kill()
                    dumper.join()
                    raise
                dump_size, dump_sha, dump_lists = dumper.result()
                dump.check()
                row_counts = counter.get()
            finally:
                counter.cancel()
        fs.list.flush()
        fs_summary = fs.summary(warnings)
        progress(0, "writing the index")
        pipe.finish()
        ok = True
    finally:
        pipe.close(abort=not ok)
    parts = layout.dump_parts(dump_size)
    final = dict(head)
    final.update(
        complete=True,
        dump={
            **head["dump"],
            "parts": [name for name, _size in parts],
            "size": dump_size,
            "sha256": dump_sha,
        },
        filestore={**head["filestore"], **fs_summary},
        row_counts=row_counts,
        tables=len(row_counts),
        rows=sum(row_counts.values()),
        warnings=warnings,
    )
    stamp = int(created_at.timestamp())
    sizes = layout.SizeCounter()
    sizes.add(mf.HEAD_MEMBER, len(mf.dumps(head)), stamp)
    for name, size in parts:
        sizes.add(name, size, stamp)
    sizes.total += fs.sizes.total
    sizes.add(mf.MANIFEST_MEMBER, len(mf.dumps(final)), stamp)
    # every pack this snapshot needs must be at the destination now
    needed = pipe.used_packs | {r.name for r in pipe.written}
    present = repo.list_packs()
    lost = sorted(n for n in needed if n not in present)
    if lost:
        raise RepositoryDamagedError(
            f"{len(lost)} pack(s) this snapshot needs disappeared from "
            f"{repo.store.describe()} during the backup (a garbage collection "
            f"ignoring the lock?): {', '.join(lost[:3])}; no snapshot was written"
        )
    stats = dict(pipe.stats.values)
    snapshot = {
        "kind": KIND_SNAPSHOT,
        "version": fmt.FORMAT_VERSION,
        "tenant": repo.tenant,
        "database": req.database,
        "label": req.label,
        "created_at": mf.iso(created_at),
        "parent": parent.get("created_at") if parent else None,
        "head": head,
        "manifest": final,
        "dump": {"lists": dump_lists, "size": dump_size, "sha256": dump_sha},
        "filestore": {
            "lists": fs.list.ids,
            "files": fs_summary["files"],
            "bytes": fs_summary["bytes"],
        },
        "tar_size": sizes.finish(),
        "stats": stats,
    }
    ref = repo.write_snapshot(snapshot)
    added = repo.store.bytes_written - written_before
    stats["bytes_sent"] = repo.store.bytes_sent - sent_before
    from .archive import virtual_name

    duration = time.monotonic() - started
    _logger.info(
        "incremental backup of %s: snapshot %s, %d new bytes (%.1fs)",
        req.database,
        ref.rel,
        added,
        duration,
    )
    return IncrementalResult(
        name=virtual_name(repo.store.root, req.database, ref),
        snapshot=ref.rel,
        repository=repo.store.describe(),
        size=added,
        logical_size=dump_size + fs_summary["bytes"],
        manifest=final,
        duration=duration,
        warnings=warnings,
        key_id=key_id,
        destination=repo.store.sink.describe(),
        stats=stats,
        sha256=ref.sha256,
    )
