import { registry } from "@web/core/registry";
import { useBus } from "@web/core/utils/hooks";
import { useDebounced } from "@web/core/utils/timing";
import { usePager } from "@web/search/pager_hook";
import { FormController } from "@web/views/form/form_controller";
import { formView } from "@web/views/form/form_view";
import { ListController } from "@web/views/list/list_controller";
import { listView } from "@web/views/list/list_view";

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
        this.liveReload = useDebounced(() => this.model.root.load(), 400);
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
}

registry.category("views").add("db_backup_live_list", {
    ...listView,
    Controller: BackupLiveListController,
});
