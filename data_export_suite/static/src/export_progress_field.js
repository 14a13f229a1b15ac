import { useBus } from "@web/core/utils/hooks";
import { registry } from "@web/core/registry";
import {
    ProgressBarField,
    progressBarField,
} from "@web/views/fields/progress_bar/progress_bar_field";
import { useState } from "@odoo/owl";

/**
 * The records written of an export job, live: the bar moves with the
 * job's bus updates, and the record reloads when the job ends.
 */
export class ExportProgressField extends ProgressBarField {
    setup() {
        super.setup();
        this.live = useState({ done: null, total: null });
        useBus(this.env.bus, "DATA_EXPORT_JOB_UPDATE", ({ detail }) => {
            if (detail.id !== this.props.record.resId) {
                return;
            }
            this.live.done = detail.records_done;
            this.live.total = detail.records_total;
            if (detail.final || detail.state !== this.props.record.data.state) {
                this.props.record.load();
            }
        });
    }

    get currentValue() {
        if (this.live.done !== null && this.live.done >= (super.currentValue || 0)) {
            return this.live.done;
        }
        return super.currentValue;
    }

    get maxValue() {
        if (this.live.total) {
            return this.live.total;
        }
        return super.maxValue;
    }
}

registry.category("fields").add("data_export_progress", {
    ...progressBarField,
    component: ExportProgressField,
});
