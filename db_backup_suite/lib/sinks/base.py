"""The storage sink interface shared by the local, S3 and SFTP sinks.

A sink stores named objects ("archives"). Names are relative, "/"-separated
keys such as ``mydb/2025/mydb_2025-01-31T02-00-00Z.dbbs``. Writing is atomic:
an object appears in :meth:`Sink.list` only once :meth:`SinkWriter.commit`
returned; an aborted, failed or interrupted write never counts as a backup.

Usage::

    with sink.open_write("db/archive.dbbs") as writer:
        for chunk in chunks:
            writer.write(chunk)
        stored = writer.commit()      # -> StoredObject

Leaving the ``with`` block because of an exception aborts the write. Leaving
it normally without calling ``commit()`` also aborts it and raises
:class:`SinkError`: a forgotten commit must never look like a backup.

Reading is streaming, in constant memory, whatever the object's size::

    with sink.open_read(name) as reader:          # a binary file object
        ...
    for chunk in sink.iter_read(name, offset=0):  # bytes, COPY_CHUNK each
        ...

A write killed with its process (SIGKILL, power loss) leaves something the
sink names itself: a hidden temp file (local), a ``.part`` file (SFTP), an
incomplete multipart upload (S3). :meth:`Sink.list_incomplete` lists them as
:class:`IncompleteWrite` (with the object name they were for and their last
activity) and :meth:`Sink.remove_incomplete` removes one; deciding WHICH may
go (whose run is dead) is :mod:`..cleanup`'s job.
"""

import io
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime

from ..errors import SinkError, SinkObjectNotFound

_logger = logging.getLogger(__name__)

#: Default size of the chunks copied by :meth:`Sink.put` and :meth:`Sink.get`.
COPY_CHUNK = 1024 * 1024

#: Suffix of the SFTP in-progress files; refused in object names so a
#: committed object can never be mistaken for a leftover (or the reverse).
PART_SUFFIX = ".part"


@dataclass(frozen=True)
class IncompleteWrite:
    """What an interrupted write left at a destination.

    ``name``: the object name the write was for
    (``db/db_manual_20261130T020000Z.tar.zst.enc``);
    ``kind``: ``temp-file`` (local), ``part-file`` (SFTP) or
    ``multipart-upload`` (S3); ``ref``: the sink's own handle on it (a path,
    or ``key`` and upload id); ``modified``: its last activity (UTC; a live
    write moves it every few seconds); ``size``: bytes so far, when known.
    """

    name: str
    kind: str
    ref: tuple
    modified: datetime
    size: int | None = None


@dataclass(frozen=True)
class StoredObject:
    """A committed object: its name (relative key), size in bytes and the
    time the storage last modified it (timezone-aware, UTC)."""

    name: str
    size: int
    modified: datetime


def validate_name(name):
    """Return ``name`` if it is a safe relative object name, else raise.

    Refused: empty names, absolute names, backslashes, NUL bytes, empty
    components (``a//b``, trailing ``/``), ``.`` and ``..`` components,
    hidden components (starting with ``.``, reserved for temporary files)
    and names ending with ``.part`` (reserved for in-progress uploads).
    """
    if not isinstance(name, str) or not name:
        raise SinkError("An object name must be a non-empty string.")
    if "\x00" in name or "\\" in name:
        raise SinkError(
            f"Invalid object name {name!r}: NUL bytes and backslashes are not allowed."
        )
    if name.startswith("/"):
        raise SinkError(
            f"Invalid object name {name!r}: names are relative to the "
            "destination, not absolute paths."
        )
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise SinkError(
                f"Invalid object name {name!r}: empty, '.' and '..' path "
                "components are not allowed."
            )
        if part.startswith("."):
            raise SinkError(
                f"Invalid object name {name!r}: components starting with '.' "
                "are reserved for temporary files."
            )
    if name.endswith(PART_SUFFIX):
        raise SinkError(
            f"Invalid object name {name!r}: the '{PART_SUFFIX}' suffix is "
            "reserved for uploads in progress."
        )
    return name


