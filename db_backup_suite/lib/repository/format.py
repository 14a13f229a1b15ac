"""Byte layouts and keys of the incremental repository (format v1).

Everything that is written to a destination goes through this module:
sealed objects (config, index, snapshot, lock, pack header), encrypted
blobs inside packs, and the binary records of index files, pack headers and
list blobs. ``docs/repository-format.md`` documents the same layouts; keep
the two in sync (``tests/db_backup_suite/repository/test_known_answers.py`` pins them).

All integers are unsigned big-endian.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import struct
import threading
from dataclasses import dataclass

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from ..errors import (
    FormatError,
    KeyringError,
    TamperedError,
    TruncatedError,
    WrongKeyError,
)

FORMAT_VERSION = 1

# Sealed objects -------------------------------------------------------------
#: ``\x89OSR``: high bit set, "Odoo Suite Repository".
OBJECT_MAGIC = b"\x89OSR"
TYPE_CONFIG = b"C"
TYPE_INDEX = b"I"
TYPE_SNAPSHOT = b"S"
TYPE_LOCK = b"L"
TYPE_PACK_HEADER = b"H"
#: object type -> the purpose its key is derived for (Keyring.derive)
PURPOSES = {
    TYPE_CONFIG: "repo-config",
    TYPE_INDEX: "repo-index",
    TYPE_SNAPSHOT: "repo-snapshot",
    TYPE_LOCK: "repo-lock",
    TYPE_PACK_HEADER: "repo-pack",
}
PURPOSE_PACK = "repo-pack"
PURPOSE_ID = "repo-id"
PURPOSE_CHUNKER = "repo-chunker"
NONCE_SIZE = 12
TAG_SIZE = 16
COMMIT_SIZE = 16
_INFO_ENC = b"odoo-suite/repo-v1/enc"
_INFO_COMMIT = b"odoo-suite/repo-v1/commit"
#: Largest sealed object a reader accepts (an index file holds at most
#: MAX_INDEX_ENTRIES entries, a snapshot a few hundred KiB of JSON).
MAX_OBJECT_SIZE = 64 * 1024 * 1024

# Blobs ----------------------------------------------------------------------
BLOB_DATA = 0  # dump chunks, filestore file chunks
BLOB_TREE = 1  # list blobs (the dump's blob list, the filestore tree)
BLOB_TYPES = (BLOB_DATA, BLOB_TREE)
FLAG_ZSTD = 0x01
BLOB_AAD_MAGIC = b"OSRB"
BLOB_OVERHEAD = NONCE_SIZE + TAG_SIZE
#: Largest plaintext blob (the chunker's maximum; list blobs stay smaller).
MAX_BLOB_SIZE = 1024 * 1024

# Index and pack header records ---------------------------------------------
ENTRY = struct.Struct(">32sBBIII")  # id, type, flags, offset, stored, raw
ENTRY_SIZE = ENTRY.size  # 46
INDEX_MAGIC = b"IDX1"
PACK_HEADER_MAGIC = b"PKH1"
PACK_TRAILER = struct.Struct(">I")  # length of the sealed pack header
MAX_INDEX_ENTRIES = 65536
MAX_PACK_SIZE = 1 << 31

# List blobs -----------------------------------------------------------------
LIST_MAGIC = b"LST1"
LIST_DUMP = b"D"
LIST_FILES = b"F"
LIST_MAX_BYTES = 512 * 1024
#: a list blob ends after a record whose cut value is 0 modulo this
#: (content-defined, so an unchanged run of the filestore tree gives the
#: same list blobs from one snapshot to the next and is stored once)
LIST_CUT = {LIST_DUMP: 512, LIST_FILES: 128}
_DUMP_RECORD = struct.Struct(">32sI")
_FILE_HEAD = struct.Struct(">H")
_FILE_META = struct.Struct(">QQ32sI")  # size, mtime_ns, sha256, n blobs

# Chunker --------------------------------------------------------------------
# FastCDC 2020 (pyfastcdc, normalized chunking level 1, gear table XORed with
# a per-repository secret seed). Chosen by measurement on a real dump,
# ``python3 /tmp/cdcbench.py dump1 dump2`` where dump1 is ``pg_dump -Fc -Z0``
# of the test fixture's Odoo-shaped database with 400,000 partners (120 MB)
# and dump2 the same after ``UPDATE res_partner ... WHERE random() < 0.01``,
# on the 2-core reference machine:
#
#   avg 256 KiB     pyfastcdc: 2,817 MB/s cut only, 1,038 MB/s with sha256
#                   fastcdc 1.7 (iscc): 2,194 MB/s cut only, 251 MB/s with
#                   sha256 (``fat=True`` copies every chunk; no stream API:
#                   the whole input must be in memory or mmap-ed)
#   new data after the 1 % edit (chunks not in the first dump):
#                   avg 8 KiB 52.0 MB, 16 KiB 71.4 MB, 64 KiB 94.9 MB,
#                   256 KiB 97.8 MB, 1 MiB 99.7 MB of 120 MB raw;
#                   zstd-1 per chunk stored 6.9 / 8.9 / 11.2 / 11.4 / 11.9 MB
#
# pyfastcdc: streaming (reads a pipe with readinto), cuts without the GIL,
# and takes a gear seed, so chunk boundaries depend on a secret and the
# destination cannot fingerprint known content by chunk sizes. An edit
# spread over a table touches most chunks whatever their size (rows move
# to the table's end on UPDATE); below 64 KiB the gain is real but the
# index grows 4-16x; 256 KiB average (64 KiB min, 1 MiB max) keeps the
# index small and costs 3 % more new data than 64 KiB on that edit.
CHUNK_MIN = 64 * 1024
CHUNK_AVG = 256 * 1024
CHUNK_MAX = 1024 * 1024
CHUNK_NORMALIZATION = 1

HEX64 = re.compile(r"[0-9a-f]{64}\Z")


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------
def hkdf_expand(key: bytes, info: bytes) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=info).derive(key)


class RepoKeys:
    """The sub-keys of one repository, derived from the server keyring.

    ``tenant`` is the database uuid; ``salt`` the repository's random salt
    (from its config; ``b""`` for the config itself); ``id_key_id`` the key
    id whose sub-keys name blobs and seed the chunker (fixed for the life of
    the repository, so deduplication survives a key rotation).
    """

    def __init__(self, keyring, tenant: str, salt: bytes = b"", id_key_id=None):
        if keyring is None:
            raise KeyringError(
                "the incremental repository needs the server keyring "
                "(password mode is for single-archive downloads only)"
            )
        if not isinstance(tenant, str):
            raise TypeError("tenant must be a str (the database uuid)")
        self.keyring = keyring
        self.tenant = tenant
        self.salt = bytes(salt)
        self.id_key_id = id_key_id
        self._cache: dict = {}

    @property
    def active_key_id(self) -> str:
        return self.keyring.active.key_id

    def purpose_key(self, purpose: str, key_id: str, salt: bytes | None = None):
        """(encryption key, commitment key) for ``purpose`` under ``key_id``."""
        salt = self.salt if salt is None else salt
        cache_key = (purpose, key_id, salt)
        found = self._cache.get(cache_key)
        if found is None:
            secret = self.keyring.derive(purpose, self.tenant, salt, key_id)
            found = (hkdf_expand(secret, _INFO_ENC), hkdf_expand(secret, _INFO_COMMIT))
            self._cache[cache_key] = found
        return found

    def _id_secret(self, purpose: str) -> bytes:
        if self.id_key_id is None:
            raise ValueError("the repository config is not loaded")
        cache_key = ("id", purpose)
        found = self._cache.get(cache_key)
        if found is None:
            found = self.keyring.derive(purpose, self.tenant, self.salt, self.id_key_id)
            self._cache[cache_key] = found
        return found

    def blob_id(self, btype: int, sha256_digest: bytes) -> bytes:
        """``HMAC-SHA256(id key, type || SHA-256(plaintext))``."""
        return hmac.digest(
            self._id_secret(PURPOSE_ID), bytes([btype]) + sha256_digest, "sha256"
        )

    def chunker_seed(self) -> int:
        """63-bit secret seed of the chunker's gear table."""
        secret = self._id_secret(PURPOSE_CHUNKER)
        return int.from_bytes(secret[:8], "big") & ((1 << 63) - 1)


