"""The payload layer: a compressed tar written in one pass, read sequentially."""

import hashlib
import io
import os
import random
import shutil
import subprocess
import tarfile
import tracemalloc

import pytest
import zstandard

from db_backup_suite.lib.errors import DumpError, FormatError, StreamCryptError
from db_backup_suite.lib.payload.extract import extract_member, safe_member_path
from db_backup_suite.lib.payload.reader import PayloadReader
from db_backup_suite.lib.payload.sampling import compressed_format, should_store
from db_backup_suite.lib.payload.tar import ZSTD_MAGIC
from db_backup_suite.lib.payload.writer import PayloadWriter

COMPRESSIONS = ["zstd", "gzip", "none"]


def _text(n):
    words = [b"partner", b"invoice", b"Odoo", b"res_partner", b"street", b"42"]
    rnd = random.Random(n)
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + b" "
    return bytes(out[:n])


def _jpeg(tmp_path):
    from PIL import Image

    rnd = random.Random(7)
    img = Image.new("RGB", (400, 400))
    img.putdata([tuple(rnd.randrange(256) for _ in range(3)) for _ in range(160000)])
    path = tmp_path / "photo.jpg"
    img.save(path, "JPEG", quality=95)
    return path


class ChoppyReader:
    """A pipe-like stream returning reads of random sizes (as pg_dump does)."""

    def __init__(self, data, seed=0):
        self._data = memoryview(data)
        self._pos = 0
        self._rnd = random.Random(seed)

    def read(self, n=-1):
        if n is None or n < 0:
            n = len(self._data)
        n = min(n, self._rnd.randint(1, 300_000))
        chunk = bytes(self._data[self._pos : self._pos + n])
        self._pos += len(chunk)
        return chunk


def _read_all(buf, compression=None, logical=False):
    buf.seek(0)
    reader = PayloadReader(buf, compression)
    members = reader.logical_members() if logical else reader
    result = {m.name: m.read() for m in members}
    reader.close()
    return result


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_round_trip(tmp_path, compression):
    f = tmp_path / "file.txt"
    f.write_bytes(_text(3_000_000))
    rand = os.urandom(200_000)
    dump = _text(2_500_001)
    buf = io.BytesIO()
    writer = PayloadWriter(buf, compression)
    infos = [
        writer.add_bytes("manifest.json", b'{"db": "x"}'),
        writer.add_file("filestore/ab/abcdef", f),
        writer.add_bytes("filestore/cd/random", rand),
        writer.add_bytes("filestore/ef/empty", b""),
    ]
    sinfo = writer.add_stream("dump.pgdump", ChoppyReader(dump), part_size=1_000_000)
    stats = writer.close()
    assert buf.getvalue(), "close() must flush"
    assert not buf.closed, "close() must not close out"

    assert sinfo.parts == [f"dump.pgdump.part-00000{i}" for i in (1, 2, 3)]
    assert sinfo.size == len(dump)
    assert sinfo.sha256 == hashlib.sha256(dump).hexdigest()
    assert infos[1].sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    assert infos[1].size == 3_000_000
    assert stats.members == 7
    assert stats.output_bytes == len(buf.getvalue())

    # auto-detected and explicit compression read the same
    for comp in (None, compression):
        got = _read_all(buf, comp)
        assert got["manifest.json"] == b'{"db": "x"}'
        assert got["filestore/ab/abcdef"] == f.read_bytes()
        assert got["filestore/cd/random"] == rand
        assert got["filestore/ef/empty"] == b""
        assert b"".join(got[p] for p in sinfo.parts) == dump
    logical = _read_all(buf, logical=True)
    assert logical["dump.pgdump"] == dump
    assert set(logical) == {
        "manifest.json",
        "filestore/ab/abcdef",
        "filestore/cd/random",
        "filestore/ef/empty",
        "dump.pgdump",
    }


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_already_compressed_members_are_stored(tmp_path, compression):
    jpeg = _jpeg(tmp_path)
    rand = os.urandom(1_000_000)
    text = _text(1_000_000)

    def size_of(add):
        buf = io.BytesIO()
        w = PayloadWriter(buf, compression)
        info = add(w)
        w.close()
        return info, len(buf.getvalue()), buf

    info, size, buf = size_of(lambda w: w.add_bytes("r.bin", rand))
    assert info.stored
    # stored: the data plus a few bytes of block headers, no recompression
    assert len(rand) < size < len(rand) + 1024 + len(rand) // 1000
    if compression == "zstd":
        # the raw blocks hold the member's bytes verbatim
        assert rand[:131072] in buf.getvalue()
    info, size, _ = size_of(lambda w: w.add_file("photo.jpg", jpeg))
    assert info.stored
    assert size < jpeg.stat().st_size + 1024
    info, size, _ = size_of(lambda w: w.add_bytes("t.txt", text))
    assert not info.stored
    assert size < len(text) // 4, "text must really be compressed"


