"""Child process running one engine job for the Odoo layer (no Odoo import).

Started by ``service/backup_engine.py`` as ``python -m
db_backup_suite.service.engine_job`` (plain Python: this module, the
``service`` package and ``lib`` import no Odoo). It reads ONE JSON object on
stdin (secrets included: never on argv, never in the environment of other
processes) and writes JSON lines: ``{"event": "progress", "done", "total",
"message"}``, then one ``{"event": "result", ...}`` or ``{"event": "error",
"type", "message"}``. The exit code is 0 only with a result.

The lines go to the job's event file (``events_path`` in the job: a 0600
file in the private jobs folder that the parent made; appended, flushed,
the final line fsync'ed) and to stdout as long as stdout can be written.
The child runs in its own session and reports ITSELF: when the Odoo process
that started it dies (restart, OOM, kill), a broken or closed stdout is
ignored, the job goes on, and whoever follows the event file afterwards
(the watchdog cron of ``db.backup.run``) reads its progress and result.

Actions: ``backup``: one stream to every destination at once
(``lib/fanout.py``), after removing what killed runs of the database left
(``lib/cleanup.py``). The result event carries ``state`` (``done`` or
``partial``) and one entry per destination in ``copies``
(``destination_id``, ``ok``, ``name``, ``size``, ``error``); when no
destination stored it, the error event carries the same ``copies`` and
``state: "failed"``.
"""

import contextlib
import json
import logging
import os
import signal
import sys
import time

from ..lib import backup, crypto
from ..lib.pgtools import PgParams

_logger = logging.getLogger("db_backup_suite.engine_job")


#: where the events go: the job's event file (fd) and stdout while it works
_SINKS = {"fd": None, "stdout": True}
FINAL_EVENTS = ("result", "error")


