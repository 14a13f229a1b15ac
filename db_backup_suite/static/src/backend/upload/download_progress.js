import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { standardWidgetProps } from "@web/views/widgets/standard_widget_props";
import { Component, onWillUnmount, useEffect, useState } from "@odoo/owl";

/**
 * A password download being prepared by its detached process: the bar
 * follows it (``download_status`` once a second, the opener's own wizard)
 * and, when the file is ready or the preparation failed, the record is
 * reloaded so the dialog offers "Save the file" (or the error).
 */
export class DownloadProgress extends Component {
    static template = "db_backup_suite.DownloadProgress";
    static props = standardWidgetProps;

    setup() {
        this.orm = useService("orm");
        this.state = useState({ status: null });
        this.timer = null;
        useEffect(
            (prepareState) => {
                if (prepareState === "running") {
                    this.poll();
                }
                return () => this.stop();
            },
            () => [this.props.record.data.prepare_state]
        );
        onWillUnmount(() => this.stop());
    }

    stop() {
        if (this.timer) {
            clearTimeout(this.timer);
            this.timer = null;
        }
    }

    get percent() {
        return this.state.status?.percent ?? this.props.record.data.prepare_progress ?? 0;
    }

    async poll() {
        this.stop();
        const record = this.props.record;
        let status;
        try {
            status = await this.orm.call(record.resModel, "download_status", [[record.resId]]);
        } catch {
            status = null;
        }
        this.state.status = status;
        if (status && status.state !== "running") {
            await record.load();
            return;
        }
        this.timer = setTimeout(() => this.poll(), 1000);
    }
}

registry.category("view_widgets").add("db_backup_download_progress", {
    component: DownloadProgress,
});
