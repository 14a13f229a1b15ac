/** @odoo-module */

import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

/**
 * An Auditor, from the home menu, by clicking menus only: the Audit app
 * (no Compliance nor Database Backups app), the audit log with its Export
 * Audit Log and Verify Integrity buttons, Export Jobs (every user's), and
 * the register of data subject requests, read-only.
 */
registry.category("web_tour.tours").add("gdpr_dsr_auditor_tour", {
    url: "/odoo",
    steps: () => [
        stepUtils.showAppsMenuItem(),
        {
            content: "The auditor's apps: Audit, not Compliance nor Database Backups",
            trigger:
                'body:has(.o_app[data-menu-xmlid="audit_export.audit_root_menu"])' +
                ':not(:has(.o_app[data-menu-xmlid="gdpr_dsr.dsr_compliance_menu"]))' +
                ':not(:has(.o_app[data-menu-xmlid="db_backup_suite.db_backup_root_menu"]))',
        },
        {
            content: "Open the Audit app",
            trigger: '.o_app[data-menu-xmlid="audit_export.audit_root_menu"]',
            run: "click",
        },
        {
            content: "The audit log, with its export and verification",
            trigger:
                ".o_list_view:has(button.o_audit_export_log):has(button[name=action_verify_integrity]) .o_data_row",
        },
        {
            content: "Export Audit Log from the list",
            trigger: "button.o_audit_export_log",
            run: "click",
        },
        {
            content: "The dialog has a real title",
            trigger: ".modal .modal-title:contains(Export Audit Log)",
        },
        {
            content: "Close it",
            trigger: ".modal-footer button:contains(Cancel)",
            run: "click",
        },
        {
            content: "Open Export Jobs",
            trigger: 'a[data-menu-xmlid="data_export_suite.data_export_job_audit_menu"]',
            run: "click",
        },
        {
            content: "Another user's export is listed",
            trigger: ".o_list_view .o_data_row:contains(Audited export)",
        },
        {
            content: "Open the data subject requests",
            trigger: 'a[data-menu-xmlid="gdpr_dsr.dsr_request_audit_menu"]',
            run: "click",
        },
        {
            content: "The register lists the request",
            trigger: ".o_list_view .o_data_row:contains(auditor.tour@example.com)",
        },
        {
            content: "Read-only: no New button",
            trigger: "body:not(:has(.o_list_button_add))",
        },
        {
            content: "Open the request",
            trigger: ".o_list_view .o_data_row:contains(auditor.tour@example.com) td.o_data_cell",
            run: "click",
        },
        {
            content: "Read-only: no officer's button, no input",
            trigger:
                ".o_form_view .o_field_widget[name=subject_email]:contains(auditor.tour@example.com):not(:has(input))",
        },
        {
            trigger:
                ".o_form_view:not(:has(button[name=action_verify])):not(:has(button[name=action_discover])):not(:has(.o_form_button_save))",
        },
    ],
});

/**
 * A Privacy Officer, from the home menu, by clicking menus only: the
 * Compliance app (no Audit app), the register, a request with the
 * officer's buttons.
 */
registry.category("web_tour.tours").add("gdpr_dsr_officer_tour", {
    url: "/odoo",
    steps: () => [
        stepUtils.showAppsMenuItem(),
        {
            content: "The officer's apps: Compliance, not Audit",
            trigger:
                'body:has(.o_app[data-menu-xmlid="gdpr_dsr.dsr_compliance_menu"])' +
                ':not(:has(.o_app[data-menu-xmlid="audit_export.audit_root_menu"]))',
        },
        {
            content: "Open Compliance",
            trigger: '.o_app[data-menu-xmlid="gdpr_dsr.dsr_compliance_menu"]',
            run: "click",
        },
        {
            content: "The register of data subject requests",
            trigger: ".o_breadcrumb:contains(Data Subject Requests)",
        },
        {
            content: "Open the request",
            trigger: ".o_list_view .o_data_row:contains(officer.tour@example.com) td.o_data_cell",
            run: "click",
        },
        {
            content: "The officer works on it: verification comes next",
            trigger: ".o_form_view:has(button[name=action_verify]) .o_field_widget[name=name]:contains(DSR/)",
        },
        {
            content: "It is the request opened, its details editable",
            trigger: ".o_form_view .o_field_widget[name=subject_email] input",
            run() {
                const value = this.anchor.value;
                if (value !== "officer.tour@example.com") {
                    throw new Error(`another request is open: ${value}`);
                }
            },
        },
    ],
});
