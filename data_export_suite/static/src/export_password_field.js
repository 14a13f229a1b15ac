import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { useDebounced } from "@web/core/utils/timing";
import { CharField, charField } from "@web/views/fields/char/char_field";
import { useEffect, useState } from "@odoo/owl";

/**
 * A password input with a strength meter. The strength is the server's
 * verdict (audit_export's password policy: length and zxcvbn), the very
 * rule the export applies: what the meter accepts, the export accepts.
 */
export class ExportPasswordField extends CharField {
    static template = "data_export_suite.ExportPasswordField";

    setup() {
        super.setup();
        this.orm = useService("orm");
        this.meter = useState({ score: null, label: "", message: "", ok: false });
        this.check = useDebounced(async (value) => {
            if (!value) {
                Object.assign(this.meter, { score: null, label: "", message: "", ok: false });
                return;
            }
            const verdict = await this.orm.call(
                "data.export.wizard",
                "password_strength",
                [value]
            );
            Object.assign(this.meter, verdict);
        }, 300);
        useEffect(
            (el) => {
                if (!el) {
                    return;
                }
                const onInput = () => this.check(el.value);
                el.addEventListener("input", onInput);
                return () => el.removeEventListener("input", onInput);
            },
            () => [this.input.el]
        );
    }

    get meterClass() {
        if (this.meter.ok) {
            return "bg-success";
        }
        return this.meter.score >= 3 ? "bg-warning" : "bg-danger";
    }

    get meterWidth() {
        return `${((this.meter.score || 0) + 1) * 20}%`;
    }
}

registry.category("fields").add("data_export_password_meter", {
    ...charField,
    component: ExportPasswordField,
    extractProps: (fieldInfo, dynamicInfo) => ({
        ...charField.extractProps(fieldInfo, dynamicInfo),
        isPassword: true,
    }),
});
