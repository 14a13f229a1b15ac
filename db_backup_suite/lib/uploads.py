"""Chunked, resumable uploads of archives to a private folder (no Odoo).

An archive to restore is sent in chunks, each an ordinary HTTP request of a
few MiB, into ``<data_dir>/db_backup_suite/uploads/<id>.part``; the web
worker never holds more than one read block of it, whatever its size. The
upload's facts live beside it in ``<id>.json``:

    id        32 hex digits from :func:`secrets.token_hex` (unguessable);
              every path is derived from a checked id, never from a name
              a client sent, so ``../`` or ``/`` cannot reach another file
    database  the database it was opened for
    uid       the user who opened it: only they can append, finish, ask
              its offset or restore it (another user is told it does not
              exist, which is as much as they learn)
    size      the declared size (bytes), checked against a limit and the
              free disk space when it is opened (less the space the other
              unfinished uploads still reserve: their declared size minus
              what they wrote), and the free space again at every chunk
    sha256    the declared digest (or None), checked when it is finished
    filename  for display only (never a path)
    finished  set once size (and digest) matched; nothing is appended after

Chunks carry their offset and must continue the file exactly: a chunk at
the current end is appended; a repeated chunk (the one whose answer was
lost) that ends at the current end with the same bytes is accepted again
without writing; a gap (offset past the end) or an overlap (any other
offset below the end) is refused with the offset to resume from. A chunk
that does not arrive whole (connection cut) is cut off again, so the file
always ends on a whole chunk and :func:`status` tells where to resume.

At most :data:`MAX_OPEN_PER_USER` unfinished uploads per user and database
and :data:`MAX_OPEN_TOTAL` in the folder are open at once (``too_many``):
opening uploads cannot fill the folder with files.

Folder 0700, files 0600. Uploads (finished or not) older than a day are
removed by :func:`remove_stale` (a daily cron); a restore removes its
upload when it ends, success or failure.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time

from .errors import SuiteError

DIRNAME = "uploads"
ID_RE = re.compile(r"^[0-9a-f]{32}$")
#: default largest archive accepted (bytes): 50 GiB
DEFAULT_MAX_SIZE = 50 * 1024**3
#: largest single chunk (bytes); the browser sends 8 MiB
MAX_CHUNK = 64 * 1024**2
#: free space kept on the disk beyond the upload itself (bytes)
DISK_MARGIN = 256 * 1024**2
#: an upload untouched this long is abandoned (seconds)
STALE_AFTER = 24 * 3600
#: unfinished uploads one user may hold open in one database at once
MAX_OPEN_PER_USER = 3
#: unfinished uploads the folder holds at once (every database, every user)
MAX_OPEN_TOTAL = 20
BLOCK = 1 << 20


class UploadError(SuiteError, ValueError):
    """A refused upload operation. ``code`` names the reason for callers
    (``not_found``, ``too_large``, ``disk_full``, ``gap``, ``overlap``,
    ``conflict``, ``incomplete``, ``digest``, ``finished``, ``bad_request``,
    ``chunk_too_large``, ``too_many``); ``offset`` is where to resume when
    it applies."""

    def __init__(self, code, message, offset=None, **params):
        super().__init__(message)
        self.code = code
        self.offset = offset
        self.params = params


def upload_dir(base):
    """``<base>/uploads`` (0700), ``base`` being the suite's private folder."""
    path = os.path.join(base, DIRNAME)
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def check_id(upload_id):
    """The id, or UploadError ``not_found`` for anything that is not one
    (path separators, dots, wrong length, another type)."""
    if not isinstance(upload_id, str) or not ID_RE.match(upload_id):
        raise UploadError("not_found", "no such upload")
    return upload_id


def part_path(base, upload_id):
    return os.path.join(upload_dir(base), check_id(upload_id) + ".part")


def meta_path(base, upload_id):
    return os.path.join(upload_dir(base), check_id(upload_id) + ".json")


