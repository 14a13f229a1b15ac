"""The server keyring: master keys with ids, the first one active.

Keys never live in the database. They come from (first match wins):

1. an explicit ``path`` given by the caller (command line ``--keyring``);
2. the Odoo configuration option ``suite_keyring_file`` (a path), which the
   Odoo layer passes in as ``config_path`` (:func:`config_keyring_path`);
3. the environment variable ``SUITE_KEYRING_FILE`` (a path);
4. the environment variable ``SUITE_KEYRING`` (the keys inline).

The names the suite used before its core was shared (``backup_keyring_file``,
``DB_BACKUP_SUITE_KEYRING_FILE``, ``DB_BACKUP_SUITE_KEYRING``) are read as
fallbacks, each right after its new name, so existing configurations keep
working.

Text format, in a file or inline::

    # comments and blank lines are ignored
    k20261121-ab12:q3vN0m1x...   <- active key: encrypts new archives
    k20250101-0f3c:Zm9vYmFy...   <- older keys: still decrypt

Each entry is ``key_id:base64`` (standard or URL-safe base64 of 32 random
bytes); entries are separated by new lines or commas. Rotation means adding a
new line at the top: archives written with the older keys stay readable.

Sub-keys are derived with HKDF-SHA256 (RFC 5869)::

    derive(purpose, context, salt, key_id)
        = HKDF-SHA256(ikm=master[key_id], salt=salt,
                      info=b"odoo-suite/" + purpose + b"/" + context, L=32)

so a backup of database A and one of database B (``context`` = the database
uuid) are encrypted with unrelated keys. No message, ``repr`` or ``str`` of
this module ever contains key material.
"""

import base64
import binascii
import hashlib
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable, Iterator, Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_logger = logging.getLogger(__name__)

KEY_BYTES = 32
ENV_KEYRING_FILE = "SUITE_KEYRING_FILE"
ENV_KEYRING = "SUITE_KEYRING"
CONFIG_OPTION = "suite_keyring_file"
#: the earlier names, still read after the new ones (new name -> old name)
LEGACY_NAMES = {
    ENV_KEYRING_FILE: "DB_BACKUP_SUITE_KEYRING_FILE",
    ENV_KEYRING: "DB_BACKUP_SUITE_KEYRING",
    CONFIG_OPTION: "backup_keyring_file",
}
HKDF_INFO_PREFIX = b"odoo-suite/"
MAX_KEYRING_FILE_BYTES = 1 << 20

# At most 32 characters: a 32-byte key in base64 (43+) can never pass for an
# id, so echoing an id in a message can never leak a key written in its place.
KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,32}\Z")
PURPOSE_RE = re.compile(r"[a-z0-9._-]{1,64}\Z")
_B64_RE = re.compile(r"[A-Za-z0-9+/_-]+={0,2}\Z")

KEYGEN_HINT = "generate one with: python -m suite_core keygen"


def _setting(options: Mapping, name: str):
    """``options[name]``, else the value under its earlier name."""
    return options.get(name) or options.get(LEGACY_NAMES[name]) or None


def config_keyring_path(options: Mapping):
    """The keyring path an Odoo configuration names (``suite_keyring_file``,
    else the earlier ``backup_keyring_file``), or None."""
    return _setting(options, CONFIG_OPTION)


def is_configured(options: Mapping, environ: Mapping | None = None) -> bool:
    """Whether the configuration or the environment names any keyring."""
    environ = os.environ if environ is None else environ
    return bool(
        config_keyring_path(options)
        or (_setting(environ, ENV_KEYRING_FILE) or "").strip()
        or (_setting(environ, ENV_KEYRING) or "").strip()
    )


def keyring_file_path(options: Mapping, environ: Mapping | None = None):
    """The keyring FILE the configuration or the environment names, or None
    (an inline keyring has no file): what a child process is pointed at."""
    environ = os.environ if environ is None else environ
    return config_keyring_path(options) or _setting(environ, ENV_KEYRING_FILE)


# Errors ---------------------------------------------------------------------
# The error classes of the crypto layer live here, the lowest module, so that
# ``streamcrypt`` (which re-exports them) and the keyring share one hierarchy.
class SuiteError(Exception):
    """Root of every error the suite's libraries raise on purpose.

    ``db_backup_suite.lib.errors.SuiteError`` is this very class, so an
    ``except SuiteError`` also catches archive and keyring errors.
    """


class StreamCryptError(SuiteError):
    """The keyring or an encrypted stream cannot be used (see subclasses)."""


class KeyringError(StreamCryptError):
    """The server keyring is missing or malformed."""


class UnknownKeyError(KeyringError):
    """The archive names a key id the keyring does not hold."""


