"""The payload writer: a standard tar, compressed with zstd or gzip, in one
streaming pass with constant memory, into any binary writable (usually the
encrypting writer); nothing is written to disk.

Already-compressed members (what :mod:`.sampling` says is not worth
compressing: JPEG, PNG, ZIP/docx/xlsx, gzip, zstd, MP4, ...) are *stored*,
not recompressed:

- zstd: the current frame is ended and the member's bytes (with their tar
  padding) are written as a zstd frame made only of raw blocks (RFC 8878,
  section 3.1.1.2, ``Block_Type`` 0, at most 128 KiB each); the next tar
  header starts a new compressed frame;
- gzip: the current gzip member is finished and the data goes into a new
  gzip member compressed with deflate level 0 (stored blocks).

Concatenated zstd frames and gzip members are one valid stream for
``zstd -d``, ``gzip -d`` and ``tar``; the result is a byte-for-byte
ordinary tar.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import stat as stat_mod
import struct
import threading
import zlib
from dataclasses import dataclass, field

import zstandard

from ..errors import DumpError, StreamCryptError
from .extract import check_member_name
from .sampling import SAMPLE_SIZE, should_store
from .tar import (
    BLOCK,
    COMPRESSIONS,
    PART_SUFFIX,
    ZSTD_MAGIC,
    block_padding,
    end_of_archive,
    tar_header,
)

_logger = logging.getLogger(__name__)

ZSTD_RAW_BLOCK = 128 * 1024  # Block_Maximum_Size: min(Window_Size, 128 KiB)
DEFAULT_PART_SIZE = 32 * 1024 * 1024

# A zstd frame header with no content size, no checksum, no dictionary:
# Frame_Header_Descriptor 0x00 (Single_Segment_flag 0, so a Window_Descriptor
# follows), Window_Descriptor 0x38 (exponent 7, mantissa 0: 2**17 = 128 KiB).
_RAW_FRAME_HEADER = ZSTD_MAGIC + b"\x00\x38"


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class MemberInfo:
    name: str
    size: int
    sha256: str
    stored: bool  # written without compression because it already is


@dataclass(frozen=True)
class StreamInfo:
    name: str
    size: int
    sha256: str  # of the whole stream (all parts concatenated)
    parts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PayloadStats:
    compression: str
    members: int
    stored_members: int
    tar_bytes: int  # the uncompressed tar stream
    stored_bytes: int  # member bytes written without compression
    output_bytes: int  # bytes written to ``out``


# --------------------------------------------------------------------------
# Compression layers: each takes tar bytes, and can switch to "stored"
# --------------------------------------------------------------------------
class _CountingWriter:
    def __init__(self, out):
        self._out = out
        self.count = 0

    def write(self, data) -> int:
        self._out.write(data)
        n = len(data)
        self.count += n
        return n

    def flush(self):
        flush = getattr(self._out, "flush", None)
        if flush is not None:
            flush()


class _PlainLayer:
    def __init__(self, out):
        self._out = out

    def write(self, data):
        self._out.write(data)

    def write_stored(self, chunks, total):
        for chunk in chunks:
            self._out.write(chunk)

    def close(self):
        pass


class _ZstdLayer:
    def __init__(self, out, level, threads):
        self._out = out
        cctx = zstandard.ZstdCompressor(level=level, threads=threads)
        self._writer = cctx.stream_writer(out, closefd=False, write_return_read=True)
        self._dirty = False  # bytes written since the last frame end

    def write(self, data):
        if data:
            self._writer.write(data)
            self._dirty = True

    def _end_frame(self):
        if self._dirty:
            self._writer.flush(zstandard.FLUSH_FRAME)
            self._dirty = False

    def write_stored(self, chunks, total):
        """Write ``total`` bytes (from the ``chunks`` iterable) as raw blocks."""
        if total <= 0:
            return
        self._end_frame()
        self._out.write(_RAW_FRAME_HEADER)
        remaining = total
        for chunk in chunks:
            view = memoryview(chunk)
            pieces = []
            for start in range(0, len(view), ZSTD_RAW_BLOCK):
                block = view[start : start + ZSTD_RAW_BLOCK]
                remaining -= len(block)
                last = 1 if remaining == 0 else 0
                header = (len(block) << 3) | last  # Block_Type 0 = Raw_Block
                pieces.append(struct.pack("<I", header)[:3])
                pieces.append(block)
            if pieces:
                self._out.write(b"".join(pieces))
        if remaining != 0:
            raise StreamCryptError(
                f"internal error: stored frame announced {total} bytes, "
                f"{total - remaining} written"
            )

    def close(self):
        self._end_frame()


class _GzipLayer:
    def __init__(self, out, level):
        self._out = out
        self._level = level
        self._zobj = None

    def write(self, data):
        if not data:
            return
        if self._zobj is None:
            self._zobj = zlib.compressobj(self._level, zlib.DEFLATED, 31)
        out = self._zobj.compress(data)
        if out:
            self._out.write(out)

    def _end_member(self):
        if self._zobj is not None:
            self._out.write(self._zobj.flush(zlib.Z_FINISH))
            self._zobj = None

    def write_stored(self, chunks, total):
        if total <= 0:
            return
        self._end_member()
        zobj = zlib.compressobj(0, zlib.DEFLATED, 31)
        for chunk in chunks:
            out = zobj.compress(chunk)
            if out:
                self._out.write(out)
        self._out.write(zobj.flush(zlib.Z_FINISH))

    def close(self):
        self._end_member()


# --------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------
class PayloadWriter:
    """Write a compressed tar in one pass into the binary writable ``out``.

    ``compression``: ``"zstd"`` (default), ``"gzip"`` or ``"none"``; ``level``
    is the zstd (1-22) or gzip (1-9) level (1 by default, the engine's
    level: see ``backup.DEFAULT_LEVEL`` for why); ``threads`` the zstd worker
    threads (0: compress in the calling thread). ``close()`` ends the tar and
    the compression but does not close ``out``.
    """

    def __init__(self, out, compression="zstd", level=1, threads=0):
        if compression not in COMPRESSIONS:
            raise ValueError(
                f"unknown compression {compression!r}; use one of {COMPRESSIONS}"
            )
        self.compression = compression
        self._out = _CountingWriter(out)
        if compression == "zstd":
            self._layer = _ZstdLayer(self._out, level, threads)
        elif compression == "gzip":
            self._layer = _GzipLayer(self._out, max(1, min(level, 9)))
        else:
            self._layer = _PlainLayer(self._out)
        self._members = 0
        self._stored_members = 0
        self._tar_bytes = 0
        self._stored_bytes = 0
        self._closed = False
        self._stats = None

    # -- internals -----------------------------------------------------------
    def _check_open(self):
        if self._closed:
            raise ValueError("PayloadWriter is closed")

    def _write(self, data):
        self._layer.write(data)
        self._tar_bytes += len(data)

    def _decide(self, head: bytes) -> bool:
        return self.compression != "none" and should_store(head)

    def _emit(self, name, size, mtime, chunks, stored, digest=None) -> str:
        """Write one member whose data comes from ``chunks`` (exactly ``size``
        bytes, checked); returns the hex sha256 of the data (or updates and
        returns the running ``digest`` given)."""
        if digest is None:
            digest = hashlib.sha256()
        header = tar_header(name, size, mtime)
        counted = [0]

        def hashed():
            for chunk in chunks:
                counted[0] += len(chunk)
                if counted[0] > size:
                    raise DumpError(
                        f"{name}: more data than the {size} bytes announced"
                    )
                digest.update(chunk)
                yield chunk
            if counted[0] != size:
                raise DumpError(
                    f"{name}: {size} bytes announced but only {counted[0]} "
                    "read (the file changed while it was backed up)"
                )
            pad = block_padding(size)
            if pad:
                yield pad

        self._write(header)
        if stored:
            self._layer.write_stored(hashed(), size + len(block_padding(size)))
            self._stored_members += 1
            self._stored_bytes += size
            self._tar_bytes += size + len(block_padding(size))
        else:
            for chunk in hashed():
                self._write(chunk)
        self._members += 1
        return digest.hexdigest()

    # -- public API ----------------------------------------------------------
    def add_bytes(self, name: str, data: bytes, mtime=None) -> MemberInfo:
        """Add a member holding ``data``."""
        self._check_open()
        check_member_name(name)
        data = bytes(data)
        stored = self._decide(data[:SAMPLE_SIZE])
        sha = self._emit(name, len(data), mtime, [data] if data else [], stored)
        return MemberInfo(name, len(data), sha, stored)

    def add_file(self, name: str, path, mtime=None) -> MemberInfo:
        """Add the regular file at ``path``, read in blocks (constant memory).

        Symlinks are not followed. ``mtime`` defaults to the file's.
        Raises DumpError if the file changes size while it is read.
        """
        self._check_open()
        check_member_name(name)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            raise DumpError(f"cannot read {path}: {exc.strerror}") from exc
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            os.close(fd)
            raise DumpError(f"{path} is not a regular file")
        with os.fdopen(fd, "rb", buffering=0) as fh:
            size = st.st_size
            first = fh.read(min(size, BLOCK)) if size else b""
            stored = self._decide(first[:SAMPLE_SIZE])

            def chunks():
                if first:
                    yield first
                left = size - len(first)
                while left > 0:
                    chunk = fh.read(min(BLOCK, left))
                    if not chunk:
                        return  # short: _emit raises
                    left -= len(chunk)
                    yield chunk

            sha = self._emit(
                name, size, st.st_mtime if mtime is None else mtime, chunks(), stored
            )
        return MemberInfo(name, size, sha, stored)

    def add_stream(
        self, name: str, stream, part_size=DEFAULT_PART_SIZE, mtime=None
    ) -> StreamInfo:
        """Add a stream of unknown size (e.g. pg_dump's stdout).

        A tar header needs the size first, and no plaintext may touch the
        disk, so the stream is cut into members ``<name>.part-000001``,
        ``<name>.part-000002``, ... of at most ``part_size`` bytes (at least
        one, possibly empty); ``cat <name>.part-* > <name>`` rebuilds it. A
        reader thread keeps draining the stream (a bounded queue of 8 MiB)
        while a part is compressed, so the producer is not stalled.
        """
        self._check_open()
        check_member_name(name)
        if part_size <= 0:
            raise ValueError("part_size must be positive")
        read_size = min(BLOCK, part_size)
        feeder = _StreamFeeder(stream, read_size, max(2, (8 * BLOCK) // read_size))
        digest = hashlib.sha256()
        parts: list[str] = []
        total = 0
        stored = None
        try:
            pending = feeder.get()  # one chunk of look-ahead
            while True:
                chunks, size = [], 0
                while pending is not None and size < part_size:
                    room = part_size - size
                    if len(pending) > room:
                        chunks.append(pending[:room])
                        pending = pending[room:]
                        size += room
                    else:
                        chunks.append(pending)
                        size += len(pending)
                        pending = feeder.get()
                if stored is None:
                    stored = self._decide(_head(chunks, SAMPLE_SIZE))
                part_name = f"{name}{PART_SUFFIX}{len(parts) + 1:06d}"
                self._emit(part_name, size, mtime, chunks, stored and size > 0, digest)
                parts.append(part_name)
                total += size
                del chunks
                if pending is None:
                    break
        finally:
            feeder.stop()
        return StreamInfo(name, total, digest.hexdigest(), parts)

    def close(self) -> PayloadStats:
        """Write the tar end blocks and finish compression; ``out`` stays open."""
        if self._closed:
            return self._stats
        self._write(end_of_archive(self._tar_bytes))
        self._layer.close()
        self._out.flush()
        self._closed = True
        self._stats = PayloadStats(
            compression=self.compression,
            members=self._members,
            stored_members=self._stored_members,
            tar_bytes=self._tar_bytes,
            stored_bytes=self._stored_bytes,
            output_bytes=self._out.count,
        )
        return self._stats

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()


def _head(chunks, n) -> bytes:
    out = []
    for chunk in chunks:
        out.append(chunk[: n - sum(map(len, out))])
        if sum(map(len, out)) >= n:
            break
    return b"".join(out)


class _StreamFeeder:
    """Reads ``stream`` in a thread into a bounded queue."""

    _EOF = object()

    def __init__(self, stream, read_size, max_chunks):
        self._stream = stream
        self._read_size = read_size
        self._queue: queue.Queue = queue.Queue(maxsize=max_chunks)
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name="payload-stream-reader", daemon=True
        )
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self):
        try:
            while not self._stopped.is_set():
                chunk = self._stream.read(self._read_size)
                if not chunk:
                    break
                if not self._put(bytes(chunk)):
                    return
        except BaseException as exc:  # handed over to the consuming thread
            self._error = exc
        self._put(self._EOF)

    def get(self):
        item = self._queue.get()
        if item is self._EOF:
            self._queue.put(self._EOF)  # stay at EOF for further calls
            if self._error is not None:
                raise DumpError(f"reading the stream failed: {self._error}") from (
                    self._error
                )
            return None
        return item

    def stop(self):
        self._stopped.set()
        # drain so a blocked put() notices the stop flag promptly
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            _logger.warning(
                "payload stream reader still blocked in read(); it ends with the stream"
            )
