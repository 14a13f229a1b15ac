"""Archive format v1: round trips and every fault the format must detect."""

import gc
import gzip
import hashlib
import io
import os
import random
import struct
import tarfile
import time
import tracemalloc
import unicodedata

import pytest
import zstandard

from db_backup_suite.lib import crypto, errors
from suite_core import streamcrypt as sc
from suite_core.keyring import Keyring, generate_key_line

CS = sc.MIN_CHUNK_SIZE  # 64 KiB chunks keep multi-chunk archives small
FRAME = sc.CHUNK_PREFIX_SIZE + CS + sc.TAG_SIZE  # one full chunk on disk
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def ring():
    return Keyring.parse(generate_key_line("k-new") + "\n" + generate_key_line("k-old"))


def encrypt(data, keyring=None, *, chunk_size=CS, tenant="db-a", **kw):
    out = io.BytesIO()
    with sc.EncryptingWriter(
        out, keyring=keyring, tenant=tenant, chunk_size=chunk_size, **kw
    ) as writer:
        writer.write(data)
    return out.getvalue()


def decrypt(blob, keyring=None, *, tenant="db-a", purpose="backup", **kw):
    """Every read names the tenant and purpose it expects (``encrypt``'s
    defaults unless told otherwise)."""
    return sc.DecryptingReader(
        io.BytesIO(blob), keyring=keyring, tenant=tenant, purpose=purpose, **kw
    ).read()


def header_size(blob):
    return sc.read_header(io.BytesIO(blob)).size


def chunk_offset(blob, index):
    return header_size(blob) + index * FRAME


def with_fixed_checksum(raw_header):
    """Re-seal the header checksum (what a deliberate attacker would do)."""
    body = raw_header[: -sc.CHECKSUM_SIZE]
    return body + hashlib.sha256(body).digest()[: sc.CHECKSUM_SIZE]


# Round trips -------------------------------------------------------------------
SIZES = [0, 1, CS - 1, CS, CS + 1, 2 * CS, 3 * CS + 17]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_sizes_and_layout(ring, size):
    data = os.urandom(size)
    blob = encrypt(data, ring)
    assert decrypt(blob, ring) == data
    # every chunk but the last is full; the last holds 0..CS-1 bytes
    chunks = size // CS + 1
    assert len(blob) == header_size(blob) + chunks * (4 + 16) + size
    report = sc.verify(io.BytesIO(blob), keyring=ring, tenant="db-a", purpose="backup")
    assert report.chunks == chunks
    assert report.plaintext_bytes == size
    assert report.ciphertext_bytes == len(blob)
    assert report.plaintext_sha256 == hashlib.sha256(data).hexdigest()


def test_reader_accepts_a_full_size_final_chunk(ring):
    """The format allows a last chunk of exactly C bytes (our writer emits an
    empty final chunk instead, but other writers may not)."""
    data = os.urandom(2 * CS)
    out = io.BytesIO()
    writer = sc.EncryptingWriter(out, keyring=ring, chunk_size=CS)
    writer._emit(memoryview(data)[:CS], last=False)
    writer._emit(memoryview(data)[CS:], last=True)
    writer.abort()  # the final chunk is already there
    blob = out.getvalue()
    assert len(blob) == header_size(blob) + 2 * FRAME
    assert decrypt(blob, ring, tenant="") == data


def test_round_trip_random_sizes_writes_and_reads(ring):
    rnd = random.Random(1234)
    for _ in range(12):
        data = rnd.randbytes(rnd.randrange(0, 5 * CS))
        out = io.BytesIO()
        writer = sc.EncryptingWriter(out, keyring=ring, tenant="t", chunk_size=CS)
        pos = 0
        while pos < len(data):
            step = rnd.choice([1, 7, 4096, CS - 3, CS, 2 * CS + 5])
            assert writer.write(data[pos : pos + step]) == len(data[pos : pos + step])
            pos += step
        writer.close()
        assert writer.plaintext_bytes == len(data)
        assert writer.ciphertext_bytes == len(out.getvalue())
        reader = sc.DecryptingReader(
            io.BytesIO(out.getvalue()), keyring=ring, tenant="t", purpose="backup"
        )
        got = bytearray()
        while True:
            kind = rnd.choice(["read", "read1", "readinto", "readinto1"])
            n = rnd.choice([1, 100, CS - 1, CS + 1, 3 * CS])
            if kind == "read":
                part = reader.read(n)
            elif kind == "read1":
                part = reader.read1(n)
            else:
                buf = bytearray(n)
                part = buf[: getattr(reader, kind)(buf)]
            if not part:
                break
            got += part
        assert bytes(got) == data
        assert reader.tell() == len(data)
        assert reader.read() == b"" and reader.read(10) == b""


