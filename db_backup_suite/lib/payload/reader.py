"""The payload reader: the members of a payload (zstd, gzip or plain tar),
read sequentially from a non-seekable input, each checked (type and name)
before it is handed out; a stream cut into ``.part-NNNNNN`` members read
back as one.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard

from ..crypto import read_exact
from ..errors import FormatError
from .extract import check_member_type, clean_member_name, extract_member
from .tar import BLOCK, COMPRESSIONS, GZIP_MAGIC, ZSTD_MAGIC, part_base


class _PrefixedReader(io.RawIOBase):
    """A readable that first returns ``prefix``, then reads ``raw``."""

    def __init__(self, prefix: bytes, raw):
        self._prefix = prefix
        self._raw = raw

    def readable(self):
        return True

    def readinto(self, buf):
        if self._prefix:
            n = min(len(buf), len(self._prefix))
            buf[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._raw.read(len(buf))
        if not data:
            return 0
        n = len(data)
        buf[:n] = data
        return n


def detect_compression(head: bytes) -> str:
    """``"zstd"``, ``"gzip"`` or ``"none"`` from the first bytes of a payload."""
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    return "none"


@dataclass
class PayloadMember:
    """One member of the payload, read sequentially.

    ``type`` is ``"file"`` or ``"dir"``; ``stream`` is a readable bounded to
    the member's data, valid until the next member is requested.
    """

    name: str
    size: int
    type: str
    mode: int
    mtime: float
    stream: object = None

    def read(self, n=-1) -> bytes:
        return self.stream.read(n) if self.stream is not None else b""


class PayloadReader:
    """Iterate the members of a payload sequentially (non-seekable input OK).

    ``compression``: ``"zstd"``, ``"gzip"``, ``"none"`` or None to detect it
    from the magic bytes. Reads across zstd frames and gzip members. Any
    member that is a link, device, FIFO or sparse file, or whose name is not
    a safe relative path, raises StreamCryptError.
    """

    def __init__(self, inp, compression=None):
        head = read_exact(inp, 4)
        detected = detect_compression(head)
        if compression is None:
            compression = detected
        elif compression not in COMPRESSIONS:
            raise ValueError(f"unknown compression {compression!r}")
        elif compression != "none" and detected != compression:
            raise FormatError(
                f"the payload is not {compression}-compressed "
                f"(it looks like {detected})"
            )
        self.compression = compression
        raw = io.BufferedReader(_PrefixedReader(head, inp), BLOCK)
        if compression == "zstd":
            dctx = zstandard.ZstdDecompressor()
            self._stream = dctx.stream_reader(
                raw, read_size=BLOCK, read_across_frames=True, closefd=False
            )
        elif compression == "gzip":
            import gzip

            self._stream = gzip.GzipFile(fileobj=raw, mode="rb")
        else:
            self._stream = raw
        try:
            self._tar = tarfile.open(  # noqa: SIM115 (closed by close())
                fileobj=self._stream, mode="r|", bufsize=BLOCK, encoding="utf-8"
            )
        except (tarfile.TarError, zstandard.ZstdError, OSError, EOFError) as exc:
            raise FormatError(f"the payload is not a readable tar: {exc}") from exc

    def __iter__(self) -> Iterator[PayloadMember]:
        while True:
            try:
                info = self._tar.next()
            except (tarfile.TarError, zstandard.ZstdError, OSError, EOFError) as exc:
                raise FormatError(f"damaged payload: {exc}") from exc
            if info is None:
                return
            yield self._member(info)

    def _member(self, info: tarfile.TarInfo) -> PayloadMember:
        check_member_type(info)
        clean_member_name(info.name)
        if info.isdir():
            return PayloadMember(info.name, 0, "dir", info.mode, info.mtime)
        stream = _GuardedReader(self._tar.extractfile(info), info.name)
        return PayloadMember(
            info.name, info.size, "file", info.mode, info.mtime, stream
        )

    def members(self) -> Iterator[PayloadMember]:
        return iter(self)

    def logical_members(self) -> Iterator[PayloadMember]:
        """Like iterating, but consecutive ``<name>.part-NNNNNN`` members are
        joined into one member ``<name>`` whose stream reads all of them
        (``size`` is then -1: unknown until read)."""
        it = iter(self)
        pending = None
        while True:
            member = pending if pending is not None else next(it, None)
            pending = None
            if member is None:
                return
            base = part_base(member.name, 1)
            if base is None:
                yield member
                continue
            joined = _JoinedParts(base, member, it)
            yield PayloadMember(base, -1, "file", member.mode, member.mtime, joined)
            pending = joined.finish()

    def extract_all(self, root, *, only=None) -> list[Path]:
        """Extract every member (or those whose name ``only(name)`` accepts)
        under the directory ``root``; never follows or creates a symlink and
        never overwrites an existing file. Returns the paths written."""
        written = []
        for member in self:
            if only is not None and not only(member.name):
                continue
            written.append(extract_member(root, member))
        return written

    def close(self):
        self._tar.close()
        self._stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _GuardedReader(io.RawIOBase):
    """Turns decompression/tar errors inside member data into ArchiveErrors."""

    def __init__(self, fileobj, name):
        self._f = fileobj
        self._name = name

    def readable(self):
        return True

    def read(self, n=-1):
        try:
            data = self._f.read(n)
        except (tarfile.TarError, zstandard.ZstdError, OSError, EOFError) as exc:
            raise FormatError(f"damaged payload in {self._name}: {exc}") from exc
        return data

    def readinto(self, buf):
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


class _JoinedParts(io.RawIOBase):
    def __init__(self, base, first, it):
        self._base = base
        self._current = first
        self._index = 1
        self._it = it
        self._after = None  # the first member that is not one of our parts
        self.size = 0

    def readable(self):
        return True

    def _advance(self) -> bool:
        nxt = next(self._it, None)
        if nxt is not None and part_base(nxt.name, self._index + 1) == self._base:
            self._current = nxt
            self._index += 1
            return True
        self._after = nxt
        self._current = None
        return False

    def read(self, n=-1):
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(BLOCK), b""))
        while self._current is not None:
            data = self._current.read(n)
            if data:
                self.size += len(data)
                return data
            if not self._advance():
                break
        return b""

    def readinto(self, buf):
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def finish(self):
        """Skip unread parts; return the member that follows them (or None)."""
        while self._current is not None:
            self._advance()
        return self._after
