import logging

from odoo import models
from odoo.tools import SQL

from .maintenance_guard import active_marker

_logger = logging.getLogger(__name__)

#: the suite's crons that run and follow backups: "Run Manually" on them
#: while a cron worker runs them says so instead of failing
BACKUP_CRONS = (
    "db_backup_suite.ir_cron_db_backup_process",
    "db_backup_suite.ir_cron_db_backup_watchdog",
)


class IrCron(models.Model):
    _inherit = "ir.cron"

    def method_direct_trigger(self):
        """Run Manually. On the backup crons, while a cron worker is running
        the same cron (it holds the row's lock: a backup is under way),
        Odoo would refuse with "This cron task is currently being executed";
        the queued backups are that worker's anyway (each is claimed once,
        ``db.backup.run._claim_queued``), so the user is told so instead.
        The same write access as Odoo's own check, first."""
        if len(self) == 1 and self._is_backup_cron():
            self.browse().check_access("write")
            if self._locked_by_a_worker():
                return {
                    "type": "ir.actions.client",
                    "tag": "display_notification",
                    "params": {
                        "type": "info",
                        "message": self.env._(
                            "%(name)s is running right now in the background: "
                            "the queued backups run in it, nothing was started "
                            "twice.",
                            name=self.sudo().name,
                        ),
                    },
                }
        return super().method_direct_trigger()

    def _is_backup_cron(self):
        self.ensure_one()
        for xmlid in BACKUP_CRONS:
            cron = self.env.ref(xmlid, raise_if_not_found=False)
            if cron and cron.id == self.id:
                return True
        return False

    def _locked_by_a_worker(self):
        """Whether another transaction holds this cron's row (a cron worker
        running it). When it is free, this transaction now holds it, as
        Odoo's own trigger is about to."""
        self.ensure_one()
        self.env.cr.execute(
            SQL(
                "SELECT id FROM ir_cron WHERE id = %s FOR NO KEY UPDATE SKIP LOCKED",
                self.id,
            )
        )
        return not self.env.cr.fetchone()

    @classmethod
    def _process_job(cls, db, cron_cr, job):
        """Postponed while the database is being restored: the job stays due
        and runs at the first pass after the restore."""
        if active_marker(cron_cr.dbname):
            _logger.info(
                "Cron job %s postponed: database %s is being restored",
                job.get("cron_name") or job.get("id"),
                cron_cr.dbname,
            )
            return
        return super()._process_job(db, cron_cr, job)
