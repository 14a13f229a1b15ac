"""The restore job: pre-restore backup, engine restore, post-restore steps.

Runs in a detached process (``odoo-bin db_backup restore-job --job-file F``,
started by the restore wizard) so that no HTTP worker, no cron and no pooled
connection of this Odoo holds the live database while the engine renames it.
``run_job`` is also called in-process by the tests and the emergency CLI.

Steps for ``target == "production"``:
1. a ``pre-restore`` backup of the live database (engine, child process);
2. the engine's verified restore into a new database, checked against the
   manifest, then swapped in place of the live one (the engine terminates
   the live database's backends; this process closes its own pool first);
3. in the restored database: bump Odoo's registry and cache signaling
   sequences (every worker reloads), call every model's
   ``_on_database_restored(restore_info)``, log the audit event, mail the
   administrators.
A failure at any step leaves the live database as it was; it is logged in
the live database (audit event and mail) with the reason.

Whose archive: a job restores only an archive of the database it is for
(``expected_uuid``, by default the live database's uuid, checked by the
engine before anything is created or renamed) unless it carries
``allow_foreign`` with the source uuid the user confirmed
(``foreign_source_uuid``), which is checked against the archive first. The
restored database keeps the target's uuid.

Sandboxes and safety copies carry a marker (``SANDBOX_MARKER_KEY``) the
suite writes into them; their drop requires it.
"""

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

from markupsafe import escape

import odoo
from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry
from odoo.tools import SQL

from ..models import maintenance_guard
from . import backup_engine

_logger = logging.getLogger(__name__)


def _lib():
    from ..lib import crypto, pgtools, restore, scan

    return crypto, pgtools, restore, scan


def _owner_keyring(password):
    if password:
        return None
    try:
        return backup_engine.load_keyring()
    except backup_engine.KeyringUnavailable:
        return None


def describe_owner(raw, password=None):
    """Which database the archive ``raw`` is a backup of (``lib.owner.
    describe_archive_owner``: source name, uuid, date; only its head member
    is decrypted, nothing is written)."""
    from ..lib import owner

    return owner.describe_archive_owner(
        raw, keyring=_owner_keyring(password), password=password or None
    )


def describe_stored(sink_config, name):
    """:func:`describe_owner` of the archive ``name`` at a destination
    (reads its header and head member only)."""
    from ..lib import sinks

    sink = sinks.make_sink(sink_config)
    try:
        with sink.open_read(name) as raw:
            return describe_owner(raw)
    finally:
        sink.close()


def describe_file(path, password=None):
    """Owner, header facts and manifest of an uploaded archive.

    The owner (source database name, uuid, date) is read first; then a full
    scan authenticates every chunk and hashes the dump and the files, bound
    to the tenant the archive says it is for (it is shown to the user as
    this database's or a FOREIGN archive before anything restores it).
    Nothing is written to disk.
    """
    crypto, _pg, _restore, scan = _lib()
    size = os.path.getsize(path)
    with open(path, "rb") as raw:
        owner = describe_owner(raw, password)
    if owner.get("kind") != "suite":
        raise ValueError(
            "an Odoo backup zip cannot be restored here; use the command line's "
            "Odoo-zip import"
        )
    keyring = None
    if not password and owner.get("encrypted"):
        keyring = backup_engine.load_keyring()
    tenant = owner.get("tenant") if owner.get("encrypted") else crypto.ANY_TENANT
    with open(path, "rb") as raw:
        report = scan.scan_archive(
            raw, keyring=keyring, password=password or None, tenant=tenant
        )
    manifest = report.manifest
    from ..models.db_backup_run import human_size

    return {
        "encrypted": owner.get("encrypted", False),
        "size": size,
        "size_display": human_size(size),
        "manifest": manifest,
        "owner": owner,
        "sha256": file_sha256(path),
    }


