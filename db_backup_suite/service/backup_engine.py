"""Bridge between the Odoo layer and the pure-Python engine (``lib/``).

Everything here is plain helpers, no model: where the keyring comes from,
how to reach PostgreSQL and the filestore, and how to run an engine job in a
child process whose secrets travel through its stdin (never its argv) and
whose progress and result come back as JSON lines in its own event file
(private jobs folder), which outlives the process that started it.
"""

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from odoo.tools import config

from suite_core.keyring import SuiteError

_logger = logging.getLogger(__name__)

ADDON_DIR = Path(__file__).resolve().parent.parent
ADDONS_PARENT = ADDON_DIR.parent
#: ``ir_config_parameter`` key the suite writes into each sandbox and
#: pre-restore safety copy it makes; a drop checks it first.
SANDBOX_MARKER_KEY = "db_backup_suite.sandbox_marker"
SEAL_VERSION = "v1"
#: the engine job's child process: ``python -m <ENGINE_JOB_MODULE>``
ENGINE_JOB_MODULE = "db_backup_suite.service.engine_job"
#: what an engine job's command line names: the module, and its former name
#: (``cli.engine_job``) for a job started before an upgrade moved it, which
#: still runs and reports through its event file
ENGINE_JOB_MODULES = (ENGINE_JOB_MODULE, "db_backup_suite.cli.engine_job")


def naive_utc(value):
    """``value`` (an ISO 8601 string, as the engine's manifests and events
    carry it, or a datetime) as a naive UTC datetime, the form of Odoo's
    ``Datetime`` fields; an aware value is converted to UTC, a naive one is
    taken as UTC already. ``False`` when ``value`` is empty."""
    if not value:
        return False
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    if dt.tzinfo:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def aware_utc(value):
    """``value`` as :func:`naive_utc` reads it, tagged UTC; None when empty."""
    dt = naive_utc(value)
    return dt.replace(tzinfo=UTC) if dt else None


class KeyringUnavailable(SuiteError):
    """No usable server keyring: backups must not run."""


def keyring_path():
    from suite_core import keyring as keyring_lib

    return keyring_lib.keyring_file_path(config)


def load_keyring():
    """Return the server keyring or raise ``KeyringUnavailable``."""
    from suite_core import keyring as keyring_lib

    try:
        return keyring_lib.Keyring.from_config(config)
    except Exception as exc:  # KeyringError, OSError, malformed text
        raise KeyringUnavailable(str(exc)) from exc


def keyring_status():
    """(ok, message) for the banner on the backups page."""
    try:
        keyring = load_keyring()
    except KeyringUnavailable as exc:
        return False, str(exc)
    return True, "active key %s (%s)" % (
        keyring.active.key_id,
        keyring.active.fingerprint,
    )


def seal(purpose, tenant, plaintext, aad):
    """``plaintext`` (str) encrypted with the server keyring's sub-key for
    ``purpose`` and ``tenant`` (the database uuid), bound to ``aad`` (bytes):
    ``v1:<key id>:<base64(nonce || ciphertext)>``. For a secret that must
    wait in a record between two requests (never the plaintext)."""
    import base64

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    keyring = load_keyring()
    kid = keyring.active.key_id
    key = keyring.derive(purpose, tenant, key_id=kid)
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), aad)
    return "%s:%s:%s" % (SEAL_VERSION, kid, base64.b64encode(nonce + sealed).decode())


def unseal(purpose, tenant, blob, aad):
    """The plaintext of :func:`seal`'s ``blob``; ``ValueError`` when it was
    sealed for another purpose, tenant or ``aad``, or altered."""
    import base64

    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        version, kid, payload = (blob or "").split(":", 2)
        if version != SEAL_VERSION:
            raise ValueError("unknown seal version")
        raw = base64.b64decode(payload)
        key = load_keyring().derive(purpose, tenant, key_id=kid)
        return AESGCM(key).decrypt(raw[:12], raw[12:], aad).decode("utf-8")
    except (InvalidTag, ValueError, KeyError, UnicodeError) as exc:
        raise ValueError("the sealed value cannot be opened here") from exc
    except Exception as exc:  # keyring errors: an unknown key id, no keyring
        raise ValueError("the sealed value cannot be opened: %s" % exc) from exc


def db_params(dbname):
    """Connection parameters of ``dbname`` as the engine expects them."""
    return {
        "dbname": dbname,
        "host": config.get("db_host") or None,
        "port": int(config.get("db_port") or 5432),
        "user": config.get("db_user") or None,
        "password": config.get("db_password") or None,
    }


def filestore_dir(dbname):
    return config.filestore(dbname)


