"""Chunked, resumable uploads (lib/uploads.py): paths, offsets, limits,
ownership, cleanup. Real files in a temporary folder; the 10 GB upload is a
sparse file (only its last chunk is written), so offsets and limits are
shown at that size without 10 GB of disk."""

import hashlib
import io
import os
import stat
import time

import pytest

from db_backup_suite.lib import uploads
from db_backup_suite.lib.uploads import UploadError

DB = "prod"
UID = 7
FREE = 1 << 50  # the free space handed to open_upload where it is not tested


def _open(base, size, **kw):
    kw.setdefault("free_bytes", FREE)
    return uploads.open_upload(base, database=DB, uid=UID, size=size, **kw)


def _chunk(base, upload_id, offset, data, **kw):
    owner = {"database": DB, "uid": UID}
    owner.update(kw)
    return uploads.write_chunk(
        base,
        upload_id,
        offset=offset,
        stream=io.BytesIO(data),
        length=len(data),
        **owner,
    )


def test_paths_modes_and_unguessable_ids(tmp_path):
    base = str(tmp_path)
    one = _open(base, 10, filename="../../etc/passwd")
    two = _open(base, 10)
    assert one["id"] != two["id"]
    assert uploads.ID_RE.match(one["id"])
    folder = os.path.join(base, "uploads")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    part = uploads.part_path(base, one["id"])
    assert os.path.dirname(part) == folder
    assert stat.S_IMODE(os.stat(part).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(uploads.meta_path(base, one["id"])).st_mode) == 0o600
    # a filename is kept for display only, never as a path
    assert one["filename"] == "passwd"


@pytest.mark.parametrize(
    "bad",
    ["../x", "../../etc/passwd", "a" * 31, "A" * 32, "0" * 31 + "/", "", None, 12],
)
def test_path_traversal_and_malformed_ids_refused(tmp_path, bad):
    with pytest.raises(UploadError) as info:
        uploads.part_path(str(tmp_path), bad)
    assert info.value.code == "not_found"
    with pytest.raises(UploadError):
        uploads.status(str(tmp_path), bad, database=DB, uid=UID)


def test_chunks_in_order_repeat_gap_overlap_and_finish(tmp_path):
    base = str(tmp_path)
    data = os.urandom(3000)
    meta = _open(base, len(data), sha256=hashlib.sha256(data).hexdigest())
    uid = meta["id"]
    assert _chunk(base, uid, 0, data[:1000]) == 1000
    # the same chunk again (its answer was lost): accepted, nothing written
    assert _chunk(base, uid, 0, data[:1000]) == 1000
    assert os.path.getsize(uploads.part_path(base, uid)) == 1000
    # the same offset with other bytes: refused
    with pytest.raises(UploadError) as info:
        _chunk(base, uid, 0, b"x" * 1000)
    assert info.value.code == "conflict"
    # a gap
    with pytest.raises(UploadError) as info:
        _chunk(base, uid, 2000, data[2000:])
    assert (info.value.code, info.value.offset) == ("gap", 1000)
    # an overlap
    with pytest.raises(UploadError) as info:
        _chunk(base, uid, 500, data[500:1500])
    assert (info.value.code, info.value.offset) == ("overlap", 1000)
    # not finished yet: it stays to be resumed
    with pytest.raises(UploadError) as info:
        uploads.finish(base, uid, database=DB, uid=UID)
    assert (info.value.code, info.value.offset) == ("incomplete", 1000)
    assert _chunk(base, uid, 1000, data[1000:]) == 3000
    done = uploads.finish(base, uid, database=DB, uid=UID)
    assert done["finished"]
    path = uploads.finished_path(base, uid, database=DB, uid=UID)
    with open(path, "rb") as handle:
        assert handle.read() == data
    # nothing is appended to a finished upload
    with pytest.raises(UploadError) as info:
        _chunk(base, uid, 3000, b"x")
    assert info.value.code == "finished"