def _write_meta(base, meta):
    path = meta_path(base, meta["id"])
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(meta, handle)
    os.replace(tmp, path)


def read_meta(base, upload_id, *, database, uid):
    """The upload's facts if it exists and belongs to ``database`` and
    ``uid``; UploadError ``not_found`` otherwise (the same answer for a
    missing upload and another user's, so ids cannot be probed)."""
    path = meta_path(base, upload_id)
    try:
        with open(path) as handle:
            meta = json.load(handle)
    except (OSError, ValueError):
        raise UploadError("not_found", "no such upload") from None
    if meta.get("database") != database or meta.get("uid") != uid:
        raise UploadError("not_found", "no such upload")
    if not os.path.isfile(part_path(base, upload_id)):
        raise UploadError("not_found", "no such upload")
    return meta


def max_size_of(value):
    """The configured limit (a system parameter's text) in bytes, the
    default when empty or not a positive integer."""
    try:
        size = int(str(value).strip())
    except (TypeError, ValueError):
        return DEFAULT_MAX_SIZE
    return size if size > 0 else DEFAULT_MAX_SIZE


def check_size(size, *, max_size, free_bytes, margin=DISK_MARGIN):
    """Refuse a declared ``size`` over the limit or the free disk space."""
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise UploadError("bad_request", "the size must be a positive integer")
    if size > max_size:
        raise UploadError(
            "too_large",
            "the archive is larger than the limit",
            size=size,
            max_size=max_size,
        )
    if size + margin > free_bytes:
        raise UploadError(
            "disk_full",
            "not enough free disk space for this archive",
            size=size,
            free=free_bytes,
        )


def free_space(base):
    return shutil.disk_usage(upload_dir(base)).free


def open_uploads(base):
    """The facts of every unfinished upload of the folder (all databases),
    each with ``written``: the bytes its file holds so far."""
    folder = upload_dir(base)
    found = []
    for name in sorted(os.listdir(folder)):
        stem, _dot, ext = name.partition(".")
        if ext != "json" or not ID_RE.match(stem):
            continue
        try:
            with open(os.path.join(folder, name)) as handle:
                meta = json.load(handle)
            written = os.path.getsize(os.path.join(folder, stem + ".part"))
        except (OSError, ValueError):
            continue  # removed meanwhile, or half written
        if not isinstance(meta, dict) or meta.get("finished"):
            continue
        meta["written"] = written
        found.append(meta)
    return found


def reserved_bytes(pending):
    """What the unfinished uploads ``pending`` (:func:`open_uploads`) will
    still write: the sum of their declared sizes minus what they wrote."""
    total = 0
    for meta in pending:
        size = meta.get("size")
        if isinstance(size, int) and not isinstance(size, bool):
            total += max(size - meta.get("written", 0), 0)
    return total


def check_open_count(
    pending,
    *,
    database,
    uid,
    max_per_user=MAX_OPEN_PER_USER,
    max_total=MAX_OPEN_TOTAL,
):
    """Refuse one more upload when ``uid`` holds ``max_per_user`` unfinished
    uploads in ``database``, or the folder ``max_total`` (``too_many``)."""
    mine = sum(
        1 for m in pending if m.get("database") == database and m.get("uid") == uid
    )
    if mine >= max_per_user:
        raise UploadError(
            "too_many",
            "too many unfinished uploads of this user",
            scope="user",
            limit=max_per_user,
        )
    if len(pending) >= max_total:
        raise UploadError(
            "too_many",
            "too many unfinished uploads on the server",
            scope="total",
            limit=max_total,
        )