# ---------------------------------------------------------------------------
# Sealed objects
# ---------------------------------------------------------------------------
def _kid_bytes(key_id: str) -> bytes:
    data = key_id.encode("ascii")
    if not 1 <= len(data) <= 32:
        raise ValueError("invalid key id")
    return data


def seal(keys: RepoKeys, otype: bytes, plaintext: bytes, *, salt=None) -> bytes:
    """``prefix || commitment || AES-256-GCM(zstd(plaintext))``.

    prefix = magic(4) || type(1) || version(1) || len(key id)(1) || key id ||
    nonce(12); commitment = HMAC-SHA256(commit key, prefix)[0:16]; the AAD of
    the ciphertext is prefix || commitment.
    """
    key_id = keys.active_key_id
    kid = _kid_bytes(key_id)
    enc_key, commit_key = keys.purpose_key(PURPOSES[otype], key_id, salt)
    nonce = os.urandom(NONCE_SIZE)
    prefix = OBJECT_MAGIC + otype + bytes([FORMAT_VERSION, len(kid)]) + kid + nonce
    commit = hmac.digest(commit_key, prefix, "sha256")[:COMMIT_SIZE]
    body = zstandard.ZstdCompressor(level=3).compress(plaintext)
    ct = AESGCM(enc_key).encrypt(nonce, body, prefix + commit)
    return prefix + commit + ct


