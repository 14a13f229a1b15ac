"""Command line of the backup engine: ``python -m db_backup_suite.lib``.

The emergency path when nobody can log in to Odoo: it needs neither Odoo
nor its configuration, only PostgreSQL access, the data directory and the
keyring. Run ``python -m db_backup_suite.lib <command> --help``.

Destinations (``--to`` / ``--from``)::

    local:/var/backups/odoo                      a directory
    s3://bucket/prefix?endpoint=https://...&region=eu-west-1&sse=AES256
        &checksum_when_required=1&addressing_style=path
    sftp://user@host:22/remote/dir?known_hosts=/etc/backup/known_hosts
        &private_key_file=/etc/backup/id_ed25519
    /etc/backup/destination.json                 a make_sink() config

Secrets never go on the command line: S3 keys from ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` (or boto3's usual sources), the SFTP password from
``DB_BACKUP_SUITE_SFTP_PASSWORD``, the PostgreSQL password from
``PGPASSWORD`` or ``~/.pgpass``, an archive password from a file
(``--password-file``) or an environment variable (``--password-env``), the
keyring from ``--keyring FILE`` or ``SUITE_KEYRING_FILE`` /
``SUITE_KEYRING``. A JSON config file may hold secrets; keep it
``chmod 600``.

Whose archives: the command line is the operator's, who holds the keyring,
so ``verify``, ``decrypt`` and ``export-odoo-zip`` read an archive of any
database (``streamcrypt.ANY_TENANT``). ``restore`` over an existing database
is bound to it: another database's archive is refused (its name, uuid and
date are shown) unless ``--allow-foreign-archive SOURCE_DB`` names it. Every
plaintext file the command line writes is created 0600, folders 0700.

Several destinations: ``backup --to A --to B`` writes ONE stream to all of
them at once; a destination that fails or stalls is dropped and the others
complete. Each destination's outcome is printed; a backup stored at some of
them only exits with 3 (partial), at none with 8 (destination unreachable).

Incremental backups (``backup --incremental --to DEST``, one destination,
the keyring only: a password is refused) store a *snapshot* in a
deduplicated, encrypted repository at ``DEST/<db>/repo-<uuid>/`` (format:
docs/repository-format.md); each run uploads only what the destination
lacks. ``list`` shows snapshots beside archives with the new data each
added; ``verify``, ``restore``, ``decrypt`` and ``export-odoo-zip`` take a
snapshot name (``<db>/repo-<uuid>/<db>/<db>_<label>_<stamp>.tar.zst.enc``,
detected by its ``repo-`` folder, or any name with ``--repository``) exactly
as an archive name, with the same checks (tenant binding, foreign-archive
refusal, 0600 outputs); ``prune --repository`` applies the retention rules
to snapshots then removes the data no kept snapshot needs (garbage
collection; it waits for a running backup and spares young packs), and
``verify --repository --from DEST --database DB [--deep | --sample F]``
checks a whole repository.

What killed runs leave (temp files, ``.part`` files, incomplete multipart
uploads, staging / scratch databases, filestores and temp dirs) is removed
at the start of every ``backup``, by ``prune`` and by ``cleanup`` (for a
daily cron): only the suite's own names, only of the database named, never
while a backup or restore of it runs (see ``cleanup --help``).

Exit codes (:data:`EXIT_CODES`, also in ``--help``): 0 success, 1
unexpected failure, 2 usage, 3 partial (the backup is stored at some
destinations, not all), then one code per error family (4 keyring or missing
key, 5 wrong key or password, 6 archive damaged, 7 verification mismatch, 8
destination unreachable or object not found, 9 safety refusal, 10 lock busy,
11 dump or restore tool failed); every failure prints one ``error:`` line on
stderr.
``--json`` prints the result as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

from suite_core.keyring import write_new_keyring

from . import backup, crypto, errors, naming, pgtools
from .errors import SuiteError
from .payload.extract import extract_member
from .payload.reader import PayloadReader
from .payload.tar import part_base
from .pgtools import PgParams

_logger = logging.getLogger("db_backup_suite.cli")

PASSWORD_ENV = "DB_BACKUP_SUITE_PASSWORD"
#: ``verify --repository``: the fraction of packs read by default
DEFAULT_SAMPLE = 0.1
SFTP_PASSWORD_ENV = "DB_BACKUP_SUITE_SFTP_PASSWORD"

#: Exit codes (``main``): see :data:`EXIT_CODES`.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
EXIT_KEYRING, EXIT_WRONG_KEY, EXIT_DAMAGED, EXIT_MISMATCH = 4, 5, 6, 7
EXIT_DESTINATION, EXIT_REFUSED, EXIT_LOCKED, EXIT_TOOL = 8, 9, 10, 11


class UsageError(SuiteError):
    """Bad command-line input: exit code 2."""


# ---------------------------------------------------------------------------
# Destinations and secrets
# ---------------------------------------------------------------------------
def _truthy(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on")


def _read_secret_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text().strip("\r\n")
    except OSError as exc:
        raise UsageError(f"cannot read {what} file {path}: {exc.strerror}") from None


def parse_destination(spec: str, environ=None) -> dict:
    """A ``make_sink`` config from a ``--to`` / ``--from`` value."""
    env = os.environ if environ is None else environ
    if spec.startswith("local:"):
        path = spec[len("local:") :]
        if not path:
            raise UsageError("local: needs a directory, e.g. local:/var/backups")
        return {"type": "local", "path": os.path.abspath(os.path.expanduser(path))}
    if spec.startswith("s3://"):
        return _s3_destination(spec, env)
    if spec.startswith("sftp://"):
        return _sftp_destination(spec, env)
    path = Path(spec)
    if path.is_file():
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"{spec}: not a readable JSON destination: {exc}"
            ) from None
        if not isinstance(config, dict) or "type" not in config:
            raise UsageError(f"{spec}: a destination config needs a 'type'")
        return config
    raise UsageError(
        f"unknown destination {spec!r}: use local:/dir, s3://bucket/prefix, "
        "sftp://user@host/dir or a JSON config file"
    )


_S3_OPTIONS = {
    "endpoint": "endpoint_url",
    "endpoint_url": "endpoint_url",
    "region": "region",
    "sse": "sse",
    "addressing_style": "addressing_style",
    "storage_class": "storage_class",
}


def _s3_destination(spec: str, env) -> dict:
    url = urllib.parse.urlsplit(spec)
    if not url.netloc:
        raise UsageError("s3:// needs a bucket, e.g. s3://my-bucket/odoo")
    query = dict(urllib.parse.parse_qsl(url.query))
    config = {"type": "s3", "bucket": url.netloc, "prefix": url.path.strip("/")}
    for key, value in query.items():
        if key in _S3_OPTIONS:
            config[_S3_OPTIONS[key]] = value
        elif key == "checksum_when_required":
            config["checksum_when_required"] = _truthy(value)
        else:
            raise UsageError(f"unknown s3:// option {key!r}")
    if env.get("AWS_ACCESS_KEY_ID"):
        config["access_key"] = env["AWS_ACCESS_KEY_ID"]
        config["secret_key"] = env.get("AWS_SECRET_ACCESS_KEY")
    return config


def _sftp_destination(spec: str, env) -> dict:
    url = urllib.parse.urlsplit(spec)
    if not url.hostname or not url.username:
        raise UsageError("sftp:// needs user@host, e.g. sftp://backup@host/dir")
    if url.password:
        raise UsageError(
            f"no password in the URL: put it in ${SFTP_PASSWORD_ENV} instead"
        )
    query = dict(urllib.parse.parse_qsl(url.query))
    config = {
        "type": "sftp",
        "host": url.hostname,
        "port": url.port or 22,
        "username": urllib.parse.unquote(url.username),
        "path": url.path,
    }
    for key, value in query.items():
        if key == "known_hosts":
            config["known_hosts"] = _read_secret_file(value, "known_hosts")
        elif key == "private_key_file":
            config["private_key"] = _read_secret_file(value, "private key")
        else:
            raise UsageError(f"unknown sftp:// option {key!r}")
    if "known_hosts" not in config:
        raise UsageError(
            "sftp:// needs known_hosts=FILE (the server's host key is always checked)"
        )
    if env.get(SFTP_PASSWORD_ENV):
        config["password"] = env[SFTP_PASSWORD_ENV]
    return config


def _sink(spec: str):
    from .sinks import make_sink

    return make_sink(parse_destination(spec))


def _password(args) -> str | None:
    if getattr(args, "password_file", None):
        return _read_secret_file(args.password_file, "password")
    env_name = getattr(args, "password_env", None)
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            raise UsageError(f"--password-env {env_name}: that variable is not set")
        return value
    return None


def _keyring(args, required: bool):
    try:
        return crypto.load_keyring(getattr(args, "keyring", None))
    except errors.KeyringError:
        if required:
            raise
        return None


def _pg(args) -> PgParams:
    return PgParams.from_env(host=args.host, port=args.port, user=args.user)


def _progress(args):
    if not args.progress:
        return None
    state = {"last": 0.0}

    def report(done, total, message):
        now = time.monotonic()
        if now - state["last"] >= 1.0 or message == "done":
            state["last"] = now
            print(f"  {message}: {done / 1e6:,.1f} MB", file=sys.stderr, flush=True)

    return report


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------
def cmd_backup(args):
    from .backup import BackupRequest, run_backup

    if args.incremental:
        return _backup_incremental(args)
    password = _password(args)
    keyring = None if password else _keyring(args, required=True)
    specs = list(dict.fromkeys(args.to))  # each destination once, in order
    destinations = [(spec, parse_destination(spec)) for spec in specs]
    req = BackupRequest(
        database=args.database,
        sinks=destinations,
        data_dir=args.data_dir,
        filestore=args.filestore,
        include_filestore=not args.no_filestore,
        pg=_pg(args),
        keyring=keyring,
        password=password,
        label=args.label,
        compression=args.compression,
        level=args.level,
        threads=args.threads,
        progress=_progress(args),
        cleanup=not args.no_cleanup,
        stall_timeout=args.stall_timeout,
    )
    result = run_backup(req)
    if result.state != "done":
        args.exit_code = EXIT_PARTIAL
    data = result.as_dict()
    if not args.json:
        m = result.manifest
        stored = len(result.destinations) - len(result.failed_destinations)
        print(
            f"backup {result.state}: {result.name} ({result.size:,} bytes, "
            f"{result.duration:.1f}s), stored at {stored} of "
            f"{len(result.destinations)} destination(s)"
        )
        for outcome in result.destinations:
            if outcome.ok:
                print(f"  {outcome.key}: stored")
            else:
                print(f"  {outcome.key}: FAILED: {outcome.error}")
        print(
            f"  database {m['database']} (Odoo {m['odoo_version']}, "
            f"{m['tables']} tables, {m['rows']:,} rows), filestore "
            f"{m['filestore']['files']} files / {m['filestore']['bytes']:,} bytes"
        )
        print(f"  sha256 {result.sha256}")
        if result.cleanup is not None and (
            result.cleanup.removed or result.cleanup.failed
        ):
            print(f"  cleanup: {result.cleanup.summary()}")
        for warning in result.warnings:
            print(f"  warning: {warning}")
        data = None
    return data


def _backup_incremental(args):
    from . import repository
    from .backup import BackupRequest

    specs = list(dict.fromkeys(args.to))
    if len(specs) != 1:
        raise UsageError(
            "--incremental writes to ONE destination (its repository): give "
            "--to once, and run one backup per destination"
        )
    if args.password_file or args.password_env:
        raise UsageError(
            "--incremental encrypts with the server keyring only: a password "
            "(--password-file / --password-env) is for full archives; drop "
            "--incremental for a password-encrypted archive"
        )
    keyring = _keyring(args, required=True)
    req = BackupRequest(
        database=args.database,
        sink=parse_destination(specs[0]),
        data_dir=args.data_dir,
        filestore=args.filestore,
        include_filestore=not args.no_filestore,
        pg=_pg(args),
        keyring=keyring,
        label=args.label,
        level=args.level,
        threads=args.threads,
        progress=_progress(args),
        cleanup=not args.no_cleanup,
    )
    result = repository.run_incremental_backup(req)
    if args.json:
        return result.as_dict()
    m = result.manifest
    print(
        f"incremental backup done: {result.name} (new data {result.size:,} "
        f"bytes of {result.logical_size:,} logical, {result.duration:.1f}s)"
    )
    print(
        f"  database {m['database']} (Odoo {m['odoo_version']}, "
        f"{m['tables']} tables, {m['rows']:,} rows), filestore "
        f"{m['filestore']['files']} files / {m['filestore']['bytes']:,} bytes"
    )
    for warning in result.warnings:
        print(f"  warning: {warning}")
    return None


def cmd_cleanup(args):
    import tempfile

    from .cleanup import clean_leftovers

    specs = list(dict.fromkeys(args.source_from or []))
    sinks = [parse_destination(spec) for spec in specs]
    result = clean_leftovers(
        sinks,
        args.database,
        pg=None if args.no_database else _pg(args),
        data_dir=args.data_dir,
        work_dir=args.work_dir or tempfile.gettempdir(),
        older_than=args.older_than,
        dry_run=args.dry_run,
    )
    if result.errors or result.failed:
        args.exit_code = EXIT_FAILED
    if args.json:
        return result.as_dict()
    _print_cleanup(result)
    return None


def _print_cleanup(result, indent=""):
    for item in result.leftovers:
        why = f" ({item.reason})" if item.reason else ""
        print(f"{indent}{item.action}: {item.kind} {item.name} at {item.where}{why}")
    for line in result.skipped:
        print(f"{indent}skipped: {line}")
    for line in result.errors:
        print(f"{indent}error: {line}", file=sys.stderr)
    print(f"{indent}{result.summary()} (evidence of dead runs: {result.evidence})")


def _is_snapshot(args) -> bool:
    name = args.archive or ""
    return bool(getattr(args, "repository", False)) or (
        bool(args.source_from) and "/repo-" in name
    )


def _snapshot_sink(args, spec: str):
    """The snapshots at ``spec`` as read-only archives (closed at exit)."""
    from . import repository

    if _password(args) is not None:
        raise UsageError(
            "a snapshot is read with the keyring, not a password (--password-"
            "file / --password-env are for password-encrypted archives)"
        )
    vs = repository.SnapshotArchiveSink(_sink(spec), _keyring(args, required=True))
    _to_close(args, vs)
    return vs


def _to_close(args, sink):
    closers = getattr(args, "_close", None)
    if closers is None:
        closers = args._close = []
    closers.append(sink)


def _source_kwargs(args) -> dict:
    if _is_snapshot(args):
        if not args.source_from or not args.archive:
            raise UsageError(
                "a snapshot is read from --from DEST by its name (see the list command)"
            )
        return {"sink": _snapshot_sink(args, args.source_from), "name": args.archive}
    if args.source_from:
        if not args.archive:
            raise UsageError("--from needs the archive name (see the list command)")
        return {"sink": parse_destination(args.source_from), "name": args.archive}
    if not args.archive:
        raise UsageError("give an archive file, or --from DEST and an archive name")
    return {"path": args.archive}


def cmd_restore(args):
    from .errors import ForeignArchiveError
    from .restore import RestoreRequest, run_restore

    password = _password(args)
    mode = "sandbox" if args.sandbox else "production"
    if mode == "production" and args.confirm != args.target:
        if args.confirm:
            raise UsageError(
                f"--confirm {args.confirm!r} does not match the target database "
                f"{args.target!r}: nothing was restored"
            )
        raise UsageError(
            f"a production restore replaces database {args.target!r} (kept as a "
            f"safety copy); confirm with --confirm {args.target}, or use --sandbox"
        )
    pg = _pg(args)
    # Replacing a database binds the restore to it: the engine reads the
    # target's uuid and refuses another database's archive. A new database
    # replaces nothing: the operator (who holds the keyring) may restore any
    # archive there.
    replaces = mode == "production" and pgtools.database_exists(pg, args.target)

    def request(allow_foreign):
        return RestoreRequest(
            target=args.target,
            mode=mode,
            keyring=_keyring(args, required=False),
            password=password,
            pg=pg,
            data_dir=args.data_dir,
            jobs=args.jobs,
            work_dir=args.work_dir,
            keep_privileges=args.keep_privileges,
            progress=_progress(args),
            allow_foreign=allow_foreign,
            **_source_kwargs(args),
        )

    try:
        result = run_restore(request(allow_foreign=not replaces))
    except ForeignArchiveError as exc:
        named = args.allow_foreign_archive
        if named is None or exc.source_name is None or named != exc.source_name:
            raise ForeignArchiveRefused(exc, named) from exc
        # confirmed by name: the target keeps its own uuid
        result = run_restore(request(allow_foreign=True))
    if args.json:
        return result.as_dict()
    print(
        f"restored {result.archive_name} into {result.database} ({result.mode}, "
        f"{sum(result.row_counts.values()):,} rows in {len(result.row_counts)} "
        f"tables checked, {result.filestore.get('files', 0)} files, "
        f"{result.duration:.1f}s)"
    )
    if result.safety_database:
        print(f"  previous database kept as {result.safety_database}")
    if result.safety_filestore:
        print(f"  previous filestore kept as {result.safety_filestore}")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    return None


class ForeignArchiveRefused(SuiteError):
    """A restore refused because the archive is another database's: exit 9
    with the archive's source, uuid and date, and the flag that confirms."""

    def __init__(self, error, named):
        self.error = error
        self.named = named
        source = error.source_name or "?"
        lines = [
            f"the archive is a backup of database {source!r} (uuid "
            f"{error.source_uuid or 'none'}, taken {error.created_at or '?'}), not "
            f"of {error.target!r} (uuid {error.expected_uuid or 'none'}): nothing "
            "was restored"
        ]
        if named is not None:
            lines.append(
                f"--allow-foreign-archive {named!r} does not name the archive's "
                f"source database {source!r}"
            )
        if error.source_name:
            lines.append(
                f"to replace {error.target!r} with {source!r}'s data anyway (it "
                f"keeps its own uuid), add --allow-foreign-archive {source}"
            )
        else:
            lines.append(
                "the archive's source database could not be read (no key?): it "
                "cannot be confirmed by name"
            )
        super().__init__("\n".join(lines))

    def as_dict(self) -> dict:
        return {
            "error": str(self).splitlines()[0],
            "type": "ForeignArchiveError",
            "source_name": self.error.source_name,
            "source_uuid": self.error.source_uuid,
            "created_at": self.error.created_at,
            "expected_uuid": self.error.expected_uuid,
            "target": self.error.target,
        }


