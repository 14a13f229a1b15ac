import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { useDebounced } from "@web/core/utils/timing";
import { CharField, charField } from "@web/views/fields/char/char_field";
import { useEffect, useState } from "@odoo/owl";

/**
 * The suite's one password input with a strength meter (data exports,
 * backup downloads, DSR packages). The strength is the server's verdict
 * (audit.password.policy: length and zxcvbn), the very rule the protected
 * file is checked against: what the meter accepts, the server accepts.
 */
export class AuditPasswordMeterField extends CharField {
    static template = "audit_export.PasswordMeterField";

    setup() {
        super.setup();
        this.orm = useService("orm");
        this.meter = useState({ score: null, label: "", message: "", ok: false });
        this.check = useDebounced(async (value) => {
            if (!value) {
                Object.assign(this.meter, { score: null, label: "", message: "", ok: false });
                return;
            }
            const verdict = await this.orm.silent.call(
                "audit.password.policy",
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

registry.category("fields").add("audit_password_meter", {
    ...charField,
    component: AuditPasswordMeterField,
    extractProps: (fieldInfo, dynamicInfo) => ({
        ...charField.extractProps(fieldInfo, dynamicInfo),
        isPassword: true,
    }),
});
