import { Component, onWillDestroy, useState } from "@odoo/owl";
import { _t } from "@web/core/l10n/translation";
import { rpc } from "@web/core/network/rpc";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { session } from "@web/session";

const { DateTime } = luxon;

/** How often an open tab asks whether the restore is still running. */
const POLL_MS = 20000;

/**
 * The banner every tab shows while a production restore holds the database
 * (maintenance mode: changes are refused). It knows from the session info
 * at load, from the restore job's bus message (type
 * "db_backup_suite/maintenance", sent to internal users only, without the
 * archive's name: the details are then asked from the session info) at
 * once, and while it is shown it asks the
 * server every 20 s, so the end of the restore (or a restore that died)
 * is noticed even when the bus is gone with the replaced database.
 */
export class MaintenanceBanner extends Component {
    static template = "db_backup_suite.MaintenanceBanner";
    static props = {};

    setup() {
        this.state = useState({
            info: session.db_backup_maintenance || false,
            ended: false,
        });
        this.timer = null;
        const bus = useService("bus_service");
        // the bus message (internal users only) says that the maintenance
        // started or ended, without details: they come from the session info
        const onNotification = (payload) =>
            payload && payload.active ? this.poll() : this.apply(false);
        bus.subscribe("db_backup_suite/maintenance", onNotification);
        bus.start();
        this.schedule();
        onWillDestroy(() => {
            bus.unsubscribe("db_backup_suite/maintenance", onNotification);
            clearTimeout(this.timer);
        });
    }

    apply(info) {
        const was = Boolean(this.state.info);
        this.state.info = info || false;
        this.state.ended = was && !info;
        this.schedule();
    }

    schedule() {
        clearTimeout(this.timer);
        if (this.state.info) {
            this.timer = setTimeout(() => this.poll(), POLL_MS);
        }
    }

    async poll() {
        try {
            const info = await rpc("/web/session/get_session_info", {}, { silent: true });
            this.apply(info.db_backup_maintenance || false);
        } catch {
            // the server is swapping databases: ask again later
            this.schedule();
        }
    }

    get message() {
        const info = this.state.info;
        const time = info.started
            ? DateTime.fromISO(info.started).toLocaleString(DateTime.TIME_SIMPLE)
            : "?";
        return _t(
            "The database is being restored from %(archive)s since %(time)s; changes are refused until it ends.",
            { archive: info.archive || _t("an archive"), time }
        );
    }

    get endedMessage() {
        return _t("The restore has ended: reload the page to see the database as it is now.");
    }

    reload() {
        window.location.reload();
    }

    dismiss() {
        this.state.ended = false;
    }
}

registry
    .category("main_components")
    .add("db_backup_suite.MaintenanceBanner", { Component: MaintenanceBanner });
