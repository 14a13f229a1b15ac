import { registry } from "@web/core/registry";
import { CharField, charField } from "@web/views/fields/char/char_field";
import { useEffect } from "@odoo/owl";

/**
 * A text field that hands every keystroke to the record (a plain field
 * does it when the input loses focus): the restore dialog's gates (the
 * database name, the source database's name) enable their button as the
 * name is typed. The server checks every gate again when the restore
 * starts.
 */
export class GateCharField extends CharField {
    setup() {
        super.setup();
        useEffect(
            (input) => {
                if (!input) {
                    return;
                }
                // useInputField marks the field dirty on "input" and commits
                // it on "change": a change after each input commits at once.
                const commit = () => input.dispatchEvent(new Event("change"));
                input.addEventListener("input", commit);
                return () => input.removeEventListener("input", commit);
            },
            () => [this.input.el]
        );
    }
}

registry.category("fields").add("db_backup_gate_char", {
    ...charField,
    component: GateCharField,
});
