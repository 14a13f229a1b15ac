"""Streaming authenticated encryption, archive format v1.

One header, then chunks of AES-256-GCM. Constant memory (a few chunks),
works on non-seekable streams in both directions. The byte layout, key
derivation and error meanings are documented in ``docs/archive-format.md``;
keep the two in sync.

Guarantees, each enforced before the affected plaintext is handed out:

- a wrong key or password is reported as such before any chunk is read
  (the header carries a key commitment);
- every chunk authenticates the whole header (AAD) and its own position and
  "last" flag (nonce = 11-byte index + 1 flag byte): altered, reordered,
  duplicated or foreign chunks fail with :class:`TamperedError`;
- the stream must end with a chunk flagged "last", followed by nothing:
  anything shorter is :class:`TruncatedError`, anything longer
  :class:`TamperedError`. ``read()`` returns ``b""`` (end of file) only after
  the final chunk and the end of the raw stream were both checked.
"""

import hashlib
import hmac
import io
import logging
import os
import struct
import unicodedata
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .keyring import (
    KEY_ID_RE,
    PURPOSE_RE,
    KeyringError,
    StreamCryptError,
    SuiteError,
    UnknownKeyError,
)

_logger = logging.getLogger(__name__)

__all__ = [
    "ANY_TENANT",
    "DEFAULT_CHUNK_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "DecryptingReader",
    "EncryptingWriter",
    "FormatError",
    "Header",
    "KeyringError",
    "StreamCryptError",
    "SuiteError",
    "TamperedError",
    "TruncatedError",
    "UnknownKeyError",
    "VerifyReport",
    "WrongKeyError",
    "WrongPasswordError",
    "read_header",
    "verify",
]

# Format constants (documented in docs/archive-format.md) ----------------------
MAGIC = b"\x89OSC\r\n\x1a\n"  # PNG-style: high bit, name, CRLF, ^Z, LF
FORMAT_VERSION = 1
MODE_KEYRING = 1
MODE_PASSWORD = 2
KDF_HKDF_SHA256 = 1
KDF_SCRYPT = 2
MODES = {MODE_KEYRING: "keyring", MODE_PASSWORD: "password"}
KDFS = {KDF_HKDF_SHA256: "hkdf-sha256", KDF_SCRYPT: "scrypt"}

SALT_SIZE = 32
TAG_SIZE = 16
NONCE_SIZE = 12
COMMITMENT_SIZE = 16
CHECKSUM_SIZE = 8
FIXED_PREFIX_SIZE = len(MAGIC) + 1 + 2  # magic, version, header length
MIN_HEADER_SIZE = FIXED_PREFIX_SIZE + 2 + 1 + 4 + SALT_SIZE + 4 + 24
MAX_HEADER_SIZE = 2048
MAX_FIELD_BYTES = 255
MAX_CONTENT_TYPE_BYTES = MAX_FIELD_BYTES  # room for long MIME types

KIB = 1024
MIB = 1024 * KIB
DEFAULT_CHUNK_SIZE = MIB
MIN_CHUNK_SIZE = 64 * KIB
MAX_CHUNK_SIZE = 16 * MIB
CHUNK_PREFIX_SIZE = 4
LAST_FLAG_BIT = 0x80000000

# Password mode: scrypt, 128 * n * r bytes = 128 MiB, ~0.4 s on one core.
SCRYPT_N = 1 << 17
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAX_MEMORY = 256 * MIB  # refuse headers asking for more (no OOM)
MIN_PASSWORD_LENGTH = 8

# Every decryption names the tenant (database uuid) and the purpose it
# expects. ``ANY_TENANT`` is the one explicit way to accept another tenant:
# the command line run by the keyring's owner on the server, and a restore
# of a foreign archive after its separate confirmation.
ANY_TENANT = type(
    "AnyTenant", (), {"__repr__": lambda self: "ANY_TENANT", "__slots__": ()}
)()

_INFO_DATA_KEY = b"odoo-suite/archive-v1/data-key"
_INFO_COMMIT_KEY = b"odoo-suite/archive-v1/commitment-key"


# Errors ---------------------------------------------------------------------
class FormatError(StreamCryptError):
    """Not an archive of this suite, or a format version we do not know."""


class TruncatedError(StreamCryptError):
    """The archive ends before its final chunk (incomplete copy/upload)."""


class TamperedError(StreamCryptError):
    """Authentication failed: header or chunk altered, reordered or appended."""


