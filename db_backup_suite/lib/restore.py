"""The restore pipeline: verify everything, restore beside the live database,
check, then swap by renaming.

1. **Fetch**: a remote archive (S3, SFTP) is downloaded, still encrypted, to
   a private temp dir; a local one is read in place.
2. **Verify** the whole archive (:func:`scan.scan_archive`): every chunk
   authenticated, the manifest read, the dump and every filestore file
   hashed and compared. A wrong key, a truncated or tampered archive stops
   here, before any database is created or pg_restore started.
3. **Restore** into a NEW database ``<target>_restoring_<ts>``, created with
   the source's encoding and locale from the manifest (Odoo creates its
   databases with ``LC_COLLATE 'C'``), with ``pg_restore --exit-on-error
   --no-owner --no-privileges`` (stops at the first error; its sessions use
   ``synchronous_commit=off``, see :func:`pgtools.restore_session_options`),
   and the filestore into a new directory
   ``<data_dir>/filestore/<target>_restoring_<ts>`` (member paths checked,
   never following a symlink). With ``jobs > 1`` (default: the machine's
   cores, at most 4) ``pg_restore -j`` needs a seekable file: the ONE
   decryption pass that verifies the archive also writes the dump to a 0600
   file in a 0700 temp dir (``work_dir``) and the filestore to the staging
   directory; only once that pass verified everything is the database
   created and pg_restore started; the file is deleted as soon as
   pg_restore is done. With ``jobs == 1`` the verify pass comes first, then
   a second pass streams the dump into ``pg_restore``'s stdin (nothing on
   disk but the restored database).
4. **Check** the new copy against the manifest: exact row count of every
   table, filestore file count, bytes and digest -> VerificationError.
5. **Swap** (``mode="production"``): new connections to the live database
   are refused (``ALLOW_CONNECTIONS false``), its sessions terminated, it is
   renamed ``<target>_pre_restore_<ts>`` (the safety copy) and the new one
   renamed to ``<target>``; the filestore directories likewise. A failure
   half-way undoes the renames done. ``mode="sandbox"``: the target must
   not exist; the new copy is just renamed to it.

Any failure drops the new database and directory and leaves the live
database and filestore exactly as they were. A restore KILLED half-way
cannot do that itself: it holds the target's work lock (``lock.work_lock``,
shared) for its whole duration and names every temp dir after its target
(``dbbs-fetch+<target>+...``), so the next backup or cleanup of that
database (``cleanup.clean_leftovers``) knows the run is dead and removes its
staging database, filestore and temp dirs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat as stat_mod
import tempfile
import time
import uuid as uuid_mod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import crypto, lock, owner, pgtools, provenance, safety
from . import manifest as mf
from .cleanup import work_dir_name
from .errors import (
    ArchiveNotFoundError,
    ForeignArchiveError,
    RestoreError,
    SafetyError,
    StreamCryptError,
    VerificationError,
    naming_missing_key,
)
from .payload.extract import safe_member_path
from .payload.reader import PayloadReader
from .pgtools import PgParams
from .scan import ScanHandler, scan_archive

_logger = logging.getLogger(__name__)

MODES = ("production", "sandbox")
MAX_DBNAME = 63  # PostgreSQL's NAMEDATALEN - 1


# ---------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------
class Source:
    """An archive that can be opened (several times) for reading."""

    def __init__(self, opener, description: str, name: str):
        self._opener = opener
        self.description = description
        self.name = name
        self.path: Path | None = None  # set when it is a local file

    def open(self):
        return self._opener()


@contextlib.contextmanager
def open_source(sink=None, name=None, path=None, work_dir=None, tag=None):
    """Yield a :class:`Source` for ``name`` at ``sink`` or a local ``path``.

    A remote sink's archive is downloaded once (ciphertext only) into a
    private temp dir (``dbbs-fetch+<tag>+...``: ``tag`` is the database the
    download is for, so a cleanup can tell whose it is), removed on exit.
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ArchiveNotFoundError(f"{path}: no such archive file")
        src = Source(lambda: path.open("rb"), str(path), path.name)
        src.path = path
        yield src
        return
    if sink is None or not name:
        raise RestoreError("give an archive: a file path, or a destination and a name")
    own = isinstance(sink, dict)
    if own:
        from .sinks import make_sink

        sink = make_sink(sink)
    try:
        # a snapshot is read in place whatever the destination (only the
        # blobs it needs are fetched; scan_archive reads its payload
        # straight from the repository)
        in_place = getattr(sink, "reads_in_place", None)
        if sink.kind == "local" or (in_place is not None and in_place(name)):
            sink.stat(name)  # SinkObjectNotFound now, not in the middle
            yield Source(
                lambda: sink.open_read(name), f"{sink.describe()}:{name}", name
            )
            return
        prefix = work_dir_name("fetch", tag) if tag else "dbbs-fetch-"
        with tempfile.TemporaryDirectory(prefix=prefix, dir=work_dir) as tmp:
            local = Path(tmp) / "archive"
            with open(local, "wb") as fh:
                sink.get(name, fh)
            yield Source(lambda: local.open("rb"), f"{sink.describe()}:{name}", name)
    finally:
        if own:
            sink.close()


