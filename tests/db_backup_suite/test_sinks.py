"""Storage sinks against real storage: a directory, SeaweedFS S3, OpenSSH.

Faults (servers killed mid-upload, unreachable hosts, host keys, logins)
are in test_backup_sinks_faults.py.
"""

import io
import os
import subprocess
import threading
from pathlib import Path

import pytest

from db_backup_suite.lib.errors import SinkError, SinkObjectNotFound
from db_backup_suite.lib.sinks import make_sink
from db_backup_suite.lib.sinks.base import validate_name
from db_backup_suite.lib.sinks.s3 import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    GiB,
    MiB,
    base_part_size,
    part_size_for,
)

TiB = 1024 * GiB
SINK_TYPES = ["local", "s3", "sftp"]


@pytest.fixture(params=SINK_TYPES)
def sink_kind(request):
    return request.param


@pytest.fixture
def sink_config(request, sink_kind, tmp_path):
    if sink_kind == "local":
        return {"type": "local", "path": str(tmp_path / "backups")}
    if sink_kind == "s3":
        config = request.getfixturevalue("s3_config")
        config["part_size"] = 5 * MiB
        return config
    return request.getfixturevalue("sftp_config")


@pytest.fixture
def sink(sink_config):
    with make_sink(sink_config) as sink:
        yield sink


def leftovers(sink_config, request):
    """Whatever the storage holds besides committed objects, seen directly
    on the storage (not through the sink)."""
    kind = sink_config["type"]
    if kind in ("local", "sftp"):
        root = Path(sink_config["path"])
        if not root.exists():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    server = request.getfixturevalue("s3_server")
    client = server.client()
    bucket = sink_config["bucket"]
    objects = [
        o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])
    ]
    uploads = [
        u["Key"]
        for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    ]
    return sorted(objects) + [f"upload:{key}" for key in uploads]


