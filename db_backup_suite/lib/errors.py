"""Errors of the backup engine.

Every error a user can cause (a wrong key, a damaged archive, an unreachable
server, a full disk) is one of these, with a message that says what happened
and what to do; none of them leaves a partial archive or a changed database.

The root of every error is the shared core's ``SuiteError``; the keyring
and archive errors are the core's own classes (``suite_core.keyring``,
``suite_core.streamcrypt``), imported here under their one name so the
engine's code finds every error it raises in this module. The engine's own
errors below derive from ``SuiteError`` too.
"""

import contextlib
import re

# The core's errors, re-exported under their own names: SuiteError (root),
# KeyringError (keyring missing or malformed), UnknownKeyError (the archive
# names a key id the keyring does not hold), StreamCryptError (the archive
# cannot be read or trusted: base of the next four), FormatError (not an
# archive of this suite, or an unknown format version), TruncatedError (ends
# before its last chunk), TamperedError (a header or chunk altered or
# reordered), WrongKeyError / WrongPasswordError (the key or password does
# not open it).
from suite_core.keyring import KeyringError, SuiteError, UnknownKeyError
from suite_core.streamcrypt import (
    FormatError,
    StreamCryptError,
    TamperedError,
    TruncatedError,
    WrongKeyError,
    WrongPasswordError,
)

__all__ = [
    "FormatError",
    "KeyringError",
    "StreamCryptError",
    "SuiteError",
    "TamperedError",
    "TruncatedError",
    "UnknownKeyError",
    "WrongKeyError",
    "WrongPasswordError",
]

# Keys -----------------------------------------------------------------------


class MissingKeyError(UnknownKeyError):
    """{what} cannot be decrypted: the server key that encrypted it,
    {key_id!r}, is not in the server keyring{held}. {hint}

    Raised instead of the bare :class:`UnknownKeyError` wherever the engine
    (or the Odoo layer) knows WHAT it was decrypting, so the message names
    the object and the key id, never "the key that encrypted this archive"
    for destination credentials. ``kind`` is one of :data:`KINDS`
    (``destination``: a destination's stored credentials; ``archive``: a
    backup archive; ``export``: a stored export file; ``secret``: any other
    sealed value), ``name`` what the user knows it by (destination name,
    archive name, export name); ``key_id`` the key it needs (None when
    unknown), ``held`` the ids the keyring holds. A subclass of
    ``UnknownKeyError`` (hence of ``KeyringError``): existing handlers keep
    catching it. Build one with :meth:`from_error` (from the crypto layer's
    error) or the :func:`naming_missing_key` context manager.
    """

    #: kind -> (what it is, called "{name}", what to do)
    KINDS = {
        "destination": (
            "the credentials of destination {name}",
            "Add key {key_id!r} back to the keyring, or type the destination's "
            "credentials again (saving them encrypts them with the active key).",
        ),
        "archive": (
            "archive {name}",
            "Add key {key_id!r} back to the keyring to verify or restore it "
            "(keep every key that encrypted an archive you may need).",
        ),
        "export": (
            "export {name}",
            "Add key {key_id!r} back to the keyring, or run the export again.",
        ),
        "secret": (
            "{name}",
            "Add key {key_id!r} back to the keyring.",
        ),
    }

    def __init__(self, *, kind: str, name=None, key_id=None, held=None):
        if kind not in self.KINDS:
            raise ValueError(f"unknown kind {kind!r}; use one of {list(self.KINDS)}")
        self.kind = kind
        self.object_name = name
        self.key_id = key_id
        self.held = tuple(held) if held is not None else None
        what, hint = self.KINDS[kind]
        shown = repr(str(name)) if name else "(unnamed)"
        what = what.format(name=shown)
        key = key_id if key_id else "?"
        held_text = ""
        if self.held is not None:
            held_text = f" (it holds: {', '.join(self.held) or 'no key'})"
        message = (
            f"{what[0].upper()}{what[1:]} cannot be decrypted: the server key "
            f"that encrypted it, {key!r}, is not in the server keyring"
            f"{held_text}. {hint.format(key_id=key)}"
        )
        super().__init__(message)

    @classmethod
    def from_error(cls, exc, *, kind: str, name=None, key_id=None, keyring=None):
        """The :class:`MissingKeyError` for the crypto layer's
        ``UnknownKeyError`` ``exc`` (the key id is read from its message when
        not given)."""
        if isinstance(exc, MissingKeyError):
            return exc
        if key_id is None:
            match = _KEY_ID_IN_MESSAGE.search(str(exc))
            key_id = match[1] if match else None
        held = getattr(keyring, "ids", None) if keyring is not None else None
        if held is None:
            match = _HELD_IN_MESSAGE.search(str(exc))
            held = match[1].split(", ") if match else None
        return cls(kind=kind, name=name, key_id=key_id, held=held)