def test_long_mime_content_type_and_unicode_tenant(ring):
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    blob = encrypt(b"cells", ring, content_type=xlsx, tenant="société-ü")
    reader = sc.DecryptingReader(
        io.BytesIO(blob), keyring=ring, tenant="société-ü", purpose="backup"
    )
    assert reader.content_type == xlsx and reader.read() == b"cells"


def test_file_object_semantics(ring):
    out = io.BytesIO()
    writer = sc.EncryptingWriter(out, keyring=ring, tenant="t", content_type="x/y")
    assert writer.writable() and not writer.readable() and not writer.seekable()
    assert writer.header.chunk_size == sc.DEFAULT_CHUNK_SIZE
    assert writer.header.content_type == "x/y"
    writer.write(memoryview(b"abc"))
    writer.write(bytearray(b"def"))
    assert writer.tell() == 6
    writer.close()
    writer.close()  # idempotent
    assert not out.closed  # raw is left open for the caller
    with pytest.raises(ValueError):
        writer.write(b"more")
    reader = sc.DecryptingReader(
        io.BytesIO(out.getvalue()), keyring=ring, tenant="t", purpose="backup"
    )
    assert reader.readable() and not reader.writable() and reader.encrypted
    assert reader.content_type == "x/y"
    assert reader.read(2) == b"ab" and reader.read() == b"cdef"
    reader.close()
    with pytest.raises(ValueError):
        reader.read(1)


def test_tar_zstd_payload_through_standard_tools(ring, tmp_path):
    """The decrypted payload is a plain zstd tar (what the engine writes)."""
    members = {"manifest.json": b"{}", "dump.pgdump": os.urandom(3 * CS)}
    out = io.BytesIO()
    writer = crypto.encrypting_writer(out, keyring=ring, tenant="uuid-1")
    with (
        writer,
        zstandard.ZstdCompressor().stream_writer(writer, closefd=False) as z,
        tarfile.open(fileobj=z, mode="w|") as tar,
    ):
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    reader = crypto.open_archive(
        io.BytesIO(out.getvalue()), keyring=ring, tenant="uuid-1"
    )
    assert reader.header.content_type == "tar+zstd" and reader.header.tenant == "uuid-1"
    plain = zstandard.ZstdDecompressor().stream_reader(reader)
    with tarfile.open(fileobj=plain, mode="r|") as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar}
    assert got == members


def test_writer_raw_with_partial_writes_and_reader_raw_with_short_reads(ring):
    class Dribble(io.RawIOBase):
        """Accepts / returns at most 1000 bytes per call, no readinto."""

        def __init__(self, data=b""):
            self.data = bytearray(data)
            self.pos = 0

        def writable(self):
            return True

        def write(self, b):
            part = bytes(b[:1000])
            self.data += part
            return len(part)

        def read(self, n=-1):
            n = 1000 if n is None or n < 0 else min(n, 1000)
            part = bytes(self.data[self.pos : self.pos + n])
            self.pos += len(part)
            return part

    data = os.urandom(2 * CS + 5)
    sink = Dribble()
    with sc.EncryptingWriter(sink, keyring=ring, chunk_size=CS) as writer:
        writer.write(data)
    assert len(sink.data) == header_size(bytes(sink.data)) + 3 * 20 + len(data)
    source = Dribble(bytes(sink.data))
    source.readinto = None  # force the read()-only path
    reader = sc.DecryptingReader(source, keyring=ring, tenant="", purpose="backup")
    assert reader.read() == data


