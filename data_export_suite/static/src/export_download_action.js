import { browser } from "@web/core/browser/browser";
import { registry } from "@web/core/registry";

/**
 * Download a finished export (its single-use link), then show it in the
 * export list when that list is under the dialog: the new job appears
 * without pressing Refresh.
 */
async function downloadExport(env, action) {
    browser.location.assign(action.params.url);
    const controller = env.services.action.currentController;
    if (controller?.action?.res_model === "data.export.job" && controller.view?.type === "list") {
        await env.services.action.restore(controller.jsId);
    }
}

registry.category("actions").add("data_export_suite.download", downloadExport);