def file_sha256(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_job_file(job):
    """The job (secrets inside) in a 0600 file of the private jobs folder."""
    directory = backup_engine.jobs_dir()
    fd, path = tempfile.mkstemp(prefix="restore-", suffix=".json", dir=directory)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(job, handle)
    return path


def job_command(*sub_args):
    """``python -m odoo [--addons-path] db_backup <options> <sub_args>``."""
    args = backup_engine.odoo_args()
    # Odoo discovers addon commands only when --addons-path comes first.
    first = [a for a in args if a.startswith("--addons-path=")]
    rest = [a for a in args if not a.startswith("--addons-path=")]
    return [sys.executable, "-m", "odoo", *first, "db_backup", *rest, *sub_args]


def spawn_detached(job):
    """Start the restore job in its own session; it outlives this worker
    (and is reaped by this process when it ends first)."""
    path = write_job_file(job)
    cmd = job_command("restore-job", "--job-file", path)
    log_path = os.path.join(backup_engine.jobs_dir(), os.path.basename(path) + ".log")
    log_fd = backup_engine.private_log(log_path)  # 0600, removed after a day
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            env=backup_engine.child_env(),
        )
    finally:
        os.close(log_fd)
    # waited for: a killed job is no zombie that seems to hold the maintenance
    backup_engine.reap_when_done(proc)
    return path


class _Reporter:
    """Where the job stands, told to the live database: the restore
    dialog's step (and bytes) and, through the bus, its opener's open tabs
    (``db.backup.restore.wizard._job_progress``). Best effort: a report
    that cannot be written is logged and the restore goes on.

    It keeps the live database's registry from its first report: the
    production restore closes this process's pool before the engine works
    (the registry then opens a fresh connection per report), and after the
    swap the wizard is not in the restored database (nothing is written).
    """

    INTERVAL = 1.5  # seconds between two byte-count reports

    def __init__(self, job):
        self.job = job
        self.registry = None
        self.last = 0.0
        self.step_name = None

    def _write(self, **kwargs):
        wizard_id = self.job.get("wizard_id")
        if not wizard_id:
            return
        try:
            if self.registry is None:
                self.registry = Registry(self.job["database"])
            # a production restore's live database refuses every write but
            # the restore's own (maintenance mode); a sandbox's does not
            production = self.job["target"] == "production"
            with (
                maintenance_guard.restore_writer_cursor(self.job["database"])
                if production
                else self.registry.cursor()
            ) as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                wizard = env["db.backup.restore.wizard"].browse(wizard_id).exists()
                if wizard:
                    wizard._job_progress(**kwargs)
        except Exception as exc:  # the restore matters more than its report
            _logger.warning("Restore progress not reported: %s", exc)
        finally:
            if self.job["target"] == "production":
                # no connection of this process may stay on the live database
                odoo.sql_db.close_db(self.job["database"])

    def step(self, name, detail=None):
        self.step_name = name
        self.last = time.monotonic()
        self._write(step=name, detail=detail)

    def bytes(self, done, _total=None, message=None):
        """An engine progress callback (``done`` bytes so far)."""
        now = time.monotonic()
        if now - self.last < self.INTERVAL:
            return
        self.last = now
        self._write(step=self.step_name, done=done, detail=message)

    def engine_event(self, event):
        """``backup_engine.run_job``'s ``on_event`` (the pre-restore backup)."""
        if event.get("event") == "progress":
            self.bytes(event.get("done") or 0, None, event.get("message"))

    def finish(self, result):
        self._write(result=result)


def _pre_restore_backup(job, on_event=None):
    payload = {
        "action": "backup",
        "db": job["db"],
        "filestore": os.path.join(job["data_dir"], "filestore", job["database"]),
        "archive_label": "pre-restore",
        "sinks": job["pre_restore_sinks"],
        "audit_head": backup_engine.audit_head(job["database"]),
    }
    return backup_engine.run_job(payload, on_event=on_event)


def _engine_restore(job, target_db, mode, binding, progress=None):
    _crypto, pgtools, restore, _scan = _lib()
    source = job["source"]
    db = job["db"]
    pg = pgtools.PgParams(
        host=db.get("host"),
        port=db.get("port"),
        user=db.get("user"),
        password=db.get("password"),
    )
    password = source.get("password") or None
    expected_uuid, allow_foreign = binding
    request = restore.RestoreRequest(
        target=target_db,
        mode=mode,
        path=source.get("path"),
        sink=source.get("sink"),
        name=source.get("name"),
        keyring=None if password else backup_engine.load_keyring(),
        password=password,
        pg=pg,
        data_dir=job["data_dir"],
        expected_uuid=expected_uuid,
        allow_foreign=allow_foreign,
        keep_uuid=True,
        progress=progress,
    )
    return restore.run_restore(request)


