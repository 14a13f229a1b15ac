/*
 * Emergency restore page: follows a running restore (no Odoo framework
 * here: the page works without any database). The status is asked with a
 * POST carrying the page's CSRF token and the status token, never in the
 * URL (URLs end up in access logs).
 */
(function () {
    "use strict";

    const POLL_MS = 2000;

    function text(root, selector, value) {
        const el = root.querySelector(selector);
        if (el) {
            el.textContent = value || "";
        }
    }

    function show(root, selector, visible) {
        const el = root.querySelector(selector);
        if (el) {
            el.hidden = !visible;
        }
    }

    function render(root, status) {
        root.dataset.state = status.state;
        text(root, ".o_emergency_phase", status.phase);
        text(root, ".o_emergency_progress", status.progress);
        text(root, ".o_emergency_elapsed", status.elapsed);
        const bar = root.querySelector(".o_emergency_bar");
        if (bar && status.state !== "running") {
            bar.classList.remove("progress-bar-striped", "progress-bar-animated");
            bar.classList.add(status.state === "done" ? "bg-success" : "bg-danger");
            bar.style.width = "100%";
        }
        if (status.state === "failed") {
            text(root, ".o_emergency_message", status.message);
            show(root, ".o_emergency_failed", true);
        } else if (status.state === "done") {
            text(root, ".o_emergency_result", status.message);
            const link = root.querySelector(".o_emergency_login_link");
            if (link && status.login_url) {
                link.setAttribute("href", status.login_url);
            }
            show(root, ".o_emergency_done", true);
        }
    }

    async function poll(root) {
        const body = new URLSearchParams();
        body.set("csrf_token", root.dataset.csrf);
        body.set("token", root.dataset.token);
        body.set("format", "json");
        let status = null;
        try {
            const response = await fetch(root.dataset.url, {
                method: "POST",
                body,
                credentials: "same-origin",
                cache: "no-store",
            });
            if ((response.headers.get("Content-Type") || "").startsWith("application/json")) {
                status = await response.json();
            }
            if (!response.ok && !status) {
                status = {
                    state: "failed",
                    phase: "",
                    message: "The status cannot be read any more (" + response.status + ").",
                };
            }
        } catch {
            // the server restarts or the network hiccups: try again
            status = null;
        }
        if (status) {
            render(root, status);
        }
        if (!status || status.state === "running") {
            window.setTimeout(() => poll(root), POLL_MS);
        }
    }

    function start() {
        const root = document.querySelector(".o_emergency_status[data-token]");
        if (root && root.dataset.state === "running") {
            window.setTimeout(() => poll(root), POLL_MS);
        }
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
})();
