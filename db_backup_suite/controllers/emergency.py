"""The emergency restore page: restore a backup when no database loads.

Off unless the server configuration says ``backup_emergency_restore =
True``; then ``/db_backup/emergency`` (linked from the login screen and the
database selector) lets the holder of Odoo's master password restore a
database from the archives at the destinations of a server-side file
(``backup_emergency_destinations``), through the engine's verified restore
with its pre-restore safety copy. Every route answers 404 while it is off.

No database, no session: the routes are ``auth="none"`` (served without a
registry when the addon is in ``server_wide_modules``), the pages are
rendered from a file without a database, and what must outlive a request
lives in files of ``<data_dir>/db_backup_suite/emergency`` (0700), shared by
every worker process (``lib/emergency.py``):

1. ``GET /db_backup/emergency``: the form (database, master password) with
   a CSRF token bound to a random SameSite=Strict cookie and the address.
2. ``POST .../login``: rate limit (:data:`~..lib.emergency.LIMIT` failures
   per address and window, then 429), CSRF, the master password checked
   exactly as Odoo's database manager does
   (``odoo.tools.config.verify_admin_password``); then the database's
   archives at the file's destinations, with a step token.
3. ``POST .../prepare``: one archive chosen; whose it is (read from the
   archive's header and head manifest) against the live database's uuid
   (read with plain SQL): another database's archive, or any archive when
   that uuid cannot be read, is FOREIGN and needs the separate confirmation
   naming its source database, as in the restore wizard.
4. ``POST .../restore``: the typed database name, the foreign confirmation,
   everything checked again from the archive; the restore starts in a
   detached process (:func:`run_child`) and the page follows it through
   ``POST .../status``.

Each step token is random, single use (using one revokes the others of the
same login), bound to the client address and short-lived; the master
password is never stored nor sent back. Every attempt goes to the server
log and to a 0600 JSON-lines file that :func:`replay_emergency_log` writes
into the database's audit trail once it works again.
"""

import copy
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

from lxml import etree
from lxml import html as lxml_html
from markupsafe import Markup
from werkzeug.exceptions import Forbidden, NotFound

import odoo
from odoo import SUPERUSER_ID, api, http, release
from odoo.http import request
from odoo.tools import SQL, config, file_path

from odoo.addons.base.models.ir_qweb import render as qweb_render
from odoo.addons.web.controllers.database import Database
from odoo.addons.web.controllers.home import Home

from suite_core.keyring import SuiteError

from ..lib import emergency as em
from ..service import backup_engine

_logger = logging.getLogger(__name__)

BASE = "/db_backup/emergency"
CSRF_COOKIE = "dbbs_emergency"
TEMPLATES = "db_backup_suite/static/src/emergency/emergency_templates.xml"
#: ``ir_config_parameter`` holding the last attempt (``seq``) written into
#: this database's audit trail.
REPLAY_CURSOR_KEY = "db_backup_suite.emergency_log_seq"
#: Advisory lock key (any constant bigint) serialising the replay.
REPLAY_LOCK_KEY = 0x656D657267  # "emerg"
#: Audit action of each logged event (the rest: "restore").
EVENT_ACTIONS = {
    "login": "login",
    "login_failed": "login_failed",
    "rate_limited": "login_failed",
    "csrf_failed": "login_failed",
    "token_invalid": "login_failed",
}
ROUTE = {
    "type": "http",
    "auth": "none",
    "csrf": False,  # the page's own CSRF token: Odoo's needs a database
    "save_session": False,
}
POST_ROUTE = dict(ROUTE, methods=["POST"], max_content_length=64 * 1024)
SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Robots-Tag", "noindex, nofollow"),
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'self'",
    ),
]
#: Python run by the restore process: the server's own configuration
#: (same addons, data dir, database server), then :func:`run_child`.
CHILD_BOOT = (
    "import sys\n"
    "args = sys.argv[1:]\n"
    "cut = args.index('--')\n"
    "from odoo.tools import config\n"
    "config.parse_config(args[:cut], setup_logging=True)\n"
    "from odoo.addons.db_backup_suite.controllers import emergency\n"
    "sys.exit(emergency.run_child(args[cut + 1]))\n"
)


class EmergencyRefused(SuiteError):
    """A gate of the emergency restore refused: nothing was changed."""


# ---------------------------------------------------------------------------
# Configuration and files
# ---------------------------------------------------------------------------
def enabled():
    return em.is_enabled(config.get(em.ENABLE_OPTION))


def state_dir():
    """``<data_dir>/db_backup_suite/emergency`` (0700, created)."""
    base = em.private_dir(Path(backup_engine.data_dir()) / "db_backup_suite")
    return em.private_dir(base / "emergency")


def state_store():
    return em.StateStore(state_dir())


def attempt_log(directory=None):
    return em.AttemptLog(Path(directory or state_dir()) / "attempts.jsonl")


