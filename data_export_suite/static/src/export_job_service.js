import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { jobProgressService } from "@audit_export/job_progress/job_progress_service";

/**
 * Export jobs tell their owner's open tabs where they stand (bus type
 * "data_export_suite/job_update"): the progress widgets of the job list
 * and form follow (env.bus "DATA_EXPORT_JOB_UPDATE"), and a finished
 * background job shows "Your file is ready" with a Download button. The
 * button asks the server for a fresh single-use download link.
 */
export const exportJobService = jobProgressService({
    busType: "data_export_suite/job_update",
    event: "DATA_EXPORT_JOB_UPDATE",
    notify(payload, { orm }) {
        return {
            title: payload.title,
            message: payload.message,
            className: "o_data_export_job_notification",
            download:
                payload.state === "done" &&
                (() => orm.call("data.export.job", "action_download", [[payload.id]])),
            open: {
                name: _t("Open"),
                action: {
                    type: "ir.actions.act_window",
                    name: _t("Export Job"),
                    res_model: "data.export.job",
                    res_id: payload.id,
                    views: [[false, "form"]],
                    target: "current",
                },
            },
        };
    },
});

registry.category("services").add("data_export_suite.job_updates", exportJobService);
