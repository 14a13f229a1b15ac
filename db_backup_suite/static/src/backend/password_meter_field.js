import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { useDebounced } from "@web/core/utils/timing";
import { CharField, charField } from "@web/views/fields/char/char_field";
import { useEffect, useState } from "@odoo/owl";

/**
 * The download password with a strength meter: the server's verdict
 * (audit_export's password policy, the one every protected file of the
 * suite uses), so what the meter accepts, the download accepts.
 */
export class BackupPasswordField extends CharField {
    static template = "db_backup_suite.BackupPasswordField";

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
                "db.backup.download.wizard",
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

registry.category("fields").add("db_backup_password_meter", {
    ...charField,
    component: BackupPasswordField,
    extractProps: (fieldInfo, dynamicInfo) => ({
        ...charField.extractProps(fieldInfo, dynamicInfo),
        isPassword: true,
    }),
});
