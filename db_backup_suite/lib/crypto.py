"""Archive encryption for backups: the engine's single door to the crypto layer.

The keyring and the streaming format are the shared core's
(``suite_core.keyring``, ``suite_core.streamcrypt``; exports stored at rest
use them too). This module re-exports, under their own names, what the
engine needs of them (their errors are in :mod:`.errors`), and adds what is
specific to backups: the ``backup`` purpose, the payload content types, and
reading legacy unencrypted archives (a zstd or gzip tar written before
encryption existed, or with encryption turned off), which still restore but
say so.

Format description: ``docs/archive-format.md``.
"""

import hashlib
import io
from dataclasses import dataclass

from suite_core.keyring import (
    CONFIG_OPTION,
    ENV_KEYRING,
    ENV_KEYRING_FILE,
    Key,
    Keyring,
    generate_key_id,
    generate_key_line,
)
from suite_core.streamcrypt import (
    # Explicitly accept an archive of any tenant (only after the user
    # confirmed a foreign archive, or for the operator's command line).
    ANY_TENANT,
    DEFAULT_CHUNK_SIZE,
    FORMAT_VERSION,
    MAGIC,
    MIN_PASSWORD_LENGTH,
    DecryptingReader,
    EncryptingWriter,
    FormatError,
    Header,
    TruncatedError,
    VerifyReport,
    read_exact,
    read_header,
    verify,
)

__all__ = [
    "ANY_TENANT",
    "CONFIG_OPTION",
    "DEFAULT_CHUNK_SIZE",
    "ENV_KEYRING",
    "ENV_KEYRING_FILE",
    "FORMAT_VERSION",
    "MAGIC",
    "MIN_PASSWORD_LENGTH",
    "DecryptingReader",
    "EncryptingWriter",
    "Header",
    "Key",
    "Keyring",
    "VerifyReport",
    "generate_key_id",
    "generate_key_line",
    "read_exact",
    "read_header",
    "verify",
]

# Backup specifics -------------------------------------------------------------
PURPOSE = "backup"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
TAR_MAGIC = b"ustar"  # at offset 257 of a POSIX/GNU tar header
TAR_MAGIC_OFFSET = 257
#: compression name -> content type recorded in the archive header
CONTENT_TYPES = {"zstd": "tar+zstd", "gzip": "tar+gzip", "none": "tar"}
_SNIFF_SIZE = 512  # one tar block: enough for every signature above


def load_keyring(path=None, *, config_path=None, environ=None) -> Keyring:
    """The server keyring (explicit path, Odoo option, then environment)."""
    return Keyring.load(path, environ, config_path=config_path)


def content_type_for(compression: str) -> str:
    try:
        return CONTENT_TYPES[compression]
    except KeyError:
        raise ValueError(
            f"unknown compression {compression!r} (use one of: "
            f"{', '.join(CONTENT_TYPES)})"
        ) from None


def compression_of(content_type: str) -> str | None:
    """``"tar+zstd"`` -> ``"zstd"``; None for an unknown content type."""
    for name, ctype in CONTENT_TYPES.items():
        if ctype == content_type:
            return name
    return None