class WrongKeyError(StreamCryptError):
    """The key does not open this archive."""


class WrongPasswordError(WrongKeyError):
    """The password does not open this archive."""


# Header ---------------------------------------------------------------------
@dataclass(frozen=True)
class Header:
    """A parsed, checksum-verified archive header (not yet key-verified)."""

    version: int
    mode: str  # "keyring" | "password"
    kdf: str  # "hkdf-sha256" | "scrypt"
    kdf_params: dict
    chunk_size: int
    salt: bytes = field(repr=False)
    key_id: str
    tenant: str
    purpose: str
    content_type: str
    commitment: bytes = field(repr=False)
    raw: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def encrypted(self) -> bool:
        return True

    def as_dict(self) -> dict:
        """JSON-ready description (no secret in it: salt and ids are public)."""
        return {
            "format_version": self.version,
            "mode": self.mode,
            "kdf": self.kdf,
            "kdf_params": dict(self.kdf_params),
            "chunk_size": self.chunk_size,
            "key_id": self.key_id,
            "tenant": self.tenant,
            "purpose": self.purpose,
            "content_type": self.content_type,
            "header_size": self.size,
            "salt": self.salt.hex(),
        }


def _str8(value: str, what: str, limit: int = MAX_FIELD_BYTES) -> bytes:
    data = value.encode("utf-8")
    if len(data) > limit:
        raise ValueError(f"{what} is too long ({len(data)} bytes, at most {limit})")
    return bytes([len(data)]) + data


def _check_writer_fields(purpose, tenant, content_type, chunk_size):
    if not isinstance(purpose, str) or not PURPOSE_RE.match(purpose):
        raise ValueError(
            "purpose must be 1 to 64 characters among a-z 0-9 . _ - (no '/')"
        )
    if not isinstance(tenant, str):
        raise TypeError("tenant must be a str (e.g. the database uuid)")
    if not isinstance(content_type, str) or not _printable_ascii(content_type):
        raise ValueError("content_type must be printable ASCII (e.g. 'tar+zstd')")
    if (
        not isinstance(chunk_size, int)
        or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE
    ):
        raise ValueError(
            f"chunk_size must be an int between {MIN_CHUNK_SIZE} and "
            f"{MAX_CHUNK_SIZE} bytes"
        )


def _printable_ascii(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text)


def _encode_header(
    *,
    mode,
    kdf,
    kdf_params,
    chunk_size,
    salt,
    key_id,
    tenant,
    purpose,
    content_type,
    commit_key,
) -> bytes:
    body = b"".join(
        [
            bytes([mode, kdf]),
            bytes([len(kdf_params)]) + kdf_params,
            struct.pack(">I", chunk_size),
            salt,
            _str8(key_id, "key id", 64),
            _str8(tenant, "tenant"),
            _str8(purpose, "purpose", 64),
            _str8(content_type, "content type", MAX_CONTENT_TYPE_BYTES),
        ]
    )
    total = FIXED_PREFIX_SIZE + len(body) + COMMITMENT_SIZE + CHECKSUM_SIZE
    if total > MAX_HEADER_SIZE:  # pragma: no cover - field caps prevent it
        raise ValueError("header too large")
    signed = MAGIC + bytes([FORMAT_VERSION]) + struct.pack(">H", total) + body
    commitment = hmac.digest(commit_key, signed, "sha256")[:COMMITMENT_SIZE]
    checked = signed + commitment
    return checked + hashlib.sha256(checked).digest()[:CHECKSUM_SIZE]


def read_exact(raw, size: int) -> bytes:
    """Read up to ``size`` bytes, looping over short reads; less means EOF."""
    parts = []
    missing = size
    while missing > 0:
        data = raw.read(missing)
        if not data:
            break
        parts.append(data)
        missing -= len(data)
    return b"".join(parts)


def _readinto_exact(raw, view: memoryview) -> int:
    """Fill ``view`` from ``raw`` (looping); return the count (less = EOF)."""
    total = 0
    size = len(view)
    readinto = getattr(raw, "readinto", None)
    while total < size:
        if readinto is not None:
            got = readinto(view[total:])
        else:
            data = raw.read(size - total)
            got = len(data) if data else 0
            view[total : total + got] = data or b""
        if not got:
            break
        total += got
    return total


