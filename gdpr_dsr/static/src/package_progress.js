import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { useBus, useService } from "@web/core/utils/hooks";
import { useDebounced } from "@web/core/utils/timing";
import { standardWidgetProps } from "@web/views/widgets/standard_widget_props";
import { Component, useState } from "@odoo/owl";

/**
 * The officer's export package job, followed live in the package dialog
 * and on the request's form: state, a progress bar, the current step and
 * the models and records read so far, then "Package ready" or the error.
 *
 * It shows the record's package_job_* fields (computed by the server when
 * the record loads) and, between two loads, the bus updates of the same
 * job; a change of state or the end reloads the record, so the buttons
 * (Download) follow.
 */
export class DsrPackageProgress extends Component {
    static template = "gdpr_dsr.PackageProgress";
    static props = standardWidgetProps;

    setup() {
        this.jobs = useService("gdpr_dsr.package_jobs");
        this.live = useState({ payload: null });
        this.reload = useDebounced(async () => {
            if (await this.props.record.isDirty()) {
                return; // never lose what the officer is typing: the bus payload shows
            }
            await this.props.record.load();
            this.live.payload = null;
        }, 250);
        useBus(this.env.bus, "DSR_PACKAGE_JOB_UPDATE", ({ detail }) => this.onUpdate(detail));
    }

    get data() {
        return this.props.record.data;
    }

    get jobId() {
        const value = this.data.package_job_id;
        return Array.isArray(value) ? value[0] : value?.id || false;
    }

    get requestId() {
        if (this.props.record.resModel === "dsr.request") {
            return this.props.record.resId;
        }
        const value = this.data.request_id;
        return Array.isArray(value) ? value[0] : value?.id || false;
    }

    onUpdate(payload) {
        const sameJob = payload.id === this.jobId;
        // a job queued for this request from another tab takes its place
        const newer = payload.request_id === this.requestId && payload.id > (this.jobId || 0);
        if (!sameJob && !newer) {
            return;
        }
        const previous = this.live.payload?.state ?? this.data.package_job_state;
        this.live.payload = payload;
        if (payload.final || !sameJob || payload.state !== previous) {
            this.reload();
        }
    }

    get state() {
        const payload = this.live.payload;
        if (payload) {
            return {
                state: payload.state,
                step: payload.step,
                progress: payload.progress || 0,
                error: payload.error,
                models: [payload.models_done, payload.models_total],
                records: [payload.records_done, payload.records_total],
            };
        }
        return {
            state: this.data.package_job_state,
            step: this.data.package_job_step,
            progress: this.data.package_job_progress || 0,
            error: this.data.package_job_error,
            models: [0, 0],
            records: [0, 0],
        };
    }

    get label() {
        return this.jobs.stateLabel(this.state.state);
    }

    get counts() {
        const [modelsDone, modelsTotal] = this.state.models;
        const [recordsDone, recordsTotal] = this.state.records;
        if (!modelsTotal) {
            return "";
        }
        return _t("%(models)s of %(modelsTotal)s models, %(records)s of %(recordsTotal)s records", {
            models: modelsDone,
            modelsTotal,
            records: recordsDone,
            recordsTotal,
        });
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
        return Math.max(Math.min(state.progress, 100), state.state === "running" ? 8 : 3);
    }
}

registry.category("view_widgets").add("gdpr_dsr_package_progress", {
    component: DsrPackageProgress,
});
