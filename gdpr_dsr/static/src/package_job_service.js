import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { jobProgressService } from "@audit_export/job_progress/job_progress_service";

/**
 * Export package jobs tell the officer who queued them where they stand
 * (bus type "gdpr_dsr/package_job", the officer's own channel): the
 * progress widget of the package dialog and of the request's form follow
 * (env.bus "DSR_PACKAGE_JOB_UPDATE"), and the end shows "Your package is
 * ready" with a Download button (or the error) wherever the officer is.
 * The download goes through the request's route: the server checks the
 * officer, the stored digest and decrypts for this request only.
 */
export const dsrPackageJobService = jobProgressService({
    busType: "gdpr_dsr/package_job",
    event: "DSR_PACKAGE_JOB_UPDATE",
    stateLabels: () => ({ done: _t("Package ready") }),
    notify(payload, { orm }) {
        return {
            title: payload.title,
            message: payload.message || payload.error,
            className: "o_dsr_package_notification",
            download:
                payload.state === "done" &&
                (() => orm.call("dsr.request", "action_download_package", [[payload.request_id]])),
            open: {
                name: _t("Open request"),
                action: {
                    type: "ir.actions.act_window",
                    res_model: "dsr.request",
                    res_id: payload.request_id,
                    views: [[false, "form"]],
                    target: "current",
                },
            },
        };
    },
});

registry.category("services").add("gdpr_dsr.package_jobs", dsrPackageJobService);
