"""The registry of the databases and filestores the suite created.

A production restore replaces the database whose rows described the
sandboxes, safety copies and drill databases made beside it: those rows
then describe the archive's past, not what exists. This registry lives
OUTSIDE every database, in one JSON file of the data directory,
``<data_dir>/db_backup_suite/registry.json`` (file 0600, folder 0700), so
that whatever database is restored, the suite still knows what it made.

API (every function takes the data directory first; names are checked)::

    from db_backup_suite.lib import registry  # odoo.addons.… in Odoo

    registry.register(data_dir, name, kind, production_db,
                      expires=None, creator=None, marker=None,
                      filestore=None, created=None)    # -> Entry (upsert)
    registry.unregister(data_dir, name)               # -> removed Entry | None
    registry.rename(data_dir, old, new)               # -> Entry | None
    registry.get(data_dir, name)                      # -> Entry | None
    registry.entries_for(data_dir, production_db)     # -> [Entry], oldest first
    registry.prune(data_dir, exists)                  # -> [removed Entry]
    registry.check(data_dir)                          # raises RegistryCorruptError

``kind`` is one of :data:`KINDS` and the name must be one the suite derives
from ``production_db`` for that kind (:mod:`.safety`, see
:data:`KIND_NAMES`): a restore drill registers its temporary
``<db>_drill_<stamp>`` (``safety.drill_name``) database with kind ``drill``
right after creating it and unregisters it right after dropping it::

    name = safety.drill_name(db, stamp)
    ... restore into name ...
    registry.register(data_dir, name, "drill", db, expires=now + 1 day)
    try:
        ... check row counts ...
    finally:
        safety.drop_database_if_suite_owned(pg, name, production_db=db,
                                            data_dir=data_dir, kinds=("drill",))
        registry.unregister(data_dir, name)
``exists`` for :func:`prune` is a callable ``name -> bool`` (e.g. a
``pg_database`` lookup); entries whose database is gone are removed.
``marker``, when given, is the token the suite wrote into the database; only
its sha256 is kept (:attr:`Entry.marker_sha256`, see :func:`marker_matches`).

Guarantees:

- every change takes an exclusive ``fcntl`` lock on
  ``registry.lock`` (processes and threads of any Odoo worker or CLI) and
  replaces the file atomically (temporary file, fsync, rename, fsync of
  the folder): a reader sees the old or the new registry, never half;
- a file that is not a registry (bad JSON, wrong shape) is set aside as
  ``registry.json.<stamp>.bad`` (kept for a person to read), a warning names
  it, and the suite starts a new registry (the Odoo layer fills it again
  from the sandboxes it lists); :func:`check` raises
  :class:`RegistryCorruptError` with the same explanation instead;
- an entry whose name is not the suite's for its kind and production
  database (a hand-edited or forged file) is ignored by every reader and
  logged: the registry can never make the suite list, let alone drop, a
  database it would not have named itself.

The registry is a list, not a permission: a drop still checks the name
(:mod:`.safety`) and the marker the suite wrote into the database.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from . import safety
from .errors import SafetyError, SuiteError

_logger = logging.getLogger(__name__)

FOLDER = "db_backup_suite"
FILE = "registry.json"
LOCK = "registry.lock"
FORMAT = "db_backup_suite.registry"
VERSION = 1

#: kind -> the :mod:`.safety` name kinds accepted for it
KIND_NAMES = {
    "sandbox": ("sandbox",),  # <db>-sandbox-<day>[-n], <db>-sandbox-daily
    "safety_copy": ("safety",),  # <db>_pre_restore_<stamp>
    "drill": ("drill", "scratch"),  # <db>_drill_<stamp>, <db>_verify_<stamp>
    "staging": ("staging",),  # <db>_restoring_<stamp>
}
KINDS = tuple(KIND_NAMES)


class RegistryError(SuiteError):
    """The registry cannot be used as asked."""


class RegistryCorruptError(RegistryError):
    """The registry file is not a registry (see :func:`check`)."""


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    production_db: str
    created: str  # ISO 8601 UTC ("...Z")
    expires: str | None = None
    filestore: str | None = None
    creator: str | None = None
    marker_sha256: str | None = None

    @property
    def created_at(self) -> datetime:
        return _parse(self.created)

    @property
    def expires_at(self) -> datetime | None:
        return _parse(self.expires) if self.expires else None


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _iso(moment) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = _parse(moment)
    if not isinstance(moment, datetime):
        raise RegistryError(f"not a date: {moment!r}")
    if moment.tzinfo is None:  # naive: UTC, as Odoo stores
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def marker_sha256(marker: str) -> str:
    return hashlib.sha256(marker.encode()).hexdigest()


def marker_matches(entry: Entry, marker: str | None) -> bool:
    """Whether ``marker`` (read from the database) is the one registered."""
    if not entry.marker_sha256 or not marker:
        return False
    return hmac.compare_digest(entry.marker_sha256, marker_sha256(marker))


def check_entry_name(name, kind, production_db) -> str:
    """``name`` if it is a database the suite makes of ``kind`` for
    ``production_db``; else a :class:`~.errors.SafetyError` subclass."""
    if kind not in KIND_NAMES:
        raise RegistryError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    safety.check_database_name(production_db)
    safety.check_suite_database_name(name, KIND_NAMES[kind], production_db)
    return name


def folder(data_dir) -> str:
    if data_dir is None or str(data_dir) == "":
        raise RegistryError("no data directory given")
    return os.path.join(os.path.abspath(str(data_dir)), FOLDER)


def path_of(data_dir) -> str:
    return os.path.join(folder(data_dir), FILE)


def _ensure_folder(data_dir) -> str:
    directory = folder(data_dir)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.lstat(directory)
    if not os.path.isdir(directory) or os.path.islink(directory):
        raise RegistryError(f"{directory} is not a plain folder")
    if st.st_uid != os.geteuid():
        raise RegistryError(f"{directory} belongs to another user: not used")
    if st.st_mode & 0o777 != 0o700:
        os.chmod(directory, 0o700)
    return directory


@contextlib.contextmanager
def _locked(data_dir, exclusive=True):
    directory = _ensure_folder(data_dir)
    fd = os.open(
        os.path.join(directory, LOCK),
        os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield directory
    finally:
        os.close(fd)  # releases the lock


def _decode(raw: bytes, path: str) -> dict:
    """``{name: Entry}`` of the file's bytes; RegistryCorruptError."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RegistryCorruptError(f"{path} is not valid JSON: {exc}") from exc
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or not isinstance(data.get("entries"), dict)
    ):
        raise RegistryCorruptError(f"{path} is not a registry of the backup suite")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise RegistryCorruptError(
            f"{path} has version {data.get('version')!r}; this suite reads up to "
            f"{VERSION}"
        )
    entries = {}
    fields = set(Entry.__dataclass_fields__)
    for name, value in data["entries"].items():
        if (
            not isinstance(value, dict)
            or value.get("name") != name
            or not set(value) <= fields
            or not all(isinstance(v, str) or v is None for v in value.values())
        ):
            raise RegistryCorruptError(f"{path}: the entry {name!r} is malformed")
        try:
            entries[name] = Entry(**value)
        except TypeError as exc:
            raise RegistryCorruptError(
                f"{path}: the entry {name!r} is malformed: {exc}"
            ) from exc
    return entries