def encrypting_writer(
    raw,
    *,
    keyring=None,
    password=None,
    tenant: str = "",
    compression: str = "zstd",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> EncryptingWriter:
    """An :class:`EncryptingWriter` for a backup payload of ``compression``.

    ``tenant`` is the database uuid (the per-database key is derived from
    it); ``password`` instead of ``keyring`` for an off-site copy.
    """
    return EncryptingWriter(
        raw,
        keyring=keyring,
        password=password,
        tenant=tenant,
        purpose=PURPOSE,
        chunk_size=chunk_size,
        content_type=content_type_for(compression),
    )


def sniff(prefix: bytes) -> str:
    """Classify the first bytes of a file: ``encrypted`` (this suite),
    ``zstd``, ``gzip`` or ``none`` (legacy plaintext archive: compressed or
    plain tar), ``zip``, ``unknown``."""
    if prefix.startswith(MAGIC):
        return "encrypted"
    if prefix.startswith(ZSTD_MAGIC):
        return "zstd"
    if prefix.startswith(GZIP_MAGIC):
        return "gzip"
    if prefix.startswith(ZIP_MAGIC):
        return "zip"
    if prefix[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + len(TAR_MAGIC)] == TAR_MAGIC:
        return "none"
    return "unknown"


class PrefixedReader(io.RawIOBase):
    """Replays bytes already read from ``raw``, then reads ``raw`` itself.

    As returned by :func:`open_archive` for a legacy (unencrypted) archive it
    is a pass-through reader with ``encrypted = False`` and ``legacy = True``.
    ``close()`` does not close ``raw``.
    """

    encrypted = False
    header = None

    def __init__(self, prefix: bytes, raw, *, compression: str | None = None):
        super().__init__()
        self._prefix = memoryview(bytes(prefix))
        self._raw = raw
        self.compression = compression
        self.legacy = compression is not None
        self.content_type = CONTENT_TYPES.get(compression, "")
        self.plaintext_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        if not view:
            return 0
        if self._prefix:
            take = min(len(view), len(self._prefix))
            view[:take] = self._prefix[:take]
            self._prefix = self._prefix[take:]
            self.plaintext_bytes += take
            return take
        readinto = getattr(self._raw, "readinto", None)
        if readinto is not None:
            got = readinto(view) or 0
        else:
            data = self._raw.read(len(view)) or b""
            got = len(data)
            view[:got] = data
        self.plaintext_bytes += got
        return got

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if self._prefix and len(self._prefix) >= size:
            data = bytes(self._prefix[:size])
            self._prefix = self._prefix[size:]
            self.plaintext_bytes += size
            return data
        return super().read(size)


def open_archive(raw, keyring=None, password=None, *, tenant):
    """A plaintext reader for any archive of this suite, encrypted or legacy.

    Encrypted (format v1): a :class:`DecryptingReader` (header and key
    already checked; ``.encrypted`` True, ``.legacy`` False). A legacy
    unencrypted archive (zstd, gzip or plain tar): a pass-through
    :class:`PrefixedReader` with ``.encrypted`` False and ``.legacy`` True;
    the caller must tell the user the archive was not encrypted. Both have
    ``.content_type`` (``"tar+zstd"``, ``"tar+gzip"``, ``"tar"``) and ``.header``
    (None when legacy). Anything else raises :class:`FormatError`.
    """
    prefix = read_exact(raw, _SNIFF_SIZE)
    kind = sniff(prefix)
    if kind == "encrypted":
        return DecryptingReader(
            PrefixedReader(prefix, raw),
            keyring=keyring,
            password=password,
            tenant=tenant,
            purpose=PURPOSE,
        )
    if kind in ("zstd", "gzip", "none"):
        return PrefixedReader(prefix, raw, compression=kind)
    if kind == "zip":
        raise FormatError(
            "not an archive of this suite: this is a zip file (perhaps a "
            "backup made by Odoo's database manager); import it with the "
            "command line's Odoo-zip import instead"
        )
    if MAGIC.startswith(prefix) and prefix:
        raise TruncatedError("the archive ends inside its header")
    raise FormatError(
        "not an archive of this suite (empty file)"
        if not prefix
        else "not an archive of this suite (unknown file signature)"
    )


@dataclass(frozen=True)
class ArchiveCheck:
    """Result of :func:`verify_archive` (failures raise instead)."""

    encrypted: bool
    legacy: bool
    content_type: str
    header: Header | None
    chunks: int
    plaintext_bytes: int
    plaintext_sha256: str

    def as_dict(self) -> dict:
        return {
            "encrypted": self.encrypted,
            "legacy": self.legacy,
            "content_type": self.content_type,
            "header": self.header.as_dict() if self.header else None,
            "chunks": self.chunks,
            "plaintext_bytes": self.plaintext_bytes,
            "plaintext_sha256": self.plaintext_sha256,
        }


def verify_archive(raw, keyring=None, password=None, *, tenant) -> ArchiveCheck:
    """Read a whole archive: authenticate every chunk (encrypted) and hash
    the payload. A legacy archive cannot be authenticated: it is only read
    through and hashed (``encrypted`` False in the result)."""
    reader = open_archive(raw, keyring=keyring, password=password, tenant=tenant)
    digest = hashlib.sha256()
    if reader.encrypted:
        for chunk in reader.iter_chunks():
            digest.update(chunk)
        chunks = reader.chunks
    else:
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        while True:
            got = reader.readinto(view)
            if not got:
                break
            digest.update(view[:got])
        chunks = 0
    return ArchiveCheck(
        encrypted=reader.encrypted,
        legacy=reader.legacy,
        content_type=reader.content_type,
        header=reader.header,
        chunks=chunks,
        plaintext_bytes=reader.plaintext_bytes,
        plaintext_sha256=digest.hexdigest(),
    )


def describe_archive(raw) -> dict:
    """What a listing shows about an archive, without any key."""
    prefix = read_exact(raw, _SNIFF_SIZE)
    kind = sniff(prefix)
    if kind == "encrypted":
        header = read_header(PrefixedReader(prefix, raw))
        return {"encrypted": True, "legacy": False, **header.as_dict()}
    if kind in ("zstd", "gzip", "none"):
        return {
            "encrypted": False,
            "legacy": True,
            "content_type": CONTENT_TYPES[kind],
        }
    raise FormatError("not an archive of this suite (unknown file signature)")