# ---------------------------------------------------------------------------
# Request / result
# ---------------------------------------------------------------------------
@dataclass
class RestoreRequest:
    """Restore an archive into ``target``.

    Source: ``path`` (a local file), or ``sink`` (Sink or config) + ``name``.
    ``mode``: ``production`` (replace ``target``, keeping the previous one
    as ``<target>_pre_restore_<ts>``) or ``sandbox`` (``target`` must not
    exist). ``data_dir``: Odoo's data directory (filestores live in
    ``<data_dir>/filestore/<db>``); None restores the database only.

    Whose archive (checked right after the header and head manifest are
    read, before anything is created, dropped or renamed):

    - ``expected_uuid``: the uuid the archive must carry: the target's
      uuid, or for a sandbox the uuid of the database it is restored for.
      None: the target's own ``database.uuid`` when the target exists (so
      replacing a database is always bound to it); for a new target, None
      requires ``allow_foreign=True``.
    - A mismatch raises :class:`ForeignArchiveError` (source name, uuid and
      date; nothing changed) unless ``allow_foreign`` is True: only then is
      the archive decrypted with ``crypto.ANY_TENANT``; otherwise with
      ``tenant=expected_uuid``.
    - ``keep_uuid`` (an existing target): the restored database keeps the
      target's ``database.uuid`` and ``database.secret`` (False: it keeps
      the archive's). A new target in ``sandbox`` mode always gets a new
      uuid and secret, as Odoo's own restore with ``copy=True``; a new
      target in ``production`` mode (moving a database to a new server)
      keeps the archive's. See ``docs/archive-format.md``.
    """

    target: str
    mode: str = "production"
    path: str | os.PathLike | None = None
    sink: object = None
    name: str | None = None
    keyring: object = None
    password: str | None = None
    pg: PgParams = field(default_factory=PgParams.from_env)
    data_dir: str | os.PathLike | None = None
    jobs: int | None = None
    work_dir: str | os.PathLike | None = None
    keep_privileges: bool = False
    progress: object = None
    skip_verify: bool = False  # only when the caller just verified it
    expected_uuid: str | None = None
    allow_foreign: bool = False
    keep_uuid: bool = True


@dataclass
class RestoreResult:
    database: str
    mode: str
    safety_database: str | None
    safety_filestore: str | None
    filestore: dict
    row_counts: dict
    manifest: dict
    archive_name: str
    archive_created_at: datetime | None
    encrypted: bool
    warnings: list[str]
    duration: float
    source_name: str | None = None
    source_uuid: str | None = None
    foreign: bool = False
    uuid: str | None = None

    def as_dict(self) -> dict:
        return {
            "database": self.database,
            "mode": self.mode,
            "source_name": self.source_name,
            "source_uuid": self.source_uuid,
            "foreign": self.foreign,
            "uuid": self.uuid,
            "safety_database": self.safety_database,
            "safety_filestore": self.safety_filestore,
            "filestore": self.filestore,
            "tables": len(self.row_counts),
            "rows": sum(self.row_counts.values()),
            "archive_name": self.archive_name,
            "archive_created_at": (
                self.archive_created_at.isoformat() if self.archive_created_at else None
            ),
            "encrypted": self.encrypted,
            "warnings": self.warnings,
            "duration": round(self.duration, 3),
        }

    def restore_info(self) -> dict:
        """The dict handed to ``_on_database_restored`` hooks."""
        return {
            "archive_created_at": self.archive_created_at,
            "archive_name": self.archive_name,
            "target": self.mode,
            "database": self.database,
        }