def object_key_id(data: bytes) -> str:
    """The key id a sealed object names (no key needed)."""
    return _parse_prefix(data, None, "object")[1]


def _parse_prefix(data: bytes, otype: bytes | None, what: str):
    if len(data) < 7 or not data.startswith(OBJECT_MAGIC):
        if OBJECT_MAGIC.startswith(bytes(data[:4])) and len(data) < 7:
            raise TruncatedError(f"{what}: the object is truncated")
        raise FormatError(f"{what}: not an object of a suite repository")
    found = bytes(data[4:5])
    if otype is not None and found != otype:
        raise FormatError(
            f"{what}: object of type {found!r} where a {PURPOSES[otype]} object "
            "was expected"
        )
    if data[5] != FORMAT_VERSION:
        raise FormatError(
            f"{what}: repository format version {data[5]} is not supported by "
            "this version of the suite: upgrade it"
        )
    klen = data[6]
    end = 7 + klen + NONCE_SIZE
    if not 1 <= klen <= 32 or len(data) < end + COMMIT_SIZE + TAG_SIZE:
        raise TruncatedError(f"{what}: the object is truncated")
    try:
        key_id = bytes(data[7 : 7 + klen]).decode("ascii")
    except UnicodeDecodeError:
        raise FormatError(f"{what}: malformed key id") from None
    return end, key_id


def open_sealed(
    keys: RepoKeys,
    data: bytes,
    otype: bytes,
    *,
    tenant: str,
    purpose: str,
    what: str,
    salt=None,
) -> bytes:
    """Authenticate and decrypt a sealed object; return its plaintext.

    ``tenant`` and ``purpose`` must be those of ``keys`` and ``otype``
    (every decryption names what it expects): a mismatch is a programming
    error. A key commitment that does not match means another tenant's or
    another key's object (WrongKeyError); a tag that fails, tampering.
    """
    if tenant != keys.tenant:
        raise WrongKeyError(f"{what}: keys of tenant {keys.tenant!r}, not {tenant!r}")
    if purpose != PURPOSES.get(otype):
        raise FormatError(f"{what}: purpose {purpose!r} is not {otype!r}'s")
    end, key_id = _parse_prefix(data, otype, what)
    enc_key, commit_key = keys.purpose_key(purpose, key_id, salt)
    prefix = bytes(data[:end])
    commit = bytes(data[end : end + COMMIT_SIZE])
    if not hmac.compare_digest(
        hmac.digest(commit_key, prefix, "sha256")[:COMMIT_SIZE], commit
    ):
        raise WrongKeyError(
            f"{what}: key {key_id!r} of this keyring does not open it for "
            f"database uuid {tenant!r}: it belongs to another database or "
            "another keyring, or was altered"
        )
    try:
        body = AESGCM(enc_key).decrypt(
            prefix[-NONCE_SIZE:], bytes(data[end + COMMIT_SIZE :]), prefix + commit
        )
    except InvalidTag:
        raise TamperedError(
            f"{what}: authentication failed: the object was altered"
        ) from None
    try:
        return zstandard.ZstdDecompressor().decompress(
            body, max_output_size=MAX_OBJECT_SIZE
        )
    except zstandard.ZstdError as exc:  # authenticated: a writer bug
        raise FormatError(f"{what}: malformed content: {exc}") from exc


