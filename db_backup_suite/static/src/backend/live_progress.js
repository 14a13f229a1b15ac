import { registry } from "@web/core/registry";
import { JobProgressWidget } from "@audit_export/job_progress/job_progress";

/**
 * The latest backup on the Database Backups page, or the restore in its
 * dialog, followed live: state, a progress bar, the current step and the
 * bytes so far, then the result or the error.
 *
 * It shows the record's live_* fields (computed by the server when the
 * record loads) and, between two loads, the bus updates of the same job
 * (or of a newer backup): see JobProgressWidget.
 */
export class LiveProgress extends JobProgressWidget {
    static jobService = "db_backup_suite.progress";
    static cardClass = "o_db_backup_live";

    isSameJob(payload) {
        return payload.model === this.data.live_res_model && payload.id === this.data.live_res_id;
    }

    isNewerJob(payload) {
        // the page follows the latest backup: a newer one takes its place
        return (
            payload.model === this.data.live_res_model &&
            payload.model === "db.backup.run" &&
            payload.id > this.data.live_res_id
        );
    }

    get recordState() {
        return this.data.live_state;
    }

    cardFromPayload(payload) {
        return {
            title: payload.name,
            state: payload.state,
            // no label: the state's, in this user's language
            progress: payload.progress,
            detail: payload.message,
            error: payload.error,
        };
    }

    cardFromRecord() {
        return {
            title: this.data.live_title,
            state: this.data.live_state,
            label: this.data.live_state_label,
            progress: this.data.live_progress,
            detail: this.data.live_message,
            error: this.data.live_error,
        };
    }
}

registry.category("view_widgets").add("db_backup_live_progress", {
    component: LiveProgress,
});
