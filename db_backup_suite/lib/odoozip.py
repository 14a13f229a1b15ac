"""Interoperability with Odoo's own backup zip (database manager, ``db load``).

Odoo's zip (``odoo/service/db.py``, ``dump_db`` / ``restore_db``) holds:

- ``dump.sql``: a plain-SQL ``pg_dump --no-owner``;
- ``filestore/<xx>/<sha1>``: the filestore, relative to
  ``<data_dir>/filestore/<db>``;
- ``manifest.json``: ``odoo_dump`` ("1"), ``db_name``, ``version``,
  ``version_info``, ``major_version``, ``pg_version``, ``modules``
  ({name: latest_version}).

:func:`write_odoo_zip` turns one of our payloads into such a zip in one pass
(the custom-format dump is piped through ``pg_restore --file=-`` straight
into the zip member; nothing is written to disk but the zip itself, which
may be any writable, seekable or not). :func:`read_odoo_zip` inspects a zip
and :func:`import_odoo_zip` loads one into a NEW database with
``psql -v ON_ERROR_STOP=1`` (Odoo's restore ignores SQL errors and can
report success on a partial restore; we stop and drop the half-made
database) and its filestore into a new directory, path-checked.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .errors import FormatError, RestoreError, StreamCryptError
from .naming import check_database_name
from .payload.extract import clean_member_name, extract_stream
from .payload.reader import PayloadReader
from .payload.sampling import SAMPLE_SIZE, should_store
from .pgtools import (
    PgParams,
    PgProcess,
    create_database,
    database_exists,
    drop_database,
    find_tool,
)

_logger = logging.getLogger(__name__)

DUMP_SQL = "dump.sql"
MANIFEST = "manifest.json"
FILESTORE = "filestore/"
OUR_HEAD = "backup.json"
OUR_MANIFEST = "manifest.json"
OUR_DUMP = "database.dump"
BLOCK = 1024 * 1024

Progress = Callable[[int, "int | None", str], None]


# ---------------------------------------------------------------------------
# Odoo's manifest
# ---------------------------------------------------------------------------
def odoo_manifest(head: dict) -> dict:
    """Odoo's ``manifest.json`` from our manifest (``backup.json``)."""
    base_version = head.get("odoo_version") or ""
    numbers = base_version.split(".")
    major = ".".join(numbers[:2]) if len(numbers) >= 2 else base_version
    try:
        version_info = [int(numbers[0]), int(numbers[1]), 0, "final", 0, ""]
    except (ValueError, IndexError):
        version_info = []
    pg = head.get("postgresql") or {}
    num = pg.get("version_num")
    if isinstance(num, int):
        # the same formula Odoo's dump_db_manifest applies to server_version
        pg_version = "%d.%d" % divmod(num / 100, 100)
    else:
        pg_version = str(pg.get("version") or "")
    return {
        "odoo_dump": "1",
        "db_name": head.get("database") or "",
        "version": major,
        "version_info": version_info,
        "major_version": major,
        "pg_version": pg_version,
        "modules": dict(head.get("modules") or {}),
    }


# ---------------------------------------------------------------------------
# Our payload -> Odoo zip
# ---------------------------------------------------------------------------
@dataclass
class OdooZipResult:
    manifest: dict
    dump_sql_bytes: int = 0
    filestore_files: int = 0
    filestore_bytes: int = 0
    skipped: list[str] = field(default_factory=list)
    duration: float = 0.0


class _Pump(threading.Thread):
    """Copies ``source`` into ``sink`` (a child's stdin), then closes it."""

    def __init__(self, source, sink):
        super().__init__(name="odoozip-pump", daemon=True)
        self._source = source
        self._sink = sink
        self.error: BaseException | None = None
        self.broken_pipe = False
        self.start()

    def run(self):
        try:
            while True:
                chunk = self._source.read(BLOCK)
                if not chunk:
                    break
                self._sink.write(chunk)
        except BrokenPipeError:
            self.broken_pipe = True  # the child ended first: its exit says why
        except BaseException as exc:  # handed to the main thread
            self.error = exc
        finally:
            try:
                self._sink.close()
            except BrokenPipeError:
                self.broken_pipe = True
            except OSError as exc:
                _logger.debug("closing the child's stdin: %s", exc)


def _zipinfo(name: str, mtime: float | None, compress: bool) -> zipfile.ZipInfo:
    moment = datetime.fromtimestamp(mtime or time.time())
    stamp = max(moment, datetime(1980, 1, 1)).timetuple()[:6]
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _set_level(info: zipfile.ZipInfo, level: int):
    # zipfile reads the deflate level from the ZipInfo when a member is
    # opened for writing (private before Python 3.13, public after)
    attr = "compress_level" if hasattr(info, "compress_level") else "_compresslevel"
    setattr(info, attr, level)


