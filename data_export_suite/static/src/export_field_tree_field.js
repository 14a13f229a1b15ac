import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { standardFieldProps } from "@web/views/fields/standard_field_props";
import { Component, onWillStart, onWillUpdateProps, useState } from "@odoo/owl";

function parsePaths(text) {
    const seen = [];
    for (const raw of (text || "").replace(/\n/g, ",").split(",")) {
        const path = raw.trim();
        if (path && !seen.includes(path)) {
            seen.push(path);
        }
    }
    return seen;
}

/** One field of the tree; relations unfold into their own fields. */
export class ExportFieldNode extends Component {
    static template = "data_export_suite.ExportFieldNode";
    static props = ["item", "tree", "depth"];

    setup() {
        // Observe the tree's state here too: a node re-renders when it unfolds.
        this.treeState = useState(this.props.tree.state);
    }

    get children() {
        return this.props.tree.children(this.props.item.id);
    }

    get isOpen() {
        return this.treeState.open[this.props.item.id];
    }

    get isChosen() {
        // (the tree's value: the record is reactive, the node re-renders)
        return this.props.tree.paths.includes(this.props.item.id);
    }
}
ExportFieldNode.components = { ExportFieldNode };

/**
 * The columns of an export, chosen like in Odoo's own export dialog: the
 * fields the user may export on the left (searchable, relations
 * expandable), the chosen columns in order on the right. The value is
 * the newline-separated list of field paths the server checks again.
 */
export class ExportFieldTreeField extends Component {
    static template = "data_export_suite.ExportFieldTreeField";
    static components = { ExportFieldNode };
    static props = { ...standardFieldProps };

    setup() {
        this.orm = useService("orm");
        this.state = useState({
            roots: [],
            childrenOf: {},
            open: {},
            labels: {},
            search: "",
            loading: false,
        });
        this.model = null;
        onWillStart(() => this.load(this.props));
        onWillUpdateProps((next) => this.load(next));
    }

    get paths() {
        return parsePaths(this.props.record.data[this.props.name]);
    }

    get modelName() {
        return this.props.record.data.model_name;
    }

    async load(props) {
        const model = props.record.data.model_name;
        const paths = parsePaths(props.record.data[props.name]);
        if (model !== this.model) {
            this.model = model;
            Object.assign(this.state, { roots: [], childrenOf: {}, open: {}, labels: {} });
            if (model && !props.readonly) {
                this.state.roots = await this.fetch(model, "", "");
            }
        }
        const missing = paths.filter((path) => !(path in this.state.labels));
        if (model && missing.length) {
            let labels = {};
            try {
                labels = await this.orm.silent.call("data.export.wizard", "get_column_labels", [
                    model,
                    missing,
                ]);
            } catch {
                // e.g. a model since uninstalled: the technical paths stay
                labels = Object.fromEntries(missing.map((path) => [path, path]));
            }
            Object.assign(this.state.labels, labels);
        }
    }

    fetch(model, prefix, parentLabel) {
        return this.orm.call("data.export.wizard", "get_export_fields", [
            model,
            prefix,
            parentLabel,
        ]);
    }

    children(path) {
        return this.filter(this.state.childrenOf[path] || []);
    }

    get roots() {
        return this.filter(this.state.roots);
    }

    /** Items matching the search, or having an open descendant that does. */
    filter(items) {
        const term = this.state.search.trim().toLowerCase();
        if (!term) {
            return items;
        }
        const matches = (item) =>
            item.string.toLowerCase().includes(term) ||
            (this.env.debug && item.id.toLowerCase().includes(term)) ||
            (this.state.childrenOf[item.id] || []).some(matches);
        return items.filter(matches);
    }

    async toggle(item) {
        if (this.state.open[item.id]) {
            this.state.open[item.id] = false;
            return;
        }
        if (!this.state.childrenOf[item.id]) {
            this.state.childrenOf[item.id] = await this.fetch(
                this.modelName,
                item.id,
                item.string
            );
        }
        this.state.open[item.id] = true;
    }

    setPaths(paths) {
        this.props.record.update({ [this.props.name]: paths.join("\n") });
    }

    add(item) {
        if (this.props.readonly || this.paths.includes(item.id)) {
            return;
        }
        this.state.labels[item.id] = item.string;
        this.setPaths([...this.paths, item.id]);
    }

    remove(path) {
        this.setPaths(this.paths.filter((p) => p !== path));
    }

    move(path, offset) {
        const paths = [...this.paths];
        const index = paths.indexOf(path);
        const target = index + offset;
        if (index < 0 || target < 0 || target >= paths.length) {
            return;
        }
        [paths[index], paths[target]] = [paths[target], paths[index]];
        this.setPaths(paths);
    }

    clear() {
        this.setPaths(["id"]);
    }

    label(path) {
        return this.state.labels[path] || path;
    }

    get searchPlaceholder() {
        return _t("Search fields");
    }
}

registry.category("fields").add("data_export_field_tree", {
    component: ExportFieldTreeField,
    supportedTypes: ["text", "char"],
});
