"""Guards in front of every destructive operation of the engine.

``DROP DATABASE`` and ``rmtree`` act only on what the suite itself created,
recognised by name (the names below are the only ones it ever makes) and,
for directories, by place (strictly inside ``<data_dir>/filestore``):

========== ============================================ ==========================
kind       name                                          made by
========== ============================================ ==========================
sandbox    ``<db>-sandbox-<YYYYmmdd>[-<n>]``             "Restore to a sandbox"
safety     ``<db>_pre_restore_<YYYYmmddHHMMSS>``         a production restore (the
                                                         replaced database)
staging    ``<db>_restoring_<YYYYmmddHHMMSS>``           every restore (before the
                                                         swap or rename)
scratch    ``<db>_verify_<YYYYmmddHHMMSS>``              ``verify --test-restore``
drill      ``<db>_drill_<YYYYmmddHHMMSS>``               a schedule's restore drill
                                                         (restored, counted, dropped)
========== ============================================ ==========================

A ``<db>`` too long for PostgreSQL's 63 bytes is cut (sandbox) or cut and
tagged with a hash of the full name (the others), see :func:`derived_name`
and :func:`sandbox_name`. Given ``production_db``, a name must moreover be
exactly the one the suite derives from that database, so a user of one
database cannot name another database's sandbox or safety copy.

``postgres``, ``template0``, ``template1``, the production database itself,
template databases and anything that is not a valid Odoo database name are
always refused. Every refusal raises a :class:`~.errors.SafetyError`
subclass and changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat as stat_mod
from pathlib import Path

from . import pgtools
from .errors import (
    InvalidDatabaseNameError,
    NotSuiteDatabaseError,
    UnsafePathError,
)

_logger = logging.getLogger(__name__)

#: Odoo's database name rule (``odoo.service.db.DBNAME_PATTERN``).
DBNAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
#: PostgreSQL's NAMEDATALEN - 1.
MAX_DBNAME = 63
#: Never dropped, whatever their name looks like.
RESERVED_DATABASES = frozenset({"postgres", "template0", "template1"})
FILESTORE = "filestore"

_STAMP = r"\d{14}"  # YYYYmmddHHMMSS (UTC)
#: suffix (after ``<db>_``) of the engine's derived names, by kind
DERIVED_SUFFIXES = {
    "safety": "pre_restore",
    "staging": "restoring",
    "scratch": "verify",
    "drill": "drill",
}
_PATTERNS = {
    "sandbox": re.compile(
        r"^(?P<base>[a-zA-Z0-9][a-zA-Z0-9_.-]*)"
        r"(?P<suffix>-sandbox-(?:\d{8}(?:-(?:[2-9]|[1-9]\d+))?|daily))$"
    ),
    **{
        kind: re.compile(
            r"^(?P<base>[a-zA-Z0-9][a-zA-Z0-9_.-]*)"
            rf"_(?P<suffix>{suffix}_{_STAMP})$"
        )
        for kind, suffix in DERIVED_SUFFIXES.items()
    },
}
#: The rolling sandbox of a daily refresh schedule: ``<db>-sandbox-daily``.
DAILY_SANDBOX_SUFFIX = "-sandbox-daily"
#: The kinds listed as sandboxes in Odoo (and dropped by their expiry).
SANDBOX_KINDS = ("sandbox", "safety")
#: Every kind of database the engine creates.
ALL_KINDS = ("sandbox", "safety", "staging", "scratch", "drill")
#: Longest ``<db>`` part of a sandbox name, so that the engine's
#: ``<sandbox>_pre_restore_<stamp>`` still fits in 63 bytes.
MAX_SANDBOX_NAME = MAX_DBNAME - len("_pre_restore_20260101000000")


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------
def check_database_name(name) -> str:
    """``name`` if it is a valid Odoo database name (Odoo's
    ``^[a-zA-Z0-9][a-zA-Z0-9_.-]+$``, at most 63 bytes), else
    :class:`InvalidDatabaseNameError`."""
    if not isinstance(name, str) or not DBNAME_RE.match(name):
        raise InvalidDatabaseNameError(
            f"invalid database name {name!r}: letters, digits, '_', '.' and "
            "'-' only, starting with a letter or digit, at least 2 characters"
        )
    if len(name.encode()) > MAX_DBNAME:
        raise InvalidDatabaseNameError(
            f"invalid database name {name!r}: longer than {MAX_DBNAME} bytes"
        )
    return name


def derived_name(database: str, suffix: str) -> str:
    """``<database>_<suffix>``, shortened to fit PostgreSQL's 63 bytes.

    A name too long to carry the suffix is cut (on a character boundary) and
    tagged with a short hash of its full name, so two long names that share
    a prefix never collide and any valid database can be restored.
    """
    name = f"{database}_{suffix}"
    if len(name.encode()) <= MAX_DBNAME:
        return name
    tag = hashlib.sha1(database.encode()).hexdigest()[:8]
    room = MAX_DBNAME - len(f"-{tag}_{suffix}".encode())
    head = database.encode()[:room].decode(errors="ignore")
    return f"{head}-{tag}_{suffix}"


def sandbox_name(database: str, day: str, n: int = 1) -> str:
    """The ``n``-th sandbox name of ``database`` for ``day`` (``YYYYmmdd``):
    ``<db>-sandbox-<day>`` then ``-2``, ``-3``...; a long ``<db>`` is cut so
    that the engine's ``<sandbox>_pre_restore_<stamp>`` fits 63 bytes."""
    if not re.fullmatch(r"\d{8}", day) or n < 1:
        raise ValueError("day is YYYYmmdd and n is 1 or more")
    suffix = f"-sandbox-{day}" + (f"-{n}" if n > 1 else "")
    return database[: MAX_SANDBOX_NAME - len(suffix)] + suffix


