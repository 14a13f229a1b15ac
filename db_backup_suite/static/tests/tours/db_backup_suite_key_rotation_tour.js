/** @odoo-module */

import { registry } from "@web/core/registry";

/**
 * A Settings administrator rotates the server key from the Settings screen:
 * the dialog lists what needs which key, Rotate key asks for confirmation,
 * then says what was sealed again.
 */
registry.category("web_tour.tours").add("db_backup_suite_key_rotation", {
    steps: () => [
        {
            content: "Open Rotate key from the Database Backups settings",
            trigger: "button.o_db_backup_rotate_key_button",
            run: "click",
        },
        {
            content: "The dialog shows which destination needs the old key",
            trigger:
                ".modal .o_db_backup_key_usage tr:contains(rot-a):contains(Rotation SFTP)",
        },
        {
            content: "Press Rotate key",
            trigger: ".modal button.o_db_backup_rotate_key",
            run: "click",
        },
        {
            content: "Confirm",
            trigger:
                ".modal:has(.modal-body:contains(Seal every destination)) .modal-footer .btn-primary",
            run: "click",
        },
        {
            content: "The result names the new key and the destinations",
            trigger:
                ".modal .o_db_backup_rotation_result:contains(now uses key rot-b):contains(Rotation SFTP)",
        },
    ],
});
