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

/**
 * A Privacy Officer's main job, from the home menu: open a verified access
 * request, generate its export package with a password (the suite's
 * strength meter judges it as it is typed), follow the job in the dialog
 * until "Package ready" with its Download button and the "your package is
 * ready" notification, then find the result on the request's form.
 */
registry.category("web_tour.tours").add("gdpr_dsr_officer_package_tour", {
    url: "/odoo",
    steps: () => [
        stepUtils.showAppsMenuItem(),
        {
            content: "Open Compliance",
            trigger: '.o_app[data-menu-xmlid="gdpr_dsr.dsr_compliance_menu"]',
            run: "click",
        },
        {
            content: "Open the verified request",
            trigger: ".o_list_view .o_data_row:contains(package.tour@example.com) td.o_data_cell",
            run: "click",
        },
        {
            content: "Generate its export package",
            trigger: ".o_form_view button[name=action_open_package_wizard]",
            run: "click",
        },
        {
            content: "The dialog has a real title",
            trigger: ".modal .modal-title:contains(Export Package)",
        },
        {
            content: "Type a guessable password",
            trigger: ".modal .o_field_widget[name=password] input",
            run: "edit Password123!",
        },
        {
            content: "The meter says why it is refused",
            trigger: ".modal .o_audit_password_verdict.text-danger:contains(too easy to guess)",
        },
        {
            content: "Type several unrelated words",
            trigger: ".modal .o_field_widget[name=password] input",
            run: "edit correct horse battery staple",
        },
        {
            content: "The meter accepts it",
            trigger: ".modal .o_audit_password_verdict.text-success",
        },
        {
            content: "Confirm it",
            trigger: ".modal .o_field_widget[name=password_confirm] input",
            run: "edit correct horse battery staple",
        },
        {
            content: "Generate",
            trigger: ".modal-footer button[name=action_generate]",
            run: "click",
        },
        {
            content: "The dialog follows the job",
            trigger: ".modal .o_dsr_package_progress",
        },
        {
            content: "The job reaches the end: Package ready",
            trigger: ".modal .o_dsr_package_progress[data-state=done] .o_job_progress_state:contains(Package ready)",
            timeout: 60000,
        },
        {
            content: "with its Download button",
            trigger: ".modal-footer button[name=action_download]",
        },
        {
            content: "and the notification wherever the officer is",
            trigger: ".o_notification:contains(Your package is ready):has(button:contains(Download))",
        },
        {
            content: "Close the dialog",
            trigger: ".modal-footer button:contains(Close)",
            run: "click",
        },
        {
            content: "The request shows the package ready and its download",
            trigger:
                "body:not(:has(.modal)) .o_form_view:has(.o_dsr_package_progress[data-state=done]) button[name=action_download_package]",
        },
    ],
});