def test_cut_chunk_is_cut_off_and_resumed(tmp_path):
    base = str(tmp_path)
    data = os.urandom(5000)
    uid = _open(base, len(data))["id"]
    _chunk(base, uid, 0, data[:2000])

    class Cut(io.BytesIO):
        """A request body whose connection drops after 1500 bytes."""

        def read(self, size=-1):
            if self.tell() >= 1500:
                raise ConnectionResetError("client went away")
            return super().read(min(size, 1500 - self.tell()))

    with pytest.raises(UploadError) as info:
        uploads.write_chunk(
            base,
            uid,
            database=DB,
            uid=UID,
            offset=2000,
            stream=Cut(data[2000:]),
            length=3000,
        )
    assert info.value.code == "incomplete"
    # stored whole chunks only: resume at 2000
    assert uploads.status(base, uid, database=DB, uid=UID)["offset"] == 2000
    # a body shorter than announced, too
    with pytest.raises(UploadError):
        uploads.write_chunk(
            base,
            uid,
            database=DB,
            uid=UID,
            offset=2000,
            stream=io.BytesIO(data[2000:2100]),
            length=3000,
        )
    assert uploads.status(base, uid, database=DB, uid=UID)["offset"] == 2000
    _chunk(base, uid, 2000, data[2000:])
    uploads.finish(base, uid, database=DB, uid=UID)


def test_wrong_digest_removes_the_upload(tmp_path):
    base = str(tmp_path)
    uid = _open(base, 4, sha256="0" * 64)["id"]
    _chunk(base, uid, 0, b"abcd")
    with pytest.raises(UploadError) as info:
        uploads.finish(base, uid, database=DB, uid=UID)
    assert info.value.code == "digest"
    assert not os.path.exists(uploads.part_path(base, uid))
    with pytest.raises(UploadError):
        _open(base, 4, sha256="not hex")


def test_another_user_or_database_cannot_touch_it(tmp_path):
    base = str(tmp_path)
    uid = _open(base, 4)["id"]
    for owner in ({"uid": UID + 1}, {"database": "other"}):
        with pytest.raises(UploadError) as info:
            _chunk(base, uid, 0, b"abcd", **owner)
        assert info.value.code == "not_found"
        with pytest.raises(UploadError):
            uploads.finish(base, uid, **{"database": DB, "uid": UID, **owner})
        with pytest.raises(UploadError):
            uploads.status(base, uid, **{"database": DB, "uid": UID, **owner})
    assert os.path.getsize(uploads.part_path(base, uid)) == 0


def test_limits(tmp_path):
    base = str(tmp_path)
    with pytest.raises(UploadError) as info:
        _open(base, uploads.DEFAULT_MAX_SIZE + 1)
    assert info.value.code == "too_large"
    with pytest.raises(UploadError) as info:
        _open(base, 2000, max_size=1000)
    assert info.value.code == "too_large"
    with pytest.raises(UploadError) as info:
        _open(base, 10 * 1024**3, free_bytes=5 * 1024**3)
    assert info.value.code == "disk_full"
    for bad in (0, -1, "10", 1.5, True):
        with pytest.raises(UploadError):
            _open(base, bad)
    # the real disk: an upload larger than what is free is refused
    free = uploads.free_space(base)
    with pytest.raises(UploadError) as info:
        uploads.open_upload(
            base, database=DB, uid=UID, size=free + 1, max_size=free * 2
        )
    assert info.value.code == "disk_full"
    assert os.listdir(os.path.join(base, "uploads")) == []
    # a chunk past the declared size
    uid = _open(base, 10)["id"]
    with pytest.raises(UploadError) as info:
        _chunk(base, uid, 0, b"x" * 11)
    assert info.value.code == "too_large"
    with pytest.raises(UploadError) as info:
        uploads.write_chunk(
            base,
            uid,
            database=DB,
            uid=UID,
            offset=0,
            stream=io.BytesIO(b""),
            length=uploads.MAX_CHUNK + 1,
        )
    assert info.value.code == "chunk_too_large"
    assert uploads.max_size_of("") == uploads.DEFAULT_MAX_SIZE
    assert uploads.max_size_of("abc") == uploads.DEFAULT_MAX_SIZE
    assert uploads.max_size_of("-5") == uploads.DEFAULT_MAX_SIZE
    assert uploads.max_size_of(" 1048576 ") == 1048576


