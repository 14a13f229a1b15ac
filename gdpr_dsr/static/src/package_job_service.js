import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";

/**
 * Export package jobs tell the officer who queued them where they stand
 * (bus type "gdpr_dsr/package_job", the officer's own channel): the
 * progress widget of the package dialog and of the request's form follow
 * (env.bus "DSR_PACKAGE_JOB_UPDATE"), and the end shows "Your package is
 * ready" with a Download button (or the error) wherever the officer is.
 * The download goes through the request's route: the server checks the
 * officer, the stored digest and decrypts for this request only.
 */
export const dsrPackageJobService = {
    dependencies: ["bus_service", "notification", "orm", "action"],
    start(env, { bus_service, notification, orm, action }) {
        bus_service.subscribe("gdpr_dsr/package_job", (payload) => {
            env.bus.trigger("DSR_PACKAGE_JOB_UPDATE", payload);
            if (!payload.final) {
                return;
            }
            const done = payload.state === "done";
            const close = notification.add(payload.message || payload.error, {
                title: payload.title,
                type: done ? "success" : "danger",
                sticky: true,
                className: "o_dsr_package_notification",
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
                                          "dsr.request",
                                          "action_download_package",
                                          [[payload.request_id]]
                                      );
                                      await action.doAction(download);
                                  },
                              },
                          ]
                        : []),
                    {
                        name: _t("Open request"),
                        onClick: () => {
                            close();
                            action.doAction({
                                type: "ir.actions.act_window",
                                res_model: "dsr.request",
                                res_id: payload.request_id,
                                views: [[false, "form"]],
                                target: "current",
                            });
                        },
                    },
                ],
            });
        });
        bus_service.start();
        return {
            stateLabel(state) {
                return (
                    {
                        queued: _t("Queued"),
                        running: _t("Running"),
                        done: _t("Package ready"),
                        failed: _t("Failed"),
                    }[state] || state
                );
            },
        };
    },
};

registry.category("services").add("gdpr_dsr.package_jobs", dsrPackageJobService);
