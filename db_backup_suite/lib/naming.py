"""Names of the suite's archives at a destination.

``<database>/<database>_<label>_<YYYYmmddTHHMMSSZ>.tar.zst.enc``

- one folder (key prefix) per database, so a listing for one database never
  sees another's archives;
- the label says which schedule (or person) made it: ``manual``,
  ``pre-restore``, ``hourly``, ``4h``, ``24h``, ``3d``, ``7d``, ``15d``,
  ``daily``, ``weekly``, ``monthly``, ...: lower-case letters, digits and
  ``-`` (never ``_``, which separates the fields);
- the creation time in UTC, to the second, so names sort by age;
- the extension says what is inside: ``.tar.zst.enc`` / ``.tar.gz.enc``
  (encrypted), or the legacy plaintext ``.tar.zst``, ``.tar.gz``, ``.tar``.

``parse_archive_name`` returns None for anything else (Odoo zips, temporary
``.part`` uploads, files of another database, a user's own files), and
retention never touches what it cannot parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

# Odoo's own database name rule (odoo.service.db.DBNAME_PATTERN)
DBNAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"

# extension -> (compression, encrypted); longest first for matching
EXTENSIONS = {
    ".tar.zst.enc": ("zstd", True),
    ".tar.gz.enc": ("gzip", True),
    ".tar.enc": ("none", True),
    ".tar.zst": ("zstd", False),
    ".tar.gz": ("gzip", False),
    ".tar": ("none", False),
}
DEFAULT_EXTENSION = ".tar.zst.enc"
KNOWN_LABELS = (
    "manual",
    "pre-restore",
    "hourly",
    "4h",
    "24h",
    "3d",
    "7d",
    "15d",
    "daily",
    "weekly",
    "monthly",
    "yearly",
)
MANUAL = "manual"
PRE_RESTORE = "pre-restore"

_NAME_RE = re.compile(
    r"^(?P<database>[a-zA-Z0-9][a-zA-Z0-9_.-]+)"
    r"_(?P<label>[a-z0-9][a-z0-9-]{0,31})"
    r"_(?P<ts>\d{8}T\d{6}Z)"
    r"(?P<ext>" + "|".join(re.escape(e) for e in EXTENSIONS) + r")$"
)


@dataclass(frozen=True)
class ArchiveName:
    name: str  # as given (with its folder)
    database: str
    label: str
    created_at: datetime  # aware, UTC
    ext: str
    compression: str  # zstd | gzip | none
    encrypted: bool

    @property
    def basename(self) -> str:
        return self.name.rsplit("/", 1)[-1]


def check_database_name(database: str) -> str:
    if not isinstance(database, str) or not DBNAME_RE.match(database):
        raise ValueError(
            f"invalid database name {database!r}: letters, digits, '_', '.' "
            "and '-' only, starting with a letter or digit"
        )
    return database


def check_label(label: str) -> str:
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise ValueError(
            f"invalid archive label {label!r}: 1-32 lower-case letters, digits "
            "or '-', starting with a letter or digit (e.g. 'daily', '4h')"
        )
    return label


def to_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken as UTC (as Odoo stores)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def archive_name(
    database: str, label: str, created_at: datetime, ext: str = DEFAULT_EXTENSION
) -> str:
    """``<database>/<database>_<label>_<YYYYmmddTHHMMSSZ><ext>``."""
    check_database_name(database)
    check_label(label)
    if ext not in EXTENSIONS:
        raise ValueError(f"unknown archive extension {ext!r}; use one of {EXTENSIONS}")
    stamp = to_utc(created_at).strftime(TIMESTAMP_FORMAT)
    return f"{database}/{database}_{label}_{stamp}{ext}"


def parse_archive_name(name: str, database: str | None = None) -> ArchiveName | None:
    """Parse a name made by :func:`archive_name` (with or without folders in
    front), or return None when it is not one of ours.

    With ``database``, names of any other database are None too. The folder
    right above the file, when there is one, must be the database's own.
    """
    if not isinstance(name, str) or "\0" in name or "\\" in name:
        return None
    folder, _, base = name.rpartition("/")
    match = _NAME_RE.match(base)
    if not match:
        return None
    db = match["database"]
    if database is not None and db != database:
        return None
    parent = folder.rsplit("/", 1)[-1] if folder else None
    if parent is not None and parent != db:
        return None
    try:
        created = datetime.strptime(match["ts"], TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None  # e.g. month 13
    compression, encrypted = EXTENSIONS[match["ext"]]
    return ArchiveName(
        name=name,
        database=db,
        label=match["label"],
        created_at=created,
        ext=match["ext"],
        compression=compression,
        encrypted=encrypted,
    )
