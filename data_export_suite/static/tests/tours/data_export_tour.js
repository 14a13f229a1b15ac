import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

/**
 * An exporter, from the home menu, by clicking menus only: the Data Export
 * app, Export Data, a model picked by its name, two fields from the tree
 * (one of them a related record's), Export, and the "ready" notification.
 */
registry.category("web_tour.tours").add("data_export_suite_exporter_tour", {
    url: "/odoo",
    steps: () => [
        ...stepUtils.goToAppSteps(
            "data_export_suite.data_export_root_menu",
            "Open the Data Export app"
        ),
        {
            content: "The app opens on My Exports",
            trigger: ".o_breadcrumb:contains(My Exports)",
        },
        {
            content: "Open Export Data",
            trigger: 'a[data-menu-xmlid="data_export_suite.data_export_wizard_menu"]',
            run: "click",
        },
        {
            content: "The dialog has a real title",
            trigger: ".modal .modal-title:contains(Export Data)",
        },
        {
            content: "Pick what to export",
            trigger: ".modal .o_data_export_model_toggler",
            run: "click",
        },
        {
            content: "Search models by their name",
            trigger: ".o_select_menu_menu input.o_select_menu_sticky",
            run: "edit Contact",
        },
        {
            content: "No technical model is offered",
            trigger: ".o_select_menu_menu:not(:has(.o_select_menu_item:contains(ir.)))",
        },
        {
            content: "Choose Contact",
            trigger: ".o_select_menu_menu .o_select_menu_item:contains(Contact):first",
            run: "click",
        },
        {
            content: "Add the name",
            trigger: '.modal .o_data_export_node[data-path="name"] .o_data_export_add',
            run: "click",
        },
        {
            content: "Unfold the country",
            trigger: '.modal .o_data_export_node[data-path="country_id"] .o_data_export_expand',
            run: "click",
        },
        {
            content: "Add the country's code",
            trigger:
                '.modal .o_data_export_node[data-path="country_id.code"] .o_data_export_add',
            run: "click",
        },
        {
            content: "Both columns are chosen, with their labels",
            trigger:
                '.modal .o_data_export_column[data-path="country_id.code"]:contains(Country / Country Code)',
        },
        {
            trigger: '.modal .o_data_export_column[data-path="name"]',
        },
        {
            content: "The size estimate is shown",
            trigger: ".modal .o_field_widget[name=estimate_text]:contains(downloads at once)",
        },
        {
            content: "Export",
            trigger: '.modal-footer button[name="action_run"]',
            run: "click",
        },
        {
            content: "The file is ready",
            trigger: ".o_notification:contains(Your file is ready)",
        },
        {
            content: "The dialog closed",
            trigger: "body:not(:has(.modal .o_data_export_wizard))",
        },
        {
            content: "The export is listed in My Exports, ready",
            trigger: ".o_list_view .o_data_row:contains(Contact):contains(Ready)",
        },
    ],
});

/**
 * A background export seen from My Exports: its progress moves with the
 * job's updates (the bus delivers them in production; here the update is
 * handed to the page the way the bus service hands it over).
 */
registry.category("web_tour.tours").add("data_export_suite_progress_tour", {
    url: "/odoo",
    steps: () => [
        ...stepUtils.goToAppSteps(
            "data_export_suite.data_export_root_menu",
            "Open the Data Export app"
        ),
        {
            content: "The queued export shows 0 of 3 records",
            trigger: ".o_list_view .o_data_row:contains(Queued) .o_progress[aria-valuenow='0'][aria-valuemax='3']",
        },
        {
            content: "The job writes two records",
            trigger: ".o_list_view .o_data_row:contains(Queued)",
            async run() {
                const env = odoo.__WOWL_DEBUG__.root.env;
                const [job] = await env.services.orm.searchRead(
                    "data.export.job",
                    [["state", "=", "queued"]],
                    ["id", "name"]
                );
                env.bus.trigger("DATA_EXPORT_JOB_UPDATE", {
                    id: job.id,
                    name: job.name,
                    state: "queued",
                    records_done: 2,
                    records_total: 3,
                    progress: 66.7,
                });
            },
        },
        {
            content: "The bar follows without a reload",
            trigger: ".o_list_view .o_data_row:contains(Queued) .o_progress[aria-valuenow='2'][aria-valuemax='3']",
        },
    ],
});

/**
 * An auditor, from the home menu: Audit → Export Jobs lists every user's
 * exports (no "My Exports" filter), and a job shows its columns by label.
 */
registry.category("web_tour.tours").add("data_export_suite_auditor_tour", {
    url: "/odoo",
    steps: () => [
        ...stepUtils.goToAppSteps("audit_export.audit_root_menu", "Open the Audit app"),
        {
            content: "Open Export Jobs",
            trigger: 'a[data-menu-xmlid="data_export_suite.data_export_job_audit_menu"]',
            run: "click",
        },
        {
            content: "Every user's export is listed, no filter on the auditor's own",
            trigger: ".o_list_view .o_data_row:contains(Audited export)",
        },
        {
            content: "No filter on the auditor's own exports",
            trigger: ".o_searchview:not(:has(.o_facet_value))",
        },
        {
            content: "Open it",
            trigger: ".o_list_view .o_data_row:contains(Audited export) td[name=name]",
            run: "click",
        },
        {
            content: "Its columns, by label",
            trigger: ".o_form_view .o_data_export_column[data-path='country_id.code']:contains(Country / Country Code)",
        },
        {
            content: "Download is offered to the auditor",
            trigger: ".o_form_view .o_form_statusbar button[name=action_download]",
        },
    ],
});