def test_constant_memory_on_a_long_stream(ring):
    class Source(io.RawIOBase):
        def __init__(self, blob):
            self.view, self.pos = memoryview(blob), 0

        def readable(self):
            return True

        def readinto(self, b):
            n = min(len(b), len(self.view) - self.pos)
            b[:n] = self.view[self.pos : self.pos + n]
            self.pos += n
            return n

    class Counter(io.RawIOBase):
        size = 0

        def writable(self):
            return True

        def write(self, b):
            self.size += len(b)
            return len(b)

    block = os.urandom(256 * 1024)
    total = 48 * 1024 * 1024
    tracemalloc.start()
    try:
        sink = Counter()
        with sc.EncryptingWriter(sink, keyring=ring) as writer:
            for _ in range(total // len(block)):
                writer.write(block)
        _, write_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert writer.plaintext_bytes == total
    assert write_peak < 6 * 1024 * 1024  # a few 1 MiB chunks, not 48 MiB
    # decrypt side: reuse one buffer
    blob = encrypt(os.urandom(16 * 1024 * 1024), ring, chunk_size=sc.MIB)
    tracemalloc.start()
    try:
        reader = sc.DecryptingReader(
            Source(blob), keyring=ring, tenant="db-a", purpose="backup"
        )
        buf = bytearray(64 * 1024)
        while reader.readinto(buf):
            pass
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reader.plaintext_bytes == 16 * 1024 * 1024
    assert read_peak < 6 * 1024 * 1024


@pytest.mark.slow
def test_throughput_above_500_mb_per_s_cpu_time(ring):
    """CPU time, not wall time: other processes share this machine."""
    block = os.urandom(sc.MIB)
    total = 256 * sc.MIB

    class Null(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            return len(b)

    start = time.process_time()
    with sc.EncryptingWriter(Null(), keyring=ring) as writer:
        for _ in range(total // len(block)):
            writer.write(block)
    rate = total / (time.process_time() - start) / 1e6
    assert rate > 500, f"{rate:.0f} MB/s"


# Keys and passwords -----------------------------------------------------------
def test_wrong_key_is_reported_before_any_chunk(ring):
    blob = encrypt(os.urandom(3 * CS), ring)
    impostor = Keyring.parse(generate_key_line("k-new"))  # same id, other key
    head_only = blob[: header_size(blob)]  # no chunk at all: still WrongKey
    for candidate in (blob, head_only):
        with pytest.raises(sc.WrongKeyError, match=r"'k-new'.*does not open"):
            sc.DecryptingReader(
                io.BytesIO(candidate), keyring=impostor, tenant="db-a", purpose="backup"
            )


def test_unknown_key_id_names_the_id_and_the_ids_held(ring):
    blob = encrypt(b"data", ring)
    other = Keyring.parse(generate_key_line("k-x") + "," + generate_key_line("k-y"))
    with pytest.raises(sc.UnknownKeyError, match=r"'k-new'.*holds: k-x, k-y"):
        decrypt(blob, other)
    with pytest.raises(sc.UnknownKeyError, match="no keyring is configured"):
        decrypt(blob, None)


def test_password_mode_round_trip_and_wrong_password():
    data = os.urandom(CS + 3)
    blob = encrypt(data, password=PASSWORD)
    header = sc.read_header(io.BytesIO(blob))
    assert header.mode == "password" and header.kdf == "scrypt"
    assert header.kdf_params == {"n": 2**17, "r": 8, "p": 1}
    assert header.key_id == ""
    assert decrypt(blob, password=PASSWORD) == data
    with pytest.raises(sc.WrongPasswordError, match="does not open"):
        decrypt(blob, password=PASSWORD + "!")
    with pytest.raises(sc.WrongPasswordError, match="none was given"):
        decrypt(blob)
    assert issubclass(sc.WrongPasswordError, sc.WrongKeyError)


def test_password_is_unicode_normalized():
    composed = "pässwörd-123"
    blob = encrypt(b"x", password=composed)
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    assert decrypt(blob, password=decomposed) == b"x"


def test_writer_argument_errors(ring):
    with pytest.raises(ValueError, match="exactly one"):
        sc.EncryptingWriter(io.BytesIO(), keyring=ring, password=PASSWORD)
    with pytest.raises(ValueError, match="exactly one"):
        sc.EncryptingWriter(io.BytesIO())
    with pytest.raises(ValueError, match="too short"):
        sc.EncryptingWriter(io.BytesIO(), password="short")
    for size in (sc.MIN_CHUNK_SIZE - 1, sc.MAX_CHUNK_SIZE + 1):
        with pytest.raises(ValueError, match="chunk_size"):
            sc.EncryptingWriter(io.BytesIO(), keyring=ring, chunk_size=size)
    with pytest.raises(ValueError, match="purpose"):
        sc.EncryptingWriter(io.BytesIO(), keyring=ring, purpose="a/b")
    with pytest.raises(ValueError, match="tenant is too long"):
        sc.EncryptingWriter(io.BytesIO(), keyring=ring, tenant="x" * 256)


def test_key_rotation_keeps_old_archives_readable():
    old_line = generate_key_line("k2025")
    before = Keyring.parse(old_line)
    data = os.urandom(CS + 1)
    old_blob = encrypt(data, before)
    rotated = Keyring.parse(generate_key_line("k2026") + "\n" + old_line)
    assert decrypt(old_blob, rotated) == data
    new_blob = encrypt(data, rotated)
    assert sc.read_header(io.BytesIO(new_blob)).key_id == "k2026"
    assert sc.read_header(io.BytesIO(old_blob)).key_id == "k2025"
    with pytest.raises(sc.UnknownKeyError, match="k2026"):
        decrypt(new_blob, before)


def test_tenant_isolation(ring):
    blob_b = encrypt(b"tenant B's data", ring, tenant="uuid-b")
    # A reader that expects tenant A refuses B's archive outright.
    with pytest.raises(sc.WrongKeyError, match="belongs to 'uuid-b'"):
        decrypt(blob_b, ring, tenant="uuid-a")
    assert decrypt(blob_b, ring, tenant="uuid-b") == b"tenant B's data"
    # Relabelling B's archive as A's (checksum re-sealed) yields A's key,
    # which does not open it: keys are bound to the tenant.
    head = sc.read_header(io.BytesIO(blob_b))
    forged = head.raw.replace(b"\x06uuid-b", b"\x06uuid-a")
    assert forged != head.raw
    forged_blob = with_fixed_checksum(forged) + blob_b[head.size :]
    with pytest.raises(sc.WrongKeyError):
        decrypt(forged_blob, ring, tenant="uuid-a")
    # and the derived keys differ
    salt = head.salt
    assert ring.derive("backup", "uuid-a", salt) != ring.derive(
        "backup", "uuid-b", salt
    )


def test_purpose_is_checked_when_asked(ring):
    blob = encrypt(b"rows", ring, purpose="export")
    assert decrypt(blob, ring, purpose="export") == b"rows"
    with pytest.raises(sc.FormatError, match="'export' archive, not a 'backup'"):
        decrypt(blob, ring, purpose="backup")
    with pytest.raises(sc.FormatError, match="'export' archive"):
        crypto.open_archive(io.BytesIO(blob), keyring=ring, tenant="db-a")


# Header faults ----------------------------------------------------------------
def test_future_and_invalid_format_version(ring):
    blob = bytearray(encrypt(b"x", ring))
    blob[len(sc.MAGIC)] = 2
    with pytest.raises(sc.FormatError, match=r"version 2 is newer.*newer version"):
        decrypt(bytes(blob), ring)
    with pytest.raises(sc.FormatError, match="version 2"):
        sc.read_header(io.BytesIO(bytes(blob)))
    # a future format may have a different header: its version alone decides
    with pytest.raises(sc.FormatError, match="version 2 is newer"):
        sc.read_header(io.BytesIO(sc.MAGIC + b"\x02"))
    blob[len(sc.MAGIC)] = 0
    with pytest.raises(sc.FormatError, match="version 0 is invalid"):
        decrypt(bytes(blob), ring)


@pytest.mark.parametrize(
    "blob",
    [b"", b"hello world, not an archive", b"\x89PNG\r\n\x1a\n" + b"\0" * 100],
)
def test_bad_magic(ring, blob):
    with pytest.raises(sc.FormatError, match="not an archive of this suite"):
        decrypt(blob, ring)


def test_flipped_byte_anywhere_in_header(ring):
    blob = encrypt(os.urandom(CS + 10), ring)
    size = header_size(blob)
    for pos in range(size):
        damaged = bytearray(blob)
        damaged[pos] ^= 0x01
        with pytest.raises(sc.StreamCryptError) as info:
            decrypt(bytes(damaged), ring)
        if pos < len(sc.MAGIC) + 1:  # magic, version
            assert isinstance(info.value, sc.FormatError), pos
        elif pos >= len(sc.MAGIC) + 3:  # checksum catches every other byte
            assert isinstance(info.value, sc.TamperedError), pos
            assert "header is damaged" in str(info.value)


def test_deliberately_altered_header_fails_commitment_or_chunks(ring):
    """An attacker who re-seals the checksum still gets caught."""
    blob = encrypt(os.urandom(CS + 10), ring, content_type="tar+zstd")
    head = sc.read_header(io.BytesIO(blob))
    forged = with_fixed_checksum(head.raw.replace(b"tar+zstd", b"tar+gzip"))
    with pytest.raises(sc.WrongKeyError, match="deliberately altered"):
        decrypt(forged + blob[head.size :], ring)


def test_garbage_header_length_does_not_allocate(ring):
    blob = bytearray(encrypt(b"x", ring))
    blob[len(sc.MAGIC) + 1 : len(sc.MAGIC) + 3] = struct.pack(">H", 0xFFFF)
    with pytest.raises(sc.TamperedError, match="declared size 65535"):
        decrypt(bytes(blob), ring)


# Truncation ---------------------------------------------------------------------
def test_truncation_at_every_boundary_class(ring):
    data = os.urandom(3 * CS + 100)  # chunks 0..2 full, chunk 3 final
    blob = encrypt(data, ring)
    size = header_size(blob)
    cuts = {
        "inside magic": 5,
        "inside header": size // 2,
        "right after header": size,
        "inside chunk 0 length": size + 2,
        "inside chunk 0 body": size + 100,
        "inside chunk 1 tag": chunk_offset(blob, 2) - 3,
        "exactly at chunk boundary 1|2": chunk_offset(blob, 2),
        "final chunk missing": chunk_offset(blob, 3),
        "inside final chunk": len(blob) - 1,
    }
    for label, cut in cuts.items():
        with pytest.raises(sc.TruncatedError) as info:
            decrypt(blob[:cut], ring)
        if label == "final chunk missing":
            assert "ends after chunk 2 without its final chunk" in str(info.value)
        with pytest.raises(sc.TruncatedError):
            sc.verify(
                io.BytesIO(blob[:cut]), keyring=ring, tenant="db-a", purpose="backup"
            )


def test_no_end_of_file_before_the_final_chunk_is_checked(ring):
    """A truncated stream never looks like a clean, shorter file."""
    data = os.urandom(2 * CS + 5)
    blob = encrypt(data, ring)
    reader = sc.DecryptingReader(
        io.BytesIO(blob[: chunk_offset(blob, 2)]),
        keyring=ring,
        tenant="db-a",
        purpose="backup",
    )
    assert reader.read(2 * CS) == data[: 2 * CS]  # authenticated chunks
    with pytest.raises(sc.TruncatedError):
        reader.read(1)
    with pytest.raises(sc.TruncatedError):  # sticky
        reader.read(1)


def test_trailing_data_after_final_chunk(ring):
    data = os.urandom(CS + 5)
    blob = encrypt(data, ring)
    for extra in (b"\0", b"garbage" * 10, blob[header_size(blob) :]):
        with pytest.raises(sc.TamperedError, match="after the final chunk"):
            decrypt(blob + extra, ring)
    # the tail chunk is withheld until the end of the stream is checked
    reader = sc.DecryptingReader(
        io.BytesIO(blob + b"x"), keyring=ring, tenant="db-a", purpose="backup"
    )
    assert reader.read(CS) == data[:CS]
    with pytest.raises(sc.TamperedError):
        reader.read(1)


# Chunk faults ---------------------------------------------------------------------
def test_flipped_byte_in_each_chunk_names_the_chunk(ring):
    blob = encrypt(os.urandom(3 * CS + 100), ring)
    for index in range(4):
        start = chunk_offset(blob, index)
        end = min(start + FRAME, len(blob))
        for pos in (start + 4, start + 4 + 1000 % (end - start - 4), end - 1):
            damaged = bytearray(blob)
            damaged[pos] ^= 0x80
            with pytest.raises(sc.TamperedError, match=f"chunk {index} failed"):
                decrypt(bytes(damaged), ring)


def test_flipped_length_or_last_flag(ring):
    blob = encrypt(os.urandom(2 * CS + 100), ring)
    for index in range(3):
        for offset, mask in ((0, 0x80), (1, 0x01), (3, 0x01)):
            damaged = bytearray(blob)
            damaged[chunk_offset(blob, index) + offset] ^= mask
            with pytest.raises((sc.TamperedError, sc.TruncatedError)):
                decrypt(bytes(damaged), ring)


def test_truncated_stream_relabelled_as_complete(ring):
    """Cut after a full chunk and flag that chunk "last": the nonce carries
    the flag, so the relabelled chunk no longer authenticates."""
    blob = encrypt(os.urandom(3 * CS + 100), ring)
    cut = bytearray(blob[: chunk_offset(blob, 2)])
    cut[chunk_offset(blob, 1)] |= 0x80
    with pytest.raises(sc.TamperedError, match="chunk 1 failed"):
        decrypt(bytes(cut), ring)


def test_two_chunks_swapped(ring):
    blob = encrypt(os.urandom(3 * CS + 100), ring)
    c1, c2, c3 = (chunk_offset(blob, i) for i in (1, 2, 3))
    swapped = blob[:c1] + blob[c2:c3] + blob[c1:c2] + blob[c3:]
    assert len(swapped) == len(blob)
    with pytest.raises(sc.TamperedError, match="chunk 1 failed"):
        decrypt(swapped, ring)
    # a dropped middle chunk shifts indexes: caught too
    dropped = blob[:c1] + blob[c2:]
    with pytest.raises(sc.TamperedError, match="chunk 1 failed"):
        decrypt(dropped, ring)


def test_chunk_from_another_archive_with_the_same_key(ring):
    data = os.urandom(2 * CS)
    one, two = encrypt(data, ring), encrypt(data, ring)
    spliced = one[: chunk_offset(one, 1)] + two[chunk_offset(two, 1) :]
    with pytest.raises(sc.TamperedError, match="chunk 1"):
        decrypt(spliced, ring)


# Writer failure modes ----------------------------------------------------------------
def test_writer_exiting_with_exception_leaves_output_truncated(ring):
    out = io.BytesIO()
    with pytest.raises(RuntimeError), sc.EncryptingWriter(out, keyring=ring) as w:
        w.write(b"partial data")
        raise RuntimeError("pg_dump failed")
    with pytest.raises(sc.TruncatedError):
        decrypt(out.getvalue(), ring, tenant="")


def test_abort_and_garbage_collection_never_seal_the_stream(ring):
    out = io.BytesIO()
    writer = sc.EncryptingWriter(out, keyring=ring, chunk_size=CS)
    writer.write(os.urandom(CS + 1))
    writer.abort()
    assert writer.closed
    with pytest.raises(sc.TruncatedError):
        decrypt(out.getvalue(), ring, tenant="")
    out = io.BytesIO()
    writer = sc.EncryptingWriter(out, keyring=ring)
    writer.write(b"abandoned")
    del writer
    gc.collect()
    with pytest.raises(sc.TruncatedError):
        decrypt(out.getvalue(), ring, tenant="")


def test_failed_destination_breaks_the_writer(ring):
    class Flaky(io.RawIOBase):
        def __init__(self):
            self.data = bytearray()
            self.fail = False

        def writable(self):
            return True

        def write(self, b):
            if self.fail:
                raise OSError(28, "No space left on device")
            self.data += b
            return len(b)

    dest = Flaky()
    writer = sc.EncryptingWriter(dest, keyring=ring, chunk_size=CS)
    writer.write(os.urandom(CS))
    dest.fail = True
    with pytest.raises(OSError, match="No space"):
        writer.write(os.urandom(CS))
    dest.fail = False
    with pytest.raises(sc.StreamCryptError, match="cannot be continued"):
        writer.write(b"more")
    writer.close()  # must not write a final chunk after the failure
    with pytest.raises((sc.TruncatedError, sc.TamperedError)):
        decrypt(bytes(dest.data), ring, tenant="")


# Errors shared with the backup engine -----------------------------------------------
def test_engine_errors_are_the_crypto_classes():
    assert errors.StreamCryptError is sc.StreamCryptError
    assert errors.FormatError is sc.FormatError
    assert errors.TruncatedError is sc.TruncatedError
    assert errors.TamperedError is sc.TamperedError
    assert errors.WrongKeyError is sc.WrongKeyError
    assert errors.WrongPasswordError is sc.WrongPasswordError
    assert errors.KeyringError is sc.KeyringError
    assert errors.UnknownKeyError is sc.UnknownKeyError
    for cls in (sc.TamperedError, sc.KeyringError, errors.SinkError):
        assert issubclass(cls, errors.SuiteError)
    with pytest.raises(errors.SuiteError):
        decrypt(b"not an archive")


# Legacy plaintext archives and the backup bridge --------------------------------------
def test_open_archive_encrypted(ring):
    blob = encrypt(b"payload", ring, content_type="tar+zstd", tenant="u")
    reader = crypto.open_archive(io.BytesIO(blob), keyring=ring, tenant="u")
    assert reader.encrypted and not reader.legacy
    assert reader.content_type == "tar+zstd"
    assert reader.read() == b"payload"
    check = crypto.verify_archive(io.BytesIO(blob), keyring=ring, tenant="u")
    assert check.encrypted and check.chunks == 1 and check.plaintext_bytes == 7
    info = crypto.describe_archive(io.BytesIO(blob))
    assert info["encrypted"] and info["key_id"] == "k-new" and info["tenant"] == "u"
    with pytest.raises(sc.WrongKeyError):
        crypto.open_archive(io.BytesIO(blob), keyring=ring, tenant="other")


def _tar(payload):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return out.getvalue()


@pytest.mark.parametrize(
    "compression, content_type",
    [("zstd", "tar+zstd"), ("gzip", "tar+gzip"), ("none", "tar")],
)
def test_open_archive_legacy_plaintext(compression, content_type):
    payload = _tar(os.urandom(100_000))
    if compression == "zstd":
        blob = zstandard.ZstdCompressor().compress(payload)
    elif compression == "gzip":
        blob = gzip.compress(payload)
    else:
        blob = payload
    # no key needed; a legacy archive carries no tenant to check
    reader = crypto.open_archive(io.BytesIO(blob), tenant=crypto.ANY_TENANT)
    assert not reader.encrypted and reader.legacy and reader.header is None
    assert reader.content_type == content_type
    assert reader.compression == compression
    first = reader.read(3)
    assert first + reader.read() == blob  # pass-through, prefix included
    check = crypto.verify_archive(io.BytesIO(blob), tenant=crypto.ANY_TENANT)
    assert check.legacy and not check.encrypted
    assert check.plaintext_sha256 == hashlib.sha256(blob).hexdigest()
    assert crypto.describe_archive(io.BytesIO(blob))["legacy"] is True


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"", "empty file"),
        (b"PK\x03\x04" + b"\0" * 40, "zip file"),
        (b"plain text file", "unknown file signature"),
        (b"\x1f", "unknown file signature"),
        (sc.MAGIC[:5], "ends inside its header"),
    ],
)
def test_open_archive_rejects_other_files(blob, message):
    with pytest.raises((sc.FormatError, sc.TruncatedError), match=message):
        crypto.open_archive(io.BytesIO(blob), tenant=crypto.ANY_TENANT)


def test_bridge_writer_uses_backup_purpose_and_compression(ring):
    out = io.BytesIO()
    with crypto.encrypting_writer(
        out, keyring=ring, tenant="uuid", compression="gzip"
    ) as writer:
        writer.write(b"x")
    head = writer.header
    assert (head.purpose, head.content_type, head.tenant) == (
        "backup",
        "tar+gzip",
        "uuid",
    )
    assert crypto.compression_of(head.content_type) == "gzip"
    with pytest.raises(ValueError, match="unknown compression"):
        crypto.encrypting_writer(io.BytesIO(), keyring=ring, compression="lz4")