def _read_raw(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a symlink (ELOOP) or unreadable
        raise RegistryCorruptError(f"{path} cannot be read safely: {exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _load(data_dir, tolerant=True) -> dict:
    """The entries (under the lock). A corrupt file is set aside (tolerant)
    or raises :class:`RegistryCorruptError`."""
    path = path_of(data_dir)
    raw = _read_raw(path)
    if raw is None:
        return {}
    try:
        return _decode(raw, path)
    except RegistryCorruptError as exc:
        if not tolerant:
            raise
        bad = _set_aside(path, raw)
        _logger.warning(
            "%s; it is kept as %s and a new registry is started "
            "(the sandboxes each database lists are registered again)",
            exc,
            bad,
        )
        return {}


def _set_aside(path: str, raw: bytes) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")
    bad = f"{path}.{stamp}.bad"
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)
        handle.flush()
        os.fsync(handle.fileno())
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return bad


def _save(directory: str, entries: dict) -> None:
    data = {
        "format": FORMAT,
        "version": VERSION,
        "entries": {name: asdict(entries[name]) for name in sorted(entries)},
    }
    fd, tmp = tempfile.mkstemp(prefix=".registry-", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(json.dumps(data, indent=1, sort_keys=True).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, os.path.join(directory, FILE))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _valid(entry: Entry) -> bool:
    try:
        check_entry_name(entry.name, entry.kind, entry.production_db)
    except (SafetyError, RegistryError) as exc:
        _logger.warning("Registry entry %r ignored: %s", entry.name, exc)
        return False
    return True


# ---------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------
def register(
    data_dir,
    name: str,
    kind: str,
    production_db: str,
    *,
    expires=None,
    creator: str | None = None,
    marker: str | None = None,
    filestore: str | None = None,
    created=None,
) -> Entry:
    """Record (or update) the database ``name`` the suite just made.

    The name must be the suite's for ``kind`` and ``production_db``
    (:func:`check_entry_name`, raises before anything is written). An
    existing entry keeps its ``created`` date and, unless given anew, its
    expiry, creator and marker. ``filestore`` defaults to
    ``<data_dir>/filestore/<name>``.
    """
    check_entry_name(name, kind, production_db)
    if creator is not None and not isinstance(creator, str):
        raise RegistryError("creator is a login (text)")
    if filestore is None:
        filestore = str(safety.filestore_of(data_dir, name))
    with _locked(data_dir) as directory:
        entries = _load(data_dir)
        old = entries.get(name)
        entry = Entry(
            name=name,
            kind=kind,
            production_db=production_db,
            created=_iso(created) or (old.created if old else _iso(datetime.now(UTC))),
            expires=_iso(expires) if expires is not None else (old and old.expires),
            filestore=filestore,
            creator=creator if creator is not None else (old and old.creator),
            marker_sha256=marker_sha256(marker)
            if marker
            else (old and old.marker_sha256),
        )
        entries[name] = entry
        _save(directory, entries)
    return entry


def unregister(data_dir, name: str) -> Entry | None:
    """Forget ``name`` (once its database and filestore are dropped)."""
    with _locked(data_dir) as directory:
        entries = _load(data_dir)
        entry = entries.pop(name, None)
        if entry is not None:
            _save(directory, entries)
    return entry


def rename(data_dir, old: str, new: str) -> Entry | None:
    """The entry of ``old`` under the name ``new`` (the database was renamed,
    e.g. a daily sandbox taking ``<db>-sandbox-daily``); None when ``old``
    is not registered."""
    with _locked(data_dir) as directory:
        entries = _load(data_dir)
        entry = entries.get(old)
        if entry is None:
            return None
        check_entry_name(new, entry.kind, entry.production_db)
        moved = Entry(
            **{
                **asdict(entry),
                "name": new,
                "filestore": str(safety.filestore_of(data_dir, new)),
            }
        )
        del entries[old]
        entries[new] = moved
        _save(directory, entries)
    return moved


def get(data_dir, name: str) -> Entry | None:
    """The valid entry of ``name``, or None."""
    if not _exists(data_dir):
        return None
    with _locked(data_dir):
        entry = _load(data_dir).get(name)
    return entry if entry is not None and _valid(entry) else None


def entries_for(data_dir, production_db: str) -> list[Entry]:
    """The valid entries of ``production_db``, oldest first."""
    if not _exists(data_dir):
        return []
    with _locked(data_dir):
        entries = _load(data_dir)
    return sorted(
        (e for e in entries.values() if e.production_db == production_db and _valid(e)),
        key=lambda e: (e.created, e.name),
    )


def prune(data_dir, exists, production_db: str | None = None) -> list[Entry]:
    """Remove the entries (of ``production_db``, else all) whose database
    no longer exists (``exists(name)`` is False); returns them."""
    if not _exists(data_dir):
        return []
    with _locked(data_dir) as directory:
        entries = _load(data_dir)
        gone = [
            e
            for e in entries.values()
            if (production_db is None or e.production_db == production_db)
            and not exists(e.name)
        ]
        if gone:
            for entry in gone:
                del entries[entry.name]
            _save(directory, entries)
    return gone


def check(data_dir) -> int:
    """The number of entries, or :class:`RegistryCorruptError` (the file is
    left as it is) saying what is wrong with the file."""
    if not _exists(data_dir):
        return 0
    with _locked(data_dir, exclusive=False):
        return len(_load(data_dir, tolerant=False))


def _exists(data_dir) -> bool:
    return os.path.lexists(path_of(data_dir))
