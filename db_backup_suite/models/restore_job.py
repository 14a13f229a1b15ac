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
"""

import json
import logging
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime

from markupsafe import escape

import odoo
from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry
from odoo.tools import SQL

from . import backup_engine

_logger = logging.getLogger(__name__)


def naive_utc(value):
    if not value:
        return False
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    if dt.tzinfo:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def aware_utc(value):
    dt = naive_utc(value)
    return dt.replace(tzinfo=UTC) if dt else None


def _lib():
    from odoo.addons.db_backup_suite.lib import crypto, pgtools, restore, verify

    return crypto, pgtools, restore, verify


def describe_file(path, password=None):
    """Header facts and manifest of an uploaded archive (decrypts to read
    the manifest; nothing is written to disk)."""
    crypto, _pg, _restore, verify = _lib()
    size = os.path.getsize(path)
    with open(path, "rb") as raw:
        described = crypto.describe_archive(raw)
    keyring = None
    if not password and described.get("encrypted"):
        keyring = backup_engine.load_keyring()
    with open(path, "rb") as raw:
        # A full scan: every chunk authenticated, the dump and files hashed.
        report = verify.scan_archive(raw, keyring=keyring, password=password or None)
    manifest = report.manifest
    from .db_backup_run import human_size

    return {
        "encrypted": described.get("encrypted", False),
        "size": size,
        "size_display": human_size(size),
        "manifest": manifest,
    }


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
    """Start the restore job in its own session; it outlives this worker."""
    path = write_job_file(job)
    cmd = job_command("restore-job", "--job-file", path)
    log_path = os.path.join(backup_engine.jobs_dir(), os.path.basename(path) + ".log")
    with open(log_path, "ab") as log:
        subprocess.Popen(  # noqa: S603 - our own interpreter and command
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env=backup_engine.child_env(),
        )
    return path


def _pre_restore_backup(job):
    payload = {
        "action": "backup",
        "db": job["db"],
        "filestore": os.path.join(job["data_dir"], "filestore", job["database"]),
        "archive_label": "pre-restore",
        "sinks": job["pre_restore_sinks"],
    }
    return backup_engine.run_job(payload)


def _engine_restore(job, target_db, mode):
    _crypto, pgtools, restore, _verify = _lib()
    source = job["source"]
    db = job["db"]
    pg = pgtools.PgParams(
        host=db.get("host"),
        port=db.get("port"),
        user=db.get("user"),
        password=db.get("password"),
    )
    password = source.get("password") or None
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
    )
    return restore.run_restore(request)


def _close_pool(dbname):
    Registry.delete(dbname)
    odoo.sql_db.close_db(dbname)


def _post_restore(dbname, info, job, pre_restore):
    """In the restored database: signaling, hooks, audit, mail."""
    _close_pool(dbname)
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
        hook_failures = []
        call_restore_hooks(env, info, hook_failures)
        if info.get("safety_database"):
            # The engine keeps the replaced database under a safety name; it is
            # listed with the sandboxes and dropped by their expiry cron.
            env["db.backup.sandbox"].create(
                {
                    "name": info["safety_database"],
                    "archive_name": "state before the restore of %s"
                    % info["archive_name"],
                    "state": "ready",
                }
            )
        event_action = "sandbox" if info["target"] == "sandbox" else "restore"
        env["audit.event"].log_event(
            event_action,
            res_model="db.backup.run",
            details={
                "operation": "restored",
                "archive": info["archive_name"],
                "archive_created_at": str(info["archive_created_at"] or ""),
                "target": info["target"],
                "pre_restore": (pre_restore or {}).get("name"),
                "requested_by": job.get("requested_by"),
                "hook_failures": [
                    {"model": model, "error": error} for model, error in hook_failures
                ],
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


def call_restore_hooks(env, info, failures=None):
    """Call ``_on_database_restored(info)`` on every model defining it.

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
                model._on_database_restored(info)
            called.append(model_name)
        except Exception as exc:
            _logger.exception("Restore hook of %s failed", model_name)
            if failures is not None:
                failures.append((model_name, str(exc)[:500]))
    return called


def _neutralize(dbname):
    _close_pool(dbname)
    with odoo.sql_db.db_connect(dbname).cursor() as cr:
        odoo.modules.neutralize.neutralize_database(cr)
        cr.commit()


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


def run_job(job):
    """Run a restore job to the end; ``{"ok": bool, "message": str, ...}``."""
    dbname = job["database"]
    target = job["target"]
    pre_restore = None
    try:
        if target == "production":
            pre_restore = _pre_restore_backup(job)
            _logger.info("Pre-restore backup %s done", pre_restore.get("name"))
            _close_pool(dbname)
            result = _engine_restore(job, dbname, "production")
            restored = dbname
        else:
            restored = job["sandbox_name"]
            result = _engine_restore(job, restored, "sandbox")
            _neutralize(restored)
    except Exception as exc:
        # Expected failures (damaged archive, wrong key, ...) are reported to
        # the user; the traceback goes to the log at warning level.
        _logger.warning("Restore of %s failed: %s", dbname, exc, exc_info=True)
        message = str(exc) or repr(exc)
        _record_failure(job, message)
        return {"ok": False, "message": message}
    info = result.restore_info()
    info.update(
        archive_name=job.get("archive_name") or info.get("archive_name"),
        archive_created_at=info.get("archive_created_at")
        or aware_utc(job.get("archive_created_at")),
        target=target,
        database=restored,
        safety_database=result.safety_database,
    )
    try:
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
        return {
            "ok": True,
            "message": "Restored; post-restore steps failed: %s" % exc,
            "database": restored,
            "pre_restore": pre_restore,
        }
    finally:
        source = job.get("source") or {}
        if source.get("remove_after") and source.get("path"):
            try:
                os.unlink(source["path"])
            except OSError as exc:
                _logger.warning("Cannot remove the uploaded archive: %s", exc)
    message = "Restored %s from %s" % (restored, job.get("archive_name"))
    if hook_failures:
        message += "; post-restore hooks failed: %s" % ", ".join(
            "%s (%s)" % failure for failure in hook_failures
        )
    return {
        "ok": True,
        "message": message,
        "database": restored,
        "pre_restore": pre_restore,
    }
