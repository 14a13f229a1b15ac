"""Child process running one engine job for the Odoo layer (no Odoo import).

Started by ``models/backup_engine.py`` as ``python -m
db_backup_suite.cli.engine_job``. It reads ONE JSON object on stdin (secrets
included: never on argv, never in the environment of other processes) and
writes JSON lines on stdout: ``{"event": "progress", "done", "total",
"message"}``, then one ``{"event": "result", ...}`` or ``{"event": "error",
"type", "message"}``. The exit code is 0 only with a result.

Actions: ``backup``: one stream to every destination at once
(``lib/fanout.py``), after removing what killed runs of the database left
(``lib/cleanup.py``). The result event carries ``state`` (``done`` or
``partial``) and one entry per destination in ``copies``
(``destination_id``, ``ok``, ``name``, ``size``, ``error``); when no
destination stored it, the error event carries the same ``copies`` and
``state: "failed"``.
"""

import json
import logging
import sys
import time

from db_backup_suite.lib import backup, crypto
from db_backup_suite.lib.pgtools import PgParams

_logger = logging.getLogger("db_backup_suite.engine_job")


def emit(**event):
    sys.stdout.write(json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def _progress_emitter(prefix=""):
    last = [0.0]

    def progress(done, total, message):
        now = time.monotonic()
        if now - last[0] < 0.5:
            return
        last[0] = now
        emit(event="progress", done=done, total=total, message=prefix + (message or ""))

    return progress


def pg_params(db):
    return PgParams(
        host=db.get("host") or None,
        port=db.get("port") or None,
        user=db.get("user") or None,
        password=db.get("password") or None,
    )


def _copy_entry(outcome):
    entry = {
        "destination_id": outcome.key,
        "ok": outcome.ok,
        "name": outcome.name if outcome.ok else None,
        "size": outcome.size if outcome.ok else 0,
        "destination": outcome.destination,
    }
    if not outcome.ok:
        entry["error"] = outcome.error
        entry["error_type"] = outcome.error_type
    return entry


def do_backup(job):
    db = job["db"]
    keyring = crypto.load_keyring()
    targets = job["sinks"]
    if not targets:
        raise ValueError("no destination")
    result = backup.run_backup(
        backup.BackupRequest(
            database=db["dbname"],
            sinks=[(t.get("destination_id"), t["config"]) for t in targets],
            filestore=job.get("filestore"),
            data_dir=job.get("data_dir"),
            pg=pg_params(db),
            keyring=keyring,
            label=job.get("archive_label") or "manual",
            progress=_progress_emitter(),
            audit_head=job.get("audit_head"),
        )
    )
    data = result.as_dict()
    manifest = data.get("manifest") or {}
    return {
        "name": data["name"],
        "size": data["size"],
        "sha256": data.get("sha256"),
        "encrypted": data.get("encrypted", True),
        "key_id": data.get("key_id"),
        "created_at": manifest.get("created_at"),
        "warnings": data.get("warnings") or [],
        "manifest": manifest,
        "state": result.state,
        "copies": [_copy_entry(o) for o in result.destinations],
        "cleanup": data.get("cleanup"),
    }


ACTIONS = {"backup": do_backup}


def main():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        job = json.loads(sys.stdin.read())
        action = ACTIONS[job["action"]]
        result = action(job)
    except Exception as exc:
        _logger.debug("job failed", exc_info=True)
        extra = {}
        outcomes = getattr(exc, "outcomes", None)
        if outcomes is not None:  # no destination stored it: say why, each
            extra = {"state": "failed", "copies": [_copy_entry(o) for o in outcomes]}
        emit(
            event="error",
            type=type(exc).__name__,
            message=str(exc) or repr(exc),
            **extra,
        )
        return 1
    emit(event="result", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