def daily_sandbox_name(database: str) -> str:
    """``<db>-sandbox-daily``: the one rolling sandbox a daily refresh
    schedule replaces (a long ``<db>`` is cut as in :func:`sandbox_name`)."""
    suffix = DAILY_SANDBOX_SUFFIX
    return database[: MAX_SANDBOX_NAME - len(suffix)] + suffix


def drill_name(database: str, stamp: str) -> str:
    """``<db>_drill_<stamp>``: the temporary database of a restore drill
    (``stamp``: ``YYYYmmddHHMMSS``, UTC), cut and tagged like the engine's
    other derived names when ``<db>`` is long (:func:`derived_name`)."""
    if not re.fullmatch(_STAMP, stamp or ""):
        raise ValueError("stamp is YYYYmmddHHMMSS")
    return derived_name(database, f"drill_{stamp}")


def suite_database_kind(name) -> str | None:
    """The kind (``sandbox``, ``safety``, ``staging``, ``scratch``, ``drill``) of a
    database name the engine makes, or None."""
    if not isinstance(name, str):
        return None
    for kind, pattern in _PATTERNS.items():
        if pattern.match(name):
            return kind
    return None


def _derives_from(name: str, kind: str, production_db: str) -> bool:
    match = _PATTERNS[kind].match(name)
    if match is None:
        return False
    if kind == "sandbox":
        suffix = match["suffix"]
        expected = production_db[: MAX_SANDBOX_NAME - len(suffix)] + suffix
        return name == expected
    return name == derived_name(production_db, match["suffix"])


def check_suite_database_name(
    name, kinds=ALL_KINDS, production_db: str | None = None
) -> str:
    """The kind of ``name`` if it is a database the suite creates, of one of
    ``kinds``, and (given ``production_db``) derived from that database;
    otherwise :class:`NotSuiteDatabaseError` (or
    :class:`InvalidDatabaseNameError`)."""
    check_database_name(name)
    if ".." in name:
        raise InvalidDatabaseNameError(f"refused {name!r}: it contains '..'")
    if name in RESERVED_DATABASES:
        raise NotSuiteDatabaseError(f"refused {name!r}: a system database")
    if production_db is not None and name == production_db:
        raise NotSuiteDatabaseError(
            f"refused {name!r}: it is the production database itself"
        )
    kind = suite_database_kind(name)
    if kind is None or kind not in kinds:
        raise NotSuiteDatabaseError(
            f"refused {name!r}: not a name the backup suite gives to a "
            f"{' or '.join(kinds)} database"
        )
    if production_db is not None and not _derives_from(name, kind, production_db):
        raise NotSuiteDatabaseError(
            f"refused {name!r}: it is not a {kind} database of {production_db!r}"
        )
    return kind


def check_sandbox_name(name, production_db: str | None = None) -> str:
    """``name`` if it is a sandbox (or pre-restore safety copy) name the
    suite makes, not ``production_db``, ``postgres``, a template, nor
    anything with ``..`` or ``/``; given ``production_db``, it must be one
    of that database's own. Raises a :class:`SafetyError` subclass."""
    check_suite_database_name(name, SANDBOX_KINDS, production_db)
    return name