class _Cursor:
    """Bounded reader over the header body; overruns are format errors."""

    def __init__(self, data: bytes, pos: int):
        self.data = data
        self.pos = pos

    def take(self, size: int, what: str) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise FormatError(f"archive header is malformed: {what} overruns it")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def str8(self, what: str) -> str:
        data = self.take(self.byte(what), what)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(
                f"archive header is malformed: {what} is not UTF-8"
            ) from None


def _parse_header(raw_header: bytes) -> Header:
    cur = _Cursor(raw_header, FIXED_PREFIX_SIZE)
    limit = len(raw_header) - COMMITMENT_SIZE - CHECKSUM_SIZE
    mode = cur.byte("mode")
    kdf = cur.byte("kdf")
    kdf_raw = cur.take(cur.byte("kdf parameters"), "kdf parameters")
    (chunk_size,) = struct.unpack(">I", cur.take(4, "chunk size"))
    salt = cur.take(SALT_SIZE, "salt")
    key_id = cur.str8("key id")
    tenant = cur.str8("tenant")
    purpose = cur.str8("purpose")
    content_type = cur.str8("content type")
    if cur.pos != limit:
        raise FormatError("archive header is malformed: unexpected field lengths")
    commitment = raw_header[limit : limit + COMMITMENT_SIZE]

    if mode not in MODES:
        raise FormatError(f"archive header names an unknown mode ({mode})")
    if kdf not in KDFS:
        raise FormatError(
            f"archive uses an unknown key derivation ({kdf}); a newer version "
            "of the suite is needed to open it"
        )
    if (mode, kdf) == (MODE_KEYRING, KDF_HKDF_SHA256):
        if kdf_raw or not KEY_ID_RE.match(key_id):
            raise FormatError("archive header is malformed: bad key id or kdf")
        kdf_params = {}
    elif (mode, kdf) == (MODE_PASSWORD, KDF_SCRYPT):
        if len(kdf_raw) != 8 or key_id:
            raise FormatError("archive header is malformed: bad scrypt parameters")
        n, r, p = struct.unpack(">IHH", kdf_raw)
        if (
            n < 2
            or n & (n - 1)
            or not 1 <= r <= 64
            or not 1 <= p <= 16
            or 128 * n * r > SCRYPT_MAX_MEMORY
            or n * r * p > (SCRYPT_MAX_MEMORY // 128) * 4
        ):
            raise FormatError(
                f"archive asks for scrypt parameters n={n} r={r} p={p} beyond "
                f"what this suite accepts (at most {SCRYPT_MAX_MEMORY // MIB} MiB)"
            )
        kdf_params = {"n": n, "r": r, "p": p}
    else:
        raise FormatError("archive header is malformed: mode and kdf do not match")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise FormatError(f"archive header has an invalid chunk size ({chunk_size})")
    if not PURPOSE_RE.match(purpose):
        raise FormatError("archive header is malformed: bad purpose")
    if not _printable_ascii(content_type):
        raise FormatError("archive header is malformed: bad content type")
    return Header(
        version=FORMAT_VERSION,
        mode=MODES[mode],
        kdf=KDFS[kdf],
        kdf_params=kdf_params,
        chunk_size=chunk_size,
        salt=salt,
        key_id=key_id,
        tenant=tenant,
        purpose=purpose,
        content_type=content_type,
        commitment=commitment,
        raw=raw_header,
    )


def read_header(raw) -> Header:
    """Read and parse the header at the current position of ``raw``.

    Needs no key: for listings and wizards. Checks magic, version, bounds and
    the header checksum (accidental damage); the key commitment is checked by
    :class:`DecryptingReader`. Leaves ``raw`` positioned on the first chunk.
    """
    prefix = read_exact(raw, FIXED_PREFIX_SIZE)
    if len(prefix) < len(MAGIC):
        if MAGIC.startswith(prefix) and prefix:
            raise TruncatedError("the archive ends inside its header")
        raise FormatError(
            "not an archive of this suite (empty or too short)"
            if not prefix
            else "not an archive of this suite (unknown file signature)"
        )
    if prefix[: len(MAGIC)] != MAGIC:
        raise FormatError("not an archive of this suite (unknown file signature)")
    if len(prefix) == len(MAGIC):
        raise TruncatedError("the archive ends inside its header")
    version = prefix[len(MAGIC)]  # checked first: later versions may differ
    if version != FORMAT_VERSION:
        if version > FORMAT_VERSION:
            raise FormatError(
                f"archive format version {version} is newer than this suite "
                f"supports (version {FORMAT_VERSION}); a newer version of the "
                "suite is needed to open it"
            )
        raise FormatError(f"archive format version {version} is invalid")
    if len(prefix) < FIXED_PREFIX_SIZE:
        raise TruncatedError("the archive ends inside its header")
    (total,) = struct.unpack(">H", prefix[len(MAGIC) + 1 :])
    if not MIN_HEADER_SIZE <= total <= MAX_HEADER_SIZE:
        raise TamperedError(
            f"the archive header is damaged (declared size {total} bytes)"
        )
    rest = read_exact(raw, total - FIXED_PREFIX_SIZE)
    if len(rest) < total - FIXED_PREFIX_SIZE:
        raise TruncatedError("the archive ends inside its header")
    raw_header = prefix + rest
    body, checksum = raw_header[:-CHECKSUM_SIZE], raw_header[-CHECKSUM_SIZE:]
    if not hmac.compare_digest(hashlib.sha256(body).digest()[:CHECKSUM_SIZE], checksum):
        raise TamperedError("the archive header is damaged (checksum mismatch)")
    return _parse_header(raw_header)


# Keys -----------------------------------------------------------------------
def _password_bytes(password) -> bytes:
    if isinstance(password, str):
        return unicodedata.normalize("NFC", password).encode("utf-8")
    if isinstance(password, bytes | bytearray | memoryview):
        return bytes(password)
    raise TypeError("password must be str or bytes")


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password)