def _binding(job):
    """``(expected_uuid, allow_foreign)`` of a job for the engine.

    Without ``allow_foreign`` the archive must be a backup of the live
    database (``expected_uuid``, else the live database's own uuid): the
    engine refuses any other before it creates or renames anything. With
    ``allow_foreign`` (the user confirmed a FOREIGN archive naming both
    databases) the archive must still be the one confirmed: its uuid is
    checked against ``foreign_source_uuid`` here first.
    """
    live_uuid = job.get("expected_uuid") or backup_engine.config_parameter_of(
        job["database"], "database.uuid"
    )
    if not job.get("allow_foreign") and not live_uuid:
        raise ValueError(
            "cannot tell which database the archive must belong to: %s has no "
            "uuid" % job["database"]
        )
    # Checked here first (a refused archive costs no pre-restore backup);
    # the engine checks it again, authoritatively, before it creates or
    # renames anything.
    owner = _source_owner(job)
    if job.get("allow_foreign"):
        confirmed = job.get("foreign_source_uuid")
        if not confirmed:
            raise ValueError(
                "a foreign archive needs the source uuid that was confirmed"
            )
        if owner.get("uuid") != confirmed:
            raise ValueError(
                "the archive is not the one confirmed: it belongs to uuid %s, the "
                "confirmation named %s; nothing was restored"
                % (owner.get("uuid") or "unknown", confirmed)
            )
        return live_uuid or None, True
    if owner.get("uuid") is not None and owner.get("uuid") != live_uuid:
        from ..lib import errors

        raise errors.ForeignArchiveError(
            source_name=owner.get("database"),
            source_uuid=owner.get("uuid"),
            created_at=owner.get("created_at"),
            expected_uuid=live_uuid,
            target=job["database"]
            if job["target"] == "production"
            else job.get("sandbox_name"),
        )
    return live_uuid, False


def _source_owner(job):
    """``describe_owner`` of the job's archive."""
    source = job.get("source") or {}
    if source.get("path"):
        with open(source["path"], "rb") as raw:
            return describe_owner(raw, source.get("password") or None)
    return describe_stored(source["sink"], source["name"])


def _close_pool(dbname):
    Registry.delete(dbname)
    odoo.sql_db.close_db(dbname)


def _post_restore(dbname, info, job, pre_restore):
    """In the restored database: signaling, hooks, audit, mail."""
    _close_pool(dbname)
    safety_marker = _mark_safety_copy(dbname, info)
    _note_archive_size(info, job)
    registry = Registry(dbname)
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        # Every worker of every Odoo process reloads its registry and caches.
        cr.execute(SQL("SELECT nextval('base_registry_signaling')"))
        cr.execute(
            SQL(
                "SELECT sequence_name FROM information_schema.sequences "
                "WHERE sequence_name LIKE 'base_cache_signaling%%'"
            )
        )
        for (name,) in cr.fetchall():
            cr.execute(SQL("SELECT nextval(%s)", name))
        if safety_marker:
            # The engine keeps the replaced database under a safety name; it is
            # listed with the sandboxes (before the hooks, which list again
            # what the registry holds) and dropped by their expiry cron, which
            # requires the marker written into it.
            _list_safety_copy(env, info, job, safety_marker)
        hook_failures = []
        hook_results = {}
        call_restore_hooks(env, info, hook_failures, results=hook_results)
        event_action = "sandbox" if info["target"] == "sandbox" else "restore"
        env["audit.event"].log_event(
            event_action,
            res_model="db.backup.run",
            details={
                "operation": "restored",
                "archive": info["archive_name"],
                "source_database": info.get("source_name"),
                "source_uuid": info.get("source_uuid"),
                "foreign": bool(info.get("foreign")),
                "archive_created_at": str(info["archive_created_at"] or ""),
                "target": info["target"],
                "pre_restore": (pre_restore or {}).get("name"),
                "requested_by": job.get("requested_by"),
                "hook_failures": [
                    {"model": model, "error": error} for model, error in hook_failures
                ],
                "hooks": hook_results,
            },
            result="failure" if hook_failures else "success",
            message=(
                "Database restored from %s" % info["archive_name"]
                if not hook_failures
                else "Database restored from %s, but post-restore hooks failed: %s"
                % (info["archive_name"], ", ".join(m for m, _e in hook_failures))
            ),
        )
        if info["target"] == "production":
            _tell_requester(env, job, info, hook_failures)
            env["db.backup.run"]._mail_admins(
                "Database %s restored" % dbname,
                "<p>Database <b>%s</b> was restored from <b>%s</b> (taken %s) at the "
                "request of %s.</p><p>Everything changed after that moment is gone; "
                "the state before the restore is in the pre-restore backup <b>%s</b>, "
                "kept 7 days.</p>%s"
                % (
                    dbname,
                    info["archive_name"],
                    info["archive_created_at"],
                    job.get("requested_by"),
                    (pre_restore or {}).get("name"),
                    "".join(
                        "<p><b>Post-restore step of %s failed:</b> %s</p>"
                        % (escape(model), escape(error))
                        for model, error in hook_failures
                    ),
                ),
            )
    return hook_failures


