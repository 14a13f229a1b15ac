/** @odoo-module */

import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

const DB_NAME_SELECTOR = ".modal .o_field_widget[name=database_name]";

/**
 * A Backup Operator, from the home menu, by clicking menus only: the
 * Database Backups app, Backup Now, and the page following the backup by
 * itself (bus) until it is done, without Refresh; then All Backups.
 */
registry.category("web_tour.tours").add("db_backup_suite_operator_tour", {
    url: "/odoo",
    steps: () => [
        ...stepUtils.goToAppSteps("db_backup_suite.db_backup_root_menu", "Open Database Backups"),
        {
            content: "The page has a proper title, no pager",
            trigger:
                ".o_control_panel:not(:has(.o_pager)) .o_last_breadcrumb_item:contains(Database Backups)",
        },
        {
            content: "No backup yet: nothing to follow",
            trigger: ".o_db_backup_dashboard:not(:has(.o_db_backup_live))",
        },
        {
            content: "Press Backup Now",
            trigger: "button.o_db_backup_now",
            run: "click",
        },
        {
            content: "Queued, shown at once",
            trigger: ".o_db_backup_live[data-state=queued]:contains(manual)",
        },
        {
            content: "The page reloaded in place: still one breadcrumb",
            trigger:
                ".o_control_panel .o_breadcrumb:not(:has(.breadcrumb-item)) .o_last_breadcrumb_item:contains(Database Backups)",
        },
        {
            content: "The backup ends and the page follows (no Refresh pressed)",
            trigger: ".o_db_backup_live[data-state=done] .progress-bar.bg-success",
            timeout: 60000,
        },
        {
            content: "The list shows it done, encrypted",
            trigger:
                ".o_db_backup_runs .o_data_row:contains(manual):contains(Done) .o_db_backup_encryption .fa-lock",
        },
        {
            content: "Open All Backups",
            trigger: 'a[data-menu-xmlid="db_backup_suite.db_backup_run_menu"]',
            run: "click",
        },
        {
            content: "The backup is listed, encrypted, the badge whole",
            trigger:
                ".o_list_view .o_data_row:contains(Done) .o_db_backup_encryption:contains(Encrypted) .fa-lock",
        },
    ],
});

/**
 * A Backup Restore user, from the home menu, by clicking menus only: All
 * Backups, Restore on the stored backup; the name gate enables the button
 * as the name is typed (no click elsewhere); then a sandbox, followed live
 * until it is ready; "Open" asks first (same host) and is cancelled; the
 * Sandboxes list shows it ready; Download with a password shows the
 * suite's password policy as a strength meter.
 */
registry.category("web_tour.tours").add("db_backup_suite_restore_tour", {
    url: "/odoo",
    steps: () => [
        ...stepUtils.goToAppSteps("db_backup_suite.db_backup_root_menu", "Open Database Backups"),
        {
            content: "Open All Backups",
            trigger: 'a[data-menu-xmlid="db_backup_suite.db_backup_run_menu"]',
            run: "click",
        },
        {
            content: "Restore the stored backup",
            trigger: ".o_list_view .o_data_row:contains(Done) button[name=action_open_restore_wizard]",
            run: "click",
        },
        {
            content: "The dialog has a real title",
            trigger: ".modal .modal-title:contains(Restore a Backup)",
        },
        {
            content: "It summarises the data in the archive",
            trigger: ".modal .o_db_backup_data_summary:contains(Contact):contains(In the archive)",
        },
        {
            content: "The Odoo version reads as a match",
            trigger: ".modal .o_field_widget[name=version_summary]:contains(like this server)",
        },
        {
            content: "Only the disabled button is there",
            trigger: ".modal button.o_db_backup_restore_disabled:disabled",
        },
        {
            content: "Type the database name (the field keeps the focus)",
            trigger: ".modal .o_db_backup_confirm_name input",
            async run(helpers) {
                const name = document.querySelector(DB_NAME_SELECTOR).textContent.trim();
                await helpers.edit(name);
            },
        },
        {
            content: "Restore Database enables while typing",
            trigger:
                ".modal:has(.o_db_backup_confirm_name input:focus) button.o_db_backup_restore_confirm:enabled",
        },
        {
            content: "Restore to a sandbox instead",
            trigger: ".modal .o_field_widget[name=target] input[data-value=sandbox]",
            run: "click",
        },
        {
            content: "This database is not touched",
            trigger: ".modal .alert-info:contains(This database is not touched)",
        },
        {
            content: "Create the sandbox",
            trigger: ".modal button.o_db_backup_sandbox_confirm:enabled",
            run: "click",
        },
        {
            content: "The dialog follows the restore",
            trigger: ".modal .o_db_backup_live:contains(Sandbox from)",
        },
        {
            content: "No word of a swap or of disconnected users",
            trigger: ".modal:not(:contains(disconnected)):not(:contains(swap)) .o_db_backup_live",
        },
        {
            content: "The sandbox is ready, shown without a reload",
            trigger: ".modal .o_db_backup_live[data-state=done]",
            timeout: 60000,
        },
        {
            content: "Open it",
            trigger: ".modal button.o_db_backup_open_sandbox",
            run: "click",
        },
        {
            content: "Opening on this address says the tab switches database",
            trigger: ".modal-body:contains(This tab will switch to the sandbox database)",
        },
        {
            content: "Stay here",
            trigger: ".modal-footer button:contains(Cancel)",
            run: "click",
        },
        {
            content: "Close the restore dialog",
            trigger: ".modal:has(.o_db_backup_live) .modal-footer button:contains(Close)",
            run: "click",
        },
        {
            content: "Open Sandboxes",
            trigger: 'a[data-menu-xmlid="db_backup_suite.db_backup_sandbox_menu"]',
            run: "click",
        },
        {
            content: "The sandbox is listed, ready",
            trigger: ".o_list_view .o_data_row:contains(-sandbox-):contains(Ready)",
        },
        {
            content: "Back to All Backups",
            trigger: 'a[data-menu-xmlid="db_backup_suite.db_backup_run_menu"]',
            run: "click",
        },
        {
            content: "Open the backup",
            trigger: ".o_list_view .o_data_row:contains(Done) td.o_data_cell[name=name]",
            run: "click",
        },
        {
            content: "Download it with a password",
            trigger: ".o_form_view button[name=action_open_download_wizard]",
            run: "click",
        },
        {
            content: "The dialog has a real title and names the backup",
            trigger:
                ".modal:has(.modal-title:contains(Download with a Password)) .o_form_label:contains(Backup)",
        },
        {
            content: "Type a guessable password",
            trigger: ".modal .o_db_backup_download_password input",
            run: "edit Password123!",
        },
        {
            content: "The meter says why it is refused",
            trigger: ".modal .o_audit_password_verdict.text-danger:contains(too easy to guess)",
        },
        {
            content: "Type several unrelated words",
            trigger: ".modal .o_db_backup_download_password input",
            run: "edit correct horse battery staple",
        },
        {
            content: "The meter accepts it",
            trigger: ".modal .o_audit_password_verdict.text-success",
        },
        {
            content: "Leave without downloading",
            trigger: ".modal-footer button:contains(Cancel)",
            run: "click",
        },
        {
            content: "Back on the backup",
            trigger: "body:not(:has(.modal)) .o_form_view",
        },
    ],
});