# Keys -----------------------------------------------------------------------
class Key:
    """One master key. Its material is never shown by ``repr``/``str``."""

    __slots__ = ("key_id", "_material")

    def __init__(self, key_id: str, material: bytes):
        if not isinstance(key_id, str) or not KEY_ID_RE.match(key_id):
            raise KeyringError(
                "invalid key id: use 1 to 32 letters, digits, '.', '_' or '-'"
            )
        material = bytes(material)
        if len(material) != KEY_BYTES:
            raise KeyringError(
                f"key {key_id!r} is {len(material)} bytes long; keys must be "
                f"{KEY_BYTES} random bytes ({KEYGEN_HINT})"
            )
        self.key_id = key_id
        self._material = material

    @property
    def fingerprint(self) -> str:
        """Short public fingerprint (compare keys across servers safely)."""
        digest = hashlib.sha256(b"odoo-suite/fingerprint/" + self._material)
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<Key {self.key_id!r} fingerprint={self.fingerprint}>"

    __str__ = __repr__

    def __eq__(self, other):
        if not isinstance(other, Key):
            return NotImplemented
        return self.key_id == other.key_id and secrets.compare_digest(
            self._material, other._material
        )

    def __hash__(self):
        return hash(self.key_id)

    def __reduce__(self):
        raise TypeError("keys are not picklable (they would leak key material)")


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """Plain HKDF-SHA256 (RFC 5869), extract then expand."""
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info
    ).derive(ikm)


def derivation_info(purpose: str, context: str) -> bytes:
    """The HKDF ``info`` for ``purpose`` and ``context`` (validated)."""
    if not isinstance(purpose, str) or not PURPOSE_RE.match(purpose):
        raise ValueError(
            "purpose must be 1 to 64 characters among a-z 0-9 . _ - (no '/')"
        )
    if not isinstance(context, str):
        raise TypeError("context must be a str (e.g. the database uuid)")
    # ``purpose`` cannot contain "/", and ``context`` comes last: the encoding
    # is unambiguous without length prefixes.
    return HKDF_INFO_PREFIX + purpose.encode() + b"/" + context.encode("utf-8")


def _decode_key(text: str) -> bytes | None:
    """Standard or URL-safe base64, padding optional; None if invalid."""
    text = text.strip()
    if not _B64_RE.match(text):
        return None
    core = text.rstrip("=").replace("-", "+").replace("_", "/")
    core += "=" * (-len(core) % 4)
    try:
        return base64.b64decode(core, validate=True)
    except (binascii.Error, ValueError):
        return None