def open_event_file(path):
    """Append to the job's event file (created 0600 if the parent did not);
    never through a symbolic link."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    _SINKS["fd"] = fd
    return fd


def _drop_stdout():
    """stdout is gone (the parent died): no more writes there, and none at
    exit either (Python would flush it again and fail)."""
    _SINKS["stdout"] = False
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def emit(**event):
    """One event line to the event file (the job's own record, which
    survives its parent) and to stdout while it can be written."""
    line = json.dumps(event, default=str) + "\n"
    fd = _SINKS["fd"]
    if fd is not None:
        data = line.encode("utf-8")
        while data:  # O_APPEND: each line lands whole at the end
            written = os.write(fd, data)
            data = data[written:]
        if event.get("event") in FINAL_EVENTS:
            os.fsync(fd)
    if _SINKS["stdout"]:
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (OSError, ValueError):
            _drop_stdout()


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


def _request(job, keyring, **dest):
    db = job["db"]
    return backup.BackupRequest(
        database=db["dbname"],
        filestore=job.get("filestore"),
        data_dir=job.get("data_dir"),
        pg=pg_params(db),
        keyring=keyring,
        label=job.get("archive_label") or "manual",
        audit_head=job.get("audit_head"),
        **dest,
    )


def _failed(target, exc):
    """The outcome of a destination its backup never reached (or failed)."""
    from ..lib import sinks
    from ..lib.fanout import DestinationOutcome

    try:
        sink = sinks.make_sink(sinks.split_storage(target["config"])[0])
        where = sink.describe()
        sink.close()
    except Exception:  # an unusable config: its type is enough
        where = str(target["config"].get("type") or "?")
    return DestinationOutcome(
        destination=where,
        key=target.get("destination_id"),
        state="failed",
        error=(str(exc).strip() or type(exc).__name__).splitlines()[0],
        error_type=type(exc).__name__,
    )


def _full_backup(job, keyring, targets, progress):
    """The full archive, one stream to every full-mode destination:
    ``(data, outcomes)``; ``data`` None when none stored it."""
    try:
        result = backup.run_backup(
            _request(
                job,
                keyring,
                sinks=[(t.get("destination_id"), t["config"]) for t in targets],
                progress=progress,
            )
        )
    except Exception as exc:
        outcomes = getattr(exc, "outcomes", None)
        if not outcomes:  # one destination (its own error) or no dump at all
            outcomes = [_failed(t, exc) for t in targets]
        return None, list(outcomes)
    data = result.as_dict()
    data["logical_size"] = _logical_size(data.get("manifest") or {})
    return data, list(result.destinations)


def _logical_size(manifest):
    return int((manifest.get("dump") or {}).get("size") or 0) + int(
        (manifest.get("filestore") or {}).get("bytes") or 0
    )


def _incremental_backup(job, keyring, target, progress):
    """A snapshot in the destination's repository: ``(data, outcome)``;
    ``data`` None when it failed. ``data["size"]`` is the snapshot's size
    as an archive (what a restore or download reads), ``new_data`` what
    this run added at the destination."""
    from ..lib import repository, sinks
    from ..lib.fanout import DestinationOutcome

    started = time.monotonic()
    try:
        sink = sinks.make_sink(sinks.split_storage(target["config"])[0])
    except Exception as exc:
        return None, _failed(target, exc)
    try:
        result = repository.run_incremental_backup(
            _request(job, keyring, sink=sink, progress=progress)
        )
        data = result.as_dict()
        try:
            size = repository.SnapshotArchiveSink(sink, keyring).stat(result.name).size
        except Exception as exc:  # the snapshot is stored: only its size is unknown
            _logger.warning("size of %s: %s", result.name, exc)
            size = result.logical_size
        data["size"] = size
        return data, DestinationOutcome(
            destination=sink.describe(),
            key=target.get("destination_id"),
            state="done",
            name=result.name,
            size=size,
            duration=time.monotonic() - started,
        )
    except Exception as exc:
        _logger.debug("incremental backup failed", exc_info=True)
        outcome = _failed(target, exc)
        outcome.destination = sink.describe()
        outcome.duration = time.monotonic() - started
        return None, outcome
    finally:
        sink.close()


def do_backup(job):
    """One backup to every destination of the job: a full archive streamed
    to the full-mode destinations at once (lib/fanout.py), then a snapshot
    in the repository of each incremental one (``config["storage"]``).
    ``state``: done (every destination stored it), partial (some did); when
    none did, ``DestinationsFailedError`` with every destination's reason.
    Each copy says what it cost at its destination (``new_data``: the
    archive's size, or the bytes the snapshot added) and its
    ``logical_size`` (dump + filestore)."""
    from ..lib import errors, fanout, sinks

    keyring = crypto.load_keyring()
    targets = job["sinks"]
    if not targets:
        raise ValueError("no destination")
    full = [t for t in targets if sinks.storage_mode(t["config"]) == "full"]
    incremental = [t for t in targets if t not in full]
    steps = len(incremental) + (1 if full else 0)

    def prefix(step, what):
        return f"{step}/{steps} {what}: " if steps > 1 else ""

    results, outcomes = {}, {}
    step = 0
    if full:
        step += 1
        data, done = _full_backup(
            job, keyring, full, _progress_emitter(prefix(step, "full archive"))
        )
        for outcome in done:
            outcomes[outcome.key] = outcome
            if data is not None and outcome.ok:
                results[outcome.key] = dict(data, new_data=outcome.size)
    for target in incremental:
        step += 1
        data, outcome = _incremental_backup(
            job, keyring, target, _progress_emitter(prefix(step, "snapshot"))
        )
        outcomes[target.get("destination_id")] = outcome
        if data is not None:
            results[target.get("destination_id")] = data
    ordered = [outcomes[t.get("destination_id")] for t in targets]
    if not results:  # every destination's reason, each on its copy
        raise errors.DestinationsFailedError(ordered)
    return _result(targets, ordered, results, fanout.overall_state(ordered))


def _result(targets, ordered, results, state):
    """The result event: the run's archive is the full archive when one was
    stored, else the first snapshot; ``new_data`` sums what every stored
    copy added at its destination."""
    keys = [t.get("destination_id") for t in targets]
    primary = next(
        (results[k] for k in keys if k in results and "snapshot" not in results[k]),
        None,
    ) or next(results[k] for k in keys if k in results)
    manifest = primary.get("manifest") or {}
    copies = []
    warnings = list(primary.get("warnings") or [])
    for key, outcome in zip(keys, ordered, strict=True):
        entry = _copy_entry(outcome)
        data = results.get(key)
        if data is not None:
            entry["storage"] = "incremental" if "snapshot" in data else "full"
            entry["new_data"] = data.get("new_data", entry["size"])
            entry["logical_size"] = data.get("logical_size", 0)
            for warning in data.get("warnings") or []:
                if warning not in warnings:
                    warnings.append(warning)
        copies.append(entry)
    return {
        "name": primary["name"],
        "size": primary["size"],
        "sha256": primary.get("sha256"),
        "encrypted": primary.get("encrypted", True),
        "key_id": primary.get("key_id"),
        "created_at": manifest.get("created_at"),
        "warnings": warnings,
        "manifest": manifest,
        "state": state,
        "copies": copies,
        "cleanup": primary.get("cleanup"),
        "storage": sorted({c["storage"] for c in copies if c.get("storage")}),
        "new_data": sum(c.get("new_data") or 0 for c in copies if c["ok"]),
        "logical_size": primary.get("logical_size") or _logical_size(manifest),
    }


ACTIONS = {"backup": do_backup}


def _detach_signals():
    """The parent's death must not end the job: a write to a closed pipe
    raises (handled) instead of killing, a hang-up is ignored."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def main():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.raiseExceptions = False  # a closed stderr must not end the job
    _detach_signals()
    try:
        job = json.loads(sys.stdin.read())
        if job.get("events_path"):
            open_event_file(job["events_path"])
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
