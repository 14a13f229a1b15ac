"""Downloads in constant memory: ``Sink.iter_read`` / ``open_range`` stream an
object chunk by chunk (what an HTTP route hands to the client), resume at an
offset, and hold no more than a chunk whatever the size: a 2 GiB sparse
archive streamed through the local sink in a child process grows its peak
RSS by a few MiB only."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from db_backup_suite.lib.errors import SinkError, SinkObjectNotFound
from db_backup_suite.lib.sinks import make_sink, open_download

ROOT = Path(__file__).resolve().parents[2]
GiB = 1024**3
NAME = "proddb/proddb_manual_20260101T000000Z.tar.zst.enc"
#: (offset, bytes) written into the sparse file; the middle one straddles
#: two 1 MiB chunks.
MARKERS = [
    (0, b"OSC-first-bytes!"),
    (GiB - 3, b"straddles-chunks"),
    (2 * GiB - 16, b"the-very-last-16"),
]

STREAM = """
import json, resource, sys
from db_backup_suite.lib.sinks import make_sink, open_download

root, name, markers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sink = make_sink({"type": "local", "path": root})
size = sink.stat(name).size
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
got = {str(off): b"" for off, _ in markers}
pos = chunks = biggest = 0
for chunk in sink.iter_read(name):
    end = pos + len(chunk)
    for off, text in markers:
        lo, hi = max(off, pos), min(off + len(text), end)
        if lo < hi:
            got[str(off)] += chunk[lo - pos : hi - pos]
    pos, chunks, biggest = end, chunks + 1, max(biggest, len(chunk))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({
    "size": size, "read": pos, "chunks": chunks, "biggest": biggest,
    "growth_kib": peak - base,
    "markers": {k: v.decode() for k, v in got.items()},
}))
"""


@pytest.fixture
def sparse_archive(tmp_path):
    root = tmp_path / "dest"
    path = root / NAME
    path.parent.mkdir(parents=True)
    with open(path, "wb") as fh:
        fh.truncate(2 * GiB)
        for offset, text in MARKERS:
            fh.seek(offset)
            fh.write(text)
    return root


def test_two_gib_stream_through_the_local_sink_in_constant_memory(sparse_archive):
    markers = [(off, text.decode()) for off, text in MARKERS]
    proc = subprocess.run(
        [sys.executable, "-c", STREAM, str(sparse_archive), NAME, json.dumps(markers)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["size"] == out["read"] == 2 * GiB
    assert out["biggest"] == 1024 * 1024 and out["chunks"] == 2048
    assert out["markers"] == {str(off): text for off, text in markers}
    # 2 GiB went through; the process grew by a few MiB at most
    assert out["growth_kib"] < 32 * 1024, out


def test_resume_at_an_offset_and_read_a_range(sparse_archive):
    sink = make_sink({"type": "local", "path": str(sparse_archive)})
    tail = b"".join(sink.iter_read(NAME, offset=2 * GiB - 16))
    assert tail == MARKERS[2][1]
    middle = b"".join(sink.iter_read(NAME, offset=GiB - 3, length=16, chunk_size=5))
    assert middle == MARKERS[1][1]
    assert b"".join(sink.iter_read(NAME, offset=2 * GiB)) == b""
    with pytest.raises(SinkError, match="ended 16 bytes before"):
        b"".join(sink.iter_read(NAME, offset=2 * GiB - 16, length=32))


def test_closing_the_iteration_early_closes_the_file(sparse_archive):
    sink = make_sink({"type": "local", "path": str(sparse_archive)})
    before = len(os.listdir("/proc/self/fd"))
    chunks = sink.iter_read(NAME)
    assert next(chunks).startswith(MARKERS[0][1])
    assert len(os.listdir("/proc/self/fd")) == before + 1
    chunks.close()  # the HTTP client went away
    assert len(os.listdir("/proc/self/fd")) == before


def test_bad_offsets_and_missing_objects_are_refused(sparse_archive):
    sink = make_sink({"type": "local", "path": str(sparse_archive)})
    for offset in (-1, 1.5, "3", True):
        with pytest.raises(SinkError, match="offset"):
            next(sink.iter_read(NAME, offset=offset))
    with pytest.raises(SinkObjectNotFound):
        next(sink.iter_read("proddb/nothing.tar.zst.enc"))


@pytest.mark.parametrize("kind", ["s3", "sftp"])
def test_ranges_over_s3_and_sftp(kind, s3_config, sftp_config):
    sink = make_sink(s3_config if kind == "s3" else sftp_config)
    data = os.urandom(3 * 1024 * 1024 + 17)
    sink.put("db/object.bin", _Reader(data))
    assert b"".join(sink.iter_read("db/object.bin")) == data
    assert (
        b"".join(sink.iter_read("db/object.bin", offset=1_000_001))
        == (data[1_000_001:])
    )
    got = b"".join(
        sink.iter_read(
            "db/object.bin", offset=2_500_000, length=600_000, chunk_size=4096
        )
    )
    assert got == data[2_500_000:3_100_000]
    assert b"".join(sink.iter_read("db/object.bin", offset=len(data))) == b""
    with sink.open_range("db/object.bin", len(data) - 5) as reader:
        assert reader.read() == data[-5:]
    with pytest.raises(SinkObjectNotFound):
        next(sink.iter_read("db/missing.bin"))


class _Reader:
    def __init__(self, data):
        self._data, self._pos = data, 0

    def read(self, n):
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk


def test_open_download_for_an_http_response(sparse_archive, sftp_config):
    download = open_download(
        {"type": "local", "path": str(sparse_archive)}, NAME, offset=2 * GiB - 16
    )
    assert (download.size, download.offset, download.length) == (
        2 * GiB,
        2 * GiB - 16,
        16,
    )
    assert b"".join(download) == MARKERS[2][1]

    sink = make_sink(sftp_config)
    data = os.urandom(2 * 1024 * 1024)
    sink.put("db/object.bin", _Reader(data))
    sink.close()
    download = open_download(sftp_config, "db/object.bin", offset=10, chunk_size=65536)
    assert download.length == len(data) - 10
    chunks = iter(download)
    assert next(chunks) == data[10 : 10 + 65536]
    download.close()  # the client went away: reader and connection closed
    assert download._sink._client is None
    with pytest.raises(SinkError, match="cannot start at"):
        open_download(sftp_config, "db/object.bin", offset=len(data) + 1)
    with pytest.raises(SinkObjectNotFound):
        open_download(sftp_config, "db/none.bin")
