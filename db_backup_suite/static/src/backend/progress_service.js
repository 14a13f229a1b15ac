import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { user } from "@web/core/user";

/**
 * Backups, restores and sandboxes tell the open tabs where they stand (bus
 * type "db_backup_suite/progress": a run's updates go to the Backup
 * Operator group, a restore's to the user who started it). The pages
 * follow them (env.bus "DB_BACKUP_PROGRESS": the live progress widget,
 * the backups and sandboxes lists), and the end of a restore or of one's
 * own backup shows a notification wherever the user is.
 */
export const backupProgressService = {
    dependencies: ["bus_service", "notification"],
    start(env, { bus_service, notification }) {
        bus_service.subscribe("db_backup_suite/progress", (payload) => {
            env.bus.trigger("DB_BACKUP_PROGRESS", payload);
            if (!payload.final) {
                return;
            }
            const isRestore = payload.model === "db.backup.restore.wizard";
            const mine = isRestore || payload.requested_by_id === user.userId;
            if (!mine || !["done", "failed"].includes(payload.state)) {
                return;
            }
            notification.add(payload.error || payload.message || payload.state_label, {
                title: payload.name,
                type: payload.state === "done" ? "success" : "danger",
                sticky: payload.state !== "done",
                className: "o_db_backup_notification",
            });
        });
        bus_service.start();
        return {
            /** The label of a run or restore step, for the widgets. */
            stateLabel(state) {
                return (
                    {
                        queued: _t("Queued"),
                        running: _t("Running"),
                        done: _t("Done"),
                        failed: _t("Failed"),
                    }[state] || state
                );
            },
        };
    },
};

registry.category("services").add("db_backup_suite.progress", backupProgressService);