def _mark_safety_copy(dbname, info):
    """Mark the replaced database the engine kept (``safety_database``) as
    made by the suite and register it (``lib.registry``, kind
    ``safety_copy``, expiring with the pre-restore backups), before
    anything else can fail: whatever the restored database lists, the
    registry lists it. Returns the marker (None: no safety copy)."""
    import secrets

    name = info.get("safety_database")
    if not name:
        return None
    from ..lib import registry
    from ..models.db_backup_run import PRE_RESTORE_KEEP_DAYS

    marker = secrets.token_hex(24)
    backup_engine.write_sandbox_marker(name, marker)
    info["safety_expires_at"] = datetime.now(UTC).replace(
        tzinfo=None, microsecond=0
    ) + timedelta(days=PRE_RESTORE_KEEP_DAYS)
    try:
        registry.register(
            backup_engine.data_dir(),
            name,
            "safety_copy",
            dbname,
            expires=info["safety_expires_at"],
            marker=marker,
        )
    except Exception as exc:  # listed anyway by its row; logged
        _logger.warning("Safety copy %s not registered: %s", name, exc)
    return marker


def _list_safety_copy(env, info, job, marker):
    """The safety copy's row in the restored database (one per name)."""
    Sandbox = env["db.backup.sandbox"]
    vals = {
        "name": info["safety_database"],
        "kind": "safety_copy",
        "archive_name": "state before the restore of %s" % info["archive_name"],
        "state": "ready",
        "marker": marker,
        "expires_at": info["safety_expires_at"],
        "requested_by_id": env["res.users"]
        .browse(job.get("requested_by_id") or [])
        .exists()
        .id
        or False,
        "drop_error": False,
    }
    row = Sandbox.search([("name", "=", info["safety_database"])])
    if row:
        row.write(vals)
    else:
        Sandbox.create(vals)


def _note_archive_size(info, job):
    """The restored archive's size when it was an uploaded file (the run
    list reconciles the archive's own run with it)."""
    path = (job.get("source") or {}).get("path")
    if path and "archive_size" not in info and os.path.isfile(path):
        info["archive_size"] = os.path.getsize(path)


def _register_sandbox(job, name, marker):
    """Register a sandbox the engine just made (``lib.registry``): only a
    row's sandbox under a name the suite gives this database's sandboxes;
    best effort (the row's ``ready`` registers it again)."""
    if not (job.get("sandbox_id") and marker):
        return
    from ..lib import registry

    try:
        registry.register(
            backup_engine.data_dir(),
            name,
            "sandbox",
            job["database"],
            marker=marker,
        )
    except Exception as exc:
        _logger.warning("Sandbox %s not registered: %s", name, exc)