def test_sparse_10_gb_upload(tmp_path):
    """A 10 GB upload: everything but the last chunk is a hole (as if the
    earlier chunks had been written), the last chunk lands at its offset,
    the size check passes; a byte more is refused. A few KiB of disk."""
    base = str(tmp_path)
    size = 10 * 1000**3
    last = os.urandom(8 * 1024**2)
    uid = _open(base, size, filename="big.tar.zst.enc")["id"]
    part = uploads.part_path(base, uid)
    os.truncate(part, size - len(last))
    st = uploads.status(base, uid, database=DB, uid=UID)
    assert st["offset"] == size - len(last)
    # a chunk elsewhere than at the end
    with pytest.raises(UploadError) as info:
        _chunk(base, uid, size - len(last) + 1, last[1:])
    assert (info.value.code, info.value.offset) == ("gap", size - len(last))
    with pytest.raises(UploadError) as info:
        _chunk(base, uid, size - len(last), last + b"x")
    assert info.value.code == "too_large"
    assert _chunk(base, uid, size - len(last), last) == size
    # the repeated last chunk compares only its own bytes
    assert _chunk(base, uid, size - len(last), last) == size
    meta = uploads.finish(base, uid, database=DB, uid=UID)
    assert meta["finished"] and meta["size"] == size
    assert os.path.getsize(part) == size
    assert os.stat(part).st_blocks * 512 < 64 * 1024**2  # sparse indeed
    with open(part, "rb") as handle:
        handle.seek(size - len(last))
        assert handle.read() == last
    uploads.remove(base, uid)
    assert os.listdir(os.path.join(base, "uploads")) == []


def test_remove_stale_only_day_old_uploads(tmp_path):
    base = str(tmp_path)
    old = _open(base, 4)["id"]
    fresh = _open(base, 4)["id"]
    busy = _open(base, 4)["id"]
    folder = os.path.join(base, "uploads")
    day_ago = time.time() - 25 * 3600
    for name in (old + ".part", old + ".json", busy + ".json"):
        os.utime(os.path.join(folder, name), (day_ago, day_ago))
    legacy = os.path.join(folder, "wizard-prod-3.upload")
    with open(legacy, "wb") as handle:
        handle.write(b"old single-request upload")
    os.utime(legacy, (day_ago, day_ago))
    removed = uploads.remove_stale(base)
    assert sorted(removed) == sorted([old, "wizard-prod-3.upload"])
    left = sorted(os.listdir(folder))
    assert left == sorted(
        [fresh + ".part", fresh + ".json", busy + ".part", busy + ".json"]
    )


def test_remove_path_only_inside_the_folder(tmp_path):
    base = str(tmp_path)
    uid = _open(base, 4)["id"]
    outside = tmp_path / (uid + ".part")
    outside.write_bytes(b"x")
    assert not uploads.remove_path(base, str(outside))
    assert outside.exists()
    link = os.path.join(base, "uploads", "f" * 32 + ".part")
    os.symlink(str(outside), link)
    assert not uploads.remove_path(base, link)
    assert outside.exists()
    assert uploads.remove_path(base, uploads.part_path(base, uid))
    assert not os.path.exists(uploads.part_path(base, uid))


GIB = 1024**3


