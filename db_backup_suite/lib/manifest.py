"""The manifest of an archive: what is in it and how to check a restore.

The payload (see docs/payload-format.md) holds two JSON members:

- ``backup.json``, the FIRST member: what is known before any data is
  written (database, uuid, Odoo version and modules, PostgreSQL version,
  creation time, label, compression, the planned filestore list size);
- ``manifest.json``, the LAST member: the same fields plus what is only
  known at the end (dump size and sha256, filestore count/bytes/digest and
  missing files, per-table row counts, warnings), ``"complete": true``.

An archive without a complete ``manifest.json`` is not a finished backup.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from .errors import FormatError, VerificationError

KIND = "db_backup_suite.backup"
#: Version of the payload layout (members and manifest fields).
LAYOUT_VERSION = 1
HEAD_MEMBER = "backup.json"
MANIFEST_MEMBER = "manifest.json"
DUMP_MEMBER = "database.dump"
FILESTORE_DIR = "filestore/"
#: Largest manifest member we accept to read (row counts of many tables).
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def dumps(manifest: dict) -> bytes:
    return json.dumps(manifest, indent=1, sort_keys=True, default=str).encode()


def loads(data: bytes, what: str = MANIFEST_MEMBER) -> dict:
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise FormatError(f"{what} is not a manifest of this suite")
    layout = manifest.get("layout")
    if not isinstance(layout, int) or layout > LAYOUT_VERSION:
        raise FormatError(
            f"{what} has payload layout {layout!r}; this version reads up to "
            f"{LAYOUT_VERSION}: upgrade the suite to restore it"
        )
    return manifest


def filestore_member(store_fname: str) -> str:
    return FILESTORE_DIR + store_fname


class FilestoreDigest:
    """sha256 over ``"<store_fname>\\t<size>\\t<sha256 of content>\\n"`` of
    every filestore file, in archive order (sorted by ``store_fname``).

    The backup computes it while writing, verify while reading the archive
    and restore while extracting, so all three compare one value.
    """

    def __init__(self):
        self._h = hashlib.sha256()
        self.files = 0
        self.bytes = 0

    def add(self, store_fname: str, size: int, sha256_hex: str):
        self._h.update(f"{store_fname}\t{size}\t{sha256_hex}\n".encode())
        self.files += 1
        self.bytes += size

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def compare_row_counts(expected: dict, actual: dict) -> list[str]:
    """Human-readable differences (empty when equal)."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        if want is None:
            problems.append(f"table {table} is not in the manifest ({got} rows)")
        elif got is None:
            problems.append(f"table {table} is missing ({want} rows expected)")
        elif want != got:
            problems.append(f"table {table} has {got} rows, {want} expected")
    return problems


def check_restored(manifest: dict, row_counts: dict, filestore: dict) -> None:
    """Raise VerificationError unless the restored database and filestore
    match the manifest. ``filestore``: ``{"files", "bytes", "digest"}``."""
    problems = compare_row_counts(manifest.get("row_counts") or {}, row_counts)
    expected_fs = manifest.get("filestore") or {}
    for key in ("files", "bytes", "digest"):
        if key in expected_fs and expected_fs[key] != filestore.get(key):
            problems.append(
                f"filestore {key}: {filestore.get(key)!r}, "
                f"{expected_fs[key]!r} expected"
            )
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise VerificationError(
            f"the restored copy does not match the archive's manifest: {shown}{more}"
        )
