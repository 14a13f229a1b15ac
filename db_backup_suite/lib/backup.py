"""The backup pipeline: one streaming pass from PostgreSQL and the filestore
to an encrypted archive at a sink.

::

    pg_dump -Fc -Z0 --snapshot=S ----+  (prefetched while files are written)
    filestore files listed in S -----+--> tar (payload.writer.PayloadWriter)
    backup.json / manifest.json -----+      --> zstd | gzip
                                            --> AES-256-GCM chunks (crypto)
                                            --> fan-out (fanout.FanOut)
                                                 +--> sink writer --> commit()
                                                 +--> sink writer --> commit()

One pass feeds every destination at once (fanout.py): a failing or stalled
destination is dropped and the others complete; the result says, for each
destination, what it stored or why it failed, and the run's state: ``done``
(every destination), ``partial`` (some) or, when none stored it, an
exception (the only destination's own error, or DestinationsFailedError).

Before anything is written, the run removes what killed runs of the same
database left at these destinations and on this server (cleanup.py), while
it holds the database's backup lock: that lock is the proof no other backup
of it is alive.

Constant memory (the ``prefetch`` buffer and one dump part of at most
``part_size`` bytes are the largest buffers), no plaintext on disk,
``pg_dump`` always reaped, and any failure
(``pg_dump`` exit != 0, a sink error, an exception, a full disk) aborts the
sink writer so no archive is ever listed. See pgtools.py for the snapshot and
the lock that keeps Odoo's filestore garbage collector away, lock.py for the
one-backup-at-a-time rule, docs/payload-format.md for the payload layout.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from suite_core.keyring import KEYGEN_HINT

from . import cleanup, crypto, fanout, naming
from . import manifest as mf
from .errors import DumpError, KeyringError, SinkError, StreamCryptError, SuiteError
from .lock import backup_lock
from .payload.extract import safe_member_path
from .payload.writer import PayloadWriter
from .pgtools import PgParams, exported_snapshot, start_pg_dump

_logger = logging.getLogger(__name__)

TOOL = "db_backup_suite.lib"
EXTENSIONS = {"zstd": ".tar.zst.enc", "gzip": ".tar.gz.enc"}

#: zstd level of the payload. Level 1 rather than zstd's usual 3: on the
#: benchmark's Odoo database (100k partners, 3,000 attachments) it takes
#: 0.1-0.4 s less CPU per backup and the archive came out no larger (the
#: dump 3.6 MB instead of 4.1 MB, the text attachments 8.6 instead of 8.7);
#: the CPU is the bottleneck of a backup, not the bytes written.
DEFAULT_LEVEL = 1

Progress = Callable[[int, "int | None", str], None]


@dataclass
class BackupRequest:
    """What to back up, where to, and how.

    ``sink``: a :class:`~.sinks.base.Sink` or a sink config dict;
    ``sinks``: more destinations, all written at once from the same stream
    (each a Sink, a config dict or a ``(key, Sink | config)`` pair whose
    ``key`` the result reports back, e.g. an Odoo destination id). At
    least one of the two.
    ``cleanup``: first remove what killed runs of this database left at
    these destinations and on this server (:mod:`.cleanup`; ``work_dir``
    is where restores keep their temp dirs, default the system's).
    ``fanout_depth``: blocks queued per destination; ``stall_timeout``:
    seconds a destination may accept nothing before it is dropped.
    ``data_dir``: Odoo's data directory (the filestore is
    ``<data_dir>/filestore/<database>``), or ``filestore`` given directly;
    neither: the database only (``include_filestore`` is then False).
    Exactly one of ``keyring`` (per-database key derived from the database
    uuid) or ``password`` (scrypt; for archives taken off-site).
    """

    database: str
    sink: object = None
    data_dir: str | os.PathLike | None = None
    filestore: str | os.PathLike | None = None
    pg: PgParams = field(default_factory=PgParams.from_env)
    keyring: object = None
    password: str | None = None
    label: str = naming.MANUAL
    compression: str = "zstd"
    level: int = DEFAULT_LEVEL
    threads: int = 0
    name: str | None = None
    progress: Progress | None = None
    lock_timeout: str = "60s"
    include_filestore: bool = True
    part_size: int = 16 * 1024 * 1024
    prefetch: int = 24 * 1024 * 1024
    chunk_size: int = crypto.DEFAULT_CHUNK_SIZE
    created_at: datetime | None = None
    sinks: list | None = None
    cleanup: bool = True
    work_dir: str | os.PathLike | None = None
    fanout_depth: int = fanout.DEFAULT_DEPTH
    stall_timeout: float = fanout.DEFAULT_STALL_TIMEOUT
    #: the audit chain's witnessed head when the backup starts
    #: (``suite_core.witness.latest_head``), kept in the manifest so a
    #: restore can check the restored chain against it; None: not recorded
    audit_head: dict | None = None

    def destinations(self) -> list[tuple[object, object]]:
        """``(key, sink or config)`` of every destination, in order."""
        out = []
        for item in ([self.sink] if self.sink is not None else []) + list(
            self.sinks or ()
        ):
            if isinstance(item, tuple) and len(item) == 2:
                out.append(item)
            else:
                out.append((None, item))
        return out

    def filestore_path(self) -> Path | None:
        if self.filestore is not None:
            return Path(self.filestore)
        if self.data_dir is not None:
            return Path(self.data_dir) / "filestore" / self.database
        return None


@dataclass
class BackupResult:
    """A backup stored at one destination at least.

    ``state``: ``done`` (every destination stored it) or ``partial``;
    ``destinations``: one :class:`~.fanout.DestinationOutcome` per
    destination, in the order given (``state``, ``name``, ``size``,
    ``error``); ``destination``: the first one that stored it;
    ``cleanup``: what the start-of-run cleanup did
    (:class:`~.cleanup.CleanupResult`, None when not asked).
    """

    name: str
    size: int
    sha256: str  # of the archive as stored (ciphertext)
    manifest: dict
    duration: float
    warnings: list[str]
    encrypted: bool = True
    key_id: str = ""
    destination: str = ""
    state: str = fanout.DONE
    destinations: list = field(default_factory=list)
    cleanup: object = None

    @property
    def failed_destinations(self) -> list:
        return [o for o in self.destinations if not o.ok]

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "duration": round(self.duration, 3),
            "warnings": self.warnings,
            "encrypted": self.encrypted,
            "key_id": self.key_id,
            "destination": self.destination,
            "state": self.state,
            "destinations": [o.as_dict() for o in self.destinations],
            "cleanup": self.cleanup.as_dict() if self.cleanup is not None else None,
            "manifest": self.manifest,
        }


class _SinkTap:
    """Between the encryption and the sink writer: counts and hashes the
    ciphertext, reports progress, and on a sink error runs ``on_error``
    first (to kill pg_dump at once, so nothing waits on a full pipe)."""

    def __init__(self, writer, progress: Progress | None, on_error):
        self._writer = writer
        self._progress = progress
        self._on_error = on_error
        self.sha256 = hashlib.sha256()
        self.count = 0
        self.phase = "starting"

    def write(self, data):
        try:
            self._writer.write(data)
        except BaseException:
            self._on_error()
            raise
        self.sha256.update(data)
        self.count += len(data)
        if self._progress is not None:
            self._progress(self.count, None, self.phase)
        return len(data)

    def flush(self):
        pass


class _Prefetch:
    """Reads pg_dump's stdout in a thread into a bounded in-memory buffer.

    While the buffer fills (pg_dump working), the pipeline writes filestore
    files; once it is full or pg_dump is done, the dump parts follow, then
    the remaining files. pg_dump and the filestore copy thus overlap, while
    the dump parts stay contiguous in the tar. Memory: at most ``limit``
    bytes (pg_dump simply waits on its pipe when the buffer is full).
    """

    def __init__(self, stream, limit: int, block: int = 1024 * 1024):
        self._stream = stream
        self._limit = limit
        self._block = block
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._stopped = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, name="dump-prefetch", daemon=True
        )
        self._thread.start()

    def _run(self):
        try:
            while True:
                data = self._stream.read(self._block)
                if not data:
                    break
                with self._cond:
                    while self._size >= self._limit and not self._stopped:
                        self._cond.wait()
                    if self._stopped:
                        return
                    self._chunks.append(data)
                    self._size += len(data)
                    self._cond.notify_all()
        except BaseException as exc:  # handed to the reader
            self._error = exc
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def ready(self) -> bool:
        """The buffer is full or the stream ended: time to write the dump."""
        with self._cond:
            return self._eof or self._size >= self._limit

    def read(self, n: int = -1) -> bytes:
        with self._cond:
            while not self._chunks and not self._eof:
                self._cond.wait()
            if not self._chunks:
                if self._error is not None:
                    raise DumpError(f"reading pg_dump's output: {self._error}")
                return b""
            data = self._chunks.popleft()
            self._size -= len(data)
            self._cond.notify_all()
        return data

    def stop(self):
        with self._cond:
            self._stopped = True
            self._chunks.clear()
            self._size = 0
            self._cond.notify_all()


_ODOO_FNAME = re.compile(r"[0-9a-f]{2}/[0-9a-f]{40}")


class _UnusableSink:
    """A destination whose configuration could not even be built: it fails
    in its own branch of the fan-out, like an unreachable one."""

    kind = "unusable"

    def __init__(self, config, error):
        self._type = config.get("type") if isinstance(config, dict) else None
        self._error = error

    def describe(self):
        return f"{self._type or 'unknown'} destination (invalid configuration)"

    def open_write(self, name, size_hint=None):
        raise self._error

    def list_incomplete(self, prefix=""):
        return []

    def close(self):
        return None


def _resolve_sinks(req) -> tuple[list, list]:
    """``(key, Sink)`` pairs, and the sinks built here (closed by us)."""
    from .sinks import make_sink

    pairs, owned = [], []
    for key, item in req.destinations():
        if isinstance(item, dict):
            try:
                sink = make_sink(item)
            except SinkError as exc:
                sink = _UnusableSink(item, exc)
            owned.append(sink)
        else:
            sink = item
        pairs.append((key, sink))
    if not pairs:
        raise SinkError("a backup needs at least one destination")
    return pairs, owned


def _check_encryption(req: BackupRequest):
    if (req.keyring is None) == (req.password is None):
        raise KeyringError(
            "a backup needs exactly one of a server keyring or a password; "
            "no keyring configured? " + KEYGEN_HINT
        )
    if req.compression not in EXTENSIONS:
        raise ValueError(
            f"unknown compression {req.compression!r}; use one of "
            f"{', '.join(EXTENSIONS)}"
        )


def _head_manifest(req: BackupRequest, info: dict, files: list, created_at, key_id):
    return {
        "kind": mf.KIND,
        "layout": mf.LAYOUT_VERSION,
        "complete": False,
        "tool": TOOL,
        "database": info["database"],
        "uuid": info["uuid"],
        "database_create_date": info["create_date"],
        "is_odoo": info["is_odoo"],
        "odoo_version": info["odoo_version"],
        "modules": info["modules"],
        "postgresql": {
            "version": info["postgresql_version"],
            "version_num": info["postgresql_version_num"],
            "encoding": info["encoding"],
            "collate": info["collate"],
            "ctype": info["ctype"],
        },
        "created_at": mf.iso(created_at),
        "label": req.label,
        "audit_head": req.audit_head,
        "compression": req.compression,
        "encryption": {
            "mode": "keyring" if req.keyring is not None else "password",
            "key_id": key_id,
            "tenant": info["uuid"] or "",
        },
        "dump": {
            "member": mf.DUMP_MEMBER,
            "format": "custom",
            "tool": "pg_dump --format=custom --compress=0 --snapshot",
        },
        "filestore": {
            "included": req.include_filestore and req.filestore_path() is not None,
            "dir": mf.FILESTORE_DIR,
            "listed_files": len(files),
            "listed_bytes": sum(f["file_size"] or 0 for f in files),
        },
        "snapshot": {
            "consistent": True,
            "attachment_lock": "SHARE UPDATE EXCLUSIVE",
        },
    }


class _Counter(threading.Thread):
    """Counts the rows of every table in the snapshot while pg_dump runs."""

    def __init__(self, snapshot):
        super().__init__(name="row-counts", daemon=True)
        self._snapshot = snapshot
        self.result: dict | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self):
        try:
            self.result = self._snapshot.row_counts()
        except BaseException as exc:  # handed to the caller by get()
            self.error = exc

    def get(self) -> dict:
        self.join()
        if self.error is not None:
            raise DumpError(f"counting the rows failed: {self.error}") from self.error
        return self.result

    def cancel(self):
        if self.is_alive():
            try:
                self._snapshot.conn.cancel()
            except Exception as exc:  # the thread still ends with its query
                _logger.warning("cancelling the row counts failed: %s", exc)
            self.join(timeout=30)


def run_backup(req: BackupRequest) -> BackupResult:
    """Back up ``req.database`` (and its filestore) to every destination of
    ``req`` at once; see :class:`BackupResult` for a partial success."""
    started = time.monotonic()
    _check_encryption(req)
    naming.check_database_name(req.database)
    naming.check_label(req.label)
    sinks, owned = _resolve_sinks(req)
    try:
        with backup_lock(req.pg, req.database):
            cleaned = _clean_leftovers(req, sinks) if req.cleanup else None
            result = _run_locked(req, sinks, started)
            result.cleanup = cleaned
            return result
    finally:
        for sink in owned:
            sink.close()


def _clean_leftovers(req, sinks):
    """What killed runs of this database left (we hold its backup lock)."""
    # no progress report here: the first one comes once the snapshot is
    # taken (callers act on it, e.g. the consistency tests)
    data_dir = req.data_dir
    if data_dir is None and req.filestore is not None:
        # <data_dir>/filestore/<db>: the staging filestores live beside it
        fs = Path(req.filestore)
        if fs.name == req.database and fs.parent.name == "filestore":
            data_dir = fs.parent.parent
    result = cleanup.clean_leftovers(
        [sink for _key, sink in sinks],
        req.database,
        pg=req.pg,
        data_dir=data_dir,
        work_dir=req.work_dir,
        locked=True,
    )
    if result.removed:
        _logger.info("%s before the backup", result.summary())
    return result


def _emit_progress(req, done, message):
    if req.progress is not None:
        req.progress(done, None, message)


def _run_locked(req: BackupRequest, sinks, started) -> BackupResult:
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
            created_at = naming.to_utc(req.created_at or mf.utc_now())
            name = req.name or naming.archive_name(
                req.database, req.label, created_at, EXTENSIONS[req.compression]
            )
            key_id = req.keyring.active.key_id if req.keyring is not None else ""
            head = _head_manifest(req, info, files, created_at, key_id)
            _emit_progress(req, 0, "starting pg_dump")
            with start_pg_dump(req.pg, req.database, snap.id) as dump:
                counter = _Counter(snap)
                try:
                    result = _write_archive(
                        req,
                        sinks,
                        name,
                        head,
                        dump,
                        counter,
                        files,
                        filestore,
                        warnings,
                    )
                finally:
                    counter.cancel()
    finally:
        conn.close()
    result.duration = time.monotonic() - started
    _logger.info(
        "backup of %s written to %s (%d bytes, %.1fs, %s: %d of %d destinations)",
        req.database,
        name,
        result.size,
        result.duration,
        result.state,
        len(result.destinations) - len(result.failed_destinations),
        len(result.destinations),
    )
    return result


def _write_archive(req, sinks, name, head, dump, counter, files, filestore, warnings):
    tenant = head["encryption"]["tenant"]
    prefetch = _Prefetch(dump.stdout, req.prefetch)
    fan = fanout.FanOut(
        sinks, name, depth=req.fanout_depth, stall_timeout=req.stall_timeout
    )
    fan.start()
    tap = _SinkTap(fan, req.progress, dump.kill)
    enc = crypto.encrypting_writer(
        tap,
        keyring=req.keyring,
        password=req.password,
        tenant=tenant,
        compression=req.compression,
        chunk_size=req.chunk_size,
    )
    try:
        pw = PayloadWriter(
            enc, compression=req.compression, level=req.level, threads=req.threads
        )
        pw.add_bytes(mf.HEAD_MEMBER, mf.dumps(head))
        fs_writer = _FilestoreWriter(pw, files, filestore)
        # filestore files while pg_dump fills the prefetch buffer ...
        tap.phase = "copying the filestore"
        while not prefetch.ready() and fs_writer.add_next():
            pass
        # ... then the whole dump (contiguous parts) ...
        tap.phase = "dumping the database"
        dump_info = pw.add_stream(mf.DUMP_MEMBER, prefetch, part_size=req.part_size)
        dump.check()
        row_counts = counter.get()
        # ... then the remaining files
        tap.phase = "copying the filestore"
        while fs_writer.add_next():
            pass
        fs = fs_writer.summary(warnings)
        final = dict(head)
        final.update(
            complete=True,
            dump={
                **head["dump"],
                "parts": dump_info.parts,
                "size": dump_info.size,
                "sha256": dump_info.sha256,
            },
            filestore={**head["filestore"], **fs},
            row_counts=row_counts,
            tables=len(row_counts),
            rows=sum(row_counts.values()),
            warnings=list(warnings),
        )
        pw.add_bytes(mf.MANIFEST_MEMBER, mf.dumps(final))
        pw.close()
        enc.close()
        tap.phase = "committing"
        _emit_progress(req, tap.count, "committing")
        outcomes = fan.commit()
    except BaseException as exc:
        enc.abort()
        dump.kill()
        prefetch.stop()
        fan.abort(f"the backup stopped: {exc}" if str(exc) else "the backup stopped")
        raise
    state = fanout.overall_state(outcomes)
    stored = [o for o in outcomes if o.ok]
    _emit_progress(req, tap.count, "done")
    return BackupResult(
        name=name,
        size=tap.count,
        sha256=tap.sha256.hexdigest(),
        manifest=final,
        duration=0.0,
        warnings=warnings,
        encrypted=True,
        key_id=head["encryption"]["key_id"],
        destination=stored[0].destination,
        state=state,
        destinations=outcomes,
    )


class _FilestoreWriter:
    """Adds the snapshot's filestore files, in order, one at a time."""

    def __init__(self, pw, files, filestore):
        self._pw = pw
        self._files = iter(files)
        self._root = filestore
        self.digest = mf.FilestoreDigest()
        self.missing: list[dict] = []
        self.stored = 0

    def _path(self, fname: str):
        if _ODOO_FNAME.fullmatch(fname):  # Odoo's own layout: nothing to check
            return self._root / fname
        return safe_member_path(self._root, fname)

    def add_next(self) -> bool:
        """Add the next file; False when there is none left."""
        entry = next(self._files, None)
        if entry is None:
            return False
        fname = entry["store_fname"]
        try:
            path = self._path(fname)
        except StreamCryptError as exc:
            self.missing.append({"store_fname": fname, "reason": f"unsafe name: {exc}"})
            return True
        try:
            member = self._pw.add_file(mf.filestore_member(fname), path)
        except DumpError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                self.missing.append(
                    {
                        "store_fname": fname,
                        "file_size": entry["file_size"],
                        "reason": "missing on disk",
                    }
                )
                return True
            raise
        self.digest.add(fname, member.size, member.sha256)
        self.stored += member.stored
        return True

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
            "stored_uncompressed": self.stored,
        }


__all__ = ["BackupRequest", "BackupResult", "SuiteError", "run_backup"]