# ---------------------------------------------------------------------------
# Extraction handler
# ---------------------------------------------------------------------------
class _Extractor(ScanHandler):
    """Feeds the dump to pg_restore (stdin) or a temp file, and writes the
    filestore files under ``fs_root``."""

    def __init__(
        self, *, restore_proc=None, dump_file=None, fs_root=None, progress=None
    ):
        self.restore_proc = restore_proc
        self.dump_file = dump_file
        self.fs_root = fs_root
        self._fh = None
        self._progress = progress
        self.done = 0
        self.files = 0

    def _tick(self, n, message):
        self.done += n
        if self._progress is not None:
            self._progress(self.done, None, message)

    def dump_chunk(self, data):
        if self.restore_proc is not None:
            try:
                self.restore_proc.stdin.write(data)
            except (BrokenPipeError, OSError) as exc:
                # pg_restore stopped (first error): its own message says why
                self.restore_proc.check(timeout=60)
                raise RestoreError(f"pg_restore stopped reading: {exc}") from exc
        elif self.dump_file is not None:
            self.dump_file.write(data)
        self._tick(len(data), "restoring the database")

    def dump_end(self):
        if self.restore_proc is not None:
            try:
                self.restore_proc.stdin.close()
            except (BrokenPipeError, OSError) as exc:
                _logger.info("closing pg_restore's stdin: %s", exc)
        elif self.dump_file is not None:
            # no fsync: pg_restore reads it from the page cache right away
            # and it is deleted after (the restored database is what lasts)
            self.dump_file.close()

    def file_begin(self, store_fname, size):
        if self.fs_root is None:
            return
        # members are "filestore/<xx>/<sha1>"; fs_root is the staging dir
        path = safe_member_path(self.fs_root, store_fname)
        path.parent.mkdir(parents=True, exist_ok=True)
        if stat_mod.S_ISLNK(os.lstat(path.parent).st_mode):
            raise StreamCryptError(f"{path.parent} is a symlink; refusing to follow it")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            raise StreamCryptError(
                f"duplicate filestore member {store_fname!r}"
            ) from None
        self._fh = os.fdopen(fd, "wb")
        self.files += 1

    def file_chunk(self, data):
        if self._fh is not None:
            self._fh.write(data)
        self._tick(len(data), "restoring the filestore")

    def file_end(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def close(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# ---------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------
def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


def _derived_name(target: str, suffix: str) -> str:
    """``<target>_<suffix>``, shortened to fit PostgreSQL's name limit
    (:func:`safety.derived_name`)."""
    return safety.derived_name(target, suffix)


def _extract(source, req, handler, tenant):
    """One authenticated pass over the archive, feeding ``handler``."""
    try:
        with source.open() as raw:
            return scan_archive(
                raw,
                keyring=req.keyring,
                password=req.password,
                tenant=tenant,
                handler=handler,
            )
    finally:
        handler.close()


def _default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


# ---------------------------------------------------------------------------
# Whose archive is it?
# ---------------------------------------------------------------------------
@dataclass
class _Binding:
    """What :func:`_bind` decided about the archive's owner."""

    expected: str | None  # the uuid the archive must carry (None: any)
    tenant: object  # what decryption passes: ``expected`` or ANY_TENANT
    source_name: str | None = None
    source_uuid: str | None = None  # None: known only once restored (zip)
    created_at: str | None = None
    foreign: bool = False
    live_identity: dict = field(default_factory=dict)


def _bind(req, source, live_exists) -> _Binding:
    """Read the archive's header (and head manifest) and check it belongs
    to the expected database, before anything is created or touched."""
    live_identity = pgtools.read_identity(req.pg, req.target) if live_exists else {}
    expected = req.expected_uuid
    if expected is None and live_exists:
        expected = live_identity.get("database.uuid") or ""
    if expected is None and not req.allow_foreign:
        raise RestoreError(
            f"a restore into the new database {req.target!r} must name the "
            "database the archive belongs to (expected_uuid) or accept any "
            "archive explicitly (allow_foreign)"
        )
    with source.open() as raw:
        kind = crypto.sniff(crypto.read_exact(raw, 512))
    facts: dict = {}
    source_uuid = None
    if kind == "encrypted":
        with source.open() as raw:
            source_uuid = crypto.describe_archive(raw)["tenant"]
    elif kind in ("zstd", "gzip", "none"):
        with source.open() as raw:  # plaintext: no key involved
            facts = owner.describe_archive_owner(raw)
        source_uuid = facts.get("uuid") or ""
    elif kind == "zip":
        with source.open() as raw:
            facts = owner.describe_archive_owner(raw)
    # an Odoo zip's uuid shows in the staging database (_settle_identity);
    # an unknown file fails when it is opened
    foreign = (
        expected is not None and source_uuid is not None and source_uuid != expected
    )
    if foreign and not req.allow_foreign:
        if not facts:
            try:
                with source.open() as raw:
                    facts = owner.describe_archive_owner(
                        raw, keyring=req.keyring, password=req.password
                    )
            except StreamCryptError as exc:
                _logger.info("cannot read the foreign archive's manifest: %s", exc)
        raise ForeignArchiveError(
            source_name=facts.get("database"),
            source_uuid=source_uuid,
            created_at=facts.get("created_at"),
            expected_uuid=expected,
            target=req.target,
        )
    tenant = crypto.ANY_TENANT if expected is None or foreign else expected
    binding = _Binding(
        expected=expected,
        tenant=tenant,
        source_name=facts.get("database"),
        source_uuid=source_uuid,
        created_at=facts.get("created_at"),
        foreign=foreign,
        live_identity=live_identity,
    )
    if kind == "encrypted":
        head = _head_of(source, req, tenant)
        if head is not None:
            binding.source_name = head.get("database")
            binding.created_at = head.get("created_at")
    return binding


def _settle_identity(req, staging, binding, live_exists, warnings) -> str | None:
    """In the checked staging database, before the swap: check the uuid it
    really holds (the only check an Odoo zip allows; a second one for the
    others), then give it its identity: the target's (an existing target,
    ``keep_uuid``), a new one (a new sandbox), or the archive's."""
    restored = pgtools.read_identity(req.pg, staging)
    restored_uuid = restored.get("database.uuid") or ""
    if binding.source_uuid is None:
        binding.source_uuid = restored_uuid
    mismatch = binding.expected is not None and restored_uuid != binding.expected
    if mismatch and not req.allow_foreign:
        raise ForeignArchiveError(
            source_name=binding.source_name,
            source_uuid=restored_uuid,
            created_at=binding.created_at,
            expected_uuid=binding.expected,
            target=req.target,
        )
    binding.foreign = binding.foreign or mismatch
    values = {}
    if live_exists and req.keep_uuid:
        values = {
            k: v for k, v in binding.live_identity.items() if restored.get(k) != v
        }
    elif not live_exists and req.mode == "sandbox":
        values = {
            "database.uuid": str(uuid_mod.uuid1()),
            "database.secret": str(uuid_mod.uuid4()),
        }
    if values and restored and pgtools.write_identity(req.pg, staging, values):
        if binding.foreign and "database.uuid" in values:
            warnings.append(
                f"archive of another database ({binding.source_name or '?'}, uuid "
                f"{binding.source_uuid}) restored as confirmed; the restored "
                f"database keeps the uuid {values['database.uuid']}"
            )
        return values.get("database.uuid", restored_uuid)
    if binding.foreign:
        warnings.append(
            f"archive of another database ({binding.source_name or '?'}, uuid "
            f"{binding.source_uuid}) restored as confirmed, with its own uuid"
        )
    return restored_uuid


def run_restore(req: RestoreRequest) -> RestoreResult:
    started = time.monotonic()
    if req.mode not in MODES:
        raise RestoreError(f"unknown restore mode {req.mode!r}; use one of {MODES}")
    try:
        safety.check_database_name(req.target)
    except SafetyError as exc:
        raise RestoreError(str(exc)) from None
    shown = req.name or (os.fspath(req.path) if req.path is not None else None)
    with (
        # "a restore of target is alive": a cleanup leaves its staging alone
        lock.work_lock(req.pg, req.target),
        # a missing server key is named with the archive and its key id
        naming_missing_key("archive", shown, keyring=req.keyring),
    ):
        ts = _stamp()
        try:
            return _run_restore(req, started, ts)
        finally:
            _settle_staging(req, _derived_name(req.target, f"restoring_{ts}"))


def _run_restore(req: RestoreRequest, started, ts) -> RestoreResult:
    staging = _derived_name(req.target, f"restoring_{ts}")
    safety_db = _derived_name(req.target, f"pre_restore_{ts}")
    live_exists = pgtools.database_exists(req.pg, req.target)
    if req.mode == "sandbox" and live_exists:
        raise RestoreError(
            f"database {req.target!r} already exists; a sandbox restore needs a "
            "new name"
        )
    fs_base = Path(req.data_dir) / "filestore" if req.data_dir is not None else None
    if (
        req.mode == "sandbox"
        and fs_base is not None
        and os.path.lexists(fs_base / req.target)
    ):
        raise RestoreError(
            f"filestore {fs_base / req.target} already exists; choose a new name"
        )
    for name in (staging, safety_db):
        if pgtools.database_exists(req.pg, name) or (
            fs_base is not None and os.path.lexists(fs_base / name)
        ):
            raise RestoreError(
                f"{name} already exists (a restore of {req.target!r} started this "
                "second?); try again"
            )
    # registered BEFORE it exists: a run killed at any point leaves a
    # staging database the next cleanup can prove the suite made
    provenance.register(req.data_dir, staging, "staging", req.target)
    jobs = req.jobs if req.jobs is not None else _default_jobs()
    warnings: list[str] = []

    with open_source(
        req.sink, req.name, req.path, req.work_dir, tag=req.target
    ) as source:
        # (a) whose archive is it? Refused here, before anything else.
        binding = _bind(req, source, live_exists)
        with source.open() as raw:
            is_zip = raw.read(4) == b"PK\x03\x04"
        if is_zip:
            return _restore_odoo_zip(
                req, source, staging, safety_db, live_exists, fs_base, started, binding
            )
        if jobs > 1:
            # (b)+(c) one decryption pass verifies the whole archive while it
            # writes the dump to a private temp file and the filestore to the
            # staging directory; pg_restore starts only once it all checked.
            result = _restore_verified(
                req,
                source,
                staging,
                safety_db,
                live_exists,
                fs_base,
                jobs,
                warnings,
                binding=binding,
            )
            manifest, encrypted = result["manifest"], result["encrypted"]
        else:
            # (b) verify everything before anything else, then stream the
            # dump into pg_restore in a second pass (nothing on disk)
            if not req.skip_verify:
                with source.open() as raw:
                    report = scan_archive(
                        raw,
                        keyring=req.keyring,
                        password=req.password,
                        tenant=binding.tenant,
                    )
                manifest = report.manifest
                warnings.extend(report.warnings)
                encrypted = report.encrypted
            else:
                manifest, encrypted = None, True
            result = _restore_verified(
                req,
                source,
                staging,
                safety_db,
                live_exists,
                fs_base,
                jobs,
                warnings,
                manifest=manifest,
                binding=binding,
            )
    manifest = manifest or result["manifest"]
    if not encrypted and not any("WITHOUT encryption" in w for w in warnings):
        warnings.append("the archive was not encrypted (legacy)")
    created = manifest.get("created_at")
    return RestoreResult(
        database=req.target,
        mode=req.mode,
        safety_database=result["safety_database"],
        safety_filestore=result["safety_filestore"],
        filestore=result["filestore"],
        row_counts=result["row_counts"],
        manifest=manifest,
        archive_name=source.name,
        archive_created_at=mf.parse_iso(created) if created else None,
        encrypted=result["encrypted"],
        warnings=warnings,
        duration=time.monotonic() - started,
        source_name=manifest.get("database") or binding.source_name,
        source_uuid=binding.source_uuid,
        foreign=binding.foreign,
        uuid=result["uuid"],
    )


def _restore_verified(
    req,
    source,
    staging,
    safety_db,
    live_exists,
    fs_base,
    jobs,
    warnings,
    manifest=None,
    *,
    binding,
):
    """Restore into ``staging``, check, swap. ``jobs > 1``: one pass that
    verifies and extracts, then ``pg_restore -j`` from the temp file.
    ``jobs == 1``: the archive was verified (``manifest``) or the caller
    just did (``skip_verify``); the dump streams into ``pg_restore``."""
    staging_fs = (
        safety.safe_data_path(req.data_dir, safety.FILESTORE, staging)
        if fs_base is not None
        else None
    )
    created_db = False
    tmp = None
    try:
        if staging_fs is not None:
            fs_base.mkdir(parents=True, exist_ok=True)
            staging_fs.mkdir(mode=0o755)
        if jobs > 1:
            # (b) verify + extract in one pass: the dump goes to a 0600 file
            # in a 0700 temp dir, the filestore to the (new) staging dir;
            # no database exists yet and pg_restore has not started.
            tmp = tempfile.mkdtemp(
                prefix=work_dir_name("restore", req.target), dir=req.work_dir
            )
            os.chmod(tmp, 0o700)
            dump_path = os.path.join(tmp, "database.dump")
            fd = os.open(dump_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as dump_file:
                report = _extract(
                    source,
                    req,
                    _Extractor(
                        dump_file=dump_file, fs_root=staging_fs, progress=req.progress
                    ),
                    binding.tenant,
                )
            warnings.extend(report.warnings)
            # (c) everything verified: the new database, then pg_restore -j
            _create_staging_db(req.pg, staging, report.manifest, warnings)
            created_db = True
            with pgtools.start_pg_restore(
                req.pg,
                staging,
                jobs=jobs,
                path=dump_path,
                keep_privileges=req.keep_privileges,
            ) as proc:
                proc.check()
            os.unlink(dump_path)
        else:
            if manifest is None:  # skip_verify: the head member says enough
                manifest = _head_of(source, req, binding.tenant)
            _create_staging_db(req.pg, staging, manifest, warnings)
            created_db = True
            with pgtools.start_pg_restore(
                req.pg, staging, keep_privileges=req.keep_privileges
            ) as proc:
                report = _extract(
                    source,
                    req,
                    _Extractor(
                        restore_proc=proc, fs_root=staging_fs, progress=req.progress
                    ),
                    binding.tenant,
                )
                proc.check()
        manifest = report.manifest
        # (d) check the new copy against the manifest
        conn = req.pg.connect(staging)
        try:
            counts = pgtools.row_counts(conn)
        finally:
            conn.close()
        fs_included = (manifest.get("filestore") or {}).get("included", True)
        restored_fs = report.filestore
        if staging_fs is not None:
            on_disk = _count_files(staging_fs)
            if on_disk != restored_fs["files"]:
                raise VerificationError(
                    f"{on_disk} files written to the filestore, "
                    f"{restored_fs['files']} in the archive"
                )
        elif fs_included and restored_fs["files"]:
            warnings.append(
                "no data directory given: the archive's filestore was not restored"
            )
        mf.check_restored(manifest, counts, restored_fs)
        # (d') whose database it really is, and the identity it keeps
        final_uuid = _settle_identity(req, staging, binding, live_exists, warnings)
        # (e) swap
        swap = _swap(
            req,
            staging,
            safety_db,
            live_exists,
            fs_base,
            staging_fs,
            fs_included,
            warnings,
        )
    except BaseException:
        _cleanup(req, staging if created_db else None, staging_fs)
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)  # our own mkdtemp
    return {
        **swap,
        "filestore": restored_fs,
        "row_counts": counts,
        "manifest": manifest,
        "encrypted": report.encrypted,
        "uuid": final_uuid,
    }


def _create_staging_db(pg, staging, manifest, warnings):
    """Create the staging database with the source's encoding and locale
    (from the manifest; e.g. Odoo creates its databases with LC_COLLATE
    'C'), which keeps ``ORDER BY`` and text indexes as they were. A locale
    this server does not have falls back to the server's default, said in
    the warnings."""
    pg_facts = (manifest or {}).get("postgresql") or {}
    collate, ctype = pg_facts.get("collate"), pg_facts.get("ctype")
    encoding = pg_facts.get("encoding") or "UTF8"
    if collate and ctype:
        try:
            pgtools.create_database(
                pg, staging, encoding=encoding, collate=collate, ctype=ctype
            )
            _mark(pg, staging)
            return
        except RestoreError as exc:
            warnings.append(
                f"the source database's locale (encoding {encoding}, collate "
                f"{collate!r}, ctype {ctype!r}) is not available here: restored "
                f"with this server's default ({exc})"
            )
    pgtools.create_database(pg, staging)
    _mark(pg, staging)


#: staging databases this process created and has not settled yet
_CREATED: set[str] = set()


def _mark(pg, staging):
    """Note that this process created ``staging`` (see _settle_staging)."""
    _CREATED.add(staging)


def _settle_staging(req, staging):
    """After a restore: forget the staging name (:mod:`.provenance`) unless
    a database THIS run created or a staging filestore is still left under
    it (the next cleanup removes those); a database someone else created
    under that name is never left registered."""
    made = staging in _CREATED
    _CREATED.discard(staging)
    fs = Path(req.data_dir) / safety.FILESTORE / staging if req.data_dir else None
    try:
        left = made and pgtools.database_exists(req.pg, staging)
    except Exception as exc:  # keep the entry: the next cleanup decides
        _logger.warning("staging database %s not settled: %s", staging, exc)
        return
    if not left and not (fs is not None and os.path.lexists(fs)):
        provenance.unregister(req.data_dir, staging)


def _head_of(source, req, tenant) -> dict | None:
    """The head manifest (``backup.json``, the first member) of an archive
    of ``tenant``; None when it has none. Its chunk is authenticated, the
    rest of the archive is not read."""
    with source.open() as raw:
        reader = crypto.open_archive(
            raw, keyring=req.keyring, password=req.password, tenant=tenant
        )
        compression = (
            crypto.compression_of(reader.content_type) if reader.content_type else None
        )
        for member in PayloadReader(reader, compression):
            if member.name == mf.HEAD_MEMBER and member.size <= mf.MAX_MANIFEST_BYTES:
                return mf.loads(member.read(), member.name)
            return None
    return None


def _restore_odoo_zip(
    req, source, staging, safety_db, live_exists, fs_base, started, binding
):
    """An Odoo backup zip (database manager / ``dump_db``): imported with
    ``psql -v ON_ERROR_STOP=1`` into the staging database by odoozip, its
    filestore checked by count, then swapped like our archives. A zip has no
    row counts nor checksums to verify beyond the zip's own CRCs."""
    from . import odoozip

    staging_fs = (
        safety.safe_data_path(req.data_dir, safety.FILESTORE, staging)
        if fs_base is not None
        else None
    )
    warnings = ["Odoo backup zip: not encrypted, no row counts to check"]
    with contextlib.ExitStack() as stack:
        path = getattr(source, "path", None)
        if path is None:
            tmp = stack.enter_context(
                tempfile.TemporaryDirectory(
                    prefix=work_dir_name("zip", req.target), dir=req.work_dir
                )
            )
            path = Path(tmp) / "odoo.zip"
            with source.open() as raw, open(path, "wb") as out:
                shutil.copyfileobj(raw, out, 1024 * 1024)
        info = odoozip.read_odoo_zip(path)
        imported = odoozip.import_odoo_zip(
            path,
            staging,
            filestore_dir=staging_fs,
            pg=req.pg,
            progress=req.progress,
            on_created=lambda name: _mark(req.pg, name),
        )
        try:
            if staging_fs is not None:
                on_disk = _count_files(staging_fs)
                if on_disk != imported.filestore_files:
                    raise VerificationError(
                        f"{on_disk} filestore files on disk, "
                        f"{imported.filestore_files} in the zip"
                    )
            conn = req.pg.connect(staging)
            try:
                counts = pgtools.row_counts(conn)
            finally:
                conn.close()
            final_uuid = _settle_identity(req, staging, binding, live_exists, warnings)
            swap = _swap(
                req,
                staging,
                safety_db,
                live_exists,
                fs_base,
                staging_fs,
                True,
                warnings,
            )
        except BaseException:
            _cleanup(req, staging, staging_fs)
            raise
    odoo_manifest = getattr(info, "manifest", None) or {}
    return RestoreResult(
        database=req.target,
        mode=req.mode,
        safety_database=swap["safety_database"],
        safety_filestore=swap["safety_filestore"],
        filestore={"files": imported.filestore_files},
        row_counts=counts,
        manifest={"odoo_zip": odoo_manifest},
        archive_name=source.name,
        archive_created_at=None,
        encrypted=False,
        warnings=warnings,
        duration=time.monotonic() - started,
        source_name=odoo_manifest.get("db_name") or binding.source_name,
        source_uuid=binding.source_uuid,
        foreign=binding.foreign,
        uuid=final_uuid,
    )


def _count_files(root: Path) -> int:
    return sum(len(files) for _d, _s, files in os.walk(root))


def _cleanup(req, staging_db, staging_fs):
    """Drop the staging database and directory of a failed restore (only a
    staging name of this target: see :mod:`.safety`)."""
    if staging_db is not None:
        try:
            safety.drop_database_if_suite_owned(
                req.pg, staging_db, production_db=req.target, kinds=("staging",)
            )
        except Exception as exc:  # reported: the operator must drop it
            _logger.error("could not drop the staging database %s: %s", staging_db, exc)
    if staging_fs is not None and os.path.lexists(staging_fs):
        try:
            safety.remove_filestore(
                req.data_dir,
                staging_fs.name,
                production_db=req.target,
                kinds=("staging",),
            )
        except Exception as exc:  # reported: the operator must remove it
            _logger.error(
                "could not remove the staging filestore %s: %s", staging_fs, exc
            )


def _swap(
    req, staging, safety_db, live_exists, fs_base, staging_fs, fs_included, warnings
):
    target = req.target
    live_fs = fs_base / target if fs_base is not None else None
    safety_fs = fs_base / safety_db if fs_base is not None else None
    move_fs = staging_fs is not None and fs_included
    if staging_fs is not None and not fs_included:
        warnings.append("the archive holds no filestore: the filestore was left as is")
        safety.remove_filestore(
            req.data_dir, staging, production_db=target, kinds=("staging",)
        )
    done = []  # undo log
    with pgtools.admin_cursor(req.pg) as cr:
        try:
            if live_exists:
                done.append(("allow", target))
                pgtools.set_allow_connections(cr, target, False)
                pgtools.rename_database(cr, target, safety_db)
                done.append(("rename", target, safety_db))
                pgtools.set_allow_connections(cr, safety_db, True)
            pgtools.rename_database(cr, staging, target)
            done.append(("rename", staging, target))
            if move_fs:
                if live_fs.exists():
                    os.rename(live_fs, safety_fs)
                    done.append(("mvdir", live_fs, safety_fs))
                os.rename(staging_fs, live_fs)
                done.append(("mvdir", staging_fs, live_fs))
        except BaseException as exc:
            _logger.error(
                "restore swap failed (%s); undoing %d step(s)", exc, len(done)
            )
            _undo(cr, done)
            raise
    kept_fs = move_fs and ("mvdir", live_fs, safety_fs) in done
    return {
        "safety_database": safety_db if live_exists else None,
        "safety_filestore": str(safety_fs) if kept_fs else None,
    }


def _undo(cr, done):
    for step in reversed(done):
        try:
            if step[0] == "rename":
                pgtools.rename_database(cr, step[2], step[1])
            elif step[0] == "allow":
                pgtools.set_allow_connections(cr, step[1], True)
            elif step[0] == "mvdir":
                os.rename(step[2], step[1])
        except Exception as exc:  # keep undoing the rest; tell the operator
            _logger.critical("could not undo restore step %s: %s", step, exc)