def _tell_requester(env, job, info, hook_failures):
    """The restored database tells the user who asked (bus, best effort:
    their tabs reconnect to it after the swap)."""
    from ..models.db_backup_run import BUS_PROGRESS

    user = env["res.users"].browse(job.get("requested_by_id") or []).exists()
    if not user:
        return
    user = user.with_context(lang=user.lang or "en_US")
    message = user.env._(
        "The database was restored from %(file)s.", file=info["archive_name"]
    )
    if hook_failures:
        message += " " + user.env._(
            "Post-restore steps failed: %(models)s",
            models=", ".join(model for model, _error in hook_failures),
        )
    user._bus_send(
        BUS_PROGRESS,
        {
            "model": "db.backup.restore.wizard",
            "id": job.get("wizard_id") or 0,
            "name": user.env._("Restore of %(file)s", file=info["archive_name"]),
            "state": "done",
            "state_label": user.env._("Done"),
            "progress": 100.0,
            "message": message,
            "error": "",
            "final": True,
            "target": "production",
            "sandbox_id": False,
        },
    )


def call_restore_hooks(env, info, failures=None, results=None):
    """Call ``_on_database_restored(info)`` on every model defining it.

    What a hook returns (when not None) is kept in ``results`` (a dict,
    ``{model_name: result}``) for the restore's audit event.

    Each hook runs in its own savepoint: one that fails (even on a database
    error) is rolled back alone and the others, the audit event and the
    mail still run. Failures are logged and, when ``failures`` is a list,
    appended to it as ``(model, message)`` so the caller can report them.
    """
    called = []
    for model_name in sorted(env.registry.models):
        model = env[model_name]
        hook = getattr(type(model), "_on_database_restored", None)
        if hook is None or model._abstract:
            continue
        try:
            with env.cr.savepoint():
                result = model._on_database_restored(info)
            called.append(model_name)
            if results is not None and result is not None:
                results[model_name] = _jsonable(result)
        except Exception as exc:
            _logger.exception("Restore hook of %s failed", model_name)
            if failures is not None:
                failures.append((model_name, str(exc)[:500]))
    return called


def _jsonable(value):
    """A hook's result as the audit event's JSON details can hold it."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)[:1000]
    return value


def _neutralize(dbname):
    _close_pool(dbname)
    with odoo.sql_db.db_connect(dbname).cursor() as cr:
        odoo.modules.neutralize.neutralize_database(cr)
        # the sandbox's own cursor, outside any request or cron transaction
        cr.commit()  # pylint: disable=invalid-commit


def _record_failure(job, message):
    """Log a failed restore in the live database (unchanged by the engine)."""
    try:
        registry = Registry(job["database"])
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["audit.event"].log_event(
                "sandbox" if job["target"] == "sandbox" else "restore",
                res_model="db.backup.run",
                result="failure",
                details={"archive": job.get("archive_name"), "target": job["target"]},
                message=message[:1000],
            )
            if job.get("sandbox_id"):
                env["db.backup.sandbox"].browse(job["sandbox_id"]).write(
                    {"state": "failed", "error": message}
                )
            env["db.backup.run"]._mail_admins(
                "Restore of %s failed" % job["database"],
                "<p>The restore of <b>%s</b> from <b>%s</b> failed; the live database "
                "is unchanged.</p><pre>%s</pre>"
                % (job["database"], job.get("archive_name"), message),
            )
    except Exception:
        _logger.exception("Could not record the failed restore")


def _sandbox_marker(job):
    """The marker of the job's sandbox row (in the live database)."""
    if job.get("sandbox_marker"):
        return job["sandbox_marker"]
    registry = Registry(job["database"])
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        sandbox = env["db.backup.sandbox"].browse(job["sandbox_id"]).exists()
        if not sandbox or sandbox.name != job["sandbox_name"]:
            raise ValueError("the sandbox row of this job is gone or renamed")
        return sandbox.marker


