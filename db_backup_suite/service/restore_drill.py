"""The restore drill job: runs in the detached job process.

``db.backup.schedule._start_drill`` records the drill as a ``db.backup.run``
of kind ``drill`` and hands this job to ``restore_job.spawn_detached`` (the
process started by ``odoo-bin db_backup restore-job``, which outlives the
worker or cron that started it); ``restore_job.run_job`` passes a job whose
target is ``drill`` to :func:`run_drill_job`. The tests call it in-process.

The engine's drill (``lib/drill.py``) restores the archive into a temporary
database, counts its rows against the manifest and drops it whatever
happens; this module reports its progress on the run (the backups pages
follow it on the bus) and hands the outcome to the schedule
(``_drill_finished``: the run's state, the schedule's last drill and last
proven restorable date, the alert when it failed).
"""

import json
import logging
import time

from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry

from . import backup_engine

_logger = logging.getLogger(__name__)


class _DrillReporter:
    """Where the drill stands, written on its run in the live database (own
    committed transaction per report; best effort: the drill matters more)."""

    INTERVAL = 1.5  # seconds between two byte-count reports

    def __init__(self, job):
        self.job = job
        self.registry = None
        self.last = 0.0
        self.total = float(job.get("expected_bytes") or 0)

    def _env_call(self, method, *args):
        if self.registry is None:
            self.registry = Registry(self.job["database"])
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            run = env["db.backup.run"].browse(self.job["run_id"]).exists()
            schedule = env["db.backup.schedule"].browse(self.job["schedule_id"])
            if run:
                return getattr(schedule.exists(), method)(run, *args)
        return None

    def step(self, step, done=0):
        try:
            self._env_call("_drill_progress", step, done, self.total)
        except Exception as exc:  # the drill matters more than its report
            _logger.warning("Drill progress not reported: %s", exc)

    def bytes(self, done, _total=None, _message=None):
        """The engine's progress callback (``done`` bytes restored so far)."""
        now = time.monotonic()
        if now - self.last < self.INTERVAL:
            return
        self.last = now
        self.step("restore", done)

    def finish(self, ok, message, details=None):
        try:
            self._env_call("_drill_finished", ok, message, details or {})
        except Exception:
            _logger.exception("Could not record the drill's result")


def run_drill_job(job):
    """Run the drill of ``job`` to the end; ``{"ok": bool, "message": str}``."""
    from ..lib import drill, pgtools

    report = _DrillReporter(job)
    db = job["db"]
    pg = pgtools.PgParams(
        host=db.get("host"),
        port=db.get("port"),
        user=db.get("user"),
        password=db.get("password"),
    )
    details = {"archive": job.get("archive_name")}
    try:
        report.step("cleanup")
        leftovers = drill.clean_drill_leftovers(
            pg,
            job["database"],
            data_dir=job.get("data_dir"),
            known=job.get("known_drills") or (),
        )
        details["leftovers_removed"] = leftovers["removed"]
        details["leftovers_left_alone"] = leftovers.get("left_alone") or []
        report.step("restore")
        result = drill.run_drill(
            drill.DrillRequest(
                database=job["database"],
                sink=job["source"]["sink"],
                name=job["source"]["name"],
                keyring=backup_engine.load_keyring(),
                pg=pg,
                data_dir=job.get("data_dir"),
                expected_uuid=job.get("expected_uuid"),
                expected_row_counts=job.get("expected_row_counts"),
                progress=report.bytes,
                on_step=report.step,
                stamp=job.get("stamp"),
            )
        )
    except Exception as exc:
        # expected failures (damaged archive, wrong key, counts differ): the
        # traceback goes to the log at warning level, the reason to the run
        _logger.warning("Restore drill of %s failed: %s", job["database"], exc)
        message = str(exc) or repr(exc)
        notes = getattr(exc, "__notes__", None)
        if notes:
            message = "%s (%s)" % (message, "; ".join(notes))
        report.finish(False, message, details)
        return {"ok": False, "message": message}
    details.update(json.loads(json.dumps(result.as_dict(), default=str)))
    report.finish(True, "", details)
    return {"ok": True, "message": "drill of %s passed" % result.archive_name}
