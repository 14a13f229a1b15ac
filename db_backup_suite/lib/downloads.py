"""Downloads prepared outside the web worker (no Odoo).

A password-protected download is re-encrypted by a detached process,
``python -m db_backup_suite.lib.downloads --job-file F``, started by the
download wizard: it reads the archive from its destination, decrypts it
with the server keyring (this database as tenant) and encrypts it with the
user's password, one block at a time (constant memory, no plaintext on
disk), into ``<data_dir>/db_backup_suite/downloads/<id>.part``, renamed
``<id>.enc`` when complete. Where it stands is written beside it in
``<id>.json`` (``state``: ``running``/``done``/``failed``, ``done`` and
``total`` bytes, ``error``). The web worker then only serves a finished
local file (or hands it to the proxy with X-Accel-Redirect): no decryption,
no destination connection and no re-encryption under ``limit_time_real``.

The job file (the password inside, 0600) is read and removed by the process
before anything else. Folder 0700, files 0600; ids are 32 hex digits
(``secrets.token_hex``), checked before any path is built. A prepared file
is removed after its download, or after a day (:func:`remove_stale`).
"""

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import time

DIRNAME = "downloads"
ID_RE = re.compile(r"^[0-9a-f]{32}$")
STALE_AFTER = 24 * 3600
BLOCK = 1 << 20
REPORT_EVERY = 0.5  # seconds between two progress writes

_logger = logging.getLogger(__name__)


def download_dir(base):
    path = os.path.join(base, DIRNAME)
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def check_id(download_id):
    if not isinstance(download_id, str) or not ID_RE.match(download_id):
        raise ValueError("not a download id")
    return download_id


def file_path(base, download_id):
    return os.path.join(download_dir(base), check_id(download_id) + ".enc")


def _status_path(base, download_id):
    return os.path.join(download_dir(base), check_id(download_id) + ".json")


def write_status(base, download_id, **status):
    path = _status_path(base, download_id)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(status, at=time.time(), pid=os.getpid()), handle)
    os.replace(tmp, path)


def read_status(base, download_id):
    """Where the preparation stands (``{}`` when there is none)."""
    try:
        with open(_status_path(base, download_id)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def remove(base, download_id):
    folder = download_dir(base)
    check_id(download_id)
    for ext in (".enc", ".part", ".json", ".json.tmp"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(folder, download_id + ext))


def remove_stale(base, *, older_than=STALE_AFTER, now=None):
    """Remove prepared downloads (and their leftovers) a day old: ids."""
    now = time.time() if now is None else now
    folder = download_dir(base)
    removed = set()
    for name in os.listdir(folder):
        stem = name.split(".", 1)[0]
        try:
            age = now - os.lstat(os.path.join(folder, name)).st_mtime
        except FileNotFoundError:
            continue
        if age >= older_than and ID_RE.match(stem):
            removed.add(stem)
    for stem in removed:
        remove(base, stem)
    return sorted(removed)


class _Counter:
    """A file object counting what goes through it (for the progress)."""

    def __init__(self, raw, on_bytes):
        self.raw = raw
        self.on_bytes = on_bytes
        self.count = 0

    def read(self, size=-1):
        data = self.raw.read(size)
        self.count += len(data)
        self.on_bytes(self.count)
        return data

    def readinto(self, buffer):
        n = self.raw.readinto(buffer)
        self.count += n or 0
        self.on_bytes(self.count)
        return n

    def __getattr__(self, name):
        return getattr(self.raw, name)


def prepare(job, base, *, keyring=None):
    """Re-encrypt the archive of ``job`` with its password into the
    download's file; the final size. ``job``: ``id``, ``sink`` (config),
    ``name`` (object), ``tenant``, ``password``, ``total`` (bytes, for the
    progress)."""
    from . import crypto, sinks

    download_id = check_id(job["id"])
    total = job.get("total") or 0
    last = [0.0]

    def report(done):
        now = time.monotonic()
        if now - last[0] >= REPORT_EVERY:
            last[0] = now
            write_status(base, download_id, state="running", done=done, total=total)

    write_status(base, download_id, state="running", done=0, total=total)
    if keyring is None:
        keyring = crypto.load_keyring()
    final = file_path(base, download_id)
    part = final[: -len(".enc")] + ".part"
    sink = sinks.make_sink(job["sink"])
    try:
        with sink.open_read(job["name"]) as raw:
            reader = crypto.open_archive(
                _Counter(raw, report), keyring=keyring, tenant=job["tenant"]
            )
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                writer = crypto.EncryptingWriter(
                    out,
                    password=job["password"],
                    tenant=job["tenant"],
                    purpose=crypto.PURPOSE,
                    content_type=reader.content_type or "tar+zstd",
                )
                while True:
                    block = reader.read(BLOCK)
                    if not block:
                        break
                    writer.write(block)
                writer.close()
                out.flush()
                os.fsync(out.fileno())
    finally:
        sink.close()
    os.replace(part, final)
    size = os.path.getsize(final)
    write_status(base, download_id, state="done", done=total, total=total, size=size)
    return size


def run_job_file(path):
    """Read (and remove) the job file, prepare the download; exit code."""
    with open(path) as handle:
        job = json.load(handle)
    os.unlink(path)
    base = job["base"]
    try:
        prepare(job, base)
    except Exception as exc:
        _logger.warning("Download %s not prepared: %s", job.get("id"), exc)
        with contextlib.suppress(OSError, ValueError):
            part = file_path(base, job["id"])[: -len(".enc")] + ".part"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
            write_status(base, job["id"], state="failed", error=str(exc) or repr(exc))
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="db_backup_suite.lib.downloads")
    parser.add_argument("--job-file", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    return run_job_file(args.job_file)


if __name__ == "__main__":
    sys.exit(main())