def _subkeys(secret: bytes) -> tuple[bytes, bytes]:
    def expand(info):
        return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=info).derive(
            secret
        )

    return expand(_INFO_DATA_KEY), expand(_INFO_COMMIT_KEY)


def _archive_secret(header: Header, keyring, password) -> bytes:
    if header.mode == "keyring":
        if keyring is None:
            raise UnknownKeyError(
                f"this archive is encrypted with server key {header.key_id!r} "
                "and no keyring is configured"
            )
        keyring.get(header.key_id)  # UnknownKeyError naming the ids we hold
        return keyring.derive(
            header.purpose, header.tenant, header.salt, key_id=header.key_id
        )
    if password is None or not _password_bytes(password):
        raise WrongPasswordError(
            "this archive is protected by a password and none was given"
        )
    params = header.kdf_params
    return _scrypt(
        _password_bytes(password), header.salt, params["n"], params["r"], params["p"]
    )


def _check_expectation(tenant, purpose) -> None:
    """Refuse a decryption that does not say what it expects."""
    if not isinstance(purpose, str) or not PURPOSE_RE.match(purpose):
        raise TypeError("purpose must name the kind of blob expected")
    if tenant is not ANY_TENANT and not isinstance(tenant, str):
        raise TypeError("tenant must be the expected tenant (str) or ANY_TENANT")


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(NONCE_SIZE - 1, "big") + (b"\x01" if last else b"\x00")


