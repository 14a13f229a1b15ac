import { registry } from "@web/core/registry";
import { user } from "@web/core/user";
import { jobProgressService } from "@audit_export/job_progress/job_progress_service";

/**
 * Backups, restores and sandboxes tell the open tabs where they stand (bus
 * type "db_backup_suite/progress": a run's updates go to the Backup
 * Operator group, a restore's to the user who started it). The pages
 * follow them (env.bus "DB_BACKUP_PROGRESS": the live progress widget,
 * the backups and sandboxes lists), and the end of a restore or of one's
 * own backup shows a notification wherever the user is.
 */
export const backupProgressService = jobProgressService({
    busType: "db_backup_suite/progress",
    event: "DB_BACKUP_PROGRESS",
    // runs and restores have ids of their own
    jobKey: (payload) => `${payload.model},${payload.id}`,
    notify(payload) {
        const isRestore = payload.model === "db.backup.restore.wizard";
        const mine = isRestore || payload.requested_by_id === user.userId;
        if (!mine || !["done", "failed"].includes(payload.state)) {
            return null;
        }
        return {
            title: payload.name,
            message: payload.error || payload.message || payload.state_label,
            sticky: payload.state !== "done",
            className: "o_db_backup_notification",
        };
    },
});

registry.category("services").add("db_backup_suite.progress", backupProgressService);