_KEY_ID_IN_MESSAGE = re.compile(r"key '([^']+)'")
_HELD_IN_MESSAGE = re.compile(r"\(it holds: ([^)]*)\)")


@contextlib.contextmanager
def naming_missing_key(kind: str, name=None, *, key_id=None, keyring=None):
    """Inside the block, the crypto layer's ``UnknownKeyError`` becomes a
    :class:`MissingKeyError` naming ``kind``/``name`` and the key id::

        with naming_missing_key("destination", dest.name):
            secret = unseal(...)
    """
    try:
        yield
    except MissingKeyError:
        raise
    except UnknownKeyError as exc:
        raise MissingKeyError.from_error(
            exc, kind=kind, name=name, key_id=key_id, keyring=keyring
        ) from exc


# Storage --------------------------------------------------------------------
class SinkError(SuiteError):
    """A storage destination failed (unreachable, refused, full, ...)."""


class SinkUnreachableError(SinkError):
    """The storage server could not be reached or authenticated."""


class SinkObjectNotFound(SinkError):
    """The named archive does not exist at the destination."""


class DestinationsFailedError(SinkError):
    """No destination stored the archive; ``outcomes`` says why, each.

    Raised by a backup to several destinations when every one of them
    failed (with one destination, its own error is raised unchanged).
    ``outcomes``: the :class:`~.fanout.DestinationOutcome` list, in the
    order the destinations were given; ``state`` is always ``"failed"``.
    """

    state = "failed"

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        reasons = "; ".join(f"{o.destination}: {o.error}" for o in self.outcomes)
        super().__init__(
            f"no destination stored the archive ({len(self.outcomes)} failed): "
            f"{reasons}"
        )


# Pipelines ------------------------------------------------------------------
class BackupLockedError(SuiteError):
    """Another backup of the same database is running."""


class DumpError(SuiteError):
    """pg_dump (or reading the filestore) failed; no archive was produced."""


class RestoreError(SuiteError):
    """The restore failed; the live database and filestore are unchanged."""


class ArchiveNotFoundError(RestoreError, SinkObjectNotFound):
    """The archive file to read does not exist (a RestoreError for the
    restore's handlers, a SinkObjectNotFound for the command line's exit
    code: "not there", not "the restore failed")."""


class VerificationError(SuiteError):
    """A restored database does not match the archive's manifest."""


class ForeignArchiveError(RestoreError):
    """The archive belongs to another database than the one it would replace.

    Raised before anything is created, dropped or renamed. ``source_name``,
    ``source_uuid`` and ``created_at`` describe the archive's database (from
    its header and head manifest; None when unknown), ``expected_uuid`` the
    uuid the restore was told to expect. A caller that confirmed the choice
    restores it with ``allow_foreign=True``.
    """

    def __init__(
        self,
        message=None,
        *,
        source_name=None,
        source_uuid=None,
        created_at=None,
        expected_uuid=None,
        target=None,
    ):
        self.source_name = source_name
        self.source_uuid = source_uuid
        self.created_at = created_at
        self.expected_uuid = expected_uuid
        self.target = target
        if message is None:
            when = f", taken {created_at}" if created_at else ""
            into = f"database {target!r}" if target else "this database"
            message = (
                f"this archive is a backup of database {source_name or '?'!r} "
                f"(uuid {source_uuid or 'none'}{when}), not of {into} (uuid "
                f"{expected_uuid or 'none'}); nothing was restored. Restoring "
                "it would replace the data with another database's: confirm "
                "that explicitly to go on"
            )
        super().__init__(message)


# Safety of destructive operations ---------------------------------------------
class SafetyError(SuiteError):
    """Refused a destructive operation (drop, rmtree) on something the suite
    did not create; nothing was changed."""


class InvalidDatabaseNameError(SafetyError):
    """Not a valid Odoo database name."""


class NotSuiteDatabaseError(SafetyError):
    """The database is not one the suite created (sandbox, safety copy,
    staging or scratch database), or belongs to another database."""


class UnsafePathError(SafetyError):
    """A path escapes the data directory's filestore (``..``, ``/``, a
    symlink) or is the filestore itself."""