def jobs_dir(directory=None):
    return em.private_dir(Path(directory or state_dir()) / "jobs")


def destinations():
    return em.load_destinations(config.get(em.DESTINATIONS_OPTION))


_insecure = {}


def _insecure_master_password():
    """No master password, or Odoo's default one: the page refuses (Odoo's
    own test, as its database manager makes it). Remembered per stored
    hash: the test costs a key derivation, and the login form is public."""
    stored = config.get("admin_passwd")
    if not stored:
        return True
    if stored not in _insecure:
        _insecure.clear()
        _insecure[stored] = bool(config.verify_admin_password("admin"))
    return _insecure[stored]


def human_size(size):
    value = float(size or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def _live_database(dbname):
    """``(exists, uuid)`` of the database ``dbname`` read with plain SQL
    (no registry); ``uuid`` None when it cannot be read (damaged)."""
    from ..lib import pgtools

    pg = backup_engine.pg_params()
    if not pgtools.database_exists(pg, dbname):
        return False, None
    try:
        return True, pgtools.read_identity(pg, dbname).get("database.uuid") or None
    except Exception as exc:  # a damaged database: its uuid is unknown
        _logger.warning("Cannot read the uuid of %s: %s", dbname, exc)
        return True, None


def _whose(owner, exists, live_uuid):
    """``(foreign, expected_name)``: an archive is this database's only
    when the database exists, its uuid is readable and equal to the
    archive's; otherwise the user must confirm it by typing its source
    database's name (its uuid when it has none), as in the wizard."""
    foreign = not (exists and live_uuid and owner.get("uuid") == live_uuid)
    return foreign, owner.get("database") or owner.get("uuid") or ""


def _incompatibility(owner):
    """Why an archive of another major Odoo version cannot be restored."""
    version = owner.get("odoo_version") or ""
    if not version:
        return None
    major = version[5:] if version.startswith("saas~") else version
    if major.split(".")[0] != release.version.split(".")[0]:
        return (
            f"The archive was made by Odoo {version}; this server runs Odoo "
            f"{release.version}. A different major version cannot be restored here."
        )
    return None


# ---------------------------------------------------------------------------
# Pages (no database)
# ---------------------------------------------------------------------------
_templates = {"mtime": None, "by_name": {}}
_templates_lock = threading.Lock()


def _template(name):
    path = file_path(TEMPLATES)
    mtime = os.stat(path).st_mtime
    with _templates_lock:
        if _templates["mtime"] != mtime:
            tree = etree.parse(path, etree.XMLParser(remove_comments=True))
            _templates["by_name"] = {
                el.get("t-name"): el for el in tree.getroot().iterchildren("t")
            }
            _templates["mtime"] = mtime
        element = _templates["by_name"][name]
    return copy.deepcopy(element), name


def render_page(name, values):
    """The page ``name`` of the templates file, rendered without a database."""
    return Markup("<!DOCTYPE html>\n") + qweb_render(name, dict(values), _template)


# ---------------------------------------------------------------------------
# The audit trail
# ---------------------------------------------------------------------------
def replay_emergency_log(env):
    """Write the emergency page's logged attempts concerning this database
    into its audit trail, once (each database keeps the ``seq`` of the last
    one it took, in ``ir_config_parameter``). Returns how many were written.

    For the next login or a cron of a database that works again, and called
    right after an emergency restore. A database restored from an older
    archive takes again what happened since that archive (its trail lost
    them with the rest).
    """
    if "audit.event" not in env:
        return 0
    path = Path(backup_engine.data_dir()) / "db_backup_suite" / "emergency"
    if not (path / "attempts.jsonl").exists():
        return 0
    env.cr.execute(SQL("SELECT pg_advisory_xact_lock(%s)", REPLAY_LOCK_KEY))
    params = env["ir.config_parameter"].sudo()
    after = _replay_cursor(env)
    entries = em.AttemptLog(path / "attempts.jsonl").entries(after, env.cr.dbname)
    Event = env["audit.event"].sudo()
    for entry in entries:
        Event.log_event(
            EVENT_ACTIONS.get(entry.get("event"), "restore"),
            res_name="Emergency restore page",
            result=entry.get("result") or "failure",
            details={
                "operation": f"emergency-{entry.get('event')}",
                "emergency_seq": entry.get("seq"),
                "at": entry.get("at"),
                "address": entry.get("address"),
                "user_agent": entry.get("user_agent"),
                "database": entry.get("database"),
                "archive": entry.get("archive"),
            },
            message=(
                "Emergency restore page (%s, from %s): %s"
                % (entry.get("at"), entry.get("address"), entry.get("message") or "")
            )[:1000],
        )
    if entries:
        params.set_param(REPLAY_CURSOR_KEY, str(entries[-1]["seq"]))
    return len(entries)


def _replay_cursor(env):
    """The last attempt (``seq``) this database took, read from the table
    itself (not the parameters' cache: another worker may have just moved
    it, under the advisory lock this one now holds)."""
    env.cr.execute(
        SQL("SELECT value FROM ir_config_parameter WHERE key = %s", REPLAY_CURSOR_KEY)
    )
    row = env.cr.fetchone()
    try:
        return int(row[0]) if row and row[0] else 0
    except ValueError:
        return 0


def emergency_log_pending(env):
    """Whether the emergency page logged attempts about this database that
    its audit trail has not taken yet (cheap when the page was never used)."""
    path = Path(backup_engine.data_dir()) / "db_backup_suite" / "emergency"
    if not (path / "attempts.jsonl").exists():
        return False
    log = em.AttemptLog(path / "attempts.jsonl")
    return bool(log.entries(_replay_cursor(env), env.cr.dbname))


# ---------------------------------------------------------------------------
# The restore process
# ---------------------------------------------------------------------------
class _Status:
    """The job's status file, rewritten atomically (0600)."""

    def __init__(self, path, **data):
        self.path = path
        self.data = {"state": "running", "phase": "starting", "done": 0, **data}
        self._last = 0.0

    def update(self, **values):
        self.data.update(values, updated=time.time())
        em.write_private_json(self.path, self.data)

    def progress(self, done, _total, message):
        now = time.monotonic()
        if now - self._last >= 1.0:
            self._last = now
            self.update(done=int(done or 0), phase=message or self.data["phase"])


def spawn_restore(job):
    """Start :func:`run_child` in a detached process (it outlives a worker
    recycled or killed for its time limits); the job file (0600, secrets
    inside) is read and deleted by the child."""
    directory = jobs_dir(job["state_dir"])
    _prune_jobs(directory)
    job_id = em.check_job_id(job["job_id"])
    job_path = directory / f"{job_id}.job"
    em.write_private_json(job_path, job)
    cmd = [sys.executable, "-c", CHILD_BOOT, *backup_engine.odoo_args(), "--"]
    try:
        log_fd = os.open(
            directory / f"{job_id}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        try:
            proc = subprocess.Popen(
                [*cmd, str(job_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                cwd=str(backup_engine.ADDONS_PARENT),
                env=backup_engine.child_env(),
                start_new_session=True,
            )
        finally:
            os.close(log_fd)
    except BaseException:
        job_path.unlink(missing_ok=True)  # it holds secrets
        raise
    # reap it when it ends (no zombie that looks alive to the status check)
    threading.Thread(target=proc.wait, daemon=True, name="emergency-reaper").start()
    return proc.pid


def _prune_jobs(directory, days=30):
    """Remove the status and log files of restores older than ``days``."""
    horizon = time.time() - days * 86400
    for path in directory.iterdir():
        try:
            if path.suffix in (".json", ".log") and path.stat().st_mtime < horizon:
                path.unlink()
        except OSError as exc:
            _logger.info("Cannot prune %s: %s", path, exc)


def run_child(job_path):
    """The restore process: the engine's verified restore, then the
    post-restore steps in the restored database. One at a time per server."""
    job = em.read_private_json(job_path)
    try:
        os.unlink(job_path)  # it holds secrets: read once, then gone
    except OSError as exc:
        _logger.warning("Cannot remove the job file %s: %s", job_path, exc)
    if not isinstance(job, dict):
        _logger.error("Unreadable emergency restore job %s", job_path)
        return 2
    status = _Status(
        job["status_path"],
        pid=os.getpid(),
        started=job["started"],
        database=job["database"],
    )
    status.update()
    try:
        with em.locked(Path(job["state_dir"]) / "restore.lock", blocking=False):
            return _run_job(job, status)
    except BlockingIOError:
        status.update(
            state="failed",
            phase="refused",
            message="Another emergency restore is running on this server.",
        )
        return 1


def _run_job(job, status):
    from ..lib import pgtools, restore
    from ..service import restore_job

    log = attempt_log(job["state_dir"])
    dbname, archive = job["database"], job["archive"]
    who = {"address": job["address"], "user_agent": job.get("user_agent")}
    try:
        status.update(phase="checking whose archive it is")
        keyring = backup_engine.load_keyring()
        owner = em.describe_stored(job["sink"], archive, keyring)
        exists, live_uuid = _live_database(dbname)
        foreign, _expected = _whose(owner, exists, live_uuid)
        if (
            foreign != job["foreign"]
            or owner.get("uuid") != job["source_uuid"]
            or (not foreign and live_uuid != job["expected_uuid"])
        ):
            raise EmergencyRefused(
                "The archive or the database changed since the restore was "
                "confirmed; nothing was restored."
            )
        db = job["db"]
        result = restore.run_restore(
            restore.RestoreRequest(
                target=dbname,
                mode="production",
                sink=job["sink"],
                name=archive,
                keyring=keyring,
                pg=pgtools.PgParams(
                    host=db.get("host"),
                    port=db.get("port"),
                    user=db.get("user"),
                    password=db.get("password"),
                ),
                data_dir=job["data_dir"],
                expected_uuid=live_uuid if exists else None,
                allow_foreign=foreign,
                keep_uuid=True,
                progress=status.progress,
            )
        )
    except Exception as exc:
        message = str(exc) or repr(exc)
        _logger.warning("Emergency restore of %s failed: %s", dbname, message)
        log.append(
            "restore_failed",
            result="failure",
            database=dbname,
            archive=archive,
            message=message,
            **who,
        )
        status.update(state="failed", phase="failed", message=message[:2000])
        return 1
    _logger.warning(
        "Emergency restore: %s restored from %s (safety copy %s), requested from %s",
        dbname,
        archive,
        result.safety_database,
        job["address"],
    )
    log.append(
        "restored",
        result="success",
        database=dbname,
        archive=archive,
        message="restored from %s; the replaced database is kept as %s"
        % (archive, result.safety_database or "(none: there was none)"),
        **who,
    )
    status.update(phase="post-restore steps")
    info = result.restore_info()
    info.update(
        source_name=result.source_name,
        source_uuid=result.source_uuid,
        foreign=bool(result.foreign),
        target="production",
        database=dbname,
        safety_database=result.safety_database,
    )
    problems = []
    try:
        odoo.service.server.load_server_wide_modules()
        failures = restore_job._post_restore(
            dbname,
            info,
            {"requested_by": "emergency restore page (%s)" % job["address"]},
            None,
        )
        problems += ["%s: %s" % failure for failure in failures or []]
    except Exception as exc:
        _logger.exception("Post-restore steps of %s failed", dbname)
        problems.append(str(exc) or repr(exc))
    try:
        registry = odoo.modules.registry.Registry(dbname)
        with registry.cursor() as cr:
            replay_emergency_log(api.Environment(cr, SUPERUSER_ID, {}))
    except Exception as exc:
        _logger.exception("Cannot write the emergency log into %s", dbname)
        problems.append("audit trail: %s" % exc)
    as_dict = result.as_dict()
    message = "Restored %s from %s: %d tables, %d rows checked against the archive." % (
        dbname,
        archive,
        as_dict["tables"],
        as_dict["rows"],
    )
    if result.safety_database:
        message += " The replaced database is kept as %s." % result.safety_database
    if problems:
        message += " Post-restore steps failed: %s" % "; ".join(problems)
    status.update(
        state="done",
        phase="done",
        message=message,
        result={
            "database": dbname,
            "safety_database": result.safety_database,
            "tables": as_dict["tables"],
            "rows": as_dict["rows"],
            "warnings": result.warnings,
            "problems": problems,
        },
    )
    return 0


# ---------------------------------------------------------------------------
# The controller
# ---------------------------------------------------------------------------
class EmergencyRestore(http.Controller):
    # -- plumbing ------------------------------------------------------------
    def _check_enabled(self):
        if not enabled():
            raise NotFound()

    def _address(self):
        httprequest = request.httprequest
        return em.client_address(
            httprequest.environ.get("REMOTE_ADDR"),
            httprequest.headers.get("X-Forwarded-For", ""),
            bool(config.get("proxy_mode")),
        )

    def _log(self, event, result, database=None, archive=None, message=None):
        address = self._address()
        agent = request.httprequest.headers.get("User-Agent")
        # WARNING even for a success: the page is used on the worst days only,
        # and servers logging at "warn" must show it too.
        _logger.warning(
            "Emergency restore page: %s (%s) from %s, database %s%s%s",
            event,
            result,
            address,
            database or "-",
            ", archive %s" % archive if archive else "",
            ": %s" % message if message else "",
        )
        attempt_log().append(
            event,
            result=result,
            address=address,
            user_agent=agent,
            database=database,
            archive=archive,
            message=message,
        )

    def _cookie(self):
        return request.httprequest.cookies.get(CSRF_COOKIE) or ""

    def _csrf_token(self, cookie):
        return em.make_csrf(
            em.server_secret(state_dir()), cookie, self._address(), time.time()
        )

    def _csrf_ok(self, token):
        return em.check_csrf(
            em.server_secret(state_dir()),
            token,
            self._cookie(),
            self._address(),
            time.time(),
        )

    def _page(self, template, values, status=200, headers=()):
        """An HTML page of the templates file, with a fresh CSRF token (and
        cookie, for a browser that has none)."""
        cookie = self._cookie()
        new_cookie = None
        if len(cookie) < 32:
            cookie = new_cookie = secrets.token_urlsafe(32)
        values = {
            "error": None,
            "notice": None,
            **values,
            "csrf_token": self._csrf_token(cookie),
        }
        body = render_page(template, values)
        response = request.make_response(
            body,
            headers=[
                ("Content-Type", "text/html; charset=utf-8"),
                *SECURITY_HEADERS,
                *headers,
            ],
            status=status,
        )
        if new_cookie:
            response.set_cookie(
                CSRF_COOKIE,
                new_cookie,
                httponly=True,
                samesite="Strict",
                secure=request.httprequest.scheme == "https",
                path=BASE,
            )
        return response

    def _login_page(self, error=None, status=200, database="", headers=()):
        databases = []
        if config.get("list_db"):
            try:
                databases = http.db_list()
            except Exception as exc:  # the database server may be down too
                _logger.warning("Cannot list the databases: %s", exc)
        return self._page(
            "emergency.login",
            {
                "error": error,
                "insecure": _insecure_master_password(),
                "database": database,
                "databases": databases,
            },
            status=status,
            headers=headers,
        )

    def _gate(self, csrf_token, event_database=None):
        """Rate limit, then CSRF, for every POST. Returns ``(response,
        stamp)``: an error response, or None and the time stamp of this
        attempt (counted as a failure until :meth:`_forgive`)."""
        key = em.limiter_key(self._address())
        now = time.time()
        with state_store().transaction() as state:
            wait = em.blocked(state, key, now)
            if wait:
                first = em.note_rate_limited(state, key, now)
            else:
                em.record_failure(state, key, now)
        if wait:
            message = (
                "Too many failed attempts from your address: try again in "
                "%d seconds." % wait
            )
            if first:
                self._log("rate_limited", "failure", event_database, message=message)
            else:  # the first refusal of the window was logged in full
                _logger.info("Emergency restore page: rate limited %s", self._address())
            return (
                self._login_page(
                    message, status=429, headers=[("Retry-After", str(wait))]
                ),
                None,
            )
        if not self._csrf_ok(csrf_token):
            self._log("csrf_failed", "failure", event_database)
            return (
                self._login_page(
                    "This form has expired or did not come from this page; "
                    "start again.",
                    status=400,
                ),
                None,
            )
        return None, now

    def _forgive(self, stamp):
        with state_store().transaction() as state:
            em.forgive(state, em.limiter_key(self._address()), stamp)

    def _take(self, token, step, consume=True):
        with state_store().transaction() as state:
            return em.take_token(
                state, token, step, self._address(), time.time(), consume=consume
            )

    def _issue(self, step, chain=None, ttl=em.TOKEN_TTL, **data):
        with state_store().transaction() as state:
            return em.issue_token(
                state, step, self._address(), time.time(), ttl=ttl, chain=chain, **data
            )

    def _expired(self):
        self._log("token_invalid", "failure")
        return self._login_page(
            "This page has expired (each step can be used once, for a few "
            "minutes, from the same address): log in again.",
            status=403,
        )

    def _archives_page(self, database, chain, error=None, status=200):
        try:
            dests = destinations()
        except em.EmergencyConfigError as exc:
            return self._login_page(str(exc), status=503, database=database)
        found, errors = em.list_archives(dests, database)
        token = self._issue("select", chain=chain, database=database)
        return self._page(
            "emergency.archives",
            {
                "error": error,
                "database": database,
                "token": token,
                "destination_count": len(dests),
                "list_errors": errors,
                "archives": [
                    {
                        "destination": str(a.destination),
                        "destination_name": a.destination_name,
                        "name": a.name,
                        "size": human_size(a.size),
                        "date": a.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                        "label": a.label,
                    }
                    for a in found[:500]
                ],
            },
            status=status,
        )

    def _describe(self, database, destination, archive):
        """``(dest, owner, exists, live_uuid)`` of an archive of
        ``database`` named by the page; EmergencyRefused when it is not one."""
        from ..lib import naming

        dests = destinations()
        try:
            dest = dests[int(destination)]
        except (ValueError, TypeError, IndexError):
            raise EmergencyRefused("Unknown destination.") from None
        if naming.parse_archive_name(archive or "", database) is None:
            raise EmergencyRefused("Not an archive of %s." % database)
        try:
            owner = em.describe_stored(
                dest.config, archive, backup_engine.load_keyring()
            )
        except backup_engine.KeyringUnavailable as exc:
            raise EmergencyRefused("The server keyring is missing: %s" % exc) from exc
        except Exception as exc:
            raise EmergencyRefused(
                "The archive cannot be read: %s" % em.cap(exc, em.MESSAGE_MAX)
            ) from exc
        if owner.get("kind") != "suite":
            raise EmergencyRefused("Only this suite's archives are restored here.")
        if owner.get("encrypted") and not owner.get("manifest_read"):
            raise EmergencyRefused(
                "This server's keyring does not open the archive: %s"
                % (owner.get("error") or "unknown key")
            )
        incompatible = _incompatibility(owner)
        if incompatible:
            raise EmergencyRefused(incompatible)
        exists, live_uuid = _live_database(database)
        return dest, owner, exists, live_uuid

    def _confirm_page(self, record, error=None, status=200):
        data = record["data"]
        chain = record["chain"]
        token = self._issue("restore", chain=chain, **data)
        back = self._issue("select", chain=chain, database=data["database"])
        if not data["exists"]:
            live_state = "does not exist (it is created from the archive)"
        elif data["expected_uuid"]:
            live_state = "exists, uuid %s" % data["expected_uuid"]
        else:
            live_state = "exists, but its uuid cannot be read (damaged)"
        foreign_warning = (
            "This archive is a backup of database %s (uuid %s, taken %s), and "
            "it cannot be shown to be a backup of %s (%s). Restoring it puts "
            "%s's data into %s; the database keeps the archive's identity when "
            "its own cannot be read."
            % (
                data["source_name"] or "(unknown name)",
                data["source_uuid"] or "none",
                data["created_at"] or "at an unknown date",
                data["database"],
                live_state,
                data["source_name"] or "that database",
                data["database"],
            )
        )
        return self._page(
            "emergency.confirm",
            {
                **data,
                "error": error,
                "token": token,
                "back_token": back,
                "archive": data["archive"],
                "size": human_size(data["size"]),
                "live_state": live_state,
                "foreign_warning": foreign_warning,
                "foreign_expected": data["expected_name"],
                "warning": None
                if data["encrypted"]
                else "This archive is not encrypted (legacy).",
            },
            status=status,
        )

    def _status_values(self, status):
        state = status.get("state") or "failed"
        now = time.time()
        pid = status.get("pid")
        if state == "running" and (
            (pid and not em.pid_alive(pid))
            or (not pid and now - status.get("started", now) > 120)
        ):
            state = "failed"
            status = dict(
                status,
                message="The restore process stopped unexpectedly; see the server "
                "log. The engine leaves the live database as it was when a "
                "restore fails.",
            )
        elapsed = int(now - status.get("started", now))
        done = status.get("done") or 0
        database = (status.get("result") or {}).get("database") or status.get(
            "database"
        )
        return {
            "state": state,
            "phase": status.get("phase") or "",
            "progress": "%s processed" % human_size(done) if done else "",
            "elapsed": "%d:%02d" % divmod(elapsed, 60),
            "message": status.get("message") if state != "running" else "",
            "login_url": "/web/login?db=%s" % database if state == "done" else "",
        }

    # -- the routes ------------------------------------------------------------
    @http.route(BASE, methods=["GET"], **ROUTE)
    def emergency_page(self, **_kw):
        self._check_enabled()
        return self._login_page()

    @http.route(BASE + "/login", **POST_ROUTE)
    def emergency_login(self, database="", master_password="", csrf_token="", **_kw):
        self._check_enabled()
        name = em.safe_database_name((database or "").strip())
        refused, stamp = self._gate(csrf_token, name)
        if refused:
            return refused
        if _insecure_master_password():
            self._log(
                "login_failed",
                "failure",
                name,
                message="refused: the server has no master password of its own",
            )
            return self._login_page(status=403)
        if not name or name in ("postgres", "template0", "template1"):
            self._log("login_failed", "failure", None, message="invalid database name")
            return self._login_page(
                "Give a valid database name.", status=400, database=""
            )
        # Odoo's own comparison (odoo.service.db.check_super).
        if not (master_password and config.verify_admin_password(master_password)):
            self._log("login_failed", "failure", name, message="wrong master password")
            return self._login_page("Wrong master password.", status=403, database=name)
        self._forgive(stamp)
        self._log("login", "success", name, message="master password accepted")
        return self._archives_page(name, chain=None)

    @http.route(BASE + "/list", **POST_ROUTE)
    def emergency_list(self, token="", csrf_token="", **_kw):
        self._check_enabled()
        refused, stamp = self._gate(csrf_token)
        if refused:
            return refused
        record = self._take(token, "select")
        if record is None:
            return self._expired()
        self._forgive(stamp)
        return self._archives_page(record["data"]["database"], record["chain"])

    @http.route(BASE + "/prepare", **POST_ROUTE)
    def emergency_prepare(
        self, token="", csrf_token="", destination="", archive="", **_kw
    ):
        self._check_enabled()
        refused, stamp = self._gate(csrf_token)
        if refused:
            return refused
        record = self._take(token, "select")
        if record is None:
            return self._expired()
        self._forgive(stamp)
        database = record["data"]["database"]
        try:
            dest, owner, exists, live_uuid = self._describe(
                database, destination, archive
            )
        except (EmergencyRefused, em.EmergencyConfigError) as exc:
            self._log("restore_refused", "failure", database, archive, str(exc))
            return self._archives_page(
                database, record["chain"], error=str(exc), status=409
            )
        foreign, expected_name = _whose(owner, exists, live_uuid)
        self._log(
            "prepared",
            "success",
            database,
            archive,
            "archive of %s (uuid %s)%s"
            % (
                owner.get("database") or "?",
                owner.get("uuid") or "?",
                ", FOREIGN" if foreign else "",
            ),
        )
        size = 0
        try:
            from ..lib.sinks import make_sink

            sink = make_sink(dest.config)
            try:
                size = sink.stat(archive).size
            finally:
                sink.close()
        except Exception as exc:  # only for the page: the restore reads it again
            _logger.info("Cannot stat %s: %s", archive, exc)
        record["data"] = {
            "database": database,
            "destination": int(destination),
            "destination_name": dest.name,
            "archive": archive,
            "size": size,
            "exists": exists,
            "expected_uuid": live_uuid,
            "foreign": foreign,
            "expected_name": expected_name,
            "source_name": owner.get("database"),
            "source_uuid": owner.get("uuid"),
            "created_at": owner.get("created_at"),
            "odoo_version": owner.get("odoo_version"),
            "encrypted": bool(owner.get("encrypted")),
        }
        return self._confirm_page(record)

    @http.route(BASE + "/restore", **POST_ROUTE)
    def emergency_restore(
        self,
        token="",
        csrf_token="",
        confirm_name="",
        confirm_foreign="",
        confirm_foreign_name="",
        **_kw,
    ):
        self._check_enabled()
        refused, stamp = self._gate(csrf_token)
        if refused:
            return refused
        record = self._take(token, "restore")
        if record is None:
            return self._expired()
        self._forgive(stamp)
        data = record["data"]
        database, archive = data["database"], data["archive"]
        try:
            dest, owner, exists, live_uuid = self._describe(
                database, data["destination"], archive
            )
            foreign, expected_name = _whose(owner, exists, live_uuid)
            if (foreign, owner.get("uuid"), live_uuid, exists) != (
                data["foreign"],
                data["source_uuid"],
                data["expected_uuid"],
                data["exists"],
            ):
                raise EmergencyRefused(
                    "The archive or the database is not the one shown any more: "
                    "check it again."
                )
        except (EmergencyRefused, em.EmergencyConfigError) as exc:
            self._log("restore_refused", "failure", database, archive, str(exc))
            return self._archives_page(
                database, record["chain"], error=str(exc), status=409
            )
        problem = None
        if (confirm_name or "") != database:
            problem = "Type the database name %s exactly to confirm the restore." % (
                database
            )
        elif foreign and not (
            confirm_foreign
            and expected_name
            and (confirm_foreign_name or "").strip() == expected_name
        ):
            problem = (
                "This is an archive of another database (%s, uuid %s), not of %s. "
                "Tick the confirmation and type %s to restore it anyway."
                % (
                    owner.get("database") or "unknown name",
                    owner.get("uuid") or "none",
                    database,
                    expected_name,
                )
            )
        elif em.is_locked(state_dir() / "restore.lock"):
            problem = "Another emergency restore is running on this server."
        if problem:
            self._log("restore_refused", "failure", database, archive, problem)
            return self._confirm_page(record, error=problem, status=409)
        ok, reason = backup_engine.keyring_status()
        if not ok:
            self._log("restore_refused", "failure", database, archive, reason)
            return self._confirm_page(
                record, error="The server keyring is missing: %s" % reason, status=503
            )
        job_id = em.new_job_id()
        directory = state_dir()
        status_path = jobs_dir(directory) / f"{job_id}.json"
        now = time.time()
        _Status(status_path, database=database, started=now).update()
        job = {
            "job_id": job_id,
            "state_dir": str(directory),
            "status_path": str(status_path),
            "started": now,
            "database": database,
            "archive": archive,
            "sink": dest.config,
            "foreign": foreign,
            "source_uuid": owner.get("uuid"),
            "expected_uuid": live_uuid,
            "db": backup_engine.db_params(database),
            "data_dir": backup_engine.data_dir(),
            "address": self._address(),
            "user_agent": em.cap(request.httprequest.headers.get("User-Agent")),
        }
        try:
            spawn_restore(job)
        except Exception as exc:
            _logger.exception("Cannot start the emergency restore of %s", database)
            message = "The restore process could not start: %s" % em.cap(exc)
            self._log("restore_failed", "failure", database, archive, message)
            return self._confirm_page(record, error=message, status=500)
        self._log(
            "restore_requested",
            "success",
            database,
            archive,
            "restore started%s"
            % (
                " (archive of another database: %s, confirmed)"
                % (owner.get("database") or owner.get("uuid"))
                if foreign
                else ""
            ),
        )
        status_token = self._issue(
            "status", chain=record["chain"], ttl=em.STATUS_TTL, job=job_id
        )
        return self._page(
            "emergency.status",
            {
                "database": database,
                "archive": archive,
                "token": status_token,
                "status": self._status_values(
                    em.read_private_json(status_path, {}) or {}
                ),
            },
        )

    @http.route(BASE + "/status", **POST_ROUTE)
    def emergency_status(self, token="", csrf_token="", format="html", **_kw):
        self._check_enabled()
        as_json = format == "json"
        refused, stamp = self._gate(csrf_token)
        if refused:
            if as_json:
                return request.make_json_response(
                    {"state": "failed", "message": "refused"},
                    headers=SECURITY_HEADERS,
                    status=refused.status_code,
                )
            return refused
        record = self._take(token, "status", consume=False)
        if record is None:
            if as_json:
                self._log("token_invalid", "failure")
                return request.make_json_response(
                    {"state": "failed", "message": "This page has expired."},
                    headers=SECURITY_HEADERS,
                    status=403,
                )
            return self._expired()
        self._forgive(stamp)
        job_id = em.check_job_id(record["data"]["job"])
        raw = em.read_private_json(jobs_dir() / f"{job_id}.json", {}) or {}
        values = self._status_values(raw)
        if as_json:
            return request.make_json_response(values, headers=SECURITY_HEADERS)
        return self._page(
            "emergency.status",
            {
                "database": raw.get("database")
                or (raw.get("result") or {}).get("database"),
                "archive": "",
                "token": token,
                "status": values,
            },
        )


# ---------------------------------------------------------------------------
# Links from the login screen and the database selector
# ---------------------------------------------------------------------------
class EmergencyLoginLink(Home):
    @http.route()
    def web_login(self, *args, **kw):
        response = super().web_login(*args, **kw)
        if getattr(response, "is_qweb", False) and enabled():
            response.qcontext["backup_emergency_restore"] = True
        if request.params.get("login_success") and request.session.uid:
            _wake_replay_at_admin_login()
        return response


def _wake_replay_at_admin_login():
    """An administrator signed in: the database works, so the emergency
    page's pending attempts go into its audit trail now (the replay cron is
    woken; it runs in its own transaction and never slows the login)."""
    try:
        env = request.env(user=request.session.uid)
        if not env.user.has_group("base.group_system") or not emergency_log_pending(
            env
        ):
            return
        cron = env.ref(
            "db_backup_suite.ir_cron_db_backup_emergency_replay",
            raise_if_not_found=False,
        )
        if cron:
            cron.sudo()._trigger()
    except Exception:  # never refuse a login because of this
        _logger.warning("Could not wake the emergency log replay", exc_info=True)


# ---------------------------------------------------------------------------
# The emergency destinations file, exported from the Settings screen
# ---------------------------------------------------------------------------
class EmergencyDestinationsFile(http.Controller):
    @http.route(
        "/db_backup/emergency_destinations",
        type="http",
        auth="user",
        methods=["GET"],
    )
    def emergency_destinations_file(self, token="", **_kw):
        """The emergency destinations file as a download: Settings
        administrators only, with the single-use token the Settings button
        put in this session after the password was asked again. Audited;
        nothing is stored (no attachment)."""
        env = request.env
        env["db.backup.run"]._check_admin_access()
        settings = env["res.config.settings"]
        if not settings._take_emergency_file_token(request.session, token):
            raise Forbidden(
                env._(
                    "This download link was used, has expired or belongs to "
                    "another session: export the file again from the Settings."
                )
            )
        content = settings._emergency_destinations_document()
        names = env["db.backup.destination"].sudo().search([]).mapped("name")
        env["audit.event"].log_event(
            "export",
            res_model="db.backup.destination",
            res_name="Emergency destinations file",
            details={
                "operation": "emergency_destinations_file",
                "destinations": names,
            },
            message="Emergency destinations file (with credentials) downloaded "
            "for %s destination(s)" % len(names),
        )
        return request.make_response(
            content.encode(),
            headers=[
                ("Content-Type", "application/json; charset=utf-8"),
                (
                    "Content-Disposition",
                    'attachment; filename="backup-destinations.json"',
                ),
                ("Cache-Control", "no-store"),
                ("Pragma", "no-cache"),
                ("X-Content-Type-Options", "nosniff"),
            ],
        )


class EmergencySelectorLink(Database):
    def _render_template(self, **d):
        page = super()._render_template(**d)
        if not enabled():
            return page
        return with_emergency_link(page)


def with_emergency_link(page):
    """The database selector / manager page with a link to the emergency
    restore under its database list."""
    doc = lxml_html.document_fromstring(str(page))
    anchor = doc.find_class("o_database_list")
    if not anchor:
        return page
    link = lxml_html.fragment_fromstring(
        '<p class="text-center small mt-3 o_emergency_restore_link">'
        f'<a href="{BASE}">Emergency restore</a></p>'
    )
    anchor[0].append(link)
    return Markup(
        lxml_html.tostring(doc, encoding="unicode", doctype="<!DOCTYPE html>")
    )
