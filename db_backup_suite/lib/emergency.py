"""Pure logic of the emergency restore page (no Odoo here).

The page itself (``controllers/emergency.py``) serves a master-password
protected restore when no database can be loaded. What it needs that is
plain Python lives here, so it is the same in every Odoo worker:

- :func:`is_enabled`: the server option that switches the page on;
- :func:`load_destinations`: the server-side destinations file (the
  destinations stored in a database may be unreadable in an emergency);
- :class:`StateStore`: one small JSON file (0600) under a lock, shared by
  every worker process of the server, holding the rate limiter's counters
  and the step tokens (prefork workers share no memory, so an in-memory
  table would reject every other request);
- the rate limiter (:func:`blocked`, :func:`record_failure`), keyed by
  client address (an IPv6 client by its /64);
- step tokens (:func:`issue_token`, :func:`take_token`): random, stored as
  their SHA-256, bound to the client address, short-lived, single use; a
  token used revokes every other token of its chain (one login);
- CSRF tokens (:func:`make_csrf`, :func:`check_csrf`): HMAC of a random
  cookie, the client address and a time stamp under a server secret;
- :class:`AttemptLog`: every attempt as one JSON line in a 0600 file, read
  back later into the database's audit trail (``seq`` orders them);
- job status files written atomically by the restore process.

Bounded memory: the state file keeps at most :data:`MAX_KEYS` addresses,
:data:`MAX_TOKENS` tokens and :data:`GLOBAL_LIMIT` global failure stamps;
the attempt log is compacted above :data:`LOG_MAX_BYTES`.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import naming
from .errors import SuiteError

#: odoo.conf option switching the page on (off when absent).
ENABLE_OPTION = "backup_emergency_restore"
#: odoo.conf option naming the destinations file.
DESTINATIONS_OPTION = "backup_emergency_destinations"

#: Failed attempts allowed per client address (IPv6: per /64) and window.
LIMIT = 5
#: The rate limiter's window, in seconds.
WINDOW = 300
#: Failed attempts allowed from all addresses together per window (an
#: attacker holding many addresses gets no more than this).
GLOBAL_LIMIT = 100
#: Addresses the limiter remembers at most (the oldest are forgotten first).
MAX_KEYS = 4096
#: Step tokens kept at most (the oldest are dropped first).
MAX_TOKENS = 256
#: Lifetime of a step token (seconds): the admin has this long per step.
TOKEN_TTL = 15 * 60
#: Lifetime of the token that follows a running restore's progress.
STATUS_TTL = 24 * 3600
#: Lifetime of a CSRF token (seconds).
CSRF_TTL = 2 * 3600
#: The attempt log is compacted above this size to entries of the last
#: :data:`LOG_KEEP_DAYS` days, and to the newest :data:`LOG_KEEP_BYTES`.
LOG_MAX_BYTES = 8 * 1024 * 1024
LOG_KEEP_BYTES = 4 * 1024 * 1024
LOG_KEEP_DAYS = 90
#: Longest value of a text field of a logged attempt.
FIELD_MAX = 256
MESSAGE_MAX = 1000

TRUE_VALUES = frozenset({"1", "true", "yes", "on"})
#: make_sink() options that carry a secret; ``<option>_env`` names an
#: environment variable and ``<option>_file`` a file holding it.
SECRET_OPTIONS = frozenset(
    {
        "password",
        "access_key",
        "secret_key",
        "session_token",
        "private_key",
        "private_key_passphrase",
        "known_hosts",
    }
)
SINK_TYPES = ("local", "s3", "sftp")
_STEP_RE = re.compile(r"^[a-z]{1,16}$")


class EmergencyConfigError(SuiteError):
    """The emergency restore configuration is missing or unusable."""


# ---------------------------------------------------------------------------
# Switch and client address
# ---------------------------------------------------------------------------
def is_enabled(value) -> bool:
    """True only for an explicit yes (``True``, ``1``, ``true``, ``yes``,
    ``on``); anything else, including a missing option, is off."""
    if value is True:
        return True
    if isinstance(value, str):
        return value.strip().lower() in TRUE_VALUES
    return False


def client_address(remote_addr, forwarded_for="", proxy_mode=False) -> str:
    """The client address: ``REMOTE_ADDR``, or behind a trusted proxy
    (``proxy_mode``) the right-most ``X-Forwarded-For`` entry (the one the
    proxy saw; earlier ones are client-supplied and can be forged). The
    same rule as the audit log's."""
    if proxy_mode and forwarded_for:
        parts = [p.strip() for p in forwarded_for.split(",") if p.strip()]
        if parts:
            with contextlib.suppress(ValueError):
                return str(ipaddress.ip_address(parts[-1]))
    try:
        return str(ipaddress.ip_address((remote_addr or "").strip()))
    except ValueError:
        return "unknown"