def test_gzip_stored_member_is_deflate_level_0():
    rand = os.urandom(300_000)
    buf = io.BytesIO()
    w = PayloadWriter(buf, "gzip")
    w.add_bytes("a.txt", _text(10_000))
    w.add_bytes("r.bin", rand)
    w.add_bytes("b.txt", _text(10_000))
    w.close()
    data = buf.getvalue()
    # three gzip members: text header, stored data, text + end blocks
    members = 0
    rest = data
    while rest:
        d = zlib_decompressobj()
        d.decompress(rest)
        assert d.eof
        rest = d.unused_data
        members += 1
    assert members == 3
    assert rand[:60000] in data  # stored blocks hold the bytes verbatim


def zlib_decompressobj():
    import zlib

    return zlib.decompressobj(31)


def test_zstd_frames_and_standard_tools(tmp_path):
    if not shutil.which("zstd"):
        pytest.skip("zstd CLI not installed")
    jpeg = _jpeg(tmp_path)
    rand = os.urandom(400_000)
    out = tmp_path / "p.tar.zst"
    with open(out, "wb") as fh:
        w = PayloadWriter(fh, "zstd", level=5, threads=2)
        w.add_bytes("manifest.json", b"{}")
        w.add_file("filestore/1/photo.jpg", jpeg)
        w.add_bytes("filestore/2/rand", rand)
        w.add_bytes("filestore/3/text", _text(500_000))
        w.add_stream("dump", io.BytesIO(_text(700_000)), part_size=300_000)
        w.close()
    subprocess.run(["zstd", "-tq", str(out)], check=True)
    listing = subprocess.run(
        f"zstd -dc {out} | tar -tf -", shell=True, check=True, capture_output=True
    ).stdout.decode()
    assert listing.split() == [
        "manifest.json",
        "filestore/1/photo.jpg",
        "filestore/2/rand",
        "filestore/3/text",
        "dump.part-000001",
        "dump.part-000002",
        "dump.part-000003",
    ]
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(out), "-C", str(dest)], check=True)
    assert (dest / "filestore/1/photo.jpg").read_bytes() == jpeg.read_bytes()
    assert (dest / "filestore/2/rand").read_bytes() == rand
    joined = subprocess.run(
        f"cat {dest}/dump.part-* ", shell=True, check=True, capture_output=True
    ).stdout
    assert joined == _text(700_000)
    # several frames: compressed, raw (jpeg), compressed, raw (rand), ...
    data = out.read_bytes()
    assert data.count(ZSTD_MAGIC) >= 5
    # and the python reader reads across all of them
    assert _read_all(io.BytesIO(data))["filestore/2/rand"] == rand


def test_gzip_standard_tools(tmp_path):
    rand = os.urandom(100_000)
    out = tmp_path / "p.tar.gz"
    with open(out, "wb") as fh:
        w = PayloadWriter(fh, "gzip", level=6)
        w.add_bytes("a", _text(50_000))
        w.add_bytes("r", rand)
        w.add_bytes("b", b"tail")
        w.close()
    subprocess.run(["gzip", "-t", str(out)], check=True)
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "-xzf", str(out), "-C", str(dest)], check=True)
    assert (dest / "r").read_bytes() == rand
    assert (dest / "b").read_bytes() == b"tail"


