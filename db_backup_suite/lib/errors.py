"""Errors of the backup engine.

Every error a user can cause (a wrong key, a damaged archive, an unreachable
server, a full disk) is one of these, with a message that says what happened
and what to do; none of them leaves a partial archive or a changed database.
"""


class BackupSuiteError(Exception):
    """Base class of every error the engine raises on purpose."""


# Keys -----------------------------------------------------------------------
class KeyringError(BackupSuiteError):
    """The server keyring is missing or malformed."""


class UnknownKeyError(KeyringError):
    """The archive names a key id the keyring does not hold."""


# Archives -------------------------------------------------------------------
class ArchiveError(BackupSuiteError):
    """The archive cannot be read or is not trustworthy."""


class ArchiveFormatError(ArchiveError):
    """Not an archive of this suite, or of a format version we do not know."""


class ArchiveTruncatedError(ArchiveError):
    """The archive ends before its last chunk."""


class ArchiveTamperedError(ArchiveError):
    """Authentication failed: a header or chunk was altered or reordered."""


class WrongKeyError(ArchiveError):
    """The key (or password) does not open this archive."""


class WrongPasswordError(WrongKeyError):
    """The password does not open this archive."""


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
