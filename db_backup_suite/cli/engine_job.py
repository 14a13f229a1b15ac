"""Child process running one engine job for the Odoo layer (no Odoo import).

Started by ``models/backup_engine.py`` as ``python -m
db_backup_suite.cli.engine_job``. It reads ONE JSON object on stdin (secrets
included: never on argv, never in the environment of other processes) and
writes JSON lines on stdout: ``{"event": "progress", "done", "total",
"message"}``, then one ``{"event": "result", ...}`` or ``{"event": "error",
"type", "message"}``. The exit code is 0 only with a result.

Actions: ``backup`` (to the first destination, then a streamed copy of the
ciphertext to each other destination; each copy is reported on its own).
"""

import json
import logging
import sys
import time

from db_backup_suite.lib import backup, crypto, sinks
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


def copy_object(source, target, name, size_hint=None):
    with (
        source.open_read(name) as reader,
        target.open_write(name, size_hint=size_hint) as writer,
    ):
        while True:
            block = reader.read(1 << 20)
            if not block:
                break
            writer.write(block)
        return writer.commit()


def do_backup(job):
    db = job["db"]
    keyring = crypto.load_keyring()
    targets = job["sinks"]
    if not targets:
        raise ValueError("no destination")
    first, others = targets[0], targets[1:]
    sink = sinks.make_sink(first["config"])
    copies = []
    try:
        result = backup.run_backup(
            backup.BackupRequest(
                database=db["dbname"],
                sink=sink,
                filestore=job.get("filestore"),
                pg=pg_params(db),
                keyring=keyring,
                label=job.get("archive_label") or "manual",
                progress=_progress_emitter(),
            )
        )
        copies.append(
            {
                "destination_id": first.get("destination_id"),
                "ok": True,
                "name": result.name,
                "size": result.size,
            }
        )
        for target in others:
            emit(
                event="progress",
                done=0,
                total=None,
                message="copying to destination %s" % target.get("destination_id"),
            )
            try:
                other = sinks.make_sink(target["config"])
                try:
                    stored = copy_object(sink, other, result.name, result.size)
                finally:
                    other.close()
                if stored.size != result.size:
                    raise OSError(
                        "size mismatch after copy: %s != %s"
                        % (stored.size, result.size)
                    )
                copies.append(
                    {
                        "destination_id": target.get("destination_id"),
                        "ok": True,
                        "name": stored.name,
                        "size": stored.size,
                    }
                )
            except Exception as exc:  # one failed copy must not lose the others
                _logger.warning(
                    "copy to %s failed: %s", target.get("destination_id"), exc
                )
                copies.append(
                    {
                        "destination_id": target.get("destination_id"),
                        "ok": False,
                        "error": str(exc),
                    }
                )
    finally:
        sink.close()
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
        "copies": copies,
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
        emit(event="error", type=type(exc).__name__, message=str(exc) or repr(exc))
        return 1
    emit(event="result", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
