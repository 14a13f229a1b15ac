import { useBus, useService } from "@web/core/utils/hooks";
import { useDebounced } from "@web/core/utils/timing";
import { standardWidgetProps } from "@web/views/widgets/standard_widget_props";
import { Component, useState } from "@odoo/owl";

/**
 * A background job's progress card: the state (icon and badge), a title,
 * a progress bar, the current step (and counts while it works), then the
 * result or the error. Every text is given already translated.
 */
export class JobProgress extends Component {
    static template = "audit_export.JobProgress";
    static props = {
        // queued, running, done, failed (or another: shown as working);
        // nothing: no card
        state: { type: String, optional: true },
        label: { type: String, optional: true },
        title: { type: String, optional: true },
        progress: { type: Number, optional: true },
        detail: { type: String, optional: true },
        counts: { type: String, optional: true },
        error: { type: String, optional: true },
        // the caller's own class on the card (its tours select on it)
        className: { type: String, optional: true },
    };

    get ended() {
        return ["done", "failed"].includes(this.props.state);
    }

    get tone() {
        return { done: "success", failed: "danger" }[this.props.state] || "info";
    }

    get icon() {
        return {
            done: "fa-check-circle text-success",
            failed: "fa-exclamation-circle text-danger",
        }[this.props.state] || "fa-circle-o-notch fa-spin text-info";
    }

    get barClass() {
        return {
            done: "bg-success",
            failed: "bg-danger",
        }[this.props.state] || "progress-bar-striped progress-bar-animated";
    }

    get barWidth() {
        if (this.ended) {
            return 100;
        }
        // no estimate yet: a moving bar, not a stuck one
        const progress = this.props.progress || 0;
        return Math.max(Math.min(progress, 100), this.props.state === "running" ? 8 : 3);
    }
}

/**
 * A view widget following one job of a record live (``<widget name=.../>``
 * of a form): it shows what the record says of the job (computed by the
 * server when the record loads) and, between two loads, the bus updates
 * of the same job or of a newer one that takes its place (handed on by a
 * ``jobProgressService``, ``static jobService``). A change of state, a
 * newer job or the end reloads the record, so the rest of the form (the
 * buttons, the lists) follows; never over unsaved edits (the bus update
 * shows meanwhile).
 *
 * Subclasses say which job the record follows and how to read a payload
 * and the record into the card (``JobProgress`` props).
 */
export class JobProgressWidget extends Component {
    static template = "audit_export.JobProgressWidget";
    static components = { JobProgress };
    static props = standardWidgetProps;
    /** The name of the jobProgressService to follow. */
    static jobService = "";
    /** The class of the card, for styles and tours. */
    static cardClass = "";

    setup() {
        this.jobs = useService(this.constructor.jobService);
        this.live = useState({ payload: null });
        this.reload = useDebounced(async () => {
            if (await this.props.record.isDirty()) {
                return; // never lose what the user is typing: the payload shows
            }
            await this.props.record.load();
            this.live.payload = null;
        }, 250);
        useBus(this.env.bus, this.jobs.event, ({ detail }) => this.onUpdate(detail));
    }

    get data() {
        return this.props.record.data;
    }

    /** Whether the payload is of the job the record shows. */
    isSameJob(payload) {
        throw new Error("isSameJob: not implemented");
    }

    /** Whether the payload is of a newer job that takes the record's place. */
    isNewerJob(payload) {
        return false;
    }

    /** The state of the job as the record shows it. */
    get recordState() {
        throw new Error("recordState: not implemented");
    }

    /** The card (JobProgress props) of a payload. */
    cardFromPayload(payload) {
        throw new Error("cardFromPayload: not implemented");
    }

    /** The card (JobProgress props) of the record. */
    cardFromRecord() {
        throw new Error("cardFromRecord: not implemented");
    }

    onUpdate(payload) {
        const sameJob = this.isSameJob(payload);
        if (!sameJob && !this.isNewerJob(payload)) {
            return;
        }
        const previous = this.live.payload?.state ?? this.recordState;
        this.live.payload = payload;
        if (payload.final || !sameJob || payload.state !== previous) {
            this.reload();
        }
    }

    get card() {
        const payload = this.live.payload;
        const card = payload ? this.cardFromPayload(payload) : this.cardFromRecord();
        const state = card.state || "";
        const text = (value) => (value ? String(value) : "");
        return {
            state,
            // translated here: the server sends one payload to many users
            label: text(card.label || (state && this.jobs.stateLabel(state))),
            title: text(card.title),
            progress: card.progress || 0,
            detail: text(card.detail),
            counts: text(card.counts),
            error: text(card.error),
            className: this.constructor.cardClass,
        };
    }
}