@contextlib.contextmanager
def _folder_locked(base):
    """The uploads folder locked (opens are counted and reserved one at a
    time)."""
    fd = os.open(upload_dir(base), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def open_upload(
    base,
    *,
    database,
    uid,
    size,
    sha256=None,
    filename=None,
    max_size=DEFAULT_MAX_SIZE,
    free_bytes=None,
    max_per_user=MAX_OPEN_PER_USER,
    max_total=MAX_OPEN_TOTAL,
):
    """Create an empty upload; its facts (``dict``, with ``id``).

    Refused (UploadError) over the size limit, over the free disk space
    less what the other unfinished uploads still reserve, or over the
    number of unfinished uploads (:func:`check_open_count`)."""
    if sha256 is not None:
        sha256 = str(sha256).strip().lower()
        if not re.match(r"^[0-9a-f]{64}$", sha256):
            raise UploadError("bad_request", "the digest must be 64 hex digits")
    name = os.path.basename(str(filename or "archive"))[:200] or "archive"
    with _folder_locked(base):
        pending = open_uploads(base)
        check_open_count(
            pending,
            database=database,
            uid=uid,
            max_per_user=max_per_user,
            max_total=max_total,
        )
        free = free_space(base) if free_bytes is None else free_bytes
        check_size(size, max_size=max_size, free_bytes=free - reserved_bytes(pending))
        meta = _create(base, database, uid, size, sha256, name)
    return meta


def _create(base, database, uid, size, sha256, name):
    upload_id = secrets.token_hex(16)
    fd = os.open(
        part_path(base, upload_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
    )
    os.close(fd)
    meta = {
        "id": upload_id,
        "database": database,
        "uid": uid,
        "size": size,
        "sha256": sha256 or None,
        "filename": name,
        "created": time.time(),
        "finished": False,
    }
    _write_meta(base, meta)
    return meta


def status(base, upload_id, *, database, uid):
    """``{"id", "offset", "size", "finished", "filename"}``: where to
    resume (the bytes stored so far)."""
    meta = read_meta(base, upload_id, database=database, uid=uid)
    offset = os.path.getsize(part_path(base, upload_id))
    return {
        "id": upload_id,
        "offset": offset,
        "size": meta["size"],
        "finished": meta["finished"],
        "filename": meta["filename"],
    }


@contextlib.contextmanager
def _locked(path):
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read_into(stream, length):
    """Yield ``length`` bytes of ``stream`` in blocks; UploadError
    ``incomplete`` if it ends (or breaks) before."""
    left = length
    while left:
        try:
            block = stream.read(min(BLOCK, left))
        except Exception as exc:  # a cut connection raises in the server
            raise UploadError("incomplete", "the chunk did not arrive whole") from exc
        if not block:
            raise UploadError("incomplete", "the chunk did not arrive whole")
        left -= len(block)
        yield block


def write_chunk(
    base, upload_id, *, database, uid, offset, stream, length, free_bytes=None
):
    """Append ``length`` bytes read from ``stream`` at ``offset``; the new
    offset. See the module's rules (repeat, gap, overlap, cut chunk). A new
    chunk is refused (``disk_full``) when the disk has not ``length`` bytes
    free beyond :data:`DISK_MARGIN` (``free_bytes``: the free space, for
    tests; measured otherwise)."""
    meta = read_meta(base, upload_id, database=database, uid=uid)
    if meta["finished"]:
        raise UploadError("finished", "this upload is finished already")
    for value in (offset, length):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UploadError("bad_request", "offset and length must be integers")
    if length > MAX_CHUNK:
        raise UploadError("chunk_too_large", "the chunk is too large", max=MAX_CHUNK)
    path = part_path(base, upload_id)
    with _locked(path) as fd:
        current = os.fstat(fd).st_size
        if offset + length > meta["size"]:
            raise UploadError(
                "too_large",
                "the chunk goes past the declared size",
                offset=current,
                size=offset + length,
                max_size=meta["size"],
            )
        if offset > current:
            raise UploadError("gap", "a chunk is missing before this one", current)
        if offset < current:
            if offset + length != current:
                raise UploadError(
                    "overlap", "this chunk overlaps what is stored", current
                )
            # the chunk stored last, sent again (its answer was lost)
            position = offset
            for block in _read_into(stream, length):
                if os.pread(fd, len(block), position) != block:
                    raise UploadError(
                        "conflict",
                        "this chunk differs from the one stored at its offset",
                        current,
                    )
                position += len(block)
            return current
        free = free_space(base) if free_bytes is None else free_bytes
        if length + DISK_MARGIN > free:
            raise UploadError(
                "disk_full",
                "not enough free disk space for this chunk",
                current,
                size=length,
                free=free,
            )
        position = offset
        try:
            for block in _read_into(stream, length):
                view = memoryview(block)
                while view:
                    written = os.pwrite(fd, view, position)
                    position += written
                    view = view[written:]
        except BaseException:
            # a chunk is stored whole or not at all
            os.ftruncate(fd, offset)
            raise
        os.fsync(fd)
        return position


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def finish(base, upload_id, *, database, uid, check_digest=True):
    """Check the size (and the declared digest) and mark it finished: its
    facts. An upload that does not match is removed (UploadError
    ``digest``); an incomplete one stays to be resumed."""
    meta = read_meta(base, upload_id, database=database, uid=uid)
    if meta["finished"]:
        return meta
    path = part_path(base, upload_id)
    with _locked(path) as fd:
        current = os.fstat(fd).st_size
        if current != meta["size"]:
            raise UploadError(
                "incomplete",
                "the upload is not complete",
                current,
                size=meta["size"],
            )
        if meta["sha256"] and check_digest and file_sha256(path) != meta["sha256"]:
            remove(base, upload_id)
            raise UploadError("digest", "the file received differs from the one sent")
        os.fchmod(fd, 0o600)
        meta["finished"] = True
        meta["finished_at"] = time.time()
        _write_meta(base, meta)
    return meta


def finished_path(base, upload_id, *, database, uid):
    """The path of a finished upload of ``uid`` in ``database``."""
    meta = read_meta(base, upload_id, database=database, uid=uid)
    if not meta["finished"]:
        raise UploadError("incomplete", "the upload is not complete")
    return part_path(base, upload_id)


def remove(base, upload_id):
    """Remove an upload's file and facts (no error if gone)."""
    for path in (part_path(base, upload_id), meta_path(base, upload_id)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def remove_owned(base, upload_id, *, database, uid):
    """Remove the upload ``upload_id`` only if it is one of ``uid`` in
    ``database`` (finished or not); True if it was removed."""
    try:
        read_meta(base, upload_id, database=database, uid=uid)
    except UploadError:
        return False
    remove(base, upload_id)
    return True


def remove_path(base, path):
    """Remove the upload whose ``.part`` is ``path``, only if it is one of
    the uploads folder (not a link, a well-formed id); True if it was."""
    folder = os.path.realpath(upload_dir(base))
    name = os.path.basename(path)
    if (
        os.path.islink(path)
        or os.path.dirname(os.path.realpath(path)) != folder
        or not name.endswith(".part")
        or not ID_RE.match(name[: -len(".part")])
    ):
        return False
    remove(base, name[: -len(".part")])
    return True


def remove_stale(base, *, older_than=STALE_AFTER, now=None):
    """Remove uploads (and stray files of the folder) not modified for
    ``older_than`` seconds: the list of ids (or names) removed."""
    now = time.time() if now is None else now
    folder = upload_dir(base)
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if now - info.st_mtime < older_than:
            continue
        stem, _dot, ext = name.partition(".")
        if ID_RE.match(stem) and ext in ("part", "json", "json.tmp"):
            sibling = os.path.join(
                folder, stem + (".json" if ext == "part" else ".part")
            )
            with contextlib.suppress(FileNotFoundError):
                if now - os.lstat(sibling).st_mtime < older_than:
                    continue  # its other half is in use
            remove(base, stem)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            if stem not in removed:
                removed.append(stem)
        elif os.path.isfile(path) or os.path.islink(path):
            # a file of the old single-request upload (wizard-<db>-<id>.upload)
            os.unlink(path)
            removed.append(name)
    return removed