def _verify_repository(args):
    from . import repository

    if not args.source_from or not args.database:
        raise UsageError(
            "verify --repository without a snapshot name checks whole "
            "repositories: give --from DEST and --database DB"
        )
    if not 0.0 <= args.sample <= 1.0:
        raise UsageError("--sample is a fraction between 0 and 1")
    vs = _snapshot_sink(args, args.source_from)
    roots = vs.roots(f"{args.database}/")
    if not roots:
        raise UsageError(
            f"no repository of {args.database} at {args.source_from} (an "
            "incremental backup creates it)"
        )
    reports = {}
    for root in roots:
        reports[root] = repository.verify_repository(
            vs.repository(root),
            sample=1.0 if args.deep else args.sample,
            deep=args.deep,
        )
    if any(not r.ok for r in reports.values()):
        args.exit_code = EXIT_DAMAGED
    if args.json:
        return {root: r.as_dict() for root, r in reports.items()}
    for root, r in reports.items():
        state = "OK" if r.ok else "DAMAGED"
        print(
            f"{state}: repository {root}: {r.snapshots} snapshot(s), {r.packs} "
            f"pack(s), {r.packs_read} read ({'deep' if args.deep else 'sample'}"
            f"), {r.blobs_checked} blob(s) checked, {r.bytes_read:,} bytes read"
        )
        for problem in r.problems:
            print(f"  problem: {problem}")
        for snap, problems in r.damaged.items():
            print(f"  damaged snapshot {snap}: {len(problems)} problem(s)")
    return None