def _check_job(job):
    """The job's own names, checked again where they are used; and who may
    restore the archive over production (before anything is touched).

    A production restore a user asked for (``requested_by_id``; a job of
    the command line has none) of an archive the server's keyring does not
    authenticate as this database's (opened with a password, plaintext, an
    Odoo zip, a keyring archive of another database: content a user could
    have written) needs that user to be a Settings administrator, checked
    now in the live database (not taken from the wizard)."""
    from ..lib import safety

    if job["target"] not in ("production", "sandbox"):
        raise ValueError("unknown restore target %r" % job["target"])
    safety.check_database_name(job["database"])
    if job["target"] == "production" and job.get("requested_by_id"):
        owner = _source_owner(job)
        live_uuid = job.get("expected_uuid") or backup_engine.config_parameter_of(
            job["database"], "database.uuid"
        )
        trusted = (
            not (job.get("source") or {}).get("password")
            and owner.get("kind") == "suite"
            and owner.get("encrypted")
            and bool(live_uuid)
            and owner.get("tenant") == live_uuid
        )
        if not trusted:
            with Registry(job["database"]).cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                user = env["res.users"].browse(job["requested_by_id"]).exists()
                admin = bool(user) and user.has_group("base.group_system")
            if not admin:
                raise PermissionError(
                    "this archive is not authenticated by the server's key: only "
                    "a Settings administrator may restore it over %s; nothing "
                    "was restored" % job["database"]
                )
    if job["target"] == "sandbox":
        # a new database: the engine refuses a name that exists
        safety.check_database_name(job["sandbox_name"])
        if job.get("sandbox_id"):
            # a row the suite will drop later: a name it would accept then
            safety.check_sandbox_name(
                job["sandbox_name"], production_db=job["database"]
            )


def _remove_upload(job):
    """Remove the job's uploaded archive (and its upload's facts) when the
    restore ends, success or failure; only a file of the private uploads
    folder (``lib/uploads.remove_path``), never a link or another path."""
    from ..lib import uploads

    source = job.get("source") or {}
    path = source.get("path")
    if not (source.get("remove_after") and path):
        return
    try:
        if not uploads.remove_path(backup_engine.jobs_dir(), path):
            _logger.warning("Not removing %s: not an upload of the suite", path)
    except OSError as exc:
        _logger.warning("Cannot remove the uploaded archive: %s", exc)


def _job_pg(job):
    from ..lib import pgtools

    db = job["db"]
    return pgtools.PgParams(
        host=db.get("host"),
        port=db.get("port"),
        user=db.get("user"),
        password=db.get("password"),
    )


def _announce_maintenance(job, payload):
    """Tell the open tabs of the live database's internal users (the bus
    channel of ``base.group_user``: portal and public visitors never get
    it) that the maintenance started or ended: the banner shows at once
    and fetches the details itself (session info, internal users only).
    ``payload`` carries no archive name. Best effort, through the
    restore's own cursor."""
    try:
        Registry(job["database"])
        with maintenance_guard.restore_writer_cursor(job["database"]) as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["bus.bus"]._sendone(
                env.ref("base.group_user"), maintenance_guard.BUS_MAINTENANCE, payload
            )
    except Exception as exc:
        _logger.warning("Maintenance of %s not announced: %s", job["database"], exc)
    finally:
        odoo.sql_db.close_db(job["database"])


def _enter_maintenance(job):
    """The live database refuses writes until :func:`_leave_maintenance`
    (``lib.maintenance``: marker, read-only setting, sessions terminated)."""
    from ..lib import maintenance

    source = job.get("source") or {}
    archive = (
        job.get("archive_name")
        or source.get("name")
        or os.path.basename(source.get("path") or "")
    )
    marker = maintenance.enter(_job_pg(job), job["data_dir"], job["database"], archive)
    _logger.info("Database %s in maintenance for the restore", job["database"])
    started = maintenance.started_at(marker)
    _announce_maintenance(
        job,
        {"active": True, "started": started.isoformat() if started else False},
    )
    return marker


def _leave_maintenance(job, held):
    """End the maintenance this job holds (no-op when it holds none);
    never raises: a failure is logged (the next check clears the marker
    once this process is gone). Returns ``{"started", "enforced_at",
    "ended"}`` (epoch seconds) or None."""
    if not held:
        return None
    from ..lib import maintenance

    try:
        maintenance.leave(
            _job_pg(job), job["data_dir"], job["database"], pid=held.get("pid")
        )
    except Exception:
        _logger.exception("Could not end the maintenance of %s", job["database"])
    _logger.info("Database %s out of maintenance", job["database"])
    started = maintenance.started_at(held)
    return {
        "started": started.timestamp() if started else None,
        "enforced_at": held.get("enforced_at"),
        "ended": time.time(),
    }


