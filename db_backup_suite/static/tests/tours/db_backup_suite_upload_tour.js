/** @odoo-module */

import { registry } from "@web/core/registry";

// A restore user opens "Upload an archive" and chooses a file that is no
// archive: it is sent in chunks (256 KiB here: the test sets the size; the
// bar reaches 100%), the upload is finished, the wizard is saved and the
// server says clearly that the file cannot be read as a backup archive.
registry.category("web_tour.tours").add("db_backup_suite_chunked_upload", {
    steps: () => [
        {
            content: "Open the upload dialog",
            trigger: "button[name=action_upload]",
            run: "click",
        },
        {
            content: "Choose a file of 1 MiB and a bit (5 chunks of 256 KiB)",
            trigger: ".modal .o_db_backup_chunked_upload input[type=file]",
            run() {
                const bytes = new Uint8Array(1024 * 1024 + 1000);
                for (let i = 0; i < bytes.length; i += 997) {
                    bytes[i] = i % 251;
                }
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], "not-an-archive.tar.zst.enc"));
                this.anchor.files = transfer.files;
                this.anchor.dispatchEvent(new Event("change", { bubbles: true }));
            },
        },
        {
            content: "Sent whole, in chunks",
            trigger: ".modal .o_db_backup_upload_status:contains(100%):contains(Uploaded)",
            timeout: 60000,
        },
        {
            content: "The server read it and says why it cannot be restored",
            trigger: ".modal:contains(cannot be read as a backup archive)",
            timeout: 60000,
        },
        {
            content: "Close the dialog (nothing to restore)",
            trigger: ".modal .modal-footer button:contains(Close)",
            run: "click",
        },
        {
            content: "The dialog is gone",
            trigger: "body:not(:has(.modal))",
        },
    ],
});