def test_many_members_and_empty_files():
    buf = io.BytesIO()
    w = PayloadWriter(buf, "zstd")
    n = 20_000
    for i in range(n):
        w.add_bytes(f"filestore/{i % 256:02x}/{i:08d}", b"" if i % 3 else b"x%d" % i)
    stats = w.close()
    assert stats.members == n
    buf.seek(0)
    count = 0
    for m in PayloadReader(buf):
        i = int(m.name.rsplit("/", 1)[1])
        assert m.read() == (b"" if i % 3 else b"x%d" % i)
        count += 1
    assert count == n


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 3000, 3001])
def test_add_stream_part_boundaries(size):
    data = os.urandom(size)
    buf = io.BytesIO()
    w = PayloadWriter(buf, "zstd")
    info = w.add_stream("s", ChoppyReader(data, seed=size), part_size=1000)
    w.add_bytes("after", b"after")
    w.close()
    expected_parts = max(1, -(-size // 1000))
    assert len(info.parts) == expected_parts
    got = _read_all(buf)
    sizes = [len(got[p]) for p in info.parts]
    assert all(s == 1000 for s in sizes[:-1])
    assert b"".join(got[p] for p in info.parts) == data
    assert got["after"] == b"after"
    assert _read_all(buf, logical=True) == {"s": data, "after": b"after"}


def test_logical_member_skips_unread_parts():
    buf = io.BytesIO()
    w = PayloadWriter(buf, "gzip")
    w.add_stream("dump", io.BytesIO(b"a" * 5000), part_size=1000)
    w.add_bytes("next", b"n")
    w.close()
    buf.seek(0)
    names = [m.name for m in PayloadReader(buf).logical_members()]
    assert names == ["dump", "next"]


def test_add_stream_producer_error_is_a_dump_error():
    class Broken:
        def __init__(self):
            self.calls = 0

        def read(self, n):
            self.calls += 1
            if self.calls > 2:
                raise OSError("pipe broke")
            return b"x" * 100

    w = PayloadWriter(io.BytesIO(), "zstd")
    with pytest.raises(DumpError, match="pipe broke"):
        w.add_stream("dump", Broken(), part_size=10_000)


def test_add_stream_memory_is_bounded_by_one_part():
    class Zeros:
        def __init__(self, total):
            self.left = total

        def read(self, n):
            n = min(n, self.left)
            self.left -= n
            return bytes(n)

    tracemalloc.start()
    try:
        w = PayloadWriter(io.BytesIO(), "zstd", level=1)
        info = w.add_stream("dump", Zeros(48 * 2**20), part_size=4 * 2**20)
        w.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == 48 * 2**20 and len(info.parts) == 12
    assert peak < 20 * 2**20, f"peak {peak} bytes for 4 MiB parts"


def test_add_file_refuses_symlinks_and_missing_files(tmp_path):
    target = tmp_path / "t"
    target.write_bytes(b"secret")
    link = tmp_path / "l"
    link.symlink_to(target)
    w = PayloadWriter(io.BytesIO())
    with pytest.raises(DumpError):
        w.add_file("x", link)
    with pytest.raises(DumpError, match="cannot read"):
        w.add_file("x", tmp_path / "missing")
    with pytest.raises(DumpError, match="not a regular file"):
        w.add_file("x", tmp_path)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "a\\b", ""])
def test_writer_refuses_unsafe_names(name):
    with pytest.raises(StreamCryptError):
        PayloadWriter(io.BytesIO()).add_bytes(name, b"x")


