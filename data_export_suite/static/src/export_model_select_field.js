import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { SelectMenu } from "@web/core/select_menu/select_menu";
import { standardFieldProps } from "@web/views/fields/standard_field_props";
import { Component, onWillStart, useState } from "@odoo/owl";

/** A searchable picker of the business models the user may export. */
export class ExportModelSelectField extends Component {
    static template = "data_export_suite.ExportModelSelectField";
    static components = { SelectMenu };
    static props = { ...standardFieldProps };

    setup() {
        this.orm = useService("orm");
        this.state = useState({ choices: [] });
        onWillStart(async () => {
            this.state.choices = await this.orm.call(
                "data.export.wizard",
                "get_export_models",
                []
            );
        });
    }

    get value() {
        return this.props.record.data[this.props.name];
    }

    get label() {
        const selection = this.props.record.fields[this.props.name].selection || [];
        const item = selection.find(([value]) => value === this.value);
        return item ? item[1] : this.value || "";
    }

    get choices() {
        const choices = this.state.choices;
        if (this.value && !choices.some((choice) => choice.value === this.value)) {
            return [{ value: this.value, label: this.label }, ...choices];
        }
        return choices;
    }

    get placeholder() {
        return _t("Choose what to export (contacts, invoices...)");
    }

    onSelect(value) {
        this.props.record.update({ [this.props.name]: value });
    }
}

registry.category("fields").add("data_export_model_select", {
    component: ExportModelSelectField,
    supportedTypes: ["selection"],
});
