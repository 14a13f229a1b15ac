import { registry } from "@web/core/registry";
import { SelectionField, selectionField } from "@web/views/fields/selection/selection_field";

/**
 * "Encrypted" / "Plaintext (legacy)" as a badge with Odoo's icon font (an
 * emoji lock shows as a box without an emoji font), never cut.
 */
export class EncryptionBadgeField extends SelectionField {
    static template = "db_backup_suite.EncryptionBadgeField";

    get icon() {
        return this.props.record.data[this.props.name] === "encrypted" ? "fa-lock" : "fa-unlock";
    }

    get badgeClass() {
        return this.props.record.data[this.props.name] === "encrypted"
            ? "text-bg-success"
            : "text-bg-warning";
    }
}

registry.category("fields").add("db_backup_encryption", {
    ...selectionField,
    component: EncryptionBadgeField,
    listViewWidth: [130],
});
