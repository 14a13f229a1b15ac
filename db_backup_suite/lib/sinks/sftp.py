"""SFTP sink (paramiko): pipelined writes, host key pinned, ``.part`` + rename.

* The server's host key must match a line of the ``known_hosts`` text in the
  configuration; an unknown or changed key is refused (never auto-added) and
  the error shows the offered key's type and SHA256 fingerprint so an
  administrator can compare it with the server's and add it.
  :func:`fetch_host_key` returns the line to add (after checking the
  fingerprint out of band).
* Writes are pipelined (paramiko waits for each 32 KiB write's reply
  otherwise, which crawls at about 1 MB/s even on loopback) and go to
  ``<name>.part``; commit checks the remote size, then renames with
  ``posix-rename`` (atomic, replaces an existing object).
"""

import base64
import hashlib
import io
import logging
import posixpath
import socket
import stat as statmod
import time
from datetime import UTC, datetime

from ..errors import SinkError, SinkObjectNotFound, SinkUnreachableError
from .base import (
    PART_SUFFIX,
    IncompleteWrite,
    Sink,
    SinkWriter,
    StoredObject,
    StreamReader,
    _check_offset,
    validate_name,
    validate_prefix,
)

_logger = logging.getLogger(__name__)

_WRITE_BUFFER = 1024 * 1024
_READ_BUFFER = 1024 * 1024
#: SSH channel window and packet size we offer: the paramiko defaults (2 MiB,
#: 32 KiB) cap loopback throughput well below OpenSSH's.
_WINDOW_SIZE = 64 * 1024 * 1024
_MAX_PACKET = 256 * 1024
#: Every SFTP server accepts 32 KiB writes; OpenSSH announces larger ones
#: (``limits@openssh.com``), which cuts the per-request overhead.
_SAFE_WRITE_SIZE = 32 * 1024
_MAX_WRITE_SIZE = 255 * 1024