# ---------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------
def _check_part(part) -> str:
    if (
        not isinstance(part, str)
        or not part
        or part in (".", "..")
        or "/" in part
        or "\\" in part
        or "\0" in part
    ):
        raise UnsafePathError(f"unsafe path component {part!r}")
    return part


def safe_data_path(data_dir, *parts) -> Path:
    """``<data_dir>/<parts...>``, checked to lie strictly inside
    ``<data_dir>/filestore`` (e.g. ``safe_data_path(dd, "filestore", db)``).

    Each part is one plain name (no ``/``, ``..``, NUL); no component below
    ``<data_dir>/filestore`` may be a symlink (the ``filestore`` directory
    itself may be one: an administrator may keep it on another disk), and
    the resolved path must stay inside the resolved filestore directory.
    Raises :class:`UnsafePathError`; the path need not exist.
    """
    if data_dir is None or str(data_dir) == "":
        raise UnsafePathError("no data directory given")
    parts = [_check_part(p) for p in parts]
    if not parts or parts[0] != FILESTORE or len(parts) < 2:
        raise UnsafePathError(
            f"{os.path.join(str(data_dir), *parts)}: only paths strictly inside "
            f"{os.path.join(str(data_dir), FILESTORE)} are allowed"
        )
    base = Path(os.path.abspath(data_dir)) / FILESTORE
    root = base.resolve()
    path = base
    for part in parts[1:]:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if stat_mod.S_ISLNK(mode):
            raise UnsafePathError(f"{path} is a symlink: refusing to follow it")
    resolved = path.resolve()
    if resolved == root or root not in resolved.parents:
        raise UnsafePathError(f"{path} is not strictly inside {base}")
    return path


def filestore_of(data_dir, name: str) -> Path:
    """``<data_dir>/filestore/<name>`` for a valid database name (checked by
    :func:`check_database_name` and :func:`safe_data_path`)."""
    check_database_name(name)
    return safe_data_path(data_dir, FILESTORE, name)


# ---------------------------------------------------------------------------
# Destructive helpers
# ---------------------------------------------------------------------------
def remove_filestore(
    data_dir, name: str, *, production_db: str | None = None, kinds=SANDBOX_KINDS
) -> Path | None:
    """Remove ``<data_dir>/filestore/<name>`` of a database the suite made.

    The name is checked like :func:`drop_database_if_suite_owned` (one of
    ``kinds``, derived from ``production_db`` when given) and the path with
    :func:`safe_data_path`. Returns the removed directory, or None when
    there was none. Raises a :class:`SafetyError` subclass (nothing removed)
    or ``OSError``.
    """
    check_suite_database_name(name, kinds, production_db)
    path = filestore_of(data_dir, name)
    if not os.path.lexists(path):
        return None
    if not path.is_dir():
        raise UnsafePathError(f"{path} is not a directory")
    shutil.rmtree(path)
    return path


def _is_template(pg, name: str) -> bool:
    with pgtools.admin_cursor(pg) as cr:
        cr.execute("SELECT datistemplate FROM pg_database WHERE datname = %s", (name,))
        row = cr.fetchone()
    return bool(row and row[0])


def drop_database_if_suite_owned(
    pg,
    name: str,
    *,
    production_db: str | None = None,
    data_dir=None,
    kinds=SANDBOX_KINDS,
    missing_ok: bool = True,
) -> dict:
    """Drop the database ``name`` (and, given ``data_dir``, its filestore)
    only if it is one the suite created.

    ``pg``: :class:`~.pgtools.PgParams`. ``kinds``: which of the suite's
    names are acceptable (default: sandboxes and pre-restore safety copies,
    what Odoo lists as sandboxes). ``production_db``: the database on whose
    behalf this runs; it is never dropped and ``name`` must be one of its
    own derived names. Refusals raise a :class:`SafetyError` subclass before
    anything is dropped; a PostgreSQL failure raises ``RestoreError``.
    Returns ``{"database": name, "filestore": removed path or None}``.
    """
    check_suite_database_name(name, kinds, production_db)
    filestore = filestore_of(data_dir, name) if data_dir is not None else None
    if _is_template(pg, name):
        raise NotSuiteDatabaseError(f"refusing to drop the template database {name!r}")
    pgtools.drop_database(pg, name, missing_ok=missing_ok)
    removed = None
    if filestore is not None:
        removed = remove_filestore(
            data_dir, name, production_db=production_db, kinds=kinds
        )
    _logger.info("dropped %s%s", name, f" and {removed}" if removed else "")
    return {"database": name, "filestore": str(removed) if removed else None}