def test_free_space_accounts_for_open_uploads_reservations(tmp_path):
    """Five uploads of 50 GiB on 67 GiB free: only the first is accepted;
    what an unfinished upload wrote no longer counts as reserved."""
    base = str(tmp_path)
    free = 67 * GIB
    first = _open(base, 50 * GIB, free_bytes=free)
    with pytest.raises(UploadError) as refused:
        _open(base, 50 * GIB, free_bytes=free)
    assert refused.value.code == "disk_full"
    assert refused.value.params["free"] == 17 * GIB
    # 16 GiB fit in what the first one leaves
    second = _open(base, 16 * GIB, free_bytes=free)
    assert len(os.listdir(uploads.upload_dir(base))) == 4
    pending = uploads.open_uploads(base)
    assert uploads.reserved_bytes(pending) == 66 * GIB
    # the bytes written are on the disk (in free_bytes), no longer reserved
    _chunk(base, second["id"], 0, b"x" * 1000)
    assert uploads.reserved_bytes(uploads.open_uploads(base)) == 66 * GIB - 1000
    # a finished upload reserves nothing
    small = _open(base, 5, free_bytes=free - 1000)
    _chunk(base, small["id"], 0, b"12345")
    uploads.finish(base, small["id"], database=DB, uid=UID)
    ids = {m["id"] for m in uploads.open_uploads(base)}
    assert ids == {first["id"], second["id"]}


def test_chunk_rechecks_free_space_nothing_written(tmp_path):
    base = str(tmp_path)
    meta = _open(base, 10)
    with pytest.raises(UploadError) as refused:
        _chunk(base, meta["id"], 0, b"0123456789", free_bytes=uploads.DISK_MARGIN)
    assert refused.value.code == "disk_full"
    assert refused.value.offset == 0
    assert os.path.getsize(uploads.part_path(base, meta["id"])) == 0
    assert _chunk(base, meta["id"], 0, b"01234", free_bytes=FREE) == 5
    # a repeated chunk writes nothing: not refused for the space
    assert _chunk(base, meta["id"], 0, b"01234", free_bytes=0) == 5


def test_open_uploads_capped_per_user_and_in_all(tmp_path):
    base = str(tmp_path)
    mine = [_open(base, 10) for _ in range(uploads.MAX_OPEN_PER_USER)]
    with pytest.raises(UploadError) as refused:
        _open(base, 10)
    assert (refused.value.code, refused.value.params["scope"]) == ("too_many", "user")
    files = sorted(os.listdir(uploads.upload_dir(base)))
    assert len(files) == 2 * uploads.MAX_OPEN_PER_USER
    # finishing one frees a place
    _chunk(base, mine[0]["id"], 0, b"0123456789")
    uploads.finish(base, mine[0]["id"], database=DB, uid=UID)
    _open(base, 10)
    # the same user in another database, other users: their own count
    uploads.open_upload(base, database="other", uid=UID, size=10, free_bytes=FREE)
    uid = 100
    while len(uploads.open_uploads(base)) < uploads.MAX_OPEN_TOTAL:
        for _ in range(uploads.MAX_OPEN_PER_USER):
            if len(uploads.open_uploads(base)) == uploads.MAX_OPEN_TOTAL:
                break
            uploads.open_upload(base, database=DB, uid=uid, size=10, free_bytes=FREE)
        uid += 1
    before = sorted(os.listdir(uploads.upload_dir(base)))
    with pytest.raises(UploadError) as refused:
        uploads.open_upload(base, database=DB, uid=999, size=10, free_bytes=FREE)
    assert (refused.value.code, refused.value.params["scope"]) == ("too_many", "total")
    assert sorted(os.listdir(uploads.upload_dir(base))) == before


def test_remove_owned_only_removes_the_owners_upload(tmp_path):
    base = str(tmp_path)
    meta = _open(base, 10)
    for owner in ({"database": DB, "uid": 8}, {"database": "other", "uid": UID}):
        assert not uploads.remove_owned(base, meta["id"], **owner)
        assert os.path.exists(uploads.part_path(base, meta["id"]))
    assert uploads.remove_owned(base, meta["id"], database=DB, uid=UID)
    assert os.listdir(uploads.upload_dir(base)) == []