def key_fingerprint(key):
    """``SHA256:<base64>`` fingerprint of a paramiko key, as OpenSSH shows it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _host_entry_name(host, port):
    return host if int(port) == 22 else f"[{host}]:{int(port)}"


def _load_private_key(text, passphrase):
    import paramiko

    errors = []
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(
                io.StringIO(text), password=passphrase or None
            )
        except paramiko.PasswordRequiredException as exc:
            raise SinkError(
                "The SFTP private key is encrypted: give its passphrase."
            ) from exc
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(f"{key_class.__name__}: {type(exc).__name__}")
    raise SinkError(
        "The SFTP private key cannot be read (expected an OpenSSH "
        "or PEM private key of type ed25519, ECDSA or RSA, with the "
        "right passphrase)."
    )


def _parse_known_hosts(text):
    import paramiko

    host_keys = paramiko.HostKeys()
    for number, line in enumerate((text or "").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        except Exception as exc:
            raise SinkError(f"known_hosts line {number} cannot be read: {exc}") from exc
        if entry is None:
            raise SinkError(
                f"known_hosts line {number} is not a host key line "
                "(expected 'host key-type base64-key')."
            )
        for hostname in entry.hostnames:
            host_keys.add(hostname, entry.key.get_name(), entry.key)
    return host_keys


def _connect_transport(host, port, timeout):
    """Open a TCP connection and an SSH transport (not yet authenticated)."""
    import paramiko

    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as exc:
        raise SinkUnreachableError(
            f"SFTP host {host}:{port} unreachable: {exc.strerror or exc}"
        ) from exc
    transport = paramiko.Transport(
        sock, default_window_size=_WINDOW_SIZE, default_max_packet_size=_MAX_PACKET
    )
    transport.banner_timeout = timeout
    transport.handshake_timeout = timeout
    transport.auth_timeout = timeout
    try:
        transport.start_client(timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise SinkUnreachableError(
            f"SFTP host {host}:{port}: SSH handshake failed: {exc}"
        ) from exc
    return transport


def fetch_host_key(host, port=22, timeout=10.0):
    """Connect to ``host:port`` and return its host key as a known_hosts line
    (``[host]:port type base64``). The caller MUST show the fingerprint
    (:func:`known_hosts_fingerprint`) to the administrator to confirm."""
    transport = _connect_transport(host, port, timeout)
    try:
        key = transport.get_remote_server_key()
    finally:
        transport.close()
    return f"{_host_entry_name(host, port)} {key.get_name()} {key.get_base64()}"


def known_hosts_fingerprint(line):
    """``(key type, SHA256 fingerprint)`` of a known_hosts line."""
    import paramiko

    entry = paramiko.hostkeys.HostKeyEntry.from_line(line.strip())
    if entry is None:
        raise SinkError("Not a known_hosts line.")
    return entry.key.get_name(), key_fingerprint(entry.key)


def _server_write_size(client):
    """The write size the server accepts (``limits@openssh.com``), capped
    at 255 KiB; 32 KiB when the server does not say."""
    from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY

    try:
        kind, msg = client._request(CMD_EXTENDED, "limits@openssh.com")
        if kind != CMD_EXTENDED_REPLY:
            return _SAFE_WRITE_SIZE
        msg.get_int64()  # max packet length
        msg.get_int64()  # max read length
        max_write = msg.get_int64()
    except (OSError, EOFError) as exc:
        _logger.debug("The SFTP server has no limits@openssh.com: %s", exc)
        return _SAFE_WRITE_SIZE
    if max_write <= 0:
        return _SAFE_WRITE_SIZE
    return max(_SAFE_WRITE_SIZE, min(max_write, _MAX_WRITE_SIZE))


class SftpWriter(SinkWriter):
    def __init__(self, sink, name):
        super().__init__(sink, name)
        self.path = sink._path(name)
        self.part_path = self.path + PART_SUFFIX
        sftp = sink._sftp()
        try:
            sink._makedirs(posixpath.dirname(self.path))
            self._file = sftp.open(self.part_path, "wb", bufsize=_WRITE_BUFFER)
            self._file.set_pipelined(True)
            # Instance attribute read by paramiko's SFTPFile._write.
            self._file.MAX_REQUEST_SIZE = sink._write_size
        except Exception as exc:
            raise sink._error(exc, f"creating {name!r}") from exc

    def _write(self, view):
        try:
            self._file.write(view)
        except Exception as exc:
            raise self.sink._error(exc, f"writing {self.name!r}") from exc

    def _commit(self):
        sink = self.sink
        try:
            self._file.close()  # flushes and waits for every pipelined reply
            size = sink._sftp().stat(self.part_path).st_size
            if size != self.bytes_written:
                raise SinkError(
                    f"SFTP upload of {self.name!r} to {sink.describe()} is "
                    f"incomplete: {size} bytes on the server, "
                    f"{self.bytes_written} sent."
                )
            sink._sftp().posix_rename(self.part_path, self.path)
            return sink._stored(self.name, sink._sftp().stat(self.path))
        except SinkError:
            raise
        except Exception as exc:
            raise sink._error(exc, f"committing {self.name!r}") from exc

    def _abort(self):
        sink = self.sink
        try:
            self._file.close()
        except Exception as exc:
            _logger.info(
                "Closing the discarded SFTP upload %s: %s", self.part_path, exc
            )
            # The connection is gone: drop the unsent buffer so paramiko's
            # finaliser does not try (and fail) to flush it again.
            self._file._wbuffer = io.BytesIO()
            self._file._closed = True
        try:
            sink._sftp().remove(self.part_path)
        except FileNotFoundError:
            pass
        except Exception as exc:
            _logger.warning(
                "Could not remove %s on %s (cleanup_incomplete() will): %s",
                self.part_path,
                sink.describe(),
                exc,
            )


class SftpSink(Sink):
    """Config keys: ``host``, ``port`` (22), ``username``, ``password`` or
    ``private_key`` (PEM/OpenSSH text) with ``private_key_passphrase``,
    ``known_hosts`` (text, required), ``path`` (remote base directory,
    absolute or relative to the login directory), ``timeout`` (seconds,
    connect/handshake/each operation), ``write_request_size`` (bytes per
    SFTP write request; default: what the server announces, else 32 KiB)."""

    kind = "sftp"

    def __init__(
        self,
        host,
        username,
        known_hosts,
        port=22,
        password=None,
        private_key=None,
        private_key_passphrase=None,
        path="",
        timeout=15.0,
        write_request_size=None,
        **unknown,
    ):
        if unknown:
            raise SinkError(
                "Unknown SFTP destination option(s): " + ", ".join(sorted(unknown))
            )
        if not host or not username:
            raise SinkError("An SFTP destination needs a host and a username.")
        if not password and not private_key:
            raise SinkError("An SFTP destination needs a password or a private key.")
        if not (known_hosts or "").strip():
            raise SinkError(
                "An SFTP destination needs the server's host key (known_hosts "
                "line); fetch it and check its fingerprint with the server's "
                "administrator."
            )
        self.host = host
        self.port = int(port or 22)
        self.username = username
        self._password = password or None
        self._pkey = (
            _load_private_key(private_key, private_key_passphrase)
            if private_key
            else None
        )
        self._host_keys = _parse_known_hosts(known_hosts)
        self.base = (path or "").rstrip("/") or ("/" if path else "")
        self.timeout = float(timeout)
        self.write_request_size = int(write_request_size or 0)
        self._write_size = _SAFE_WRITE_SIZE
        self._transport = None
        self._client = None

    # plumbing ---------------------------------------------------------------
    def describe(self):
        return f"sftp://{self.username}@{self.host}:{self.port}/{self.base.lstrip('/')}"

    def _check_host_key(self, key):
        entry_name = _host_entry_name(self.host, self.port)
        known = self._host_keys.lookup(entry_name)
        offered = f"{key.get_name()} {key_fingerprint(key)}"
        if not known:
            raise SinkUnreachableError(
                f"SFTP host {self.host}:{self.port} offered an unknown host key "
                f"({offered}). Check this fingerprint with the server's "
                "administrator, then add the host key to known_hosts."
            )
        expected = known.get(key.get_name())
        if expected is None or expected.asbytes() != key.asbytes():
            raise SinkUnreachableError(
                f"SFTP host {self.host}:{self.port} offered a host key that does "
                f"NOT match known_hosts ({offered}): the server was reinstalled "
                "or someone is intercepting the connection. Refused."
            )

    def _sftp(self):
        import paramiko

        if self._client is not None and self._transport.is_active():
            return self._client
        self.close()
        transport = _connect_transport(self.host, self.port, self.timeout)
        try:
            self._check_host_key(transport.get_remote_server_key())
            try:
                if self._pkey is not None:
                    transport.auth_publickey(self.username, self._pkey)
                else:
                    transport.auth_password(self.username, self._password)
            except paramiko.AuthenticationException as exc:
                method = "key" if self._pkey is not None else "password"
                raise SinkUnreachableError(
                    f"SFTP host {self.host}:{self.port} refused the login of "
                    f"{self.username!r} with the configured {method}."
                ) from exc
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise SinkUnreachableError(
                    f"SFTP host {self.host}:{self.port}: login failed: {exc}"
                ) from exc
            transport.set_keepalive(30)
            try:
                client = paramiko.SFTPClient.from_transport(transport)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise SinkUnreachableError(
                    f"SFTP host {self.host}:{self.port}: the SFTP subsystem is "
                    f"not available: {exc}"
                ) from exc
            client.get_channel().settimeout(self.timeout)
            self._write_size = self.write_request_size or _server_write_size(client)
        except BaseException:
            transport.close()
            raise
        self._transport, self._client = transport, client
        return client

    def _path(self, name):
        validate_name(name)
        return posixpath.join(self.base, name) if self.base else name

    def _stored(self, name, attrs):
        return StoredObject(
            name, int(attrs.st_size), datetime.fromtimestamp(attrs.st_mtime or 0, UTC)
        )

    def _error(self, exc, action):
        if isinstance(exc, SinkError):
            return exc
        if isinstance(exc, FileNotFoundError):
            return SinkObjectNotFound(f"{action}: not found on {self.describe()}.")
        if isinstance(exc, socket.timeout | EOFError | ConnectionError):
            return SinkError(
                f"SFTP connection to {self.host}:{self.port} lost while {action}: "
                f"{type(exc).__name__}: {exc or 'connection closed'}"
            )
        if isinstance(exc, PermissionError):
            return SinkError(
                f"SFTP: permission denied while {action} on {self.describe()}."
            )
        text = str(exc) or type(exc).__name__
        if "No space left" in text or "quota" in text.lower():
            return SinkError(
                f"The SFTP server's disk is full while {action} on "
                f"{self.describe()}; nothing was stored."
            )
        return SinkError(f"SFTP error while {action} on {self.describe()}: {text}")

    def _makedirs(self, directory):
        if not directory or directory in ("/", "."):
            return
        sftp = self._sftp()
        try:
            if statmod.S_ISDIR(sftp.stat(directory).st_mode):
                return
            raise SinkError(f"SFTP: {directory} exists and is not a directory.")
        except FileNotFoundError:
            pass
        self._makedirs(posixpath.dirname(directory))
        try:
            sftp.mkdir(directory)
        except OSError:
            # Created meanwhile by another writer?
            if not statmod.S_ISDIR(sftp.stat(directory).st_mode):
                raise

    def _walk(self, directory, rel):
        """Yield (relative name, attrs) of every regular file, depth first."""
        sftp = self._sftp()
        try:
            entries = sftp.listdir_attr(directory or ".")
        except FileNotFoundError:
            return
        for attrs in entries:
            name = attrs.filename
            if name in (".", ".."):
                continue
            child = posixpath.join(directory, name) if directory else name
            child_rel = f"{rel}/{name}" if rel else name
            if statmod.S_ISDIR(attrs.st_mode or 0):
                if not name.startswith("."):
                    yield from self._walk(child, child_rel)
            elif statmod.S_ISREG(attrs.st_mode or 0):
                yield child_rel, child, attrs

    # API --------------------------------------------------------------------
    def open_write(self, name, size_hint=None):
        return SftpWriter(self, name)

    def open_read(self, name):
        return self.open_range(name, 0)

    def open_range(self, name, offset=0):
        """Read-ahead is bounded: paramiko keeps at most 64 read requests
        (of ``MAX_REQUEST_SIZE``, at most 255 KiB) in flight and the SSH
        channel window caps what arrives unread, so a slow consumer (an
        HTTP client) holds about 16 + 64 MiB, whatever the file's size."""
        offset = _check_offset(offset)
        path = self._path(name)
        try:
            fh = self._sftp().open(path, "rb", bufsize=_READ_BUFFER)
            # OpenSSH announces the same limit for reads and writes.
            fh.MAX_REQUEST_SIZE = self._write_size
            size = fh.stat().st_size
            if offset:
                fh.seek(offset)
            if offset < size:
                fh.prefetch(size, max_concurrent_requests=64)
        except Exception as exc:
            raise self._error(exc, f"opening {name!r}") from exc
        return StreamReader(fh.read, fh.close, self._error, name)

    def list(self, prefix=""):
        prefix = validate_prefix(prefix)
        try:
            objects = [
                self._stored(rel, attrs)
                for rel, _path, attrs in self._walk(self.base, "")
                if rel.startswith(prefix)
                and not rel.endswith(PART_SUFFIX)
                and not posixpath.basename(rel).startswith(".")
            ]
        except Exception as exc:
            raise self._error(exc, f"listing {prefix or '/'}") from exc
        return sorted(objects, key=lambda obj: obj.name)

    def stat(self, name):
        try:
            attrs = self._sftp().stat(self._path(name))
        except Exception as exc:
            raise self._error(exc, f"reading {name!r}") from exc
        if not statmod.S_ISREG(attrs.st_mode or 0):
            raise SinkObjectNotFound(f"{name!r} on {self.describe()} is not a file.")
        return self._stored(name, attrs)

    def delete(self, name):
        try:
            self._sftp().remove(self._path(name))
        except Exception as exc:
            raise self._error(exc, f"deleting {name!r}") from exc

    def test_connection(self):
        self._sftp()
        if self.base:
            try:
                self._makedirs(self.base)
            except Exception as exc:
                raise self._error(exc, f"creating {self.base}") from exc
        return f"{self.describe()}: logged in, directory ready"

    def list_incomplete(self, prefix=""):
        """Our ``<name>.part`` uploads whose name starts with ``prefix``."""
        prefix = validate_prefix(prefix)
        # walk only the folder the prefix names (one database's, usually)
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = posixpath.join(self.base, folder) if self.base else folder
        found = []
        try:
            for rel, path, attrs in list(self._walk(start, folder)):
                if not rel.endswith(PART_SUFFIX):
                    continue
                final = rel[: -len(PART_SUFFIX)]
                try:
                    validate_name(final)  # only the .part files we write
                except SinkError:
                    continue
                if not final.startswith(prefix):
                    continue
                found.append(
                    IncompleteWrite(
                        final,
                        "part-file",
                        (path,),
                        datetime.fromtimestamp(attrs.st_mtime or 0, UTC),
                        int(attrs.st_size or 0),
                    )
                )
        except Exception as exc:
            raise self._error(
                exc, f"listing the uploads under {prefix or '/'}"
            ) from exc
        return sorted(found, key=lambda item: item.name)

    def remove_incomplete(self, item):
        (path,) = item.ref
        if (
            item.kind != "part-file"
            or not path.endswith(PART_SUFFIX)
            or path != self._path(item.name) + PART_SUFFIX
        ):
            raise SinkError(f"{path} is not an upload of {self.describe()}.")
        try:
            self._sftp().remove(path)
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise self._error(exc, f"removing {path!r}") from exc
        _logger.info("Removed the incomplete upload %s on %s", path, self.describe())
        return True

    def cleanup_incomplete(self, prefix="", older_than=0.0):
        cutoff = time.time() - older_than
        removed = 0
        for item in self.list_incomplete(prefix):
            if item.modified.timestamp() > cutoff:
                continue
            if self.remove_incomplete(item):
                removed += 1
        return removed

    def close(self):
        client, transport = self._client, self._transport
        self._client = self._transport = None
        if client is not None:
            try:
                client.close()
            except Exception as exc:
                _logger.info("Closing the SFTP session to %s: %s", self.describe(), exc)
        if transport is not None:
            transport.close()