def validate_prefix(prefix):
    """Return a listing prefix (may be empty, may end with ``/``), or raise."""
    if prefix is None or prefix == "":
        return ""
    if not isinstance(prefix, str):
        raise SinkError("A listing prefix must be a string.")
    stripped = prefix.rstrip("/")
    if stripped:
        # A prefix may stop in the middle of a component ("db/2025-0"):
        # validate the complete components and the partial last one.
        validate_name(stripped)
    elif prefix:
        raise SinkError(f"Invalid listing prefix {prefix!r}.")
    return prefix


class SinkWriter:
    """A write in progress. Subclasses implement ``_write``, ``_commit``
    and ``_abort``; this class enforces the state machine (open ->
    committed | aborted) and the context-manager behaviour."""

    def __init__(self, sink, name):
        self.sink = sink
        self.name = name
        self.bytes_written = 0
        self._state = "open"
        self.result = None

    # file-like surface -----------------------------------------------------
    def writable(self):
        return True

    def readable(self):
        return False

    def seekable(self):
        return False

    def tell(self):
        return self.bytes_written

    def flush(self):
        """Nothing to do: data is pushed to the storage as it is written."""

    @property
    def closed(self):
        return self._state != "open"

    def write(self, data):
        if self._state != "open":
            raise SinkError(
                f"Cannot write to {self.name!r}: the write is already {self._state}."
            )
        view = memoryview(data).cast("B")
        if not view.nbytes:
            return 0
        try:
            self._write(view)
        except BaseException:
            self._abort_quietly()
            raise
        self.bytes_written += view.nbytes
        return view.nbytes

    def commit(self):
        """Finish the write atomically and return the :class:`StoredObject`."""
        if self._state == "committed":
            return self.result
        if self._state != "open":
            raise SinkError(
                f"Cannot commit {self.name!r}: the write was {self._state}."
            )
        try:
            self.result = self._commit()
        except BaseException:
            self._abort_quietly()
            raise
        self._state = "committed"
        return self.result

    def abort(self):
        """Discard the write; nothing is left at the destination. Idempotent."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._abort()

    def close(self):
        """Abort unless committed (``close`` never publishes an object)."""
        self.abort()

    def _abort_quietly(self):
        if self._state != "open":
            return
        try:
            self.abort()
        except Exception:
            _logger.warning("Aborting the write of %r failed", self.name, exc_info=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._abort_quietly()
            return False
        if self._state == "open":
            self.abort()
            raise SinkError(
                f"The write of {self.name!r} ended without commit(); it was discarded."
            )
        return False

    def __repr__(self):
        return (
            f"<{type(self).__name__} {self.name!r} {self._state} "
            f"{self.bytes_written} bytes>"
        )

    # to implement ----------------------------------------------------------
    def _write(self, view):
        raise NotImplementedError

    def _commit(self):
        raise NotImplementedError

    def _abort(self):
        raise NotImplementedError


class StreamReader(io.RawIOBase):
    """A read-only binary stream over ``read_fn(n)`` that maps the
    transport's exceptions to :class:`SinkError` with ``map_error``."""

    def __init__(self, read_fn, close_fn, map_error, name):
        super().__init__()
        self._read_fn = read_fn
        self._close_fn = close_fn
        self._map_error = map_error
        self.name = name

    def readable(self):
        return True

    def read(self, size=-1):
        if self.closed:
            raise ValueError("I/O operation on closed stream.")
        try:
            if size is None or size < 0:
                chunks = []
                while True:
                    chunk = self._read_fn(COPY_CHUNK)
                    if not chunk:
                        break
                    chunks.append(chunk)
                return b"".join(chunks)
            return self._read_fn(size)
        except SinkError:
            raise
        except Exception as exc:
            raise self._map_error(exc, f"reading {self.name!r}") from exc

    def readinto(self, buffer):
        view = memoryview(buffer).cast("B")
        data = self.read(view.nbytes)
        view[: len(data)] = data
        return len(data)

    def readall(self):
        return self.read(-1)

    def close(self):
        if self.closed:
            return
        try:
            self._close_fn()
        except Exception:
            _logger.warning("Closing the reader of %r failed", self.name, exc_info=True)
        finally:
            super().close()