def write_odoo_zip(
    payload_reader: PayloadReader,
    out_stream,
    *,
    pg: PgParams | None = None,
    compresslevel: int = 1,
    progress: Progress | None = None,
) -> OdooZipResult:
    """Write Odoo's backup zip of the payload read by ``payload_reader`` (a
    :class:`~.payload.reader.PayloadReader` on the decrypted archive, not yet
    iterated) into the binary writable ``out_stream`` (left open).

    The dump becomes ``dump.sql`` through ``pg_restore --no-owner
    --no-privileges --file=-`` (portable to a server with other roles; no
    database connection is made); the filestore is copied (already
    compressed files stored, not deflated); ``manifest.json`` is Odoo's.
    Raises FormatError when the payload has no dump or no manifest.
    """
    started = time.monotonic()
    pg = pg or PgParams.from_env()
    result = None
    done = 0
    with zipfile.ZipFile(
        out_stream, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True
    ) as zf:
        seen_dump = False
        for member in payload_reader.logical_members():
            name = member.name
            if name == OUR_HEAD:
                head = json.loads(member.read().decode("utf-8"))
                result = OdooZipResult(manifest=odoo_manifest(head))
                zf.writestr(
                    _zipinfo(MANIFEST, member.mtime, True),
                    json.dumps(result.manifest, indent=4),
                )
            elif result is None:
                raise FormatError(
                    f"the payload does not start with {OUR_HEAD} (found {name!r}): "
                    "not an archive of this suite"
                )
            elif name == OUR_DUMP:
                result.dump_sql_bytes = _write_dump_sql(
                    zf, member, pg, compresslevel, progress, done
                )
                done += result.dump_sql_bytes
                seen_dump = True
            elif name.startswith(FILESTORE) and member.type == "file":
                rel = name[len(FILESTORE) :]
                clean_member_name(rel)  # refuse unsafe names
                head_bytes = member.read(SAMPLE_SIZE)
                info = _zipinfo(name, member.mtime, not should_store(head_bytes))
                info.file_size = member.size
                _set_level(info, compresslevel)
                with zf.open(info, "w") as dest:
                    dest.write(head_bytes)
                    shutil.copyfileobj(member.stream, dest, BLOCK)
                result.filestore_files += 1
                result.filestore_bytes += member.size
                done += member.size
                if progress is not None:
                    progress(done, None, "filestore")
            elif name == OUR_MANIFEST:
                member.read()  # ours; Odoo's was written from backup.json
            else:
                result.skipped.append(name)
        if result is None:
            raise FormatError(f"the payload has no {OUR_HEAD}: nothing to do")
        if not seen_dump:
            raise FormatError("the payload holds no database dump")
    result.duration = time.monotonic() - started
    return result


def _write_dump_sql(zf, member, pg, compresslevel, progress, done) -> int:
    argv = [
        find_tool("pg_restore"),
        "--no-owner",
        "--no-privileges",
        "--file=-",
    ]
    info = _zipinfo(DUMP_SQL, member.mtime, True)
    written = 0
    with PgProcess(
        argv,
        pg,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        error_class=StreamCryptError,
        what="pg_restore --file=-",
    ) as proc:
        pump = _Pump(member.stream, proc.stdin)
        _set_level(info, compresslevel)
        with zf.open(info, "w", force_zip64=True) as dest:
            while True:
                chunk = proc.stdout.read(BLOCK)
                if not chunk:
                    break
                dest.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(done + written, None, "converting the dump to SQL")
        pump.join()
        if pump.error is not None:
            proc.kill()
            raise pump.error
        proc.check()
    return written


# ---------------------------------------------------------------------------
# Odoo zip -> inspection and import
# ---------------------------------------------------------------------------
@dataclass
class OdooZipInfo:
    path: str
    manifest: dict | None  # None when the zip has no manifest.json
    db_name: str | None
    version: str | None
    pg_version: str | None
    modules: dict
    dump_size: int
    filestore_files: int
    filestore_bytes: int


def _filestore_members(zf: zipfile.ZipFile):
    """``(zipinfo, relative name)`` of every file under ``filestore/``;
    unsafe names and links raise StreamCryptError."""
    for info in zf.infolist():
        if not info.filename.startswith(FILESTORE) or info.is_dir():
            continue
        mode = info.external_attr >> 16
        if mode and (mode & 0o170000) not in (0, 0o100000):
            raise StreamCryptError(
                f"refusing {info.filename!r}: not a regular file (a link or "
                "device entry in the zip)"
            )
        rel = info.filename[len(FILESTORE) :]
        clean_member_name(rel)
        yield info, rel