class Keyring:
    """An ordered set of master keys; the first one is active."""

    def __init__(self, keys: Iterable[Key], source: str = "keyring"):
        self._keys: dict[str, Key] = {}
        for key in keys:
            if key.key_id in self._keys:
                raise KeyringError(f"{source}: duplicate key id {key.key_id!r}")
            self._keys[key.key_id] = key
        if not self._keys:
            raise KeyringError(f"{source}: the keyring holds no key ({KEYGEN_HINT})")
        self.source = source

    # Construction ------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, source: str = "keyring") -> "Keyring":
        """Parse the text format (see module docstring).

        Errors name the line (and entry, when a line holds several) but never
        echo the line's content, which may be key material.
        """
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise KeyringError(f"{source}: not UTF-8 text") from None
        text = text.removeprefix("\ufeff")  # BOM left by some Windows editors
        keys = []
        seen: dict[str, int] = {}
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0]
            entries = [e.strip() for e in line.split(",")]
            entries = [e for e in entries if e]
            for index, entry in enumerate(entries, 1):
                where = f"{source}: line {lineno}"
                if len(entries) > 1:
                    where += f", entry {index}"
                key_id, sep, encoded = entry.partition(":")
                key_id, encoded = key_id.strip(), encoded.strip()
                if not sep or not key_id or not encoded:
                    raise KeyringError(f"{where}: expected 'key_id:base64_key'")
                if not KEY_ID_RE.match(key_id):
                    # Do not echo: a swapped line would put the key here.
                    raise KeyringError(
                        f"{where}: invalid key id (use 1 to 32 letters, digits, "
                        "'.', '_' or '-')"
                    )
                material = _decode_key(encoded)
                if material is None:
                    raise KeyringError(f"{where}: key {key_id!r} is not valid base64")
                if len(material) != KEY_BYTES:
                    raise KeyringError(
                        f"{where}: key {key_id!r} is {len(material)} bytes long; "
                        f"keys must be {KEY_BYTES} random bytes ({KEYGEN_HINT})"
                    )
                if key_id in seen:
                    raise KeyringError(
                        f"{where}: duplicate key id {key_id!r} "
                        f"(first on line {seen[key_id]})"
                    )
                seen[key_id] = lineno
                keys.append(Key(key_id, material))
        if not keys:
            raise KeyringError(f"{source}: the keyring holds no key ({KEYGEN_HINT})")
        return cls(keys, source=source)

    @classmethod
    def from_file(cls, path) -> "Keyring":
        path = os.fspath(path)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise KeyringError(f"keyring file {path} does not exist") from None
        except OSError as exc:
            raise KeyringError(
                f"keyring file {path} cannot be read: {exc.strerror}"
            ) from None
        if not stat.S_ISREG(info.st_mode):
            raise KeyringError(f"keyring file {path} is not a regular file")
        if info.st_size > MAX_KEYRING_FILE_BYTES:
            raise KeyringError(f"keyring file {path} is too large to be a keyring")
        if info.st_mode & 0o077:
            _logger.warning(
                "keyring file %s is accessible by group or others (mode %o); "
                "restrict it with: chmod 600 %s",
                path,
                stat.S_IMODE(info.st_mode),
                path,
            )
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_KEYRING_FILE_BYTES + 1)
        except OSError as exc:
            raise KeyringError(
                f"keyring file {path} cannot be read: {exc.strerror}"
            ) from None
        return cls.parse(data, source=f"keyring file {path}")

    @classmethod
    def load(
        cls,
        path=None,
        environ: Mapping[str, str] | None = None,
        *,
        config_path=None,
    ) -> "Keyring":
        """Load the keyring from the first configured source.

        ``path``: explicit path (command line); ``config_path``: the Odoo
        option ``suite_keyring_file``; then the environment (``environ``
        defaults to ``os.environ``). Raises :class:`KeyringError` when nothing
        is configured or the source is unusable (never falls through to the
        next source after a configured one fails).
        """
        if environ is None:
            environ = os.environ
        if path:
            return cls.from_file(path)
        if config_path:
            return cls.from_file(config_path)
        env_path = (_setting(environ, ENV_KEYRING_FILE) or "").strip()
        if env_path:
            return cls.from_file(env_path)
        for name in (ENV_KEYRING, LEGACY_NAMES[ENV_KEYRING]):
            inline = environ.get(name) or ""
            if inline.strip():
                return cls.parse(inline, source=f"environment variable {name}")
        raise KeyringError(
            "no keyring configured: set the Odoo option "
            f"{CONFIG_OPTION} (path to a keyring file) or the environment "
            f"variable {ENV_KEYRING_FILE} (path) or {ENV_KEYRING} "
            f"('key_id:base64key,...'); {KEYGEN_HINT}"
        )

    @classmethod
    def from_config(cls, options: Mapping, environ=None) -> "Keyring":
        """:meth:`load` from an Odoo configuration (``odoo.tools.config`` or
        any mapping of its options), then the environment."""
        return cls.load(config_path=config_keyring_path(options), environ=environ)

    # Access -----------------------------------------------------------------
    @property
    def active(self) -> Key:
        """The key that encrypts new archives (the first one)."""
        return next(iter(self._keys.values()))

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def get(self, key_id: str) -> Key:
        """The key ``key_id``; raises :class:`UnknownKeyError` if absent."""
        try:
            return self._keys[key_id]
        except (KeyError, TypeError):
            raise UnknownKeyError(
                f"key {key_id!r} is not in the {self.source} "
                f"(it holds: {', '.join(self._keys)}); add the key that "
                "encrypted this archive to the keyring"
            ) from None

    def __contains__(self, key_id) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[Key]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<Keyring {self.source}: {', '.join(self._keys)} (active first)>"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("keyrings are not picklable (they would leak key material)")

    def derive(
        self, purpose: str, context: str, salt: bytes = b"", key_id: str | None = None
    ) -> bytes:
        """32-byte HKDF-SHA256 sub-key of master key ``key_id`` (default:
        active) for ``purpose`` (e.g. ``"backup"``) and ``context`` (e.g. the
        database uuid)."""
        key = self.active if key_id is None else self.get(key_id)
        return hkdf_sha256(
            key._material, bytes(salt), derivation_info(purpose, context)
        )


def generate_key_id(today: float | None = None) -> str:
    """A fresh key id such as ``k20261121-ab12`` (date + random suffix)."""
    stamp = time.strftime("%Y%m%d", time.gmtime(today))
    return f"k{stamp}-{secrets.token_hex(2)}"


def generate_key_line(key_id: str | None = None) -> str:
    """A new keyring line ``key_id:base64`` with 32 fresh random bytes."""
    key_id = key_id or generate_key_id()
    if not KEY_ID_RE.match(key_id):
        raise KeyringError(
            "invalid key id: use 1 to 32 letters, digits, '.', '_' or '-'"
        )
    material = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")
    return f"{key_id}:{material}"


def write_new_keyring(path, key_id: str | None = None) -> str:
    """Create the keyring file ``path`` (mode 600, never over an existing
    file) holding one new key; return the key's id."""
    line = generate_key_line(key_id)
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# server keyring: the first key encrypts\n" + line + "\n")
    return line.split(":", 1)[0]