def cmd_verify(args):
    from .verify import VerifyRequest, run_verify

    if args.repository and not args.archive:
        return _verify_repository(args)
    if args.deep or args.sample is not None and args.sample != DEFAULT_SAMPLE:
        raise UsageError(
            "--deep / --sample check a whole repository: use verify "
            "--repository --from DEST --database DB"
        )
    kwargs = _source_kwargs(args)
    result = run_verify(
        VerifyRequest(
            keyring=_keyring(args, required=False),
            password=_password(args),
            # the operator holds the keyring: any database's archive
            tenant=crypto.ANY_TENANT,
            test_restore=args.test_restore,
            deep=not args.no_deep,
            pg=_pg(args),
            data_dir=args.data_dir,
            progress=_progress(args),
            **kwargs,
        )
    )
    if args.json:
        return result.as_dict()
    r = result.report
    m = r.manifest
    print(
        f"OK: {'encrypted' if r.encrypted else 'NOT ENCRYPTED (legacy)'} archive "
        f"of {m.get('database')} made {m.get('created_at')}, dump "
        f"{r.dump_size:,} bytes, filestore {r.filestore['files']} files "
        f"/ {r.filestore['bytes']:,} bytes; every member matches the manifest"
    )
    if r.deep is not None:
        print(
            f"  deep check OK: pg_restore read the whole dump "
            f"({r.deep['dump_bytes']:,} bytes), "
            f"{r.deep['files_content_checked']} of {r.deep['files']} filestore "
            "files match their content address"
        )
    if result.test_restore:
        print(
            f"  test restore OK ({result.test_restore['row_counts_checked']} "
            "tables checked, scratch database dropped)"
        )
    for warning in r.warnings:
        print(f"  warning: {warning}")
    return None


