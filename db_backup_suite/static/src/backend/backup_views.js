import { registry } from "@web/core/registry";
import { useBus, useService } from "@web/core/utils/hooks";
import { useDebounced } from "@web/core/utils/timing";
import { usePager } from "@web/search/pager_hook";
import { FormController } from "@web/views/form/form_controller";
import { formView } from "@web/views/form/form_view";
import { ListController } from "@web/views/list/list_controller";
import { listView } from "@web/views/list/list_view";
import { onWillStart, useState } from "@odoo/owl";

/**
 * The Database Backups page is one (transient) record: no "1 / 1" pager.
 * Its live progress widget reloads it when a backup moves.
 */
export class BackupDashboardFormController extends FormController {
    setup() {
        super.setup();
        usePager(() => null);
    }
}

registry.category("views").add("db_backup_dashboard_form", {
    ...formView,
    Controller: BackupDashboardFormController,
});

/**
 * The backups and sandboxes lists reload themselves when a backup, restore
 * or sandbox they show moves (bus updates, static/src/backend/progress_service.js).
 */
export class BackupLiveListController extends ListController {
    setup() {
        super.setup();
        this.orm = useService("orm");
        this.backupNow = useState({ available: true });
        if (this.props.resModel === "db.backup.run") {
            // no keyring or no destination: Backup Now is hidden (the server
            // refuses it anyway, saying why)
            onWillStart(() => this.loadBackupNowState());
        }
        this.liveReload = useDebounced(async () => {
            await this.model.root.load();
            if (this.props.resModel === "db.backup.run") {
                await this.loadBackupNowState();
            }
        }, 400);
        useBus(this.env.bus, "DB_BACKUP_PROGRESS", ({ detail }) => {
            const resModel = this.props.resModel;
            const concerned =
                detail.model === resModel ||
                (resModel === "db.backup.sandbox" && Boolean(detail.sandbox_id));
            if (concerned) {
                this.liveReload();
            }
        });
    }

    async loadBackupNowState() {
        const state = await this.orm.call("db.backup.run", "backup_now_state", []);
        this.backupNow.available = state.keyring && state.destination;
    }

    get className() {
        const hide = !this.backupNow.available ? " o_db_backup_no_backup_now" : "";
        return (super.className || "") + hide;
    }
}

registry.category("views").add("db_backup_live_list", {
    ...listView,
    Controller: BackupLiveListController,
});
