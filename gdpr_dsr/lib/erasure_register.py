"""The erasure register: an append-only JSON-lines file outside the database.

A database restore replaces the database and its filestore, so a register
kept in either would be rolled back together with the data it protects. This
file lives in the server's data directory, one file per database uuid (a
restored copy keeps its uuid), and holds no personal data: per erasure the
date, the request reference, the erased partner ids with SHA-256 digests of
their normalised email and name, and the list of (model, id, action) applied.

Each line carries the SHA-256 of the previous line (``prev``), so a removed
or edited line is detected by :func:`ErasureRegister.verify_chain`.
"""

import fcntl
import hashlib
import json
import logging
import os
import uuid
from datetime import UTC, datetime

from suite_core.keyring import SuiteError

_logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
GENESIS = "0" * 64


class ErasureRegisterError(SuiteError):
    """The register cannot be read or written."""


def normalize_email(email):
    """Strip and lower-case an email address (``None`` for empty input)."""
    if not email:
        return None
    text = str(email).strip().lower()
    return text or None


def digest(value):
    """SHA-256 hex digest of a normalised text value (``None`` when empty)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if not text:
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _parse_time(value):
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


class ErasureRegister:
    """Append-only register of erasures for one database."""

    def __init__(self, directory, database_uuid):
        if not database_uuid or "/" in database_uuid or database_uuid.startswith("."):
            raise ErasureRegisterError(
                f"invalid database uuid for the erasure register: {database_uuid!r}"
            )
        self.directory = os.fspath(directory)
        self.database_uuid = database_uuid
        self.path = os.path.join(self.directory, f"{database_uuid}.jsonl")

    # -- writing -----------------------------------------------------------
    def append(self, *, request_ref, email_sha256, partners, records, recorded_at=None):
        """Append one erasure and return the entry written (a dict).

        ``partners``: list of dicts ``{"id", "email_sha256", "name_sha256"}``;
        ``records``: list of ``[model, id, action]``.
        """
        recorded_at = recorded_at or datetime.now(UTC)
        if recorded_at.tzinfo is None:
            raise ErasureRegisterError("recorded_at must be timezone-aware")
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            # a missing or read-only folder is a server setting to fix: the
            # caller refuses the erasure (nothing erased without its entry)
            raise ErasureRegisterError(
                f"the erasure register {self.path} cannot be written: "
                f"{exc.strerror or exc}"
            ) from exc
        try:
            os.fchmod(fd, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(os.dup(fd), "rb") as reader:
                previous = GENESIS
                for raw in reader:
                    if raw.strip():
                        previous = hashlib.sha256(raw.rstrip(b"\n")).hexdigest()
            entry = {
                "v": FORMAT_VERSION,
                "erasure_id": str(uuid.uuid4()),
                "recorded_at": recorded_at.astimezone(UTC).isoformat(),
                "database_uuid": self.database_uuid,
                "request_ref": request_ref,
                "email_sha256": email_sha256,
                "partners": [
                    {
                        "id": int(p["id"]),
                        "email_sha256": p.get("email_sha256"),
                        "name_sha256": p.get("name_sha256"),
                    }
                    for p in partners
                ],
                "records": [[str(m), int(i), str(a)] for m, i, a in records],
                "prev": previous,
            }
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"))
            try:
                os.write(fd, line.encode("utf-8") + b"\n")
                os.fsync(fd)
            except OSError as exc:  # a full disk, a failing device
                raise ErasureRegisterError(
                    f"the erasure register {self.path} cannot be written: "
                    f"{exc.strerror or exc}"
                ) from exc
        finally:
            os.close(fd)  # closing the descriptor releases the lock
        return entry

    # -- reading -----------------------------------------------------------
    def entries(self):
        """Every readable entry, oldest first (unreadable lines are logged)."""
        if not os.path.exists(self.path):
            return []
        result = []
        with open(self.path, "rb") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    entry = json.loads(raw)
                    _parse_time(entry["recorded_at"])
                except (ValueError, KeyError, TypeError) as exc:
                    _logger.error(
                        "erasure register %s: line %d is unreadable (%s); skipped",
                        self.path,
                        number,
                        exc,
                    )
                    continue
                result.append(entry)
        return result

    def entries_after(self, moment):
        """Entries recorded strictly after the aware datetime ``moment``."""
        if moment is None or moment.tzinfo is None:
            raise ErasureRegisterError("a timezone-aware datetime is required")
        return [
            entry
            for entry in self.entries()
            if _parse_time(entry["recorded_at"]) > moment
        ]

    def verify_chain(self):
        """Return the list of line numbers whose ``prev`` link is broken."""
        if not os.path.exists(self.path):
            return []
        broken = []
        previous = GENESIS
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    entry = json.loads(raw)
                except ValueError:
                    broken.append(number)
                else:
                    if entry.get("prev") != previous:
                        broken.append(number)
                previous = hashlib.sha256(raw.rstrip(b"\n")).hexdigest()
        return broken