def cmd_list(args):
    sink = _sink(args.source_from)
    warnings = []
    try:
        prefix = f"{args.database}/" if args.database else ""
        rows = []
        repos = False
        for obj in sink.list(prefix):
            if "/repo-" in obj.name:
                repos = True  # a repository's own objects: its snapshots below
                continue
            parsed = naming.parse_archive_name(obj.name, args.database)
            rows.append(
                {
                    "name": obj.name,
                    "size": obj.size,
                    "modified": obj.modified.isoformat(),
                    "database": parsed.database if parsed else None,
                    "label": parsed.label if parsed else None,
                    "created_at": parsed.created_at.isoformat() if parsed else None,
                    "encrypted": parsed.encrypted if parsed else None,
                    "kind": "archive",
                }
            )
        if repos:
            rows.extend(_list_snapshots(args, sink, prefix, warnings))
    finally:
        sink.close()
    rows.sort(key=lambda r: (r["created_at"] or r["modified"], r["name"]))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        return rows
    for row in rows:
        extra = ""
        if row["kind"] == "snapshot":
            extra = (
                f"\tsnapshot, new data {row['new_data']:,} bytes of "
                f"{row['logical_size']:,}"
            )
        print(
            f"{row['name']}\t{row['size']}\t"
            f"{row['created_at'] or row['modified']}{extra}"
        )
    return None


