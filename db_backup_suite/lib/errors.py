"""Errors of the backup engine.

Every error a user can cause (a wrong key, a damaged archive, an unreachable
server, a full disk) is one of these, with a message that says what happened
and what to do; none of them leaves a partial archive or a changed database.

The archive and keyring errors ARE the classes of the suite's crypto layer
(``audit_export.lib.keyring`` / ``streamcrypt``), not copies: an error raised
while decrypting is caught by ``except ArchiveTamperedError`` here and by
``except streamcrypt.TamperedError`` alike, and ``BackupSuiteError`` is the
crypto layer's root ``SuiteError``, so it catches all of them too.
"""

if __name__.startswith("odoo.addons."):
    from odoo.addons.audit_export.lib import keyring as _keyring
    from odoo.addons.audit_export.lib import streamcrypt as _streamcrypt
else:
    from audit_export.lib import keyring as _keyring
    from audit_export.lib import streamcrypt as _streamcrypt

#: Base class of every error the engine raises on purpose.
BackupSuiteError = _keyring.SuiteError

# Keys -----------------------------------------------------------------------
#: The server keyring is missing or malformed.
KeyringError = _keyring.KeyringError
#: The archive names a key id the keyring does not hold (a KeyringError).
UnknownKeyError = _keyring.UnknownKeyError

# Archives -------------------------------------------------------------------
#: The archive cannot be read or is not trustworthy (base of the below).
ArchiveError = _streamcrypt.StreamCryptError
#: Not an archive of this suite, or of a format version we do not know.
ArchiveFormatError = _streamcrypt.FormatError
#: The archive ends before its last chunk.
ArchiveTruncatedError = _streamcrypt.TruncatedError
#: Authentication failed: a header or chunk was altered or reordered.
ArchiveTamperedError = _streamcrypt.TamperedError
#: The key (or password) does not open this archive.
WrongKeyError = _streamcrypt.WrongKeyError
#: The password does not open this archive (a WrongKeyError).
WrongPasswordError = _streamcrypt.WrongPasswordError


# Storage --------------------------------------------------------------------
class SinkError(BackupSuiteError):
    """A storage destination failed (unreachable, refused, full, ...)."""


class SinkUnreachableError(SinkError):
    """The storage server could not be reached or authenticated."""


class SinkObjectNotFound(SinkError):
    """The named archive does not exist at the destination."""


# Pipelines ------------------------------------------------------------------
class BackupLockedError(BackupSuiteError):
    """Another backup of the same database is running."""


class DumpError(BackupSuiteError):
    """pg_dump (or reading the filestore) failed; no archive was produced."""


class RestoreError(BackupSuiteError):
    """The restore failed; the live database and filestore are unchanged."""


class VerificationError(BackupSuiteError):
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
class SafetyError(BackupSuiteError):
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
