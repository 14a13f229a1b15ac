/** @odoo-module */

import { registry } from "@web/core/registry";

// An auditor verifies the log from the list, reads the result (and the
// no-keyring banner), then opens an event whose personal data were erased.
registry.category("web_tour.tours").add("audit_export_verify_tour", {
    steps: () => [
        {
            content: "The log lists the erased event",
            trigger: ".o_list_view .o_data_row:contains(erased under DSR/2026/0009)",
        },
        {
            content: "Verify the integrity from the list",
            trigger: "button[name=action_verify_integrity]",
            run: "click",
        },
        {
            content: "The result says the log is intact",
            trigger: ".modal .o_audit_verify_message:contains(Audit log intact)",
        },
        {
            content: "and that without a keyring SQL access could forge it",
            trigger: ".modal .o_audit_no_keyring:contains(only tamper-evident)",
        },
        {
            content: "Close the result",
            trigger: ".modal .modal-footer button:contains(Close)",
            run: "click",
        },
        {
            content: "Open the erased event",
            trigger:
                "body:not(:has(.modal)) .o_list_view .o_data_row:contains(erased under DSR/2026/0009) td[name=res_name]",
            run: "click",
        },
        {
            content: "The form says what was erased, under which request",
            trigger: ".o_form_view .o_audit_redacted:contains(erased under DSR/2026/0009)",
        },
        {
            content: "and that the event is signed with the database key",
            trigger: ".o_form_view .o_audit_unkeyed",
        },
    ],
});
