/** @odoo-module */

import { registry } from "@web/core/registry";

// An auditor (no administrator rights) opens the Audit app, filters the
// failures, groups them by action, opens one event and starts the export.
registry.category("web_tour.tours").add("audit_export_auditor_tour", {
    steps: () => [
        {
            content: "Open the apps menu",
            trigger: ".o_navbar_apps_menu button",
            run: "click",
        },
        {
            content: "General Settings is not offered to an auditor",
            trigger: ".o_app[data-menu-xmlid='audit_export.audit_root_menu']",
        },
        {
            content: "No Settings app in the menu",
            trigger: ".o-dropdown--menu:not(:has(.o_app[data-menu-xmlid='base.menu_administration']))",
        },
        {
            content: "Open the Audit app",
            trigger: ".o_app[data-menu-xmlid='audit_export.audit_root_menu']",
            run: "click",
        },
        {
            content: "The log lists the events",
            trigger: ".o_list_view .o_data_row:contains(tour-denied)",
        },
        {
            content: "Open the search panel",
            trigger: ".o_searchview_dropdown_toggler",
            run: "click",
        },
        {
            content: "Filter the failures",
            trigger: ".o_filter_menu .o-dropdown-item:contains(Failures)",
            run: "click",
        },
        {
            content: "Group by action",
            trigger: ".o_group_by_menu .o-dropdown-item:contains(Action)",
            run: "click",
        },
        {
            content: "One group: Download",
            trigger: ".o_list_view .o_group_header:contains(Download)",
        },
        {
            content: "Only failures are listed",
            trigger: ".o_list_view:not(:has(.o_group_header:contains(Backup)))",
        },
        {
            content: "Open the group",
            trigger: ".o_list_view .o_group_header:contains(Download)",
            run: "click",
        },
        {
            content: "Open the failed download",
            trigger: ".o_list_view .o_data_row:contains(tour-denied) td[name=res_name]",
            run: "click",
        },
        {
            content: "The form shows the details of the event",
            trigger: ".o_form_view .o_field_widget[name=details_text]:contains(tour.zip)",
        },
        {
            content: "and its place in the chain",
            trigger: ".o_form_view .o_notebook .nav-link:contains(Tamper evidence)",
            run: "click",
        },
        {
            content: "The digest is shown",
            trigger: ".o_form_view .o_field_widget[name=digest] span:not(:empty)",
        },
        {
            content: "Start the export from the menu",
            trigger: ".o_main_navbar .o_menu_sections [data-menu-xmlid='audit_export.audit_export_wizard_menu']",
            run: "click",
        },
        {
            content: "The export wizard opens",
            trigger: ".modal .o_form_view .o_field_widget[name=file_format]",
        },
        {
            content: "Choose JSON",
            trigger: ".modal .o_field_widget[name=file_format] input[data-value=json]",
            run: "click",
        },
        {
            content: "The CSV delimiter is hidden for JSON",
            trigger: ".modal .o_form_view:not(:has(.o_field_widget[name=delimiter]))",
        },
        {
            content: "Close the wizard",
            trigger: ".modal .modal-footer button:contains(Cancel)",
            run: "click",
        },
        {
            content: "Back on the log",
            trigger: "body:not(:has(.modal)) .o_form_view, body:not(:has(.modal)) .o_list_view",
        },
    ],
});
