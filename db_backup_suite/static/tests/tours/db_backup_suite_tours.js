/** @odoo-module */

import { registry } from "@web/core/registry";

// An operator presses Backup Now on the Database Backups page and sees the
// new "manual" row, queued for the background job.
registry.category("web_tour.tours").add("db_backup_suite_backup_now", {
    steps: () => [
        {
            content: "The page shows the status panel",
            trigger: ".o_form_view .o_field_widget[name=problem_count]:contains(0)",
        },
        {
            content: "Press Backup Now",
            trigger: "button.o_db_backup_now",
            run: "click",
        },
        {
            content: "A queued manual backup is listed",
            trigger: ".o_db_backup_runs .o_data_row:contains(manual):contains(Queued)",
        },
    ],
});

// A restore user opens the wizard: Restore Database stays disabled on a
// wrong name and becomes available on the exact database name.
registry.category("web_tour.tours").add("db_backup_suite_restore_gate", {
    steps: () => [
        {
            content: "Open the restore wizard of the stored backup",
            trigger: ".o_db_backup_runs .o_data_row:contains(_manual_20260101T) button.o_db_backup_restore",
            run: "click",
        },
        {
            content: "The wizard shows the archive",
            trigger: ".modal .o_field_widget[name=archive_name]:contains(_manual_)",
        },
        {
            content: "Only the disabled button is there",
            trigger: ".modal button.o_db_backup_restore_disabled:disabled",
        },
        {
            content: "Type a wrong name",
            trigger: ".modal .o_db_backup_confirm_name input",
            run: "edit not-the-database",
        },
        {
            content: "Leave the field (onchange)",
            trigger: ".modal .o_field_widget[name=archive_size]",
            run: "click",
        },
        {
            content: "Still disabled, no real button",
            trigger: ".modal:not(:has(button.o_db_backup_restore_confirm)) button.o_db_backup_restore_disabled:disabled",
        },
        {
            content: "Type the exact database name",
            trigger: ".modal .o_db_backup_confirm_name input",
            async run(helpers) {
                const name = document
                    .querySelector(".modal .o_field_widget[name=database_name]")
                    .textContent.trim();
                await helpers.edit(name);
            },
        },
        {
            content: "Leave the field (onchange)",
            trigger: ".modal .o_field_widget[name=archive_size]",
            run: "click",
        },
        {
            content: "Restore Database is now available",
            trigger: ".modal button.o_db_backup_restore_confirm:enabled",
        },
        {
            content: "Close without restoring",
            trigger: ".modal .modal-footer button.btn-secondary",
            run: "click",
        },
        {
            content: "Back on the page",
            trigger: "body:not(:has(.modal))",
        },
    ],
});

// An archive of ANOTHER database: the FOREIGN warning names both databases,
// and the restore stays disabled with this database's name alone; only the
// separate confirmation (tick + the source database's name) enables it.
registry.category("web_tour.tours").add("db_backup_suite_foreign_gate", {
    steps: () => [
        {
            content: "Open the restore wizard of the other database's archive",
            trigger: ".o_db_backup_runs .o_data_row:contains(h7otherdb) button.o_db_backup_restore",
            run: "click",
        },
        {
            content: "The archive is shown as FOREIGN, naming its database",
            trigger: ".modal .o_db_backup_foreign:contains(FOREIGN ARCHIVE):contains(h7otherdb)",
        },
        {
            content: "Type this database's name",
            trigger: ".modal .o_db_backup_confirm_name input",
            async run(helpers) {
                const name = document
                    .querySelector(".modal .o_field_widget[name=database_name]")
                    .textContent.trim();
                await helpers.edit(name);
            },
        },
        {
            content: "Leave the field (onchange)",
            trigger: ".modal .o_field_widget[name=archive_size]",
            run: "click",
        },
        {
            content: "The name alone does not enable the restore",
            trigger: ".modal:not(:has(button.o_db_backup_restore_confirm)) button.o_db_backup_restore_disabled:disabled",
        },
        {
            content: "Tick the foreign-archive confirmation",
            trigger: ".modal .o_db_backup_confirm_foreign input",
            run: "click",
        },
        {
            content: "Type the source database's name",
            trigger: ".modal .o_db_backup_confirm_foreign_name input",
            run: "edit h7otherdb",
        },
        {
            content: "Leave the field (onchange)",
            trigger: ".modal .o_field_widget[name=archive_size]",
            run: "click",
        },
        {
            content: "Restore Database is now available",
            trigger: ".modal button.o_db_backup_restore_confirm:enabled",
        },
        {
            content: "Close without restoring",
            trigger: ".modal .modal-footer button.btn-secondary",
            run: "click",
        },
        {
            content: "Back on the page",
            trigger: "body:not(:has(.modal))",
        },
    ],
});
