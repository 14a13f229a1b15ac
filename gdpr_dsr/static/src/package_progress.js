import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { JobProgressWidget } from "@audit_export/job_progress/job_progress";

/**
 * The officer's export package job, followed live in the package dialog
 * and on the request's form: state, a progress bar, the current step and
 * the models and records read so far, then "Package ready" or the error.
 *
 * It shows the record's package_job_* fields (computed by the server when
 * the record loads) and, between two loads, the bus updates of the same
 * job or of a job queued for the request from another tab: see
 * JobProgressWidget.
 */
export class DsrPackageProgress extends JobProgressWidget {
    static jobService = "gdpr_dsr.package_jobs";
    static cardClass = "o_dsr_package_progress";

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

    isSameJob(payload) {
        return payload.id === this.jobId;
    }

    isNewerJob(payload) {
        return payload.request_id === this.requestId && payload.id > (this.jobId || 0);
    }

    get recordState() {
        return this.data.package_job_state;
    }

    counts(payload) {
        if (!payload.models_total) {
            return "";
        }
        return _t("%(models)s of %(modelsTotal)s models, %(records)s of %(recordsTotal)s records", {
            models: payload.models_done,
            modelsTotal: payload.models_total,
            records: payload.records_done,
            recordsTotal: payload.records_total,
        });
    }

    cardFromPayload(payload) {
        return {
            title: _t("Export package"),
            state: payload.state,
            progress: payload.progress,
            detail: payload.step,
            counts: this.counts(payload),
            error: payload.error,
        };
    }

    cardFromRecord() {
        return {
            title: _t("Export package"),
            state: this.data.package_job_state,
            progress: this.data.package_job_progress,
            detail: this.data.package_job_step,
            error: this.data.package_job_error,
        };
    }
}

registry.category("view_widgets").add("gdpr_dsr_package_progress", {
    component: DsrPackageProgress,
});