class Sink(ABC):
    """A storage destination. Instances are not thread-safe: use one per
    thread. ``repr()`` and :meth:`describe` never include secrets."""

    kind = "abstract"

    # writing ---------------------------------------------------------------
    @abstractmethod
    def open_write(self, name, size_hint=None):
        """Start an atomic write of ``name``; returns a :class:`SinkWriter`.
        ``size_hint`` (bytes, optional) lets a sink size its upload."""

    def put(self, name, stream, size_hint=None, chunk_size=COPY_CHUNK):
        """Copy the binary ``stream`` to ``name``; returns the StoredObject."""
        with self.open_write(name, size_hint=size_hint) as writer:
            while True:
                chunk = stream.read(chunk_size)
                if not chunk:
                    break
                writer.write(chunk)
            return writer.commit()

    # reading ---------------------------------------------------------------
    @abstractmethod
    def open_read(self, name):
        """Return a binary stream (``read``/``close``, context manager)."""

    def get(self, name, stream, chunk_size=COPY_CHUNK):
        """Copy object ``name`` into the binary ``stream``; returns bytes."""
        with self.open_read(name) as reader:
            return _copy(reader, stream, chunk_size)

    def open_range(self, name, offset=0):
        """A binary stream of ``name`` from byte ``offset`` on (resuming a
        download). Sinks override it with a real seek / ranged request;
        this fallback reads and drops the first ``offset`` bytes."""
        offset = _check_offset(offset)
        reader = self.open_read(name)
        try:
            left = offset
            while left:
                skipped = reader.read(min(left, COPY_CHUNK))
                if not skipped:
                    break
                left -= len(skipped)
        except BaseException:
            reader.close()
            raise
        return reader

    def iter_read(self, name, *, offset=0, length=None, chunk_size=COPY_CHUNK):
        """Yield ``name``'s bytes from ``offset`` (at most ``length`` of them)
        in chunks of at most ``chunk_size``: constant memory whatever the
        size, for an HTTP response body. The reader is closed when the
        iteration ends, fails or is closed early (``GeneratorExit``)."""
        if length is not None and length < 0:
            raise SinkError("A read length must be >= 0.")
        with self.open_range(name, offset) as reader:
            left = length
            while left is None or left > 0:
                want = chunk_size if left is None else min(chunk_size, left)
                chunk = reader.read(want)
                if not chunk:
                    if left:
                        raise SinkError(
                            f"{name!r} on {self.describe()} ended {left} bytes "
                            "before the range asked for."
                        )
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    @abstractmethod
    def list(self, prefix=""):
        """Committed objects whose name starts with ``prefix``, by name."""

    @abstractmethod
    def stat(self, name):
        """The :class:`StoredObject` of ``name``; SinkObjectNotFound if none."""

    def exists(self, name):
        try:
            self.stat(name)
        except SinkObjectNotFound:
            return False
        return True

    @abstractmethod
    def delete(self, name):
        """Delete ``name``; SinkObjectNotFound if it does not exist."""

    # maintenance -----------------------------------------------------------
    @abstractmethod
    def test_connection(self):
        """Check the destination is reachable and writable enough to list;
        returns a short human description. Raises SinkUnreachableError."""

    @abstractmethod
    def cleanup_incomplete(self, prefix="", older_than=0.0):
        """Remove what interrupted writes left behind (temp files, ``.part``
        files, multipart uploads) under ``prefix`` and older than
        ``older_than`` seconds. Returns how many leftovers were removed.
        Never touches committed objects."""

    def list_incomplete(self, prefix=""):
        """The :class:`IncompleteWrite` leftovers whose object name starts
        with ``prefix`` (none for a sink that cannot leave any)."""
        return []

    def remove_incomplete(self, item):
        """Remove one leftover listed by :meth:`list_incomplete`; False when
        it was already gone. Never touches a committed object."""
        raise SinkError(f"{self.describe()} leaves no incomplete writes to remove.")

    def close(self):
        """Release connections. The sink reconnects if used again."""
        return None

    def describe(self):
        """A human description of the destination without any secret."""
        return self.kind

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def __repr__(self):
        return f"<{type(self).__name__} {self.describe()}>"


def _check_offset(offset):
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise SinkError(f"A read offset must be a whole number >= 0, not {offset!r}.")
    return offset


def _copy(reader, stream, chunk_size):
    copied = 0
    while True:
        chunk = reader.read(chunk_size)
        if not chunk:
            return copied
        stream.write(chunk)
        copied += len(chunk)