def read_odoo_zip(path) -> OdooZipInfo:
    """Inspect an Odoo backup zip: manifest, dump size, filestore size.

    Raises FormatError when it is not a zip or has no ``dump.sql``,
    StreamCryptError when a member name would escape the filestore.
    """
    path = str(path)
    if not zipfile.is_zipfile(path):
        raise FormatError(f"{path} is not a zip file")
    with zipfile.ZipFile(path) as zf:
        try:
            dump = zf.getinfo(DUMP_SQL)
        except KeyError:
            raise FormatError(
                f"{path} has no {DUMP_SQL}: not an Odoo backup zip"
            ) from None
        manifest = None
        if MANIFEST in zf.namelist():
            try:
                manifest = json.loads(zf.read(MANIFEST).decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise FormatError(f"{MANIFEST} is not valid JSON: {exc}") from exc
            if not isinstance(manifest, dict):
                raise FormatError(f"{MANIFEST} is not a JSON object")
        files = list(_filestore_members(zf))
    manifest_ = manifest or {}
    return OdooZipInfo(
        path=path,
        manifest=manifest,
        db_name=manifest_.get("db_name"),
        version=manifest_.get("version"),
        pg_version=manifest_.get("pg_version"),
        modules=dict(manifest_.get("modules") or {}),
        dump_size=dump.file_size,
        filestore_files=len(files),
        filestore_bytes=sum(i.file_size for i, _ in files),
    )


@dataclass
class OdooZipImport:
    database: str
    filestore_dir: str | None
    info: OdooZipInfo
    filestore_files: int
    duration: float


def import_odoo_zip(
    path,
    database: str,
    *,
    filestore_dir=None,
    pg: PgParams | None = None,
    progress: Progress | None = None,
    on_created=None,
) -> OdooZipImport:
    """Load the Odoo backup zip at ``path`` into the NEW database
    ``database`` and its filestore into ``filestore_dir`` (which must not
    exist or be empty; None: the filestore is not extracted).

    ``dump.sql`` streams from the zip into ``psql -X -q -v ON_ERROR_STOP=1``:
    the first SQL error stops the import. On any failure the new database is
    dropped and the files written are removed, then RestoreError is raised.
    """
    started = time.monotonic()
    pg = pg or PgParams.from_env()
    info = read_odoo_zip(path)
    try:
        check_database_name(database)
    except ValueError as exc:
        raise RestoreError(str(exc)) from None
    if database_exists(pg, database):
        raise RestoreError(
            f"database {database!r} already exists: import into a new name"
        )
    target = Path(filestore_dir) if filestore_dir is not None else None
    created_dir = False
    if target is not None:
        if target.is_symlink():
            raise RestoreError(f"{target} is a symlink: refusing to use it")
        if target.exists():
            if not target.is_dir() or any(target.iterdir()):
                raise RestoreError(f"{target} exists and is not an empty directory")
        else:
            target.mkdir(parents=True)
            created_dir = True
    create_database(pg, database)
    if on_created is not None:  # e.g. the restore marks its staging database
        on_created(database)
    written: list[Path] = []
    try:
        _load_sql(path, database, pg, info.dump_size, progress)
        if target is not None:
            with zipfile.ZipFile(path) as zf:
                for zinfo, rel in _filestore_members(zf):
                    with zf.open(zinfo) as src:
                        written.append(extract_stream(target, rel, src))
                    if progress is not None:
                        progress(len(written), info.filestore_files, "filestore")
    except BaseException as exc:
        _logger.warning("import of %s failed, cleaning up: %s", path, exc)
        try:
            drop_database(pg, database)
        except RestoreError as drop_exc:
            _logger.error("could not drop %s after the failure: %s", database, drop_exc)
        _remove_written(target, written, created_dir)
        if isinstance(exc, RestoreError | StreamCryptError):
            raise
        if isinstance(exc, zipfile.BadZipFile | OSError):
            raise RestoreError(f"import of {path} failed: {exc}") from exc
        raise
    return OdooZipImport(
        database=database,
        filestore_dir=str(target) if target is not None else None,
        info=info,
        filestore_files=len(written),
        duration=time.monotonic() - started,
    )


def _load_sql(path, database, pg, total, progress):
    argv = [
        find_tool("psql"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        f"--dbname={database}",
        "--file=-",
    ]
    with (
        PgProcess(
            argv,
            pg,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            error_class=RestoreError,
            what="psql",
        ) as proc,
        zipfile.ZipFile(path) as zf,
        zf.open(DUMP_SQL) as src,
    ):
        done = 0
        try:
            while True:
                chunk = src.read(BLOCK)
                if not chunk:
                    break
                proc.stdin.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total, "loading dump.sql")
            proc.stdin.close()
        except BrokenPipeError:
            _logger.info("psql stopped reading dump.sql; its exit status says why")
        proc.check()


def _remove_written(target: Path | None, written: list[Path], created_dir: bool):
    if target is None:
        return
    if created_dir:
        try:
            shutil.rmtree(target)
        except OSError as exc:
            _logger.error("could not remove %s after the failure: %s", target, exc)
        return
    # the directory was there (empty): remove only what we put in it
    for path in written:
        path.unlink(missing_ok=True)
    for sub in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir() and not sub.is_symlink() and not any(sub.iterdir()):
            sub.rmdir()
