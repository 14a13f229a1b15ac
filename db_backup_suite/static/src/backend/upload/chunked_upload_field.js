import { _t } from "@web/core/l10n/translation";
import { browser } from "@web/core/browser/browser";
import { registry } from "@web/core/registry";
import { standardFieldProps } from "@web/views/fields/standard_field_props";
import { Component, useRef, useState } from "@odoo/owl";

const BASE = "/db_backup_suite/upload";
const RETRIES = 5;
const STORE_KEY = "db_backup_suite.uploads";

/** The file's identity in this browser (to resume after a reload). */
function fileKey(file) {
    return [file.name, file.size, file.lastModified].join("|");
}

function remembered() {
    try {
        return JSON.parse(browser.localStorage.getItem(STORE_KEY) || "{}");
    } catch {
        return {};
    }
}

function remember(file, id) {
    const all = remembered();
    if (id) {
        all[fileKey(file)] = id;
    } else {
        delete all[fileKey(file)];
    }
    browser.localStorage.setItem(STORE_KEY, JSON.stringify(all));
}

class UploadError extends Error {
    constructor(message, answer = {}, status = 0) {
        super(message);
        this.answer = answer;
        this.status = status;
    }
}

/**
 * The archive to restore, sent in chunks (8 MiB) to the server's private
 * uploads folder (controllers/upload.py): a progress bar, automatic retries
 * of a failed chunk, and Resume after a network failure or a page reload
 * (the same file chosen again continues where the server stands). When the
 * whole file is there the upload is finished (size checked) and its id
 * becomes the wizard's ``upload_id``; the record is saved, so the server
 * reads the archive's description.
 */
export class ChunkedUploadField extends Component {
    static template = "db_backup_suite.ChunkedUploadField";
    static props = { ...standardFieldProps };

    setup() {
        this.input = useRef("input");
        this.state = useState({
            file: null,
            id: null,
            sent: 0,
            size: 0,
            running: false,
            error: "",
            done: false,
        });
    }

    get percent() {
        return this.state.size ? Math.floor((100 * this.state.sent) / this.state.size) : 0;
    }

    get sentLabel() {
        const mib = (n) => (n / 1024 / 1024).toFixed(1);
        return _t("%(sent)s of %(size)s MiB", {
            sent: mib(this.state.sent),
            size: mib(this.state.size),
        });
    }

    async call(path, { body = null, contentType = "application/json" } = {}) {
        let response;
        try {
            response = await browser.fetch(path, {
                method: "POST",
                body,
                credentials: "same-origin",
                headers: { "Content-Type": contentType, "X-CSRF-Token": odoo.csrf_token },
            });
        } catch {
            throw new UploadError(_t("The connection to the server was lost."));
        }
        let answer = {};
        try {
            answer = await response.json();
        } catch {
            answer = {};
        }
        if (!response.ok) {
            throw new UploadError(
                answer.error || _t("The server refused the upload (%s).", response.status),
                answer,
                response.status
            );
        }
        return answer;
    }

    onPick() {
        const file = this.input.el.files[0];
        if (!file) {
            return;
        }
        Object.assign(this.state, {
            file,
            id: null,
            sent: 0,
            size: file.size,
            error: "",
            done: false,
        });
        this.start();
    }

    async start() {
        const file = this.state.file;
        this.state.running = true;
        this.state.error = "";
        try {
            await this.locate(file);
            await this.sendFrom(file);
            const done = await this.call(`${BASE}/${this.state.id}/finish`);
            this.state.sent = done.size;
            this.state.done = true;
            remember(file, null);
            await this.props.record.update({ [this.props.name]: this.state.id });
            await this.props.record.save();
        } catch (error) {
            // an upload refused by its route, or the server's reading of the
            // finished archive (a UserError of the wizard's save)
            this.state.error = error.data?.message || error.message;
            if (error.answer?.code === "digest" || error.answer?.code === "not_found") {
                remember(file, null);
                this.state.id = null;
            }
        } finally {
            this.state.running = false;
        }
    }

    /** Resume a known upload of this file, or open a new one. */
    async locate(file) {
        const known = this.state.id || remembered()[fileKey(file)];
        if (known) {
            try {
                const status = await this.call(`${BASE}/${known}/status`);
                if (status.size === file.size && !status.finished) {
                    this.state.id = known;
                    this.state.sent = status.offset;
                    return;
                }
            } catch (error) {
                if (error.status === 0) {
                    throw error;
                }
            }
        }
        const opened = await this.call(`${BASE}/open`, {
            body: JSON.stringify({ size: file.size, filename: file.name }),
        });
        this.state.id = opened.id;
        this.state.sent = 0;
        this.chunkSize = opened.chunk_size;
        remember(file, opened.id);
    }

    async sendFrom(file) {
        const chunkSize = this.chunkSize || 8 * 1024 * 1024;
        let failures = 0;
        while (this.state.sent < file.size) {
            const offset = this.state.sent;
            const blob = file.slice(offset, Math.min(offset + chunkSize, file.size));
            try {
                // the chunk's bytes (one chunk in memory at a time): a Blob
                // body is sent very slowly by some browsers
                const body = await blob.arrayBuffer();
                const answer = await this.call(
                    `${BASE}/${this.state.id}/chunk?offset=${offset}`,
                    { body, contentType: "application/octet-stream" }
                );
                this.state.sent = answer.offset;
                failures = 0;
            } catch (error) {
                if (error.answer?.offset !== undefined && ["gap", "overlap"].includes(error.answer.code)) {
                    // the server says where it stands: go on from there
                    this.state.sent = error.answer.offset;
                    continue;
                }
                if (error.status && error.status !== 409 && error.status < 500) {
                    throw error;
                }
                if (++failures > RETRIES) {
                    throw error;
                }
                await new Promise((resolve) => browser.setTimeout(resolve, 1000 * failures));
                // where the server stands after the failed chunk
                const status = await this.call(`${BASE}/${this.state.id}/status`);
                this.state.sent = status.offset;
            }
        }
    }
}

registry.category("fields").add("db_backup_chunked_upload", {
    component: ChunkedUploadField,
    supportedTypes: ["char"],
    displayName: _t("Chunked archive upload"),
});
