"""The translated messages of the backup engine's errors (``lib/errors.py``,
``lib/uploads.py``, ``lib/registry.py``), listed in audit_export's table of
library errors (``suite_error_message``) when Odoo imports this addon.

Most of these errors carry no attributes beyond their English text: the
message says what happened and what to do, and gives the library's detail
(a database name, a path, the server's answer) as a parameter.
"""

from odoo.addons.audit_export.tools.suite_errors import register

from ..lib import errors, registry, uploads


def _detail(build):
    """A builder giving ``build(env, detail)`` the library's text."""
    return lambda env, exc: build(env, str(exc))


def _destinations_failed(env, exc):
    reasons = "; ".join(
        "%s: %s" % (outcome.destination, outcome.error or "?")
        for outcome in exc.outcomes
    )
    return env._(
        "No backup destination stored the archive (%(count)s failed: "
        "%(reasons)s). Test each destination, fix what it reports, then run "
        "the backup again.",
        count=len(exc.outcomes),
        reasons=reasons,
    )


def _foreign_archive(env, exc):
    target = (
        env._("database %(name)s", name=exc.target)
        if exc.target
        else env._("this database")
    )
    return env._(
        "This archive is a backup of database %(database)s (uuid %(source_uuid)s, "
        "taken %(taken)s), not of %(target)s (uuid %(expected_uuid)s); nothing "
        "was restored. Restoring it would replace the data with another "
        "database's: confirm that explicitly to go on.",
        database=exc.source_name or "?",
        source_uuid=exc.source_uuid or "?",
        taken=exc.created_at or "?",
        target=target,
        expected_uuid=exc.expected_uuid or "?",
    )


def _upload(env, exc):
    from ..controllers.upload import upload_error_text

    return upload_error_text(env, exc)


for cls, build in (
    (
        errors.DestinationsFailedError,
        _destinations_failed,
    ),
    (
        errors.SinkUnreachableError,
        _detail(
            lambda env, detail: env._(
                "The backup destination cannot be reached or refused the "
                "connection (%(detail)s). Check its host, port and credentials "
                "with Test connection, then try again.",
                detail=detail,
            )
        ),
    ),
    (
        errors.ArchiveNotFoundError,
        _detail(
            lambda env, detail: env._(
                "The archive file does not exist (%(detail)s); nothing was "
                "restored. Choose an archive that is still there.",
                detail=detail,
            )
        ),
    ),
    (
        errors.SinkObjectNotFound,
        _detail(
            lambda env, detail: env._(
                "The archive is not at the backup destination (%(detail)s): it "
                "was removed or moved there. Choose another archive.",
                detail=detail,
            )
        ),
    ),
    (
        errors.SinkError,
        _detail(
            lambda env, detail: env._(
                "The backup destination failed (%(detail)s). Check that it is "
                "reachable and has free space (Test connection), then try again.",
                detail=detail,
            )
        ),
    ),
    (
        errors.BackupLockedError,
        _detail(
            lambda env, detail: env._(
                "Another backup of this database is running (%(detail)s): wait "
                "for it to finish, then try again.",
                detail=detail,
            )
        ),
    ),
    (
        errors.DumpError,
        _detail(
            lambda env, detail: env._(
                "The database or its filestore could not be read for the backup "
                "(%(detail)s); no archive was made. Check the server log, then "
                "run the backup again.",
                detail=detail,
            )
        ),
    ),
    (errors.ForeignArchiveError, _foreign_archive),
    (
        errors.RestoreError,
        _detail(
            lambda env, detail: env._(
                "The restore failed (%(detail)s); the live database and its "
                "filestore are unchanged.",
                detail=detail,
            )
        ),
    ),
    (
        errors.VerificationError,
        _detail(
            lambda env, detail: env._(
                "The restored copy does not match the archive's manifest "
                "(%(detail)s): it was not used and nothing was replaced. "
                "Restore another archive.",
                detail=detail,
            )
        ),
    ),
    (
        errors.InvalidDatabaseNameError,
        _detail(
            lambda env, detail: env._(
                "Not a valid database name (%(detail)s); nothing was changed. "
                "Use letters, digits, '_', '.' and '-' only, starting with a "
                "letter or digit.",
                detail=detail,
            )
        ),
    ),
    (
        errors.NotSuiteDatabaseError,
        _detail(
            lambda env, detail: env._(
                "Refused: this database is not a sandbox, safety copy or scratch "
                "database the backup suite made for this database (%(detail)s); "
                "nothing was dropped or changed.",
                detail=detail,
            )
        ),
    ),
    (
        errors.UnsafePathError,
        _detail(
            lambda env, detail: env._(
                "Refused: the path leaves the database's filestore (%(detail)s); "
                "nothing was removed or changed.",
                detail=detail,
            )
        ),
    ),
    (
        errors.SafetyError,
        _detail(
            lambda env, detail: env._(
                "Refused to remove something the backup suite did not create "
                "(%(detail)s); nothing was changed.",
                detail=detail,
            )
        ),
    ),
    (
        registry.RegistryCorruptError,
        _detail(
            lambda env, detail: env._(
                "The registry of sandboxes and safety copies is damaged "
                "(%(detail)s). Repair or move that file away, then try again.",
                detail=detail,
            )
        ),
    ),
    (
        registry.RegistryError,
        _detail(
            lambda env, detail: env._(
                "The registry of sandboxes and safety copies cannot be used "
                "(%(detail)s).",
                detail=detail,
            )
        ),
    ),
    (uploads.UploadError, _upload),
):
    register(cls, build)
