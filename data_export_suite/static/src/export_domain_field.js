import { registry } from "@web/core/registry";
import { DomainSelector } from "@web/core/domain_selector/domain_selector";
import { DomainField, domainField } from "@web/views/fields/domain/domain_field";

/** Odoo's domain editor without its own "Include archived" box: the
 * export wizard has one, which also covers related records. */
class ExportDomainSelector extends DomainSelector {
    getShowArchivedCheckBox() {
        return false;
    }
}

export class ExportDomainField extends DomainField {
    static components = { ...DomainField.components, DomainSelector: ExportDomainSelector };
}

registry.category("fields").add("data_export_domain", {
    ...domainField,
    component: ExportDomainField,
});
