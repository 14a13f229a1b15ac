/** @odoo-module */

import { registry } from "@web/core/registry";

// A Privacy Officer registers a CCPA erasure request from the register: the
// reference comes from the sequence and the 45-day deadline is computed.
registry.category("web_tour.tours").add("gdpr_dsr_register_request", {
    steps: () => [
        {
            content: "Create a request from the register",
            trigger: ".o_list_button_add",
            run: "click",
        },
        {
            content: "Type the subject's email",
            trigger: ".o_field_widget[name=subject_email] input",
            run: "edit tour.subject@example.com",
        },
        {
            content: "Erasure request",
            trigger: ".o_field_widget[name=request_type] select",
            run: 'select "erasure"',
        },
        {
            content: "Under the CCPA",
            trigger: ".o_field_widget[name=regime] select",
            run: 'select "ccpa"',
        },
        {
            content: "Save",
            trigger: ".o_form_button_save",
            run: "click",
        },
        {
            content: "The reference comes from the sequence",
            trigger: ".o_form_saved .o_field_widget[name=name]:contains(DSR/)",
        },
        {
            content: "The request is received, verification comes next",
            trigger: "button[name=action_verify]",
        },
    ],
});
