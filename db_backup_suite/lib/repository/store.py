"""The repository's view of a destination: one folder of a sink.

:class:`RepoStore` wraps any :class:`~..sinks.base.Sink` (local, S3, SFTP)
with what the repository needs and the sink interface lacks:

- every operation serialized by one lock, so an uploader thread, a lock
  refresher and the caller's thread can share a sink (sinks are not
  thread-safe);
- ranged reads (a blob out of a pack without fetching the pack): a file
  seek for local, an HTTP ``Range`` GET for S3, ``readv`` for SFTP, and a
  read-and-skip fallback for any other sink;
- whole small objects in and out (``put_bytes`` / ``get_bytes``), missing
  objects mapped to :class:`~..errors.SinkObjectNotFound`.

Nothing here changes the sink classes.
"""

from __future__ import annotations

import logging
import threading

from ..errors import SinkError, SinkObjectNotFound
from .format import MAX_OBJECT_SIZE

_logger = logging.getLogger(__name__)


class RepoStore:
    """Objects under ``root`` (``"<database>/repo-<tenant>"``) of ``sink``."""

    def __init__(self, sink, root: str):
        self.sink = sink
        self.root = root.rstrip("/")
        self._lock = threading.RLock()
        self.bytes_written = 0
        self.objects_written = 0
        #: every byte uploaded, locks included (what crossed the network)
        self.bytes_sent = 0

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def describe(self) -> str:
        return f"{self.sink.describe()}:{self.root}"

    # writing ------------------------------------------------------------------
    def put_bytes(self, rel: str, data, count: bool = True) -> int:
        """Write object ``rel`` atomically; ``count``: add it to
        ``bytes_written`` (the data a run added; locks are not counted)."""
        view = memoryview(data).cast("B")
        with self._lock:
            with self.sink.open_write(self.path(rel), size_hint=view.nbytes) as writer:
                writer.write(view)
                stored = writer.commit()
            if stored.size != view.nbytes:
                self.sink.delete(self.path(rel))
                raise SinkError(
                    f"{self.path(rel)}: the destination stored {stored.size} "
                    f"bytes, {view.nbytes} were written; it was deleted"
                )
            self.bytes_sent += view.nbytes
            if count:
                self.bytes_written += view.nbytes
                self.objects_written += 1
        return view.nbytes

    def delete(self, rel: str, missing_ok: bool = True) -> bool:
        with self._lock:
            try:
                self.sink.delete(self.path(rel))
            except SinkObjectNotFound:
                if not missing_ok:
                    raise
                return False
        return True

    # reading ------------------------------------------------------------------
    def get_bytes(self, rel: str, limit: int = MAX_OBJECT_SIZE) -> bytes:
        with self._lock, self.sink.open_read(self.path(rel)) as reader:
            chunks, total = [], 0
            while True:
                chunk = reader.read(1024 * 1024)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise SinkError(f"{self.path(rel)} is larger than {limit} bytes")
                chunks.append(chunk)
        return b"".join(chunks)

    def list(self, rel_prefix: str = "") -> list:
        """StoredObjects under ``root/rel_prefix``, names relative to root."""
        prefix = self.path(rel_prefix) if rel_prefix else self.root + "/"
        with self._lock:
            objects = self.sink.list(prefix)
        cut = len(self.root) + 1
        return [
            type(o)(o.name[cut:], o.size, o.modified)
            for o in objects
            if o.name.startswith(self.root + "/")
        ]

    def stat(self, rel: str):
        with self._lock:
            return self.sink.stat(self.path(rel))

    def read_range(self, rel: str, offset: int, length: int) -> bytes:
        """``length`` bytes of object ``rel`` from ``offset`` (fewer only when
        the object is shorter: the caller checks)."""
        if length <= 0:
            return b""
        name = self.path(rel)
        with self._lock:
            kind = getattr(self.sink, "kind", "")
            try:
                if kind == "local" and hasattr(self.sink, "_path"):
                    return self._range_local(name, offset, length)
                if kind == "s3" and hasattr(self.sink, "_client"):
                    return self._range_s3(name, offset, length)
                if kind == "sftp" and hasattr(self.sink, "_sftp"):
                    return self._range_sftp(name, offset, length)
            except SinkError:
                raise
            except FileNotFoundError as exc:
                raise SinkObjectNotFound(
                    f"no object {name!r} at {self.sink.describe()}"
                ) from exc
            except Exception as exc:
                mapper = getattr(self.sink, "_error", None)
                if mapper is not None:
                    raise mapper(exc, f"reading {name!r}") from exc
                raise SinkError(f"reading {name!r}: {exc}") from exc
            return self._range_generic(name, offset, length)

    def _range_local(self, name, offset, length):
        with open(self.sink._path(name), "rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    def _range_s3(self, name, offset, length):
        client = self.sink._client()
        body = client.get_object(
            Bucket=self.sink.bucket,
            Key=self.sink._key(name),
            Range=f"bytes={offset}-{offset + length - 1}",
        )["Body"]
        try:
            return body.read()
        finally:
            body.close()

    def _range_sftp(self, name, offset, length):
        sftp = self.sink._sftp()
        with sftp.open(self.sink._path(name), "rb") as fh:
            size = fh.stat().st_size
            if offset >= size:
                return b""
            length = min(length, size - offset)
            step = 256 * 1024
            spans = [
                (pos, min(step, offset + length - pos))
                for pos in range(offset, offset + length, step)
            ]
            return b"".join(fh.readv(spans))

    def _range_generic(self, name, offset, length):
        with self.sink.open_read(name) as reader:
            skip = offset
            while skip > 0:
                chunk = reader.read(min(skip, 1024 * 1024))
                if not chunk:
                    return b""
                skip -= len(chunk)
            out, want = [], length
            while want > 0:
                chunk = reader.read(min(want, 1024 * 1024))
                if not chunk:
                    break
                out.append(chunk)
                want -= len(chunk)
            return b"".join(out)

    def cleanup_incomplete(self, older_than: float) -> int:
        with self._lock:
            return self.sink.cleanup_incomplete(self.root + "/", older_than=older_than)


class Uploader:
    """Writes packs in a background thread while the caller keeps producing.

    ``submit(rel, data, on_done)`` queues an upload (blocking while
    ``depth`` uploads wait: that bounds memory); the first failure is
    raised by the next ``submit`` or by ``drain``.
    """

    _STOP = object()

    def __init__(self, store: RepoStore, depth: int = 2):
        import queue

        self._store = store
        self._queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._aborted = False
        self._thread = threading.Thread(
            target=self._run, name="repo-upload", daemon=True
        )
        self._thread.start()

    def _run(self):
        while True:
            item = self._queue.get()
            try:
                if item is self._STOP:
                    return
                if self._error is not None or self._aborted:
                    continue
                rel, data, on_done = item
                if callable(rel):  # named from its content, in this thread
                    rel = rel()
                self._store.put_bytes(rel, data)
                if on_done is not None:
                    on_done()
            except BaseException as exc:  # handed to the producer
                if self._error is None:
                    self._error = exc
            finally:
                self._queue.task_done()

    def check(self):
        """Raise the first upload failure, if any."""
        if self._error is not None:
            raise self._error

    def submit(self, rel, data, on_done=None):
        self.check()
        self._queue.put((rel, data, on_done))

    def drain(self):
        """Wait for every queued upload; raise the first failure."""
        self._queue.join()
        self.check()

    def close(self, abort: bool = False):
        if abort:
            self._aborted = True
        self._queue.put(self._STOP)
        self._thread.join(timeout=600)
        if self._thread.is_alive():  # pragma: no cover - a hung sink
            _logger.error("the repository uploader did not stop")
