import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";

/**
 * Export jobs tell their owner's open tabs where they stand (bus type
 * "data_export_suite/job_update"): the progress widgets of the job list
 * and form follow (env.bus "DATA_EXPORT_JOB_UPDATE"), and a finished
 * background job shows "Your file is ready" with a Download button. The
 * button asks the server for a fresh single-use download link.
 */
export const exportJobService = {
    dependencies: ["bus_service", "notification", "orm", "action"],
    start(env, { bus_service, notification, orm, action }) {
        bus_service.subscribe("data_export_suite/job_update", (payload) => {
            env.bus.trigger("DATA_EXPORT_JOB_UPDATE", payload);
            if (!payload.final) {
                return;
            }
            const done = payload.state === "done";
            const close = notification.add(payload.message, {
                title: payload.title,
                type: done ? "success" : "danger",
                sticky: true,
                className: "o_data_export_job_notification",
                buttons: [
                    ...(done
                        ? [
                              {
                                  name: _t("Download"),
                                  icon: "fa-download",
                                  primary: true,
                                  onClick: async () => {
                                      close();
                                      const download = await orm.call(
                                          "data.export.job",
                                          "action_download",
                                          [[payload.id]]
                                      );
                                      await action.doAction(download);
                                  },
                              },
                          ]
                        : []),
                    {
                        name: _t("Open"),
                        onClick: () => {
                            close();
                            action.doAction({
                                type: "ir.actions.act_window",
                                name: _t("Export Job"),
                                res_model: "data.export.job",
                                res_id: payload.id,
                                views: [[false, "form"]],
                                target: "current",
                            });
                        },
                    },
                ],
            });
        });
        bus_service.start();
    },
};

registry.category("services").add("data_export_suite.job_updates", exportJobService);
