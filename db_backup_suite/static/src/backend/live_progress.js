import { registry } from "@web/core/registry";
import { useBus, useService } from "@web/core/utils/hooks";
import { useDebounced } from "@web/core/utils/timing";
import { standardWidgetProps } from "@web/views/widgets/standard_widget_props";
import { Component, useState } from "@odoo/owl";

/**
 * The latest backup on the Database Backups page, or the restore in its
 * dialog, followed live: state, a progress bar, the current step and the
 * bytes so far, then the result or the error.
 *
 * It shows the record's live_* fields (computed by the server when the
 * record loads) and, between two loads, the bus updates of the same job
 * (or of a newer backup). A change of state or the end reloads the
 * record, so everything else on the page (the lists, the buttons) follows.
 */
export class LiveProgress extends Component {
    static template = "db_backup_suite.LiveProgress";
    static props = standardWidgetProps;

    setup() {
        this.progressService = useService("db_backup_suite.progress");
        this.live = useState({ payload: null });
        this.reload = useDebounced(async () => {
            this.live.payload = null;
            await this.props.record.load();
        }, 250);
        useBus(this.env.bus, "DB_BACKUP_PROGRESS", ({ detail }) => this.onUpdate(detail));
    }

    get data() {
        return this.props.record.data;
    }

    onUpdate(payload) {
        if (payload.model !== this.data.live_res_model) {
            return;
        }
        const sameJob = payload.id === this.data.live_res_id;
        // the page follows the latest backup: a newer one takes its place
        const newer = payload.model === "db.backup.run" && payload.id > this.data.live_res_id;
        if (!sameJob && !newer) {
            return;
        }
        const previous = this.live.payload?.state ?? this.data.live_state;
        this.live.payload = payload;
        if (payload.final || !sameJob || payload.state !== previous) {
            this.reload();
        }
    }

    get state() {
        const payload = this.live.payload;
        if (payload) {
            return {
                title: payload.name,
                state: payload.state,
                // translated here: the server sends one message to many users
                label: this.progressService.stateLabel(payload.state),
                progress: payload.progress || 0,
                message: payload.message,
                error: payload.error,
            };
        }
        return {
            title: this.data.live_title,
            state: this.data.live_state,
            label: this.data.live_state_label,
            progress: this.data.live_progress || 0,
            message: this.data.live_message,
            error: this.data.live_error,
        };
    }

    get active() {
        return ["queued", "running"].includes(this.state.state);
    }

    get barClass() {
        const state = this.state.state;
        if (state === "failed") {
            return "bg-danger";
        }
        if (state === "done") {
            return "bg-success";
        }
        return "progress-bar-striped progress-bar-animated";
    }

    get barWidth() {
        const state = this.state;
        if (state.state === "done" || state.state === "failed") {
            return 100;
        }
        // no estimate yet: a moving bar, not a stuck one
        return Math.max(Math.min(state.progress, 100), state.state === "running" ? 8 : 3);
    }
}

registry.category("view_widgets").add("db_backup_live_progress", {
    component: LiveProgress,
});