def child_env():
    """Environment of an engine child: keyring location, PYTHONPATH, PGPASSWORD."""
    import suite_core
    from suite_core import keyring as keyring_lib

    env = dict(os.environ)
    path = keyring_path()
    if path:
        env[keyring_lib.ENV_KEYRING_FILE] = os.path.abspath(path)
    # the child imports ``db_backup_suite.lib`` and ``suite_core`` by their
    # plain names: the folders holding them come first on its path
    pythonpath = [str(ADDONS_PARENT), str(Path(suite_core.__file__).parent.parent)]
    if env.get("PYTHONPATH"):
        pythonpath.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(pythonpath))
    if config.get("db_password") and not env.get("PGPASSWORD"):
        env["PGPASSWORD"] = config["db_password"]
    return env


#: events that end a job (``service/engine_job.py``)
FINAL_EVENTS = ("result", "error")


def job_events_path(kind, dbname, job_id):
    """The event file of job ``job_id`` (a run id) of ``dbname``, in the
    private jobs folder: the same name for the process that starts the job
    and for the watchdog that finds it after a restart."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", dbname or "")[:80]
    return os.path.join(jobs_dir(), "%s-%s-%d.events" % (kind, safe, int(job_id)))


def _create_private(path):
    """A new empty 0600 file at ``path`` (what was there is removed: a
    leftover of an older job of the same name); returns its fd."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, 0o600)


def reap_when_done(proc):
    """Wait for the detached child ``proc`` in a daemon thread, so that it
    never lingers as a zombie of this process once it ended (a job killed
    by SIGKILL included): a zombie still answers ``kill(pid, 0)``, and the
    maintenance of a production restore would look held by it. The
    caller's own ``proc.poll()``/``proc.wait()`` keep working (``Popen``
    serialises the waits); when this process ends first, the child is
    reparented and reaped by init. Returns ``proc``."""
    threading.Thread(
        target=proc.wait, name="db_backup_suite-reap-%d" % proc.pid, daemon=True
    ).start()
    return proc


def private_log(path):
    """A new 0600 log file at ``path`` for a detached job's output (its
    fd, to close once handed to the child)."""
    return _create_private(path)


def remove_stale_logs(directory=None, older_than=24 * 3600, now=None):
    """Remove the output logs of detached restores and download
    preparations (``restore-*.json.log``, ``download-*.json.log``) a day
    old (daily cleanup): their job ended long ago. Returns the names."""
    directory = directory or jobs_dir()
    now = time.time() if now is None else now
    removed = []
    for name in os.listdir(directory):
        if not (
            name.endswith(".json.log") and name.startswith(("restore-", "download-"))
        ):
            continue
        path = os.path.join(directory, name)
        try:
            if now - os.lstat(path).st_mtime < older_than:
                continue
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            _logger.warning("Cannot remove %s: %s", path, exc)
            continue
        removed.append(name)
    return sorted(removed)


def remove_job_files(events_path):
    """Remove a job's event file and its stderr log (best effort)."""
    if not events_path:
        return
    for path in (events_path, events_path + ".log"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue  # already gone
        except OSError as exc:
            _logger.warning("Cannot remove %s: %s", path, exc)


def spawn_job(payload, events_path=None, head=None):
    """Start ``service/engine_job.py`` with ``payload`` (secrets included) on stdin.

    The child runs in its own session and writes its events (progress,
    result or error: JSON lines) to ``events_path`` (0600, in the private
    jobs folder; a temporary name when None), its stderr to
    ``<events_path>.log``: neither is a pipe to this process, so the job
    goes on and reports its result when this process dies (a worker
    restart, a kill) and whoever follows the file later finds it.
    ``head``: an event written first (what the caller needs to record the
    result after a restart; no secret). Returns the ``Popen`` with
    ``events_path`` and ``log_path`` attributes.
    """
    if events_path is None:
        fd, events_path = tempfile.mkstemp(
            prefix="job-", suffix=".events", dir=jobs_dir()
        )
        os.fchmod(fd, 0o600)
    else:
        fd = _create_private(events_path)
    with os.fdopen(fd, "w") as handle:
        if head:
            handle.write(json.dumps(head, default=str) + "\n")
    log_path = events_path + ".log"
    log_fd = _create_private(log_path)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", ENGINE_JOB_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=log_fd,
            cwd=str(ADDONS_PARENT),
            env=child_env(),
            start_new_session=True,
        )
    finally:
        os.close(log_fd)
    proc.events_path = events_path
    proc.log_path = log_path
    try:
        proc.stdin.write(json.dumps(dict(payload, events_path=events_path)).encode())
    finally:
        proc.stdin.close()
    return reap_when_done(proc)