def limiter_key(address: str) -> str:
    """What the rate limiter counts by: an IPv4 address, or the /64 of an
    IPv6 one (one host usually holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if ip.version == 6:
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def cap(value, limit=FIELD_MAX):
    """``value`` as text of at most ``limit`` characters (None stays None)."""
    if value is None:
        return None
    text = str(value)
    if len(text) > limit:
        return text[: limit - 1] + "\u2026"
    return text


def safe_database_name(name) -> str | None:
    """``name`` if it is a valid Odoo database name, else None."""
    try:
        return naming.check_database_name(name) if len(name) <= 63 else None
    except (ValueError, TypeError):
        return None


# ---------------------------------------------------------------------------
# Private files
# ---------------------------------------------------------------------------
def private_dir(path) -> Path:
    """Create (0700) or check the directory ``path``: a real directory (no
    symlink) of this process's user, not reachable by group or others."""
    path = Path(path)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise EmergencyConfigError(f"{path} is not a directory (a symlink?)")
    if st.st_uid != os.getuid():
        raise EmergencyConfigError(f"{path} belongs to another user")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def _open_private(path, flags) -> int:
    return os.open(path, flags | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o600)


def write_private_json(path, data) -> None:
    """Write ``data`` as JSON to ``path`` atomically (0600 temp file, then
    rename): a reader sees the old or the new content, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = _open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, default=str)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_private_json(path, default=None):
    """The JSON content of ``path`` (not following a symlink); ``default``
    when it is missing or unreadable."""
    try:
        fd = _open_private(path, os.O_RDONLY)
    except OSError:
        return default
    with os.fdopen(fd) as handle:
        try:
            return json.load(handle)
        except ValueError:
            return default


@contextlib.contextmanager
def locked(path, blocking=True):
    """An exclusive ``flock`` on the file ``path`` (created 0600) for the
    block; with ``blocking=False`` raises BlockingIOError when taken."""
    fd = _open_private(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        yield fd
    finally:
        os.close(fd)  # releases the lock


def is_locked(path) -> bool:
    """Whether another process holds :func:`locked` on ``path``."""
    try:
        with locked(path, blocking=False):
            return False
    except BlockingIOError:
        return True


def server_secret(directory) -> bytes:
    """The page's 32-byte HMAC secret (``<directory>/secret``, 0600),
    created on first use; shared by every worker of the server."""
    path = Path(directory) / "secret"
    with locked(Path(directory) / "secret.lock"):
        try:
            fd = _open_private(path, os.O_RDONLY)
        except FileNotFoundError:
            value = secrets.token_bytes(32)
            fd = _open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            with os.fdopen(fd, "wb") as handle:
                handle.write(base64.b64encode(value))
            return value
        with os.fdopen(fd, "rb") as handle:
            return base64.b64decode(handle.read().strip())


# ---------------------------------------------------------------------------
# The destinations file
# ---------------------------------------------------------------------------
@dataclass
class Destination:
    """One destination of the file: a display ``name`` and the
    ``make_sink()`` config (secrets included; never shown)."""

    name: str
    config: dict = field(repr=False)

    def describe(self) -> str:
        kind = self.config.get("type")
        if kind == "local":
            return f"local:{self.config.get('path')}"
        if kind == "s3":
            prefix = self.config.get("prefix") or ""
            return f"s3://{self.config.get('bucket')}/{prefix}".rstrip("/")
        if kind == "sftp":
            return (
                f"sftp://{self.config.get('username')}@{self.config.get('host')}:"
                f"{self.config.get('port') or 22}/{self.config.get('path') or ''}"
            )
        return str(kind)


def _resolve_secrets(entry: dict, where: str, environ) -> dict:
    """Replace ``<secret>_env`` / ``<secret>_file`` keys by the secret."""
    config = {}
    for key, value in entry.items():
        base, _, how = key.rpartition("_")
        if base in SECRET_OPTIONS and how in ("env", "file"):
            if base in entry or base in config:
                raise EmergencyConfigError(
                    f"{where}: {base!r} is given twice (inline and as {key!r})"
                )
            if how == "env":
                secret = environ.get(str(value))
                if not secret:
                    raise EmergencyConfigError(
                        f"{where}: the environment variable {value!r} ({key}) "
                        "is not set in the Odoo server's environment"
                    )
            else:
                try:
                    secret = Path(str(value)).read_text().strip("\r\n")
                except OSError as exc:
                    raise EmergencyConfigError(
                        f"{where}: cannot read {key} {value}: {exc.strerror}"
                    ) from None
            config[base] = secret
        else:
            config[key] = value
    return config


def load_destinations(path, environ=None) -> list[Destination]:
    """The destinations of the emergency destinations file ``path``.

    The file is JSON: ``{"destinations": [...]}`` (or the list itself).
    Each entry is either

    - a string, exactly what the engine's command line takes after
      ``--from`` (``local:/dir``, ``s3://bucket/prefix?endpoint=...``,
      ``sftp://user@host:22/dir?known_hosts=FILE&private_key_file=FILE``),
      with its secrets from the same environment variables
      (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
      ``DB_BACKUP_SUITE_SFTP_PASSWORD``); or
    - an object: the command line's JSON destination config (``type`` and
      the sink's options), plus an optional ``name`` to show, where any
      secret option may be given as ``<option>_env`` (an environment
      variable of the Odoo server) or ``<option>_file`` (a file holding it)
      instead of inline.

    The file must be a regular file not writable by group or others (its
    destinations decide what gets restored); one holding an inline secret
    must not be readable by others either. Raises
    :class:`EmergencyConfigError`.
    """
    from .cli import UsageError, parse_destination

    env = os.environ if environ is None else environ
    if not path:
        raise EmergencyConfigError(
            f"no destinations file: set {DESTINATIONS_OPTION} in the server "
            "configuration"
        )
    try:
        st = os.stat(path)
    except OSError as exc:
        raise EmergencyConfigError(
            f"cannot read the destinations file {path}: {exc.strerror}"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise EmergencyConfigError(f"{path} is not a regular file")
    if st.st_mode & 0o022:
        raise EmergencyConfigError(
            f"{path} is writable by group or others: chmod go-w {path}"
        )
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise EmergencyConfigError(f"{path}: not readable JSON: {exc}") from None
    entries = data.get("destinations") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise EmergencyConfigError(
            f'{path}: expected {{"destinations": [...]}} with at least one entry'
        )
    result = []
    for index, entry in enumerate(entries, 1):
        where = f"{path}, destination {index}"
        if isinstance(entry, str):
            try:
                config = parse_destination(entry, environ=env)
            except UsageError as exc:
                raise EmergencyConfigError(f"{where}: {exc}") from None
            name = entry.split("?", 1)[0]
        elif isinstance(entry, dict):
            entry = dict(entry)
            name = entry.pop("name", None)
            inline = SECRET_OPTIONS & set(entry) - {"known_hosts"}
            if inline and st.st_mode & 0o004:
                raise EmergencyConfigError(
                    f"{where}: an inline secret ({', '.join(sorted(inline))}) in "
                    f"a file readable by everyone: chmod o-r {path}, or use "
                    "<option>_env / <option>_file"
                )
            config = _resolve_secrets(entry, where, env)
        else:
            raise EmergencyConfigError(f"{where}: a string or an object")
        if config.get("type") not in SINK_TYPES:
            raise EmergencyConfigError(
                f"{where}: 'type' must be one of {', '.join(SINK_TYPES)}"
            )
        dest = Destination(name=str(name or ""), config=config)
        dest.name = cap(dest.name or dest.describe(), 120)
        result.append(dest)
    return result


#: Where the documentation tells to put the destinations file.
DESTINATIONS_FILE_HINT = "/etc/odoo/backup-destinations.json"


def destinations_document(entries, *, database=None, exported_by=None, now=None):
    """The text of a destinations file (:func:`load_destinations` reads it)
    for ``entries``, ``[(name, make_sink() config)]``: one JSON object per
    destination, its secrets inline (options left empty are left out), and
    a ``comment`` saying where the file goes and that it must stay 0600
    (the loader ignores it)."""
    destinations = []
    for name, config in entries:
        if not isinstance(config, dict) or config.get("type") not in SINK_TYPES:
            raise EmergencyConfigError(
                f"destination {name!r}: 'type' must be one of {', '.join(SINK_TYPES)}"
            )
        entry = {"name": str(name or "")} if name else {}
        entry.update(
            (key, value)
            for key, value in config.items()
            if value is not None and value != "" and key != "name"
        )
        destinations.append(entry)
    moment = datetime.fromtimestamp(now or time.time(), UTC)
    comment = [
        "Emergency restore destinations"
        + (f" of database {database}" if database else "")
        + f", exported {moment.isoformat(timespec='seconds')}"
        + (f" by {exported_by}" if exported_by else "")
        + ".",
        "It holds the destinations' credentials. Install it on the Odoo server "
        f"as {DESTINATIONS_FILE_HINT}, owned by the user Odoo runs as, mode "
        "0600 (chmod 600), name it in odoo.conf (backup_emergency_destinations "
        f"= {DESTINATIONS_FILE_HINT}) and delete this downloaded copy.",
        "See docs/emergency-restore.md. Export it again after changing a destination.",
    ]
    return json.dumps({"comment": comment, "destinations": destinations}, indent=2)


@dataclass(frozen=True)
class ArchiveEntry:
    destination: int  # index in the destinations list
    destination_name: str
    name: str
    size: int
    created_at: datetime
    label: str
    encrypted: bool


def list_archives(destinations, database, make_sink=None):
    """``(archives, errors)``: the archives of ``database`` at each
    destination, newest first, and one message per destination that could
    not be listed. Only names the suite gives to that database's archives
    (``<db>/<db>_<label>_<stamp>.tar...``) are listed."""
    if make_sink is None:
        from .sinks import make_sink
    found, errors = [], []
    for index, dest in enumerate(destinations):
        try:
            sink = make_sink(dest.config)
            try:
                objects = sink.list(prefix=f"{database}/")
            finally:
                sink.close()
        except Exception as exc:  # reported per destination, never fatal
            errors.append(f"{dest.name}: {cap(exc, MESSAGE_MAX)}")
            continue
        for obj in objects:
            info = naming.parse_archive_name(obj.name, database)
            if info is None:
                continue
            found.append(
                ArchiveEntry(
                    destination=index,
                    destination_name=dest.name,
                    name=obj.name,
                    size=obj.size,
                    created_at=info.created_at,
                    label=info.label,
                    encrypted=info.encrypted,
                )
            )
    found.sort(key=lambda a: (a.created_at, a.name), reverse=True)
    return found, errors


def describe_stored(config, name, keyring, make_sink=None) -> dict:
    """Whose archive ``name`` at the destination ``config`` is
    (:func:`owner.describe_archive_owner`: its header and head manifest
    only; nothing is written)."""
    from . import owner

    if make_sink is None:
        from .sinks import make_sink
    sink = make_sink(config)
    try:
        with sink.open_read(name) as raw:
            return owner.describe_archive_owner(raw, keyring=keyring)
    finally:
        sink.close()


# ---------------------------------------------------------------------------
# Shared state: rate limiter and step tokens
# ---------------------------------------------------------------------------
class StateStore:
    """A small JSON document shared by every process of the server
    (``<directory>/state.json``, 0600), changed under an exclusive lock."""

    def __init__(self, directory):
        self.directory = private_dir(directory)
        self.path = self.directory / "state.json"
        self.lock_path = self.directory / "state.lock"

    @contextlib.contextmanager
    def transaction(self):
        """Yield the state (a dict) under the lock; written back after."""
        with locked(self.lock_path):
            state = read_private_json(self.path, None)
            if not isinstance(state, dict) or state.get("v") != 1:
                state = {"v": 1}
            for key in ("failures", "noted", "tokens"):
                if not isinstance(state.get(key), dict):
                    state[key] = {}
            if not isinstance(state.get("global"), list):
                state["global"] = []
            yield state
            write_private_json(self.path, state)

    def clear(self):
        with locked(self.lock_path), contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _recent(stamps, now, window=WINDOW):
    return [t for t in stamps if isinstance(t, int | float) and now - t < window]


def blocked(state, key, now) -> int:
    """Seconds until ``key`` may try again; 0 when it may now."""
    mine = _recent(state["failures"].get(key, []), now)
    every = _recent(state["global"], now)
    waits = []
    if len(mine) >= LIMIT:
        waits.append(mine[-LIMIT] + WINDOW - now)
    if len(every) >= GLOBAL_LIMIT:
        waits.append(every[-GLOBAL_LIMIT] + WINDOW - now)
    return max(1, int(max(waits)) + 1) if waits else 0


def record_failure(state, key, now) -> int:
    """Count a failed attempt of ``key``; returns its failures in the
    window. Memory stays bounded (see the module doc)."""
    failures = state["failures"]
    mine = _recent(failures.pop(key, []), now)[-(LIMIT - 1) :] + [now]
    failures[key] = mine  # re-inserted: the dict is ordered oldest first
    state["global"] = _recent(state["global"], now)[-(GLOBAL_LIMIT - 1) :] + [now]
    if len(failures) > MAX_KEYS:  # full: forget the expired, then the oldest
        for other in list(failures):
            if not _recent(failures[other], now):
                del failures[other]
    while len(failures) > MAX_KEYS:
        del failures[next(iter(failures))]
    return len(mine)


def forgive(state, key, stamp) -> None:
    """Take back the failure counted at ``stamp`` (an attempt is counted
    before it is checked, so parallel requests cannot pass the limit, and
    forgiven once it succeeded)."""
    mine = state["failures"].get(key)
    if mine and stamp in mine:
        mine.remove(stamp)
        if not mine:
            del state["failures"][key]
    if stamp in state["global"]:
        state["global"].remove(stamp)


def note_rate_limited(state, key, now) -> bool:
    """True the first time ``key`` is refused in a window (that refusal is
    logged; the others of the window are only counted)."""
    noted = state["noted"]
    for other in list(noted):
        if now - noted[other] >= WINDOW:
            del noted[other]
    if key in noted:
        return False
    noted[key] = now
    while len(noted) > MAX_KEYS:
        del noted[next(iter(noted))]
    return True


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def issue_token(state, step, address, now, *, ttl=TOKEN_TTL, chain=None, **data):
    """A new random token for ``step`` from ``address``; only its digest is
    kept, with ``data`` (JSON values). ``chain``: the login it belongs to
    (new chain when None). Returns the token."""
    if not _STEP_RE.match(step):
        raise ValueError(f"bad step {step!r}")
    token = secrets.token_urlsafe(32)
    tokens = state["tokens"]
    for digest in [d for d, t in tokens.items() if t.get("exp", 0) <= now]:
        del tokens[digest]
    tokens[token_digest(token)] = {
        "step": step,
        "address": address,
        "exp": now + ttl,
        "chain": chain or secrets.token_hex(8),
        "data": data,
    }
    while len(tokens) > MAX_TOKENS:
        del tokens[next(iter(tokens))]
    return token


def take_token(state, token, step, address, now, *, consume=True):
    """The record of a valid ``token`` for ``step`` from ``address`` (None
    otherwise). ``consume``: it is used up, and so is every other token of
    its chain (one step at a time per login)."""
    if not token or not isinstance(token, str) or len(token) > 128:
        return None
    tokens = state["tokens"]
    record = tokens.get(token_digest(token))
    if (
        record is None
        or record.get("exp", 0) <= now
        or record.get("step") != step
        or not hmac.compare_digest(str(record.get("address")), str(address))
    ):
        return None
    if consume:
        chain = record.get("chain")
        for digest in [d for d, t in tokens.items() if t.get("chain") == chain]:
            del tokens[digest]
    return record


# ---------------------------------------------------------------------------
# CSRF
# ---------------------------------------------------------------------------
def _csrf_mac(secret: bytes, cookie: str, address: str, stamp: int) -> str:
    message = f"emergency-csrf|{cookie}|{address}|{stamp}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def make_csrf(secret: bytes, cookie: str, address: str, now: float) -> str:
    """The CSRF token of a form: bound to the browser's cookie, its address
    and the time (``<stamp>.<hmac>``)."""
    stamp = int(now)
    return f"{stamp}.{_csrf_mac(secret, cookie, address, stamp)}"


def check_csrf(secret: bytes, token, cookie, address, now, ttl=CSRF_TTL) -> bool:
    if not token or not cookie or not isinstance(token, str) or len(token) > 100:
        return False
    stamp, _, mac = token.partition(".")
    if not stamp.isdigit() or not (0 <= now - int(stamp) <= ttl):
        return False
    return hmac.compare_digest(mac, _csrf_mac(secret, cookie, address, int(stamp)))


# ---------------------------------------------------------------------------
# The attempt log (queued for the audit trail)
# ---------------------------------------------------------------------------
class AttemptLog:
    """Every use of the page as JSON lines in a 0600 file (``path``).

    Each entry: ``seq`` (strictly increasing, nanoseconds since the epoch),
    ``at`` (ISO 8601 UTC), ``event``, ``result`` (``success`` or
    ``failure``), ``address``, ``user_agent``, ``database`` (a valid name or
    None), ``archive``, ``message``. Never a password or a token.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def _last_seq(self) -> int:
        try:
            fd = _open_private(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return 0
        with os.fdopen(fd, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 8192))
            lines = handle.read().splitlines()
        for line in reversed(lines):
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                return int(json.loads(line)["seq"])
        return 0

    def append(
        self,
        event,
        *,
        result,
        address,
        user_agent=None,
        database=None,
        archive=None,
        message=None,
        now=None,
    ) -> dict:
        moment = datetime.fromtimestamp(now or time.time(), UTC)
        entry = {
            "event": cap(event, 40),
            "result": "success" if result == "success" else "failure",
            "at": moment.isoformat(timespec="seconds"),
            "address": cap(address, 64),
            "user_agent": cap(user_agent),
            "database": safe_database_name(database) if database else None,
            "archive": cap(archive),
            "message": cap(message, MESSAGE_MAX),
        }
        with locked(self.lock_path):
            entry["seq"] = max(self._last_seq() + 1, time.time_ns())
            line = (json.dumps(entry, sort_keys=True) + "\n").encode()
            fd = _open_private(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                os.write(fd, line)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size > LOG_MAX_BYTES:
                self._compact()
        return entry

    def _compact(self):
        """Keep the entries of the last LOG_KEEP_DAYS days, at most the
        newest LOG_KEEP_BYTES (caller holds the lock)."""
        horizon = (time.time() - LOG_KEEP_DAYS * 86400) * 1e9
        kept, size = [], 0
        for line in reversed(self._lines()):
            try:
                seq = int(json.loads(line)["seq"])
            except (ValueError, TypeError, KeyError):
                continue
            if seq < horizon or size + len(line) > LOG_KEEP_BYTES:
                break
            kept.append(line)
            size += len(line)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        fd = _open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(fd, "wb") as handle:
            for line in reversed(kept):
                handle.write(line + b"\n")
        os.replace(tmp, self.path)

    def _lines(self) -> list[bytes]:
        try:
            fd = _open_private(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        with os.fdopen(fd, "rb") as handle:
            return handle.read().splitlines()

    def entries(self, after=0, database=None) -> list[dict]:
        """Entries with ``seq`` > ``after`` (of ``database`` only, when
        given), oldest first."""
        with locked(self.lock_path):
            lines = self._lines()
        out = []
        for line in lines:
            try:
                entry = json.loads(line)
                seq = int(entry["seq"])
            except (ValueError, TypeError, KeyError):
                continue
            if seq <= after:
                continue
            if database is not None and entry.get("database") != database:
                continue
            out.append(entry)
        out.sort(key=lambda e: e["seq"])
        return out


# ---------------------------------------------------------------------------
# Job status
# ---------------------------------------------------------------------------
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def new_job_id() -> str:
    return secrets.token_hex(16)


def check_job_id(job_id) -> str:
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise ValueError("bad job id")
    return job_id


def pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True