def _list_snapshots(args, sink, prefix, warnings) -> list[dict]:
    """The snapshots of the repositories at ``sink`` (the keyring opens
    them; without one, a warning says they are there)."""
    from . import repository

    keyring = _keyring(args, required=False)
    if keyring is None:
        warnings.append(
            "this destination holds incremental repositories: give the keyring "
            "(--keyring or $SUITE_KEYRING_FILE) to list their snapshots"
        )
        return []
    vs = repository.SnapshotArchiveSink(sink, keyring)
    rows = []
    for obj in vs.list(prefix):
        try:
            info = vs.info(obj.name)
        except Exception as exc:  # listed, but flagged
            warnings.append(f"{obj.name}: {exc}")
            continue
        rows.append(
            {
                "name": obj.name,
                "size": obj.size,
                "modified": obj.modified.isoformat(),
                "database": info["database"],
                "label": info["label"],
                "created_at": naming.parse_archive_name(
                    obj.name
                ).created_at.isoformat(),
                "encrypted": True,
                "kind": "snapshot",
                "new_data": info["new_data"],
                "logical_size": info["logical_size"],
            }
        )
    warnings.extend(vs.warnings)
    return rows


def cmd_prune(args):
    from .retention import RetentionPolicy, plan_retention

    policy = RetentionPolicy(
        keep_last=args.keep_last,
        keep_hourly=args.keep_hourly,
        keep_daily=args.keep_daily,
        keep_weekly=args.keep_weekly,
        keep_monthly=args.keep_monthly,
        keep_yearly=args.keep_yearly,
        max_age_days=args.max_age_days,
        include_manual=args.include_manual,
    )
    if args.repository:
        return _prune_repository(args, policy)
    sink = _sink(args.source_from)
    try:
        cleaned = None
        if not args.no_cleanup:
            from .cleanup import clean_leftovers

            cleaned = clean_leftovers(
                [sink],
                args.database,
                pg=None if args.no_database else _pg(args),
                older_than=args.older_than,
                dry_run=args.dry_run,
            )
        names = [o.name for o in sink.list(f"{args.database}/")]
        plan = plan_retention(names, policy, datetime.now(UTC), database=args.database)
        deleted = []
        if not args.dry_run:
            for name in plan.delete_names:
                sink.delete(name)
                deleted.append(name)
    finally:
        sink.close()
    out = {
        "keep": list(plan.keep),
        "delete": plan.delete_names,
        "deleted": deleted,
        "dry_run": args.dry_run,
        "reasons": plan.reasons,
        "cleanup": cleaned.as_dict() if cleaned is not None else None,
    }
    if args.json:
        return out
    if cleaned is not None and (cleaned.leftovers or cleaned.errors):
        _print_cleanup(cleaned, indent="cleanup: ")
    for name in plan.delete_names:
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{verb} {name} ({plan.reasons[name]})")
    print(
        f"{len(plan.keep)} kept, {len(plan.delete_names)} "
        f"{'to delete (dry run)' if args.dry_run else 'deleted'}"
    )
    return None


def _prune_repository(args, policy):
    from . import repository

    keyring = _keyring(args, required=True)
    sink = _sink(args.source_from)
    try:
        result = repository.prune(
            sink, args.database, keyring, policy, dry_run=args.dry_run
        )
    finally:
        sink.close()
    if args.json:
        return result.as_dict()
    verb = "would forget" if args.dry_run else "forgot"
    for name in result.forget:
        print(f"{verb} snapshot {name} ({result.reasons[name]})")
    for root, gc in result.gc.items():
        print(
            f"garbage collection of {root}: {len(gc.deleted_packs)} pack(s) "
            f"{'to delete' if args.dry_run else 'deleted'}, "
            f"{len(gc.repacked_packs)} repacked, {gc.freed_bytes:,} bytes "
            f"{'to free' if args.dry_run else 'freed'}"
            + (f", {gc.young_packs} young pack(s) spared" if gc.young_packs else "")
        )
        for problem in gc.problems:
            print(f"  problem: {problem}", file=sys.stderr)
    print(
        f"{len(result.keep)} snapshot(s) kept, {len(result.forget)} "
        f"{'to forget (dry run)' if args.dry_run else 'forgotten'}"
    )
    return None