def job_alive(pid):
    """Whether the engine job ``pid`` still runs: not gone, not a zombie
    (reaped here when it is this process's child) and, where ``/proc`` says,
    still an engine job (a reused pid is not one)."""
    if not pid:
        return False
    # ChildProcessError: not our child (the usual case after a restart)
    with contextlib.suppress(OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False  # our own child, just ended
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: not one of ours
    proc_dir = "/proc/%d" % pid
    if not os.path.isdir("/proc/self"):
        return True
    try:
        with open(proc_dir + "/stat", "rb") as handle:
            stat = handle.read().decode("utf-8", "replace")
        if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
            return False
        with open(proc_dir + "/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return False
    return any(name.encode() in cmdline for name in ENGINE_JOB_MODULES)


class EventFile:
    """Reads a job's event file as it grows (complete lines only)."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self._partial = b""

    def read_new(self):
        """The events appended since the last call (a non-JSON line becomes
        a ``log`` event); none when the file is absent."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, OSError):
            return []
        with os.fdopen(fd, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        events = []
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "log", "message": line}
            if not isinstance(event, dict):
                event = {"event": "log", "message": line}
            events.append(event)
        return events

    def follow(self, alive, until=None, poll=0.25):
        """Yield the events until the final one, or until the job is gone
        (``alive()`` false, the file read to its end), or past ``until``
        (a ``time.monotonic()`` value)."""
        while True:
            events = self.read_new()
            for event in events:
                yield event
                if event.get("event") in FINAL_EVENTS:
                    return
            if events:
                continue
            if not alive():
                for event in self.read_new():  # written just before it ended
                    yield event
                    if event.get("event") in FINAL_EVENTS:
                        return
                return
            if until is not None and time.monotonic() >= until:
                return
            time.sleep(poll)


def read_events(path):
    """Every event of the job file ``path`` written so far."""
    return EventFile(path).read_new()


def log_tail(events_path, limit=2000):
    """The end of a job's stderr log (``<events_path>.log``)."""
    try:
        with open(events_path + ".log", "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(size - limit, 0))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def iter_events(proc):
    """Yield the events of a job started by :func:`spawn_job` until its end."""
    yield from EventFile(proc.events_path).follow(lambda: proc.poll() is None)


def run_job(payload, on_event=None):
    """Run a job to completion; return its final ``result`` event.

    Raises :class:`JobError` with the child's own error message when it
    fails.
    """
    proc = spawn_job(payload)
    result = None
    error = None
    try:
        for event in iter_events(proc):
            kind = event.get("event")
            if kind == "result":
                result = event
            elif kind == "error":
                error = event
            if on_event:
                on_event(event)
        returncode = proc.wait()
        stderr = log_tail(proc.events_path)
    finally:
        remove_job_files(proc.events_path)
    if error:
        raise JobError(error.get("message") or "engine job failed", error)
    if result is None or returncode:
        tail = stderr.strip().splitlines()[-5:]
        raise JobError(
            "engine job exited with code %s: %s" % (returncode, " | ".join(tail)),
            {"type": "Crash"},
        )
    if stderr.strip():
        _logger.info("engine job stderr: %s", stderr.strip()[-2000:])
    return result


class JobError(SuiteError):
    """An engine job ended without a result: its error event (``event``:
    ``type``, ``message``...) or ``{"type": "Crash"}`` when it died."""

    def __init__(self, message, event):
        super().__init__(message)
        self.event = event


def data_dir():
    return config["data_dir"]


def jobs_dir():
    """Private folder (0700) for job files and uploads, in the data dir."""
    path = os.path.join(data_dir(), "db_backup_suite")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def odoo_args():
    """Options for a child ``python -m odoo db_backup`` to find the same
    databases, addons and keyring as this server (no password on argv: the
    child reads the config file, or PGPASSWORD from its environment)."""
    args = []
    if config.rcfile and os.path.exists(config.rcfile):
        args.append("--config=%s" % config.rcfile)
    for option, key in (
        ("--addons-path", "addons_path"),
        ("--data-dir", "data_dir"),
        ("--db_host", "db_host"),
        ("--db_port", "db_port"),
        ("--db_user", "db_user"),
    ):
        if config.get(key):
            args.append("%s=%s" % (option, config[key]))
    return args


def pg_params():
    from ..lib import pgtools

    params = db_params("postgres")
    return pgtools.PgParams(
        host=params["host"],
        port=params["port"],
        user=params["user"],
        password=params["password"],
    )


def database_exists(dbname):
    from ..lib import pgtools

    return pgtools.database_exists(pg_params(), dbname)


def _close_database(dbname):
    """Close this process's registry and pooled connections of ``dbname``."""
    import odoo
    from odoo.modules.registry import Registry

    Registry.delete(dbname)
    odoo.sql_db.close_db(dbname)


def config_parameter_of(dbname, key):
    """``ir_config_parameter`` ``key`` of the database ``dbname`` (None: not
    set, no such table or no such database). A plain connection: no
    registry is loaded."""
    from ..lib import pgtools

    params = pg_params()
    if not pgtools.database_exists(params, dbname):
        return None
    conn = params.connect(dbname)
    try:
        with conn.cursor() as cr:
            cr.execute("SELECT to_regclass('ir_config_parameter')")
            if cr.fetchone()[0] is None:
                return None
            cr.execute("SELECT value FROM ir_config_parameter WHERE key = %s", [key])
            row = cr.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


def sandbox_marker_of(dbname):
    """The sandbox marker the suite wrote into ``dbname`` (None: none)."""
    return config_parameter_of(dbname, SANDBOX_MARKER_KEY)


def write_sandbox_marker(dbname, marker):
    """Record in ``dbname`` that the suite made it (sandbox or safety copy);
    the drop checks it before ``DROP DATABASE``. ``marker`` None removes it
    (a database restored in production carries none)."""
    params = pg_params()
    conn = params.connect(dbname, autocommit=False)
    try:
        with conn.cursor() as cr:
            cr.execute("SELECT to_regclass('ir_config_parameter')")
            if cr.fetchone()[0] is None:
                return False
            cr.execute(
                "DELETE FROM ir_config_parameter WHERE key = %s", [SANDBOX_MARKER_KEY]
            )
            if marker:
                cr.execute(
                    "INSERT INTO ir_config_parameter (key, value) VALUES (%s, %s)",
                    [SANDBOX_MARKER_KEY, marker],
                )
        conn.commit()
        return True
    finally:
        conn.close()


def drop_sandbox_database(name, production_db, marker):
    """Drop the sandbox (or pre-restore safety copy) ``name`` of
    ``production_db`` and its filestore, after checking that it is one:

    - the name is one the suite derives from ``production_db``
      (``lib.safety.check_sandbox_name``: never ``production_db`` itself,
      ``postgres``, a template, ``..``);
    - the database, when it exists, carries the ``marker`` the suite wrote
      into it when it made it (a database merely named like a sandbox is
      not one);
    - its filestore lies inside ``<data_dir>/filestore`` (``safe_data_path``).

    Raises ``lib.errors.SafetyError`` (nothing dropped) or the engine's
    ``RestoreError`` / ``OSError``. Returns the lib's report.
    """
    import hmac

    from ..lib import errors, safety

    safety.check_sandbox_name(name, production_db=production_db)
    safety.filestore_of(data_dir(), name)  # the path check, before anything
    found = sandbox_marker_of(name)
    if database_exists(name) and not (
        marker and found and hmac.compare_digest(found, marker)
    ):
        raise errors.NotSuiteDatabaseError(
            f"refusing to drop {name!r}: it does not carry the mark of a sandbox "
            "this database made (a database merely named like one is left alone)"
        )
    _close_database(name)
    return safety.drop_database_if_suite_owned(
        pg_params(),
        name,
        production_db=production_db,
        data_dir=data_dir(),
    )


def list_databases(prefix):
    """Names of the databases starting with ``prefix`` (for cleanups)."""
    import psycopg2

    params = db_params("postgres")
    conn = psycopg2.connect(**{k: v for k, v in params.items() if v is not None})
    try:
        with conn.cursor() as cr:
            cr.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                [prefix.replace("_", r"\_") + "%"],
            )
            return [row[0] for row in cr.fetchall()]
    finally:
        conn.close()


def audit_head(dbname):
    """The audit chain's newest witnessed head of ``dbname`` (a dict) or None:
    backups keep it in their manifest, restores check the chain against it."""
    from suite_core import witness

    try:
        return witness.latest_head(
            config.get("data_dir"),
            dbname,
            directory=config.get("audit_witness_dir") or None,
        )
    except Exception:  # the witness is evidence, never a reason to fail a backup
        _logger.warning("Cannot read the audit witness of %s", dbname, exc_info=True)
        return None


def rename_sandbox(old, new):
    """Rename the suite's sandbox ``old`` to ``new`` (both names the suite
    gives to this server's sandboxes), database and filestore."""
    from ..lib import pgtools, safety

    for name in (old, new):
        safety.check_sandbox_name(name)
    source = safety.filestore_of(data_dir(), old)
    target = safety.filestore_of(data_dir(), new)
    if os.path.lexists(target):
        raise FileExistsError(f"{target} exists")
    _close_database(old)
    conn = pg_params().connect("postgres", autocommit=True)
    try:
        with conn.cursor() as cr:
            pgtools.rename_database(cr, old, new)
    finally:
        conn.close()
    if os.path.isdir(source) and not os.path.islink(source):
        os.rename(source, target)
