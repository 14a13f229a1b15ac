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