# Writer ---------------------------------------------------------------------
class EncryptingWriter(io.BufferedIOBase):
    """Write-only file object encrypting into ``raw`` (format v1).

    Exactly one of ``keyring`` (server keyring: the active key encrypts, the
    sub-key is bound to ``purpose`` and ``tenant``) or ``password`` (scrypt).
    The header is written at once; ``close()`` writes the final chunk and
    flushes ``raw`` but does not close it. Used as a context manager, an
    exception (or :meth:`abort`, or garbage collection without ``close()``)
    leaves the output without its final chunk: readers report it truncated.
    """

    def __init__(
        self,
        raw,
        *,
        keyring=None,
        tenant: str = "",
        password=None,
        purpose: str = "backup",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        content_type: str = "",
        key_id: str | None = None,
    ):
        super().__init__()
        self._finished = True  # until fully set up: nothing to finalize
        if (keyring is None) == (password is None):
            raise ValueError("give exactly one of keyring= or password=")
        _check_writer_fields(purpose, tenant, content_type, chunk_size)
        salt = os.urandom(SALT_SIZE)
        if keyring is not None:
            key = keyring.get(key_id) if key_id else keyring.active
            secret = keyring.derive(purpose, tenant, salt, key_id=key.key_id)
            mode, kdf, kdf_params, used_id = (
                MODE_KEYRING,
                KDF_HKDF_SHA256,
                b"",
                key.key_id,
            )
        else:
            pw = _password_bytes(password)
            if len(pw) < MIN_PASSWORD_LENGTH:
                raise ValueError(
                    f"the password is too short (at least {MIN_PASSWORD_LENGTH} "
                    "characters)"
                )
            secret = _scrypt(pw, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
            mode, kdf, used_id = MODE_PASSWORD, KDF_SCRYPT, ""
            kdf_params = struct.pack(">IHH", SCRYPT_N, SCRYPT_R, SCRYPT_P)
        data_key, commit_key = _subkeys(secret)
        raw_header = _encode_header(
            mode=mode,
            kdf=kdf,
            kdf_params=kdf_params,
            chunk_size=chunk_size,
            salt=salt,
            key_id=used_id,
            tenant=tenant,
            purpose=purpose,
            content_type=content_type,
            commit_key=commit_key,
        )
        self.header = _parse_header(raw_header)
        self._raw = raw
        self._aes = algorithms.AES(data_key)
        self._chunk_size = chunk_size
        self._buffer = bytearray(chunk_size)
        self._view = memoryview(self._buffer)
        # One reusable output frame: length word, ciphertext, tag (+15 bytes
        # of slack that ``update_into`` requires). No allocation per chunk.
        self._frame = bytearray(CHUNK_PREFIX_SIZE + chunk_size + TAG_SIZE + 15)
        self._frame_view = memoryview(self._frame)
        self._fill = 0
        self._index = 0
        self._broken = False
        self.plaintext_bytes = 0
        self.ciphertext_bytes = 0
        self._write_raw(raw_header)
        self._finished = False

    # file-object protocol -----------------------------------------------------
    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.plaintext_bytes

    @property
    def chunks(self) -> int:
        """Chunks written so far."""
        return self._index

    def write(self, data) -> int:
        if self.closed:
            raise ValueError("write to a closed EncryptingWriter")
        if self._broken:
            raise StreamCryptError(
                "an earlier write to the destination failed; the encrypted "
                "output is incomplete and cannot be continued"
            )
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        size = len(view)
        chunk_size = self._chunk_size
        pos = 0
        if self._fill:
            take = min(chunk_size - self._fill, size)
            self._buffer[self._fill : self._fill + take] = view[:take]
            self._fill += take
            pos = take
            if self._fill == chunk_size:
                self._emit(self._view, last=False)
                self._fill = 0
        while size - pos >= chunk_size:
            self._emit(view[pos : pos + chunk_size], last=False)
            pos += chunk_size
        if pos < size:
            rest = size - pos
            self._buffer[self._fill : self._fill + rest] = view[pos:]
            self._fill += rest
        self.plaintext_bytes += size
        return size

    def flush(self):
        if self.closed or self._broken:
            return
        flush = getattr(self._raw, "flush", None)
        if flush is not None:
            flush()

    def close(self):
        """Write the final chunk (completing the archive) and flush ``raw``."""
        if self.closed:
            return
        try:
            if not self._finished and not self._broken:
                self._emit(self._view[: self._fill], last=True)
                self._fill = 0
                self._finished = True
                self.flush()
        finally:
            self._finished = True
            super().close()

    def abort(self):
        """Close without the final chunk: the output stays detectably cut."""
        if not self.closed:
            self._finished = True
            super().close()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        else:
            self.close()
        return False

    def __del__(self):
        # io.IOBase.__del__ would call close() and seal an abandoned stream.
        if not getattr(self, "_finished", True):
            _logger.warning(
                "EncryptingWriter garbage-collected without close(): the "
                "output was left without its final chunk (incomplete)"
            )
            self._finished = True

    # internals ----------------------------------------------------------------
    def _emit(self, plaintext, last: bool):
        size = len(plaintext)
        frame = self._frame_view
        encryptor = Cipher(self._aes, modes.GCM(_nonce(self._index, last))).encryptor()
        encryptor.authenticate_additional_data(self.header.raw)
        end = CHUNK_PREFIX_SIZE
        if size:
            end += encryptor.update_into(plaintext, frame[CHUNK_PREFIX_SIZE:])
        encryptor.finalize()
        if end != CHUNK_PREFIX_SIZE + size:  # pragma: no cover - GCM is a stream
            raise StreamCryptError("AES-GCM produced an unexpected length")
        frame[end : end + TAG_SIZE] = encryptor.tag
        struct.pack_into(">I", self._frame, 0, size | (LAST_FLAG_BIT if last else 0))
        # ``raw`` must not keep the view after write() returns (io contract).
        self._write_raw(frame[: end + TAG_SIZE])
        self._index += 1

    def _write_raw(self, data: bytes):
        view = memoryview(data)
        total = len(view)
        done = 0
        try:
            while done < total:
                written = self._raw.write(view[done:] if done else view)
                if written is None:  # file-likes that return nothing wrote all
                    written = total - done
                if written <= 0:
                    raise OSError("the destination accepted no data")
                done += written
        except BaseException:
            self._broken = True
            raise
        self.ciphertext_bytes += total


# Reader ---------------------------------------------------------------------
class DecryptingReader(io.BufferedIOBase):
    """Read-only file object decrypting a format-v1 stream from ``raw``.

    The header and the key (commitment) are checked in the constructor, so a
    wrong key or password raises before any chunk is read. ``tenant`` and
    ``purpose`` are required and must match the header: an archive of
    another database or another kind is refused before any key is derived.
    ``tenant=ANY_TENANT`` accepts any tenant, explicitly. ``close()`` does
    not close ``raw``. Once an error was raised, every later read raises it again.
    """

    encrypted = True
    legacy = False

    def __init__(
        self,
        raw,
        *,
        keyring=None,
        password=None,
        tenant,
        purpose: str,
        header: Header | None = None,
    ):
        super().__init__()
        _check_expectation(tenant, purpose)
        self._raw = raw
        self.header = header if header is not None else read_header(raw)
        h = self.header
        if h.purpose != purpose:
            raise FormatError(
                f"this is a {h.purpose!r} archive, not a {purpose!r} archive"
            )
        if tenant is not ANY_TENANT and h.tenant != tenant:
            raise WrongKeyError(
                f"this archive belongs to {h.tenant!r}, not to {tenant!r}"
            )
        secret = _archive_secret(h, keyring, password)
        data_key, commit_key = _subkeys(secret)
        signed = h.raw[: -(COMMITMENT_SIZE + CHECKSUM_SIZE)]
        expected = hmac.digest(commit_key, signed, "sha256")[:COMMITMENT_SIZE]
        if not hmac.compare_digest(expected, h.commitment):
            if h.mode == "password":
                raise WrongPasswordError("the password does not open this archive")
            key = keyring.get(h.key_id)
            raise WrongKeyError(
                f"server key {h.key_id!r} (fingerprint {key.fingerprint}) does "
                "not open this archive: the keyring holds a different key under "
                "that id, or the archive header was deliberately altered"
            )
        self._aead = AESGCM(data_key)
        self._inbuf = bytearray(h.chunk_size + TAG_SIZE)
        self._inview = memoryview(self._inbuf)
        self._out = memoryview(b"")
        self._pos = 0
        self._index = 0
        self._eof = False
        self._error: StreamCryptError | None = None
        self.plaintext_bytes = 0
        self.ciphertext_bytes = h.size
        self._delivered = 0

    @property
    def content_type(self) -> str:
        return self.header.content_type

    @property
    def chunks(self) -> int:
        """Chunks authenticated so far."""
        return self._index

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._delivered

    # chunk machinery --------------------------------------------------------
    def _next_chunk(self) -> bool:
        """Decrypt the next chunk into ``_out``; False at verified end."""
        if self._error is not None:
            raise type(self._error)(*self._error.args)
        if self._eof:
            return False
        try:
            self._out = memoryview(self._decrypt_next())
        except StreamCryptError as exc:
            self._error = exc
            raise
        self._pos = 0
        return True

    def _decrypt_next(self) -> bytes:
        index = self._index
        h = self.header
        prefix = read_exact(self._raw, CHUNK_PREFIX_SIZE)
        if not prefix:
            raise TruncatedError(
                f"the archive ends after chunk {index - 1} without its final "
                "chunk (incomplete copy or upload)"
                if index
                else "the archive ends right after its header (no data chunk)"
            )
        if len(prefix) < CHUNK_PREFIX_SIZE:
            raise TruncatedError(f"the archive ends inside chunk {index}")
        self.ciphertext_bytes += CHUNK_PREFIX_SIZE
        (word,) = struct.unpack(">I", prefix)
        last = bool(word & LAST_FLAG_BIT)
        length = word & ~LAST_FLAG_BIT
        if length > h.chunk_size or (not last and length != h.chunk_size):
            raise TamperedError(
                f"chunk {index} is damaged (invalid length field {length})"
            )
        size = length + TAG_SIZE
        got = _readinto_exact(self._raw, self._inview[:size])
        self.ciphertext_bytes += got
        if got < size:
            raise TruncatedError(
                f"the archive ends inside chunk {index} ({got} of {size} bytes present)"
            )
        try:
            plaintext = self._aead.decrypt(
                _nonce(index, last), self._inview[:size], h.raw
            )
        except InvalidTag:
            raise TamperedError(
                f"chunk {index} failed authentication: the archive was altered, "
                "its chunks reordered, or the chunk comes from another archive"
            ) from None
        if last:
            extra = self._raw.read(1)
            if extra:
                raise TamperedError(f"unexpected data after the final chunk ({index})")
            self._eof = True
        self._index += 1
        self.plaintext_bytes += length
        return plaintext

    def _available(self) -> int:
        return len(self._out) - self._pos

    # file-object protocol -----------------------------------------------------
    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("read from a closed DecryptingReader")
        if size is None or size < 0:
            return self.readall()
        if size == 0:
            return b""
        if self._available() >= size:
            data = bytes(self._out[self._pos : self._pos + size])
            self._pos += size
            self._delivered += size
            return data
        parts = []
        missing = size
        while missing:
            if not self._available() and not self._next_chunk():
                break
            take = min(missing, self._available())
            parts.append(self._out[self._pos : self._pos + take])
            self._pos += take
            missing -= take
        data = b"".join(parts)
        self._delivered += len(data)
        return data

    def readall(self) -> bytes:
        parts = [bytes(self._out[self._pos :])]
        self._pos = len(self._out)
        while self._next_chunk():
            parts.append(self._out)
            self._pos = len(self._out)
        data = b"".join(parts)
        self._delivered += len(data)
        return data

    def read1(self, size: int = -1) -> bytes:
        if self.closed:
            raise ValueError("read from a closed DecryptingReader")
        if not self._available() and not self._next_chunk():
            return b""
        if size is None or size < 0:
            size = self._available()
        take = min(size, self._available())
        data = bytes(self._out[self._pos : self._pos + take])
        self._pos += take
        self._delivered += take
        return data

    def readinto(self, buffer) -> int:
        if self.closed:
            raise ValueError("read from a closed DecryptingReader")
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view):
            if not self._available() and not self._next_chunk():
                break
            take = min(len(view) - done, self._available())
            view[done : done + take] = self._out[self._pos : self._pos + take]
            self._pos += take
            done += take
        self._delivered += done
        return done

    def readinto1(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        if not view:
            return 0
        if not self._available() and not self._next_chunk():
            return 0
        take = min(len(view), self._available())
        view[:take] = self._out[self._pos : self._pos + take]
        self._pos += take
        self._delivered += take
        return take

    def iter_chunks(self):
        """Yield the remaining plaintext as memoryviews, one per chunk
        (no copy; each view is valid until the next iteration)."""
        if self._available():
            rest = self._out[self._pos :]
            self._pos = len(self._out)
            self._delivered += len(rest)
            yield rest
        while self._next_chunk():
            self._pos = len(self._out)
            self._delivered += len(self._out)
            yield self._out


# Verify ---------------------------------------------------------------------
@dataclass(frozen=True)
class VerifyReport:
    """Outcome of a successful :func:`verify` (failures raise instead)."""

    header: Header
    chunks: int
    plaintext_bytes: int
    ciphertext_bytes: int
    plaintext_sha256: str

    def as_dict(self) -> dict:
        return {
            "header": self.header.as_dict(),
            "chunks": self.chunks,
            "plaintext_bytes": self.plaintext_bytes,
            "ciphertext_bytes": self.ciphertext_bytes,
            "plaintext_sha256": self.plaintext_sha256,
        }


def verify(raw, keyring=None, password=None, *, tenant, purpose: str):
    """Authenticate the whole stream; return a :class:`VerifyReport`.

    Raises the same errors as :class:`DecryptingReader` on any problem.
    """
    reader = DecryptingReader(
        raw, keyring=keyring, password=password, tenant=tenant, purpose=purpose
    )
    digest = hashlib.sha256()
    for chunk in reader.iter_chunks():
        digest.update(chunk)
    return VerifyReport(
        header=reader.header,
        chunks=reader.chunks,
        plaintext_bytes=reader.plaintext_bytes,
        ciphertext_bytes=reader.ciphertext_bytes,
        plaintext_sha256=digest.hexdigest(),
    )
