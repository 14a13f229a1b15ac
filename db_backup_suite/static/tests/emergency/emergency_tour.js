/*
 * Chromium tour of the emergency restore page (run by
 * tests/test_emergency_restore.py with HttpCase.browser_js).
 *
 * The page works without Odoo's web client, so there is no tour service:
 * this script drives the real page in a same-origin iframe, the way an
 * administrator would (type, submit, read), and follows the restore with
 * the page's own polling script until it is done.
 * window.EMERGENCY_TOUR = {database, archive, wrongPassword, password}.
 */
(async function () {
    "use strict";
    const params = window.EMERGENCY_TOUR;
    const frame = document.createElement("iframe");
    frame.style.width = "1000px";
    frame.style.height = "800px";
    document.body.appendChild(frame);

    const doc = () => frame.contentDocument;
    const nextPage = () =>
        new Promise((resolve) => frame.addEventListener("load", resolve, { once: true }));

    function check(condition, message) {
        if (!condition) {
            throw new Error(message);
        }
    }

    function get(selector) {
        const el = doc().querySelector(selector);
        check(el, "not found on the page: " + selector);
        return el;
    }

    async function submit(form) {
        const loaded = nextPage();
        form.requestSubmit();
        await loaded;
    }

    async function waitFor(predicate, what, timeout = 280000) {
        const start = Date.now();
        while (!predicate()) {
            check(Date.now() - start < timeout, "timed out waiting for " + what);
            await new Promise((resolve) => setTimeout(resolve, 250));
        }
    }

    let loaded = nextPage();
    frame.src = "/db_backup/emergency";
    await loaded;

    // 1. a wrong master password is refused, and not shown again
    get("#o_emergency_database").value = params.database;
    get("#o_emergency_password").value = params.wrongPassword;
    await submit(get("form.o_emergency_login"));
    check(
        get(".o_emergency_error").textContent.includes("Wrong master password"),
        "the wrong password is refused"
    );
    check(!doc().body.innerHTML.includes(params.wrongPassword), "password not echoed");
    check(get("#o_emergency_password").value === "", "password field empty");

    // 2. the right one lists the database's archives
    get("#o_emergency_database").value = params.database;
    get("#o_emergency_password").value = params.password;
    await submit(get("form.o_emergency_login"));
    const row = [...doc().querySelectorAll("tr.o_emergency_archive")].find((tr) =>
        tr.textContent.includes(params.archive)
    );
    check(row, "the archive is listed");
    await submit(row.querySelector("form"));

    // 3. the name gate
    check(!doc().querySelector(".o_emergency_foreign"), "its own archive: no foreign box");
    get("#o_emergency_confirm_name").value = params.database + "-typo";
    await submit(get("form.o_emergency_confirm"));
    check(
        get(".o_emergency_error").textContent.includes("Type the database name"),
        "a wrong name is refused"
    );
    get("#o_emergency_confirm_name").value = params.database;
    await submit(get("form.o_emergency_confirm"));

    // 4. the progress, followed by the page's script until the end
    const status = get(".o_emergency_status");
    await waitFor(() => status.dataset.state !== "running", "the end of the restore");
    check(status.dataset.state === "done", "the restore failed: " +
        get(".o_emergency_message").textContent);
    check(!get(".o_emergency_done").hidden, "the success is shown");
    check(
        get(".o_emergency_result").textContent.includes("checked against the archive"),
        "the result says what was checked"
    );
    check(
        get(".o_emergency_login_link").getAttribute("href") ===
            "/web/login?db=" + params.database,
        "a link to log in to the restored database"
    );
    console.log("test successful");
})().catch((error) => console.error("emergency restore tour failed: " + error.message));