def _evil_tar(kind):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ok = tarfile.TarInfo("ok.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        info = tarfile.TarInfo(kind)
        data = b"evil"
        if kind == "symlink":
            info.name, info.type, info.linkname = "link", tarfile.SYMTYPE, "/etc"
        elif kind == "hardlink":
            info.name, info.type, info.linkname = "hl", tarfile.LNKTYPE, "/etc/passwd"
        elif kind == "device":
            info.name, info.type = "dev", tarfile.CHRTYPE
        elif kind == "fifo":
            info.name, info.type = "fifo", tarfile.FIFOTYPE
        if info.type == tarfile.REGTYPE:
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        else:
            tf.addfile(info)
    return zstandard.ZstdCompressor().compress(raw.getvalue())


@pytest.mark.parametrize(
    "kind",
    [
        "../x",
        "/etc/x",
        "a/../../x",
        "a\\..\\x",
        "symlink",
        "hardlink",
        "device",
        "fifo",
    ],
)
def test_reader_rejects_escapes_and_links(tmp_path, kind):
    root = tmp_path / "root"
    root.mkdir()
    reader = PayloadReader(io.BytesIO(_evil_tar(kind)))
    with pytest.raises(StreamCryptError) as exc:
        reader.extract_all(root)
    assert str(exc.value)
    # the safe member before the bad one was extracted, nothing else anywhere
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["ok.txt", "root"]


def test_safe_member_path(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    assert safe_member_path(root, "a/b/c") == root / "a/b/c"
    assert safe_member_path(root, "./a") == root / "a"
    for bad in ["../a", "/a", "a\0b", "a\\b", "C:/x", "a/..", ".", ""]:
        with pytest.raises(StreamCryptError):
            safe_member_path(root, bad)
    (root / "evil").symlink_to(tmp_path)
    with pytest.raises(StreamCryptError, match="symlink"):
        safe_member_path(root, "evil/x")


def test_extraction_never_follows_symlinks_or_overwrites(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "d").symlink_to(outside)
    (root / "existing").write_bytes(b"keep")
    (root / "lnk").symlink_to(outside / "target")
    buf = io.BytesIO()
    w = PayloadWriter(buf)
    for name in ("d/x", "existing", "lnk"):
        w.add_bytes(name, b"new")
    w.close()
    for name in ("d/x", "existing", "lnk"):
        buf.seek(0)
        member = next(m for m in PayloadReader(buf) if m.name == name)
        with pytest.raises(StreamCryptError):
            extract_member(root, member)
    assert list(outside.iterdir()) == []
    assert (root / "existing").read_bytes() == b"keep"


def test_truncated_or_garbage_payload_is_a_format_error():
    buf = io.BytesIO()
    w = PayloadWriter(buf)
    w.add_bytes("a", _text(400_000))
    w.add_bytes("b", os.urandom(100_000))
    w.close()
    data = buf.getvalue()
    with pytest.raises(FormatError):
        _read_all(io.BytesIO(data[: len(data) // 2]))
    with pytest.raises(FormatError):
        _read_all(io.BytesIO(ZSTD_MAGIC + os.urandom(1000)))
    with pytest.raises(FormatError, match="not gzip"):
        PayloadReader(io.BytesIO(data), "gzip")


def test_magic_detection():
    assert compressed_format(b"\xff\xd8\xff\xe0\0\x10JFIF") == "jpeg"
    assert compressed_format(b"\x89PNG\r\n\x1a\n....") == "png"
    assert compressed_format(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    assert compressed_format(b"PK\x03\x04\x14\0") == "zip"
    assert compressed_format(b"\0\0\0\x18ftypmp42") == "isobmff"
    assert compressed_format(b"\xff\xfb\x90\x64") == "mp3"
    assert compressed_format(b"%PDF-1.7\n") is None  # PDFs are sampled
    assert compressed_format(b"RIFF\0\0\0\0WAVEfmt ") is None
    assert compressed_format(b"hello world") is None
    assert should_store(os.urandom(64 * 1024))
    assert not should_store(_text(64 * 1024))
    assert not should_store(os.urandom(1000)), "small samples are not judged"
