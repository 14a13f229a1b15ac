import { _t } from "@web/core/l10n/translation";
import { reactive } from "@odoo/owl";

/**
 * The suite's background jobs (backups and restores, data exports, DSR
 * packages) tell the open tabs where they stand over the bus. One service
 * per kind of job follows them, made by ``jobProgressService``:
 *
 * - it subscribes to the bus notification type the job's addon sends
 *   (``busType``), and hands every payload to the page on ``env.bus``
 *   (``event``: the progress widgets and the lists follow it);
 * - it keeps the latest payload of each job (``state.jobs``, reactive,
 *   keyed by ``jobKey(payload)``: the payload's id by default);
 * - at the end of a job (``payload.final``) it shows what ``notify``
 *   returns, wherever the user is: a notification with the payload's
 *   title and text, a Download button when the job is done and an Open
 *   button, or nothing;
 * - ``stateLabel(state)`` names a state for the widgets, in the user's
 *   language (the server sends one payload to many users).
 *
 * Options (every label is translated by the caller, in its own module):
 *   busType     the bus notification type (required)
 *   event       the env.bus event the payloads are handed on to (required)
 *   jobKey      payload => key of the job in ``state.jobs``
 *   stateLabels () => {state: label}, what differs from Queued, Running,
 *               Done, Failed
 *   notify      (payload, services) => null or {title, message, className,
 *               sticky, download, open} at the end of a job; ``download``:
 *               async () => the action to run; ``open``: {name, action}
 *
 * Payloads come from the server, on the user's own bus channel or their
 * group's; their texts are shown as text (t-esc, plain notification
 * strings), never as markup.
 */
export function jobProgressService({
    busType,
    event,
    jobKey = (payload) => payload.id,
    stateLabels = () => ({}),
    notify = null,
}) {
    return {
        dependencies: ["bus_service", "notification", "orm", "action"],
        start(env, services) {
            const state = reactive({ jobs: {} });

            function showEnd(payload) {
                const end = notify && notify(payload, services);
                if (!end) {
                    return;
                }
                const buttons = [];
                if (end.download) {
                    buttons.push({
                        name: _t("Download"),
                        icon: "fa-download",
                        primary: true,
                        onClick: async () => {
                            close();
                            await services.action.doAction(await end.download());
                        },
                    });
                }
                if (end.open) {
                    buttons.push({
                        name: end.open.name,
                        onClick: () => {
                            close();
                            services.action.doAction(end.open.action);
                        },
                    });
                }
                const close = services.notification.add(end.message, {
                    title: end.title,
                    type: payload.state === "done" ? "success" : "danger",
                    sticky: end.sticky ?? true,
                    className: end.className,
                    buttons,
                });
            }

            /** One payload, from the bus. */
            function receive(payload) {
                state.jobs[jobKey(payload)] = payload;
                env.bus.trigger(event, payload);
                if (payload.final) {
                    showEnd(payload);
                }
            }

            services.bus_service.subscribe(busType, receive);
            services.bus_service.start();
            return {
                event,
                state,
                /** The label of a job's state, for the widgets. */
                stateLabel(jobState) {
                    const labels = {
                        queued: _t("Queued"),
                        running: _t("Running"),
                        done: _t("Done"),
                        failed: _t("Failed"),
                        ...stateLabels(),
                    };
                    return labels[jobState] || jobState;
                },
            };
        },
    };
}