def seal_json(keys, otype, value: dict, *, salt=None) -> bytes:
    return seal(keys, otype, json.dumps(value, sort_keys=True).encode(), salt=salt)


def open_json(keys, data, otype, *, tenant, purpose, what, salt=None) -> dict:
    raw = open_sealed(
        keys, data, otype, tenant=tenant, purpose=purpose, what=what, salt=salt
    )
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"{what}: malformed JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise FormatError(f"{what}: malformed content")
    return value


# ---------------------------------------------------------------------------
# Blobs
# ---------------------------------------------------------------------------
def blob_aad(blob_id: bytes, btype: int, flags: int) -> bytes:
    return BLOB_AAD_MAGIC + bytes([btype, flags]) + blob_id


class BlobSealer:
    """Encrypts blobs into a caller's buffer without allocating per blob
    (``update_into``: AES-GCM at ~2.5 GB/s here, against ~0.4 GB/s for
    ``AESGCM.encrypt``, which allocates a fresh output for every call)."""

    def __init__(self, enc_key: bytes):
        self._aes = algorithms.AES(enc_key)

    def seal_into(self, out: memoryview, blob_id, btype, flags, data) -> int:
        """Write nonce || ciphertext || tag at the start of ``out`` (which
        must have room for ``len(data) + 28 + 15`` bytes); return the length."""
        nonce = os.urandom(NONCE_SIZE)
        out[:NONCE_SIZE] = nonce
        enc = Cipher(self._aes, modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(blob_aad(blob_id, btype, flags))
        n = enc.update_into(data, out[NONCE_SIZE:]) if len(data) else 0
        enc.finalize()
        end = NONCE_SIZE + n
        out[end : end + TAG_SIZE] = enc.tag
        return end + TAG_SIZE


def decrypt_blob(enc_key, data, blob_id, btype, flags, *, what) -> bytes:
    """Authenticate and decrypt one stored blob (nonce || ct || tag): its
    stored form (a zstd frame when ``flags & FLAG_ZSTD``)."""
    if len(data) < BLOB_OVERHEAD:
        raise TruncatedError(f"{what}: the blob is truncated")
    view = memoryview(data)
    try:
        return AESGCM(enc_key).decrypt(
            bytes(view[:NONCE_SIZE]),
            view[NONCE_SIZE:],
            blob_aad(blob_id, btype, flags),
        )
    except InvalidTag:
        raise TamperedError(
            f"{what}: authentication failed: the blob was altered, moved or "
            "swapped with another"
        ) from None


_local = threading.local()


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's zstd decompression context, made once: a new context
    costs ~9 us, a third of decompressing a 200 KB blob (a restore of the
    benchmark's scale-1.0 snapshot unpacks ~15,500 blobs)."""
    dctx = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    return dctx


def unpack_blob(stored: bytes, flags: int, raw_len: int, *, what) -> bytes:
    """The plaintext of a decrypted blob's stored form."""
    plain = stored
    if flags & FLAG_ZSTD:
        try:
            plain = _decompressor().decompress(stored, max_output_size=MAX_BLOB_SIZE)
        except zstandard.ZstdError as exc:
            raise FormatError(f"{what}: malformed compression: {exc}") from exc
    if len(plain) != raw_len:
        raise TamperedError(
            f"{what}: {len(plain)} bytes where the index says {raw_len}"
        )
    return plain


def open_blob(enc_key, data, blob_id, btype, flags, raw_len, *, what) -> bytes:
    """Decrypt one stored blob and undo its compression."""
    stored = decrypt_blob(enc_key, data, blob_id, btype, flags, what=what)
    return unpack_blob(stored, flags, raw_len, what=what)


# zstd frames made of raw blocks (RFC 8878 3.1.1.2, Block_Type 0): the same
# frame header as payload/writer.py's stored members (no content size, no
# checksum, 128 KiB window), so a blob stored as is joins a zstd stream
# without being compressed again
ZSTD_RAW_FRAME_HEADER = b"\x28\xb5\x2f\xfd\x00\x38"
ZSTD_RAW_BLOCK = 128 * 1024


def raw_frame_size(n: int) -> int:
    return len(ZSTD_RAW_FRAME_HEADER) + n + 3 * max(1, -(-n // ZSTD_RAW_BLOCK))


def raw_frame(data) -> list:
    """The pieces of one zstd frame holding ``data`` in raw blocks."""
    view = memoryview(data)
    pieces = [ZSTD_RAW_FRAME_HEADER]
    size = len(view)
    start = 0
    while True:
        block = view[start : start + ZSTD_RAW_BLOCK]
        start += len(block)
        last = 1 if start >= size else 0
        pieces.append(struct.pack("<I", (len(block) << 3) | last)[:3])
        if len(block):
            pieces.append(block)
        if last:
            return pieces


# ---------------------------------------------------------------------------
# Index entries, pack headers, index files
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """Where a blob is: in pack ``pack`` at ``offset``, ``stored`` bytes
    (nonce, ciphertext and tag), ``raw`` bytes of plaintext."""

    blob_id: bytes
    btype: int
    flags: int
    offset: int
    stored: int
    raw: int

    def pack_record(self) -> bytes:
        return ENTRY.pack(
            self.blob_id, self.btype, self.flags, self.offset, self.stored, self.raw
        )


def _unpack_entries(data, pos, count, what):
    end = pos + count * ENTRY_SIZE
    if end > len(data):
        raise FormatError(f"{what}: truncated entry table")
    out = []
    for i in range(count):
        bid, btype, flags, off, stored, raw = ENTRY.unpack_from(
            data, pos + i * ENTRY_SIZE
        )
        if btype not in BLOB_TYPES or raw > MAX_BLOB_SIZE or stored < BLOB_OVERHEAD:
            raise FormatError(f"{what}: malformed entry {i}")
        out.append(Entry(bid, btype, flags, off, stored, raw))
    return out, end


def encode_pack_header(entries: list[Entry]) -> bytes:
    return (
        PACK_HEADER_MAGIC
        + struct.pack(">I", len(entries))
        + b"".join(e.pack_record() for e in entries)
    )


def decode_pack_header(data: bytes, what: str) -> list[Entry]:
    if not data.startswith(PACK_HEADER_MAGIC) or len(data) < 8:
        raise FormatError(f"{what}: malformed pack header")
    (count,) = struct.unpack_from(">I", data, 4)
    entries, end = _unpack_entries(data, 8, count, what)
    if end != len(data):
        raise FormatError(f"{what}: trailing bytes in the pack header")
    return entries


@dataclass
class PackRecord:
    """One pack as an index file describes it."""

    name: str  # sha256 hex of the pack file
    size: int
    key_id: str
    entries: list[Entry]


def encode_index(packs: list[PackRecord]) -> bytes:
    parts = [INDEX_MAGIC, struct.pack(">I", len(packs))]
    for pack in packs:
        kid = _kid_bytes(pack.key_id)
        parts.append(bytes.fromhex(pack.name))
        parts.append(struct.pack(">QB", pack.size, len(kid)) + kid)
        parts.append(struct.pack(">I", len(pack.entries)))
        parts.extend(e.pack_record() for e in pack.entries)
    return b"".join(parts)


def decode_index(data: bytes, what: str) -> list[PackRecord]:
    if not data.startswith(INDEX_MAGIC) or len(data) < 8:
        raise FormatError(f"{what}: malformed index")
    (count,) = struct.unpack_from(">I", data, 4)
    pos = 8
    packs = []
    try:
        for _ in range(count):
            name = bytes(data[pos : pos + 32]).hex()
            size, klen = struct.unpack_from(">QB", data, pos + 32)
            pos += 41
            key_id = bytes(data[pos : pos + klen]).decode("ascii")
            pos += klen
            (n,) = struct.unpack_from(">I", data, pos)
            entries, pos = _unpack_entries(data, pos + 4, n, what)
            packs.append(PackRecord(name, size, key_id, entries))
    except (struct.error, UnicodeDecodeError) as exc:
        raise FormatError(f"{what}: malformed index: {exc}") from exc
    if pos != len(data):
        raise FormatError(f"{what}: trailing bytes in the index")
    return packs


# ---------------------------------------------------------------------------
# List blobs: the dump's blob list and the filestore tree
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FileRecord:
    """One filestore file of a snapshot."""

    store_fname: str
    size: int
    mtime_ns: int
    sha256: bytes
    blobs: tuple  # ((blob id, raw length), ...)


def encode_dump_record(blob_id: bytes, raw: int) -> bytes:
    return _DUMP_RECORD.pack(blob_id, raw)


def encode_file_record(rec: FileRecord) -> bytes:
    name = rec.store_fname.encode("utf-8")
    parts = [
        _FILE_HEAD.pack(len(name)),
        name,
        _FILE_META.pack(rec.size, rec.mtime_ns, rec.sha256, len(rec.blobs)),
    ]
    parts.extend(_DUMP_RECORD.pack(b, n) for b, n in rec.blobs)
    return b"".join(parts)


def list_cut_value(kind: bytes, record: bytes) -> int:
    """The value deciding whether a list blob ends after ``record``:
    16 bits of a hash of the record's key (its blob id, or the file's
    content hash), so cuts follow content, not position."""
    if kind == LIST_DUMP:
        key = record[:32]
    else:
        (nlen,) = _FILE_HEAD.unpack_from(record, 0)
        key = record[2 + nlen + 16 : 2 + nlen + 48]  # the file's sha256
    return int.from_bytes(hashlib.sha256(key).digest()[:2], "big")


def encode_list(kind: bytes, records: list[bytes]) -> bytes:
    return LIST_MAGIC + kind + struct.pack(">I", len(records)) + b"".join(records)


def decode_list(data: bytes, what: str):
    """(kind, records): dump records are (blob id, raw), file records
    :class:`FileRecord`."""
    if not data.startswith(LIST_MAGIC) or len(data) < 9:
        raise FormatError(f"{what}: malformed list")
    kind = bytes(data[4:5])
    (count,) = struct.unpack_from(">I", data, 5)
    pos = 9
    out = []
    try:
        if kind == LIST_DUMP:
            for _ in range(count):
                out.append(_DUMP_RECORD.unpack_from(data, pos))
                pos += _DUMP_RECORD.size
        elif kind == LIST_FILES:
            for _ in range(count):
                (nlen,) = _FILE_HEAD.unpack_from(data, pos)
                name = bytes(data[pos + 2 : pos + 2 + nlen]).decode("utf-8")
                pos += 2 + nlen
                size, mtime, sha, n = _FILE_META.unpack_from(data, pos)
                pos += _FILE_META.size
                blobs = []
                for _ in range(n):
                    blobs.append(_DUMP_RECORD.unpack_from(data, pos))
                    pos += _DUMP_RECORD.size
                if sum(b[1] for b in blobs) != size:
                    raise FormatError(f"{what}: {name}: blob sizes differ")
                out.append(FileRecord(name, size, mtime, sha, tuple(blobs)))
        else:
            raise FormatError(f"{what}: unknown list kind {kind!r}")
    except (struct.error, UnicodeDecodeError) as exc:
        raise FormatError(f"{what}: malformed list: {exc}") from exc
    if pos != len(data):
        raise FormatError(f"{what}: trailing bytes in the list")
    return kind, out


# ---------------------------------------------------------------------------
# Chunker
# ---------------------------------------------------------------------------
def make_chunker(seed: int):
    """A FastCDC 2020 chunker with the repository's parameters and seed."""
    try:
        import pyfastcdc
    except ImportError as exc:  # pragma: no cover - a runtime requirement
        raise ImportError(
            "the incremental repository needs pyfastcdc (pip install pyfastcdc)"
        ) from exc
    return pyfastcdc.FastCDC(
        CHUNK_AVG,
        min_size=CHUNK_MIN,
        max_size=CHUNK_MAX,
        normalized_chunking=CHUNK_NORMALIZATION,
        seed=seed,
    )


def sha256_hex(data) -> str:
    return hashlib.sha256(data).hexdigest()