#: Plaintext the command line writes (decrypted payloads, extracted
#: members, Odoo zips) is created private: files 0600, folders 0700.
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def _create_private(path) -> object:
    """A new file (never an existing one, never through a symlink) open for
    binary writing, created 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, PRIVATE_FILE)
    return os.fdopen(fd, "wb")


def _open_payload(args, source):
    raw = source.open()
    reader = crypto.open_archive(
        raw,
        keyring=_keyring(args, required=False),
        password=_password(args),
        # the operator holds the keyring: any database's archive
        tenant=crypto.ANY_TENANT,
    )
    if not reader.encrypted:
        print("warning: this archive is NOT encrypted (legacy)", file=sys.stderr)
    return raw, reader


def cmd_decrypt(args):
    from .restore import open_source
    from .scan import scan_archive

    kwargs = _source_kwargs(args)
    with open_source(kwargs.get("sink"), kwargs.get("name"), kwargs.get("path")) as src:
        if args.extract:
            # authenticate everything first, then extract
            with src.open() as raw:
                report = scan_archive(
                    raw,
                    keyring=_keyring(args, required=False),
                    password=_password(args),
                    tenant=crypto.ANY_TENANT,
                )
            return _extract(args, src, Path(args.extract), report)
        if not args.output:
            raise UsageError(
                "decrypt needs --output FILE (or - for stdout) or --extract"
            )
        raw, reader = _open_payload(args, src)
        with raw:
            out = (
                sys.stdout.buffer
                if args.output == "-"
                else _create_private(args.output)
            )
            ok = False
            try:
                if args.tar:
                    import zstandard

                    stream = reader
                    if reader.content_type.endswith("zstd"):
                        stream = zstandard.ZstdDecompressor().stream_reader(
                            reader, read_across_frames=True
                        )
                    elif reader.content_type.endswith("gzip"):
                        import gzip

                        stream = gzip.GzipFile(fileobj=reader, mode="rb")
                    _copy(stream, out)
                else:
                    _copy(reader, out)
                reader.read(1)  # the last chunk is authenticated at the end
                ok = True
            finally:
                if out is not sys.stdout.buffer:
                    out.close()
                    if not ok:
                        # never leave a partial payload behind a failed check
                        Path(args.output).unlink(missing_ok=True)
    if args.output != "-" and not args.json:
        print(f"decrypted payload written to {args.output}", file=sys.stderr)
    return {"output": args.output} if args.json else None


def _copy(src, dst):
    while True:
        data = src.read(1024 * 1024)
        if not data:
            return
        dst.write(data)


def _extract(args, src, root: Path, report):
    """manifest.json, backup.json, database.dump (joined) and filestore/."""
    try:
        os.mkdir(root, PRIVATE_DIR)
    except FileExistsError:
        if root.is_symlink() or not root.is_dir() or any(root.iterdir()):
            raise UsageError(f"{root} is not an empty directory") from None
    raw, reader = _open_payload(args, src)
    with raw:
        preader = PayloadReader(reader)
        dump = None
        for member in preader:
            if member.type != "file":
                continue
            if part_base(member.name) == "database.dump":
                if dump is None:
                    dump = _create_private(root / "database.dump")
                _copy(member, dump)
                continue
            extract_member(root, member, mode=PRIVATE_FILE, dir_mode=PRIVATE_DIR)
        if dump is not None:
            dump.close()
    if args.json:
        return {"extracted": str(root), "manifest": report.manifest}
    print(
        f"extracted to {root}: manifest.json, database.dump "
        f"({report.dump_size:,} bytes; pg_restore can read it), filestore/ "
        f"({report.filestore['files']} files)"
    )
    return None


def cmd_keygen(args):
    if args.output:
        key_id = write_new_keyring(args.output, args.key_id)
        if args.json:
            return {"key_id": key_id, "file": args.output}
        print(
            f"new key {key_id} written to {args.output} (mode 600); point "
            f"{crypto.ENV_KEYRING_FILE} or Odoo's {crypto.CONFIG_OPTION} at it "
            "and KEEP A COPY OFFLINE: archives cannot be restored without it",
            file=sys.stderr,
        )
        return None
    print(crypto.generate_key_line(args.key_id))
    return None


def cmd_export_odoo_zip(args):
    from . import odoozip
    from .restore import open_source
    from .scan import scan_archive

    kwargs = _source_kwargs(args)
    with open_source(kwargs.get("sink"), kwargs.get("name"), kwargs.get("path")) as src:
        with src.open() as raw:
            scan_archive(
                raw,
                keyring=_keyring(args, required=False),
                password=_password(args),
                tenant=crypto.ANY_TENANT,
            )
        raw, reader = _open_payload(args, src)
        with raw, _create_private(args.output) as out:
            try:
                result = odoozip.write_odoo_zip(
                    PayloadReader(reader),
                    out,
                    pg=_pg(args),
                    progress=_progress(args),
                )
            except BaseException:
                # the zip we started is incomplete: never leave it behind
                Path(args.output).unlink(missing_ok=True)
                raise
    if args.json:
        return {
            "output": args.output,
            "filestore_files": result.filestore_files,
            "dump_sql_bytes": result.dump_sql_bytes,
        }
    print(
        f"Odoo backup zip written to {args.output} ({result.filestore_files} "
        "filestore files); Odoo's database manager or `odoo-bin db load` "
        "can restore it"
    )
    return None


# ---------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--progress", action="store_true", help="progress on stderr")
    common.add_argument("-v", "--verbose", action="store_true")
    pg = argparse.ArgumentParser(add_help=False)
    pg.add_argument("--host", help="PostgreSQL host (default: $PGHOST)")
    pg.add_argument("--port", type=int, help="PostgreSQL port (default: $PGPORT)")
    pg.add_argument(
        "--user",
        help="PostgreSQL user (default: $PGUSER); the "
        "password comes from $PGPASSWORD or ~/.pgpass",
    )
    keys = argparse.ArgumentParser(add_help=False)
    keys.add_argument(
        "--keyring",
        help="keyring file (default: "
        f"${crypto.ENV_KEYRING_FILE} or ${crypto.ENV_KEYRING})",
    )
    keys.add_argument("--password-file", help="archive password, from this file")
    keys.add_argument(
        "--password-env",
        metavar="VAR",
        help=f"archive password, from this variable (e.g. {PASSWORD_ENV})",
    )
    source = argparse.ArgumentParser(add_help=False)
    source.add_argument(
        "archive", nargs="?", help="archive file, or its name at --from"
    )
    source.add_argument(
        "--from",
        dest="source_from",
        metavar="DEST",
        help="destination holding the archive",
    )
    source.add_argument(
        "--repository",
        action="store_true",
        help="the name is an incremental snapshot at --from (detected anyway "
        "when its path has a repo-<uuid> folder, as the list command shows "
        "it); read with the keyring, with the same checks as an archive",
    )

    parser = argparse.ArgumentParser(
        prog="python -m db_backup_suite.lib",
        description="Encrypted, consistent backups of Odoo databases and "
        "filestores; safe restores. Works without Odoo.",
        epilog=exit_codes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "backup",
        parents=[common, pg, keys],
        help="back up a database and its filestore",
    )
    p.add_argument("database")
    p.add_argument(
        "--to",
        required=True,
        action="append",
        metavar="DEST",
        help="destination; repeat it to write to several at once (one stream; "
        "a failing one is dropped, the others complete; exit 3 if some failed)",
    )
    p.add_argument("--data-dir", help="Odoo data directory (holds filestore/<db>)")
    p.add_argument("--filestore", help="the filestore directory itself")
    p.add_argument("--no-filestore", action="store_true")
    p.add_argument("--label", default="manual")
    p.add_argument("--compression", choices=("zstd", "gzip"), default="zstd")
    p.add_argument("--level", type=int, default=backup.DEFAULT_LEVEL)
    p.add_argument("--threads", type=int, default=0, help="zstd worker threads")
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=backup.fanout.DEFAULT_STALL_TIMEOUT,
        metavar="SECONDS",
        help="drop a destination that accepts nothing for this long "
        "(default %(default)s)",
    )
    p.add_argument(
        "--no-cleanup",
        action="store_true",
        help="do not first remove what interrupted runs of this database left",
    )
    p.add_argument(
        "--incremental",
        action="store_true",
        help="store a deduplicated snapshot in the destination's repository "
        "(<db>/repo-<uuid>/) instead of a full archive: only data the "
        "destination lacks is uploaded. ONE --to, the keyring only (a "
        "password is refused); --compression does not apply",
    )
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser(
        "restore",
        parents=[common, pg, keys, source],
        help="restore an archive (ours, legacy, or an Odoo zip)",
        description="Restore an archive. Replacing an existing database "
        "(--confirm) only takes that database's own archives (same uuid); "
        "another database's archive is refused with its name, uuid and date "
        "unless --allow-foreign-archive names it. A new database (--sandbox, or "
        "a name that does not exist) replaces nothing: any archive the keyring "
        "opens is restored there (read with streamcrypt.ANY_TENANT); a sandbox "
        "gets a new uuid and secret.",
    )
    p.add_argument("--target", required=True, help="database to restore into")
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="restore under a NEW name; nothing is replaced",
    )
    p.add_argument(
        "--confirm",
        metavar="DATABASE",
        help="the target database name, typed again, to replace it (production)",
    )
    p.add_argument(
        "--allow-foreign-archive",
        metavar="SOURCE_DB",
        help="replace the target with an archive of ANOTHER database, named "
        "here (the archive's source database, as the refusal shows it); the "
        "target keeps its own uuid. Without it, an existing target is only "
        "replaced by its own archives",
    )
    p.add_argument("--data-dir", help="Odoo data directory (holds filestore/<db>)")
    p.add_argument("--jobs", type=int, help="parallel pg_restore jobs")
    p.add_argument("--work-dir", help="temp space for downloads / parallel restore")
    p.add_argument(
        "--keep-privileges",
        action="store_true",
        help="apply the dump's GRANTs (roles must exist here)",
    )
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser(
        "verify",
        parents=[common, pg, keys, source],
        help="decrypt and check an archive against its manifest",
        description="Decrypt and check an archive (or a snapshot) of ANY "
        "database the keyring opens (read with streamcrypt.ANY_TENANT). With "
        "--repository --from DEST --database DB and no name: check the "
        "database's whole incremental repository (exit 6 if damaged).",
    )
    p.add_argument(
        "--test-restore",
        action="store_true",
        help="also restore into a scratch database, compare, drop it",
    )
    p.add_argument(
        "--no-deep",
        action="store_true",
        help="skip the deep check (by default the whole dump is read by "
        "pg_restore, without a database, and every filestore file is checked "
        "against its content address)",
    )
    p.add_argument("--data-dir")
    p.add_argument(
        "--database",
        help="with --repository and no snapshot name: the database whose "
        "repositories at --from are checked",
    )
    p.add_argument(
        "--deep",
        action="store_true",
        help="with --repository: read and authenticate EVERY pack (every "
        "blob decrypts and matches its id)",
    )
    p.add_argument(
        "--sample",
        type=float,
        default=DEFAULT_SAMPLE,
        metavar="F",
        help="with --repository: the fraction of packs read and authenticated "
        "(default %(default)s); every referenced blob is always checked to be "
        "indexed and in a pack present with its size",
    )
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "list",
        parents=[common],
        help="list archives and snapshots",
        description="List the archives at a destination and the snapshots "
        "of its incremental repositories (opened with the keyring), each "
        "snapshot with the new data its run added and its logical size.",
    )
    p.add_argument("--from", dest="source_from", required=True, metavar="DEST")
    p.add_argument(
        "--keyring",
        help="keyring file, to list snapshots (default: "
        f"${crypto.ENV_KEYRING_FILE} or ${crypto.ENV_KEYRING})",
    )
    p.add_argument("--database")
    p.set_defaults(func=cmd_list)

    cleanup_opts = argparse.ArgumentParser(add_help=False)
    cleanup_opts.add_argument(
        "--older-than",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="only leftovers idle this long (on top of the locks; default 0)",
    )
    cleanup_opts.add_argument(
        "--no-database",
        action="store_true",
        help="no PostgreSQL access: only destination leftovers idle for an "
        "hour or more are removed (no lock can tell a live run)",
    )

    p = sub.add_parser(
        "prune",
        parents=[common, pg, cleanup_opts],
        help="apply a retention policy",
        description="Apply a retention policy, after removing what "
        "interrupted runs of the database left at the destination (see "
        "the cleanup command).",
    )
    p.add_argument("--from", dest="source_from", required=True, metavar="DEST")
    p.add_argument("--database", required=True)
    p.add_argument(
        "--no-cleanup",
        action="store_true",
        help="do not remove interrupted uploads first",
    )
    for period in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        p.add_argument(f"--keep-{period}", type=int, default=0)
    p.add_argument("--max-age-days", type=float)
    p.add_argument("--include-manual", action="store_true")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument(
        "--repository",
        action="store_true",
        help="apply the policy to the database's incremental snapshots, then "
        "collect garbage: delete packs no kept snapshot needs and repack "
        "mostly-garbage ones (waits for a running backup; packs younger than "
        "the grace period are spared)",
    )
    p.add_argument(
        "--keyring",
        help="keyring file, for --repository (default: "
        f"${crypto.ENV_KEYRING_FILE} or ${crypto.ENV_KEYRING})",
    )
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser(
        "cleanup",
        parents=[common, pg, cleanup_opts],
        help="remove what interrupted runs of a database left (for a daily cron)",
        description="Remove what killed backups, restores and verifies of ONE "
        "database left: temp files (local), .part files (SFTP), incomplete "
        "multipart uploads (S3) of its archives at each --from destination; "
        "its staging (_restoring_) and scratch (_verify_) databases; their "
        "filestores under --data-dir; their temp dirs under --work-dir. Only "
        "names the suite gives, never a complete archive, another database's "
        "leftovers nor a sandbox or safety copy. A run still alive is told by "
        "PostgreSQL's advisory locks (the database's backup lock, the work "
        "lock every restore holds): its leftovers are kept. Exit 1 when "
        "something could not be examined or removed.",
    )
    p.add_argument("--database", required=True)
    p.add_argument(
        "--from",
        dest="source_from",
        action="append",
        metavar="DEST",
        help="destination to clean (repeat for several)",
    )
    p.add_argument("--data-dir", help="Odoo data directory (staging filestores)")
    p.add_argument("--work-dir", help="temp dir of restores (default: the system's)")
    p.add_argument("--dry-run", action="store_true", help="report only")
    p.set_defaults(func=cmd_cleanup)

    p = sub.add_parser(
        "decrypt",
        parents=[common, keys, source],
        help="decrypt to a standard payload for tar / pg_restore",
        description="Decrypt an archive of ANY database the keyring opens "
        "(the command line reads with streamcrypt.ANY_TENANT: whoever holds "
        "the keyring may read every database's archives). Every file and "
        "folder written is created 0600 / 0700.",
    )
    p.add_argument("-o", "--output", help="payload file (- for stdout)")
    p.add_argument("--tar", action="store_true", help="decompress to a plain tar")
    p.add_argument(
        "--extract",
        metavar="DIR",
        help="write manifest.json, database.dump and filestore/ here",
    )
    p.set_defaults(func=cmd_decrypt)

    p = sub.add_parser("keygen", parents=[common], help="generate a keyring key")
    p.add_argument("--key-id")
    p.add_argument("-o", "--output", help="new keyring file (mode 600)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser(
        "export-odoo-zip",
        parents=[common, pg, keys, source],
        help="write Odoo's own backup zip from an archive",
        description="Write Odoo's backup zip (created 0600) from an archive of "
        "ANY database the keyring opens (read with streamcrypt.ANY_TENANT).",
    )
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_export_odoo_zip)
    return parser


#: Exit code of each error family, as ``--help`` prints it:
#: ``(code, meaning, error classes)``. An error outside every family (and a
#: ``ValueError`` / ``OSError`` of no family) exits 1.
EXIT_CODES = (
    (EXIT_OK, "success", ()),
    (EXIT_FAILED, "unexpected failure (an error of no family below)", ()),
    (EXIT_USAGE, "usage: bad arguments or options", (UsageError,)),
    (EXIT_PARTIAL, "partial: stored at some destinations, not all", ()),
    (
        EXIT_KEYRING,
        "no usable keyring, or the key the archive needs is not in it",
        (errors.KeyringError,),
    ),
    (EXIT_WRONG_KEY, "wrong key or wrong password", (errors.WrongKeyError,)),
    (
        EXIT_DAMAGED,
        "archive damaged, tampered with, truncated or not an archive",
        (errors.StreamCryptError,),
    ),
    (
        EXIT_MISMATCH,
        "verification failed: the contents do not match, or the dump cannot "
        "be read to its end",
        (errors.VerificationError,),
    ),
    (
        EXIT_DESTINATION,
        "destination unreachable, or the archive is not there",
        (errors.SinkError, FileNotFoundError),
    ),
    (
        EXIT_REFUSED,
        "safety refusal: another database's archive, a refused name or path, "
        "a database the suite did not make",
        (ForeignArchiveRefused, errors.ForeignArchiveError, errors.SafetyError),
    ),
    (EXIT_LOCKED, "busy: a backup or restore of it runs", (errors.BackupLockedError,)),
    (
        EXIT_TOOL,
        "pg_dump / pg_restore / psql failed",
        (errors.DumpError, errors.RestoreError),
    ),
)
#: the order :func:`exit_code_for` tries the families in, most specific first
#: (a foreign archive is a RestoreError; a wrong key and a missing key are
#: both errors of the crypto layer, like a damaged archive)
_MATCH_ORDER = (
    EXIT_USAGE,
    EXIT_REFUSED,
    EXIT_WRONG_KEY,
    EXIT_KEYRING,
    EXIT_DAMAGED,
    EXIT_MISMATCH,
    EXIT_LOCKED,
    EXIT_DESTINATION,
    EXIT_TOOL,
)


def exit_code_for(exc: BaseException) -> int:
    """The exit code of an error (:data:`EXIT_CODES`, most specific first)."""
    classes = {code: cls for code, _meaning, cls in EXIT_CODES}
    for code in _MATCH_ORDER:
        if isinstance(exc, classes[code]):
            return code
    return EXIT_FAILED


def exit_codes_help() -> str:
    """The exit-code table as ``--help`` prints it."""
    lines = ["exit codes:"]
    lines += [f"  {code:>2}  {meaning}" for code, meaning, _c in EXIT_CODES]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        try:
            data = args.func(args)
        finally:
            for sink in getattr(args, "_close", ()):
                sink.close()
    except UsageError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ForeignArchiveRefused as exc:
        if args.json:
            print(json.dumps(exc.as_dict()))
        for i, line in enumerate(str(exc).splitlines()):
            print(f"error: {line}" if i == 0 else f"  {line}", file=sys.stderr)
        return EXIT_REFUSED
    except (SuiteError, ValueError, OSError) as exc:
        _fail(args, exc)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1
    if data is not None:
        print(json.dumps(data, indent=1, default=str))
    return getattr(args, "exit_code", EXIT_OK)


def _fail(args, exc):
    message = (
        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    )
    outcomes = getattr(exc, "outcomes", None)
    if args.json:
        out = {"error": message, "type": type(exc).__name__}
        if outcomes is not None:
            out["state"] = "failed"
            out["destinations"] = [o.as_dict() for o in outcomes]
        print(json.dumps(out, default=str))
    if outcomes is not None:
        print("error: no destination stored the backup", file=sys.stderr)
        for outcome in outcomes:
            print(
                f"  {outcome.key or outcome.destination}: FAILED: {outcome.error}",
                file=sys.stderr,
            )
    else:
        print(f"error: {message}", file=sys.stderr)
    if args.verbose:
        _logger.exception("details")