def run_job(job):
    """Run a restore job to the end; ``{"ok": bool, "message": str, ...}``."""
    if job.get("target") == "drill":  # a schedule's restore drill
        from . import restore_drill

        return restore_drill.run_drill_job(job)
    dbname = job["database"]
    target = job["target"]
    pre_restore = None
    held = None  # the maintenance marker while this job holds the live database
    maintenance_window = None
    report = _Reporter(job)
    try:
        _check_job(job)
        report.step("check")
        binding = _binding(job)
        if target == "production":
            # from here to the swap the live database refuses writes
            held = _enter_maintenance(job)
            report.step("pre_restore")
            pre_restore = _pre_restore_backup(job, on_event=report.engine_event)
            _logger.info("Pre-restore backup %s done", pre_restore.get("name"))
            report.step("restore")
            _close_pool(dbname)
            result = _engine_restore(
                job, dbname, "production", binding, progress=report.bytes
            )
            restored = dbname
            # swapped (sessions of the replaced database terminated): the
            # safety copy and the restored database are writable again
            maintenance_window = _leave_maintenance(job, held)
            held = None
            # the live database is no sandbox, whatever the archive carried
            backup_engine.write_sandbox_marker(restored, None)
        else:
            restored = job["sandbox_name"]
            marker = _sandbox_marker(job) if job.get("sandbox_id") else None
            report.step("restore")
            result = _engine_restore(
                job, restored, "sandbox", binding, progress=report.bytes
            )
            backup_engine.write_sandbox_marker(restored, marker)
            _register_sandbox(job, restored, marker)
            report.step("neutralize")
            _neutralize(restored)
    except Exception as exc:
        # Expected failures (damaged archive, wrong key, ...) are reported to
        # the user; the traceback goes to the log at warning level.
        _logger.warning("Restore of %s failed: %s", dbname, exc, exc_info=True)
        message = str(exc) or repr(exc)
        left = _leave_maintenance(job, held)
        _remove_upload(job)
        _record_failure(job, message)
        if left:  # the open tabs drop their banner
            _announce_maintenance(job, {"active": False})
        report.finish({"ok": False, "message": message})
        return {"ok": False, "message": message}
    info = result.restore_info()
    info.update(
        source_name=getattr(result, "source_name", None),
        source_uuid=getattr(result, "source_uuid", None),
        foreign=bool(getattr(result, "foreign", False)),
        archive_name=job.get("archive_name") or info.get("archive_name"),
        archive_created_at=info.get("archive_created_at")
        or backup_engine.aware_utc(job.get("archive_created_at")),
        target=target,
        database=restored,
        safety_database=result.safety_database,
        # the witnessed audit head when the backup was taken (audit_export's
        # hook checks the restored chain against it)
        audit_head=(getattr(result, "manifest", None) or {}).get("audit_head"),
        # the archive's manifest (the run list settles the archive's own run)
        manifest=getattr(result, "manifest", None) or {},
    )
    try:
        if target == "sandbox":
            report.step("post_restore")
        hook_failures = _post_restore(restored, info, job, pre_restore)
        if target == "sandbox" and job.get("sandbox_id"):
            registry = Registry(dbname)
            with registry.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                env["db.backup.sandbox"].browse(job["sandbox_id"]).write(
                    {"state": "ready"}
                )
    except Exception as exc:
        _logger.exception("Post-restore steps of %s failed", restored)
        outcome = {
            "ok": True,
            "message": "Restored; post-restore steps failed: %s" % exc,
            "database": restored,
            "pre_restore": pre_restore,
        }
        report.finish(outcome)
        return outcome
    finally:
        _remove_upload(job)
    message = "Restored %s from %s" % (restored, job.get("archive_name"))
    if hook_failures:
        message += "; post-restore hooks failed: %s" % ", ".join(
            "%s (%s)" % failure for failure in hook_failures
        )
    outcome = {
        "ok": True,
        "message": message,
        "database": restored,
        "pre_restore": pre_restore,
        # when the live database refused writes (production restores)
        "maintenance": maintenance_window,
    }
    # a sandbox: its dialog shows the end (a production restore's dialog is
    # gone with the database it replaced: the restored one tells its opener)
    report.finish(outcome)
    return outcome