def payload(size, seed=0):
    return (bytes(range(256)) * (size // 256 + 1))[seed : seed + size]


def write_in_chunks(writer, data, chunk=1024 * 1024 + 7):
    for start in range(0, len(data), chunk):
        assert writer.write(data[start : start + chunk]) == len(
            data[start : start + chunk]
        )


# round trip -----------------------------------------------------------------
def test_round_trip(sink, sink_config, request):
    data = os.urandom(3 * MiB + 123)
    with sink.open_write("db1/2025/archive.dbbs", size_hint=len(data)) as w:
        write_in_chunks(w, data)
        stored = w.commit()
    assert stored.name == "db1/2025/archive.dbbs"
    assert stored.size == len(data)
    assert stored.modified.tzinfo is not None
    assert sink.list() == [stored]
    assert sink.stat("db1/2025/archive.dbbs").size == len(data)
    with sink.open_read("db1/2025/archive.dbbs") as reader:
        first = reader.read(10)
        rest = reader.read()
    assert first + rest == data
    out = io.BytesIO()
    assert sink.get("db1/2025/archive.dbbs", out) == len(data)
    assert out.getvalue() == data
    assert leftovers(sink_config, request) == ["db1/2025/archive.dbbs"]

    sink.delete("db1/2025/archive.dbbs")
    assert sink.list() == []
    assert not sink.exists("db1/2025/archive.dbbs")
    with pytest.raises(SinkObjectNotFound):
        sink.stat("db1/2025/archive.dbbs")
    with pytest.raises(SinkObjectNotFound):
        sink.open_read("db1/2025/archive.dbbs")
    with pytest.raises(SinkObjectNotFound):
        sink.delete("db1/2025/archive.dbbs")


def test_put_get_empty_and_small_objects(sink):
    assert sink.put("empty", io.BytesIO(b"")).size == 0
    assert sink.put("small", io.BytesIO(b"hello")).size == 5
    out = io.BytesIO()
    sink.get("empty", out)
    assert out.getvalue() == b""
    with sink.open_read("small") as reader:
        assert reader.read() == b"hello"


def test_list_sorted_and_filtered_by_prefix(sink):
    for name in ["b/2", "a/10", "c", "a/1", "ab"]:
        sink.put(name, io.BytesIO(name.encode()))
    assert [o.name for o in sink.list()] == ["a/1", "a/10", "ab", "b/2", "c"]
    assert [o.name for o in sink.list("a/")] == ["a/1", "a/10"]
    assert [o.name for o in sink.list("a")] == ["a/1", "a/10", "ab"]
    assert [o.name for o in sink.list("a/1")] == ["a/1", "a/10"]
    assert sink.list("zzz") == []
    assert sink.stat("a/10").size == 4


def test_overwrite_replaces_atomically(sink):
    sink.put("x/obj", io.BytesIO(b"old"))
    with sink.open_write("x/obj") as w:
        w.write(b"new content")
        # The previous version stays visible until commit.
        with sink.open_read("x/obj") as r:
            assert r.read() == b"old"
        w.commit()
    with sink.open_read("x/obj") as r:
        assert r.read() == b"new content"
    assert [o.name for o in sink.list()] == ["x/obj"]


# atomicity ------------------------------------------------------------------
def test_in_progress_write_is_not_listed(sink, sink_config, request):
    writer = sink.open_write("db/in-progress.dbbs")
    write_in_chunks(writer, payload(6 * MiB))  # S3: a part is uploading
    assert sink.list() == []
    assert not sink.exists("db/in-progress.dbbs")
    stored = writer.commit()
    assert [o.name for o in sink.list()] == ["db/in-progress.dbbs"]
    assert stored.size == 6 * MiB
    assert leftovers(sink_config, request) == ["db/in-progress.dbbs"]


def test_abort_leaves_nothing(sink, sink_config, request):
    writer = sink.open_write("db/aborted.dbbs")
    write_in_chunks(writer, payload(11 * MiB))  # S3: two parts uploaded
    assert leftovers(sink_config, request) != []  # something is in progress
    writer.abort()
    writer.abort()  # idempotent
    assert sink.list() == []
    assert leftovers(sink_config, request) == []
    assert sink.cleanup_incomplete() == 0
    with pytest.raises(SinkError, match="aborted"):
        writer.write(b"more")
    with pytest.raises(SinkError, match="aborted"):
        writer.commit()


def test_exception_inside_with_aborts(sink, sink_config, request):
    with pytest.raises(ZeroDivisionError), sink.open_write("db/boom.dbbs") as w:
        write_in_chunks(w, payload(6 * MiB))
        1 / 0  # noqa: B018
    assert w.closed
    assert sink.list() == []
    assert leftovers(sink_config, request) == []


def test_leaving_with_without_commit_discards(sink, sink_config, request):
    with (
        pytest.raises(SinkError, match="without commit"),
        sink.open_write("db/forgotten.dbbs") as w,
    ):
        w.write(b"data that must not count as a backup")
    assert sink.list() == []
    assert leftovers(sink_config, request) == []


BAD_NAMES = [
    "",
    "/etc/passwd",
    "../escape",
    "a/../../b",
    "a/./b",
    "a//b",
    "a/",
    ".hidden",
    "db/.tmp",
    "x.part",
    "a\\b",
    "nul\x00",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_names_are_refused(sink, name):
    with pytest.raises(SinkError, match="(?i)name"):
        sink.open_write(name)
    with pytest.raises(SinkError, match="(?i)name"):
        sink.open_read(name)
    with pytest.raises(SinkError, match="(?i)name"):
        sink.stat(name)
    with pytest.raises(SinkError, match="(?i)name"):
        sink.delete(name)


def test_unsafe_prefix_is_refused(sink):
    with pytest.raises(SinkError):
        sink.list("../")
    with pytest.raises(SinkError):
        sink.list("/abs")


def test_validate_name_accepts_normal_names():
    assert validate_name("mydb/2025/mydb_2025-01-31T02-00-00Z.dbbs")
    assert validate_name("a..b/c")  # dots inside a component are fine


def test_make_sink_refuses_bad_config(tmp_path):
    with pytest.raises(SinkError, match="Unknown destination type"):
        make_sink({"type": "ftp"})
    with pytest.raises(SinkError, match="oops"):
        make_sink({"type": "local", "path": str(tmp_path), "oops": 1})
    with pytest.raises(SinkError, match="absolute"):
        make_sink({"type": "local", "path": "relative/dir"})
    with pytest.raises(SinkError, match="server-side encryption"):
        make_sink({"type": "s3", "bucket": "b", "sse": "rot13"})
    with pytest.raises(SinkError, match="5 MiB"):
        make_sink({"type": "s3", "bucket": "b", "part_size": 1024})
    with pytest.raises(SinkError, match="known_hosts"):
        make_sink(
            {
                "type": "sftp",
                "host": "h",
                "username": "u",
                "password": "p",
                "known_hosts": "",
            }
        )


# local specifics ------------------------------------------------------------
def test_local_temp_is_hidden_in_the_target_directory(tmp_path):
    sink = make_sink({"type": "local", "path": str(tmp_path)})
    with sink.open_write("db/a.dbbs") as w:
        w.write(b"x" * 100)
        temps = os.listdir(tmp_path / "db")
        assert len(temps) == 1 and temps[0].startswith(".")
        assert sink.list() == []
        w.commit()
    assert os.listdir(tmp_path / "db") == ["a.dbbs"]
    assert (tmp_path / "db" / "a.dbbs").stat().st_mode & 0o077 == 0


def test_local_test_connection(tmp_path):
    sink = make_sink({"type": "local", "path": str(tmp_path / "new")})
    assert "writable" in sink.test_connection()
    assert (tmp_path / "new").is_dir()


def _can_mount_tmpfs(path):
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
        capture_output=True,
    )
    return result.returncode == 0


def test_local_disk_full_is_a_clear_error(tmp_path):
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    if not _can_mount_tmpfs(mountpoint):
        pytest.skip("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)")
    try:
        sink = make_sink({"type": "local", "path": str(mountpoint)})
        with (
            pytest.raises(SinkError, match="disk is full") as info,
            sink.open_write("db/full.dbbs") as w,
        ):
            for _ in range(4):
                w.write(b"\0" * 512 * 1024)
            w.commit()
        assert str(mountpoint) in str(info.value)
        assert sink.list() == []
        assert [p.name for p in mountpoint.rglob("*") if p.is_file()] == []
        # Space is free again: a small backup fits.
        assert sink.put("db/ok.dbbs", io.BytesIO(b"ok")).size == 2
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


# S3 specifics ---------------------------------------------------------------
def test_part_size_schedule_reaches_5_tib():
    sizes = [part_size_for(n, 8 * MiB) for n in range(1, MAX_PARTS + 1)]
    assert sum(sizes) >= 5 * TiB
    assert all(MIN_PART_SIZE <= s <= MAX_PART_SIZE for s in sizes)
    assert sizes[0] == 8 * MiB and sizes[999] == 8 * MiB
    assert sizes[1000] == 16 * MiB
    assert sum(sizes[:1000]) > 78 * GiB / 10  # 8 GiB before the first step
    assert sum(part_size_for(n) for n in range(1, MAX_PARTS + 1)) >= 5 * TiB
    with pytest.raises(SinkError):
        part_size_for(MAX_PARTS + 1)


def test_base_part_size_from_size_hint():
    assert base_part_size(None, None) == 8 * MiB
    assert base_part_size(5 * MiB, 100 * MiB) == 5 * MiB
    base = base_part_size(8 * MiB, 5 * TiB)
    assert base % MiB == 0
    assert base * (MAX_PARTS - 1000) >= 5 * TiB  # fits without growing


def test_s3_multipart_bounded_in_flight(s3_server, s3_config):
    sink = make_sink(dict(s3_config, part_size=5 * MiB, max_in_flight=2))
    in_flight = {"now": 0, "max": 0, "calls": 0}
    lock = threading.Lock()

    def before(**_kwargs):
        with lock:
            in_flight["now"] += 1
            in_flight["calls"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])

    def after(**_kwargs):
        with lock:
            in_flight["now"] -= 1

    events = sink._client().meta.events
    events.register("before-call.s3.UploadPart", before)
    events.register("after-call.s3.UploadPart", after)
    data = os.urandom(22 * MiB + 5)
    with sink.open_write("big/multi.dbbs") as w:
        write_in_chunks(w, data, chunk=3 * MiB + 1)
        # Memory bound: part buffers are reused, one filling + 2 in flight.
        assert w._buffers == 3
        stored = w.commit()
    assert stored.size == len(data)
    assert in_flight["calls"] == 5  # 4 x 5 MiB + the rest
    assert 1 <= in_flight["max"] <= 2
    head = s3_server.client().head_object(
        Bucket=s3_config["bucket"], Key="big/multi.dbbs"
    )
    assert head["ETag"].strip('"').endswith("-5")
    with sink.open_read("big/multi.dbbs") as r:
        assert r.read() == data


def test_s3_small_object_is_a_single_put(s3_server, s3_config):
    sink = make_sink(s3_config)
    sink.put("small.dbbs", io.BytesIO(b"x" * 1000))
    head = s3_server.client().head_object(Bucket=s3_config["bucket"], Key="small.dbbs")
    assert "-" not in head["ETag"]


def test_s3_prefix_and_sse(s3_server, s3_config):
    sink = make_sink(
        dict(s3_config, prefix="tenant/backups/", sse="AES256", part_size=5 * MiB)
    )
    sink.put("db/a.dbbs", io.BytesIO(payload(6 * MiB)))
    sink.put("db/b.dbbs", io.BytesIO(b"b"))
    client = s3_server.client()
    keys = [
        o["Key"] for o in client.list_objects_v2(Bucket=s3_config["bucket"])["Contents"]
    ]
    assert keys == ["tenant/backups/db/a.dbbs", "tenant/backups/db/b.dbbs"]
    for key in keys:
        head = client.head_object(Bucket=s3_config["bucket"], Key=key)
        assert head["ServerSideEncryption"] == "AES256"
    assert [o.name for o in sink.list("db/")] == ["db/a.dbbs", "db/b.dbbs"]
    with sink.open_read("db/a.dbbs") as r:
        assert r.read() == payload(6 * MiB)


def test_s3_missing_bucket(s3_server):
    sink = make_sink(s3_server.sink_config("no-such-bucket-here"))
    with pytest.raises(SinkError, match="does not exist"):
        sink.test_connection()
    assert (
        "reachable"
        in make_sink(s3_server.sink_config(s3_server.new_bucket())).test_connection()
    )


def test_secrets_never_in_repr_or_errors(s3_server, sftp_server, sftp_dir):
    s3 = make_sink(s3_server.sink_config("no-such-bucket-here"))
    assert s3_server.secret_key not in repr(s3)
    with pytest.raises(SinkError) as info:
        s3.list()
    assert s3_server.secret_key not in str(info.value)
    sftp = make_sink(sftp_server.sink_config(sftp_dir))
    assert "PRIVATE KEY" not in repr(sftp)
    assert sftp_server.private_key.splitlines()[1] not in repr(vars(sftp))
