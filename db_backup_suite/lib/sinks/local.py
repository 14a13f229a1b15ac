"""Local directory sink: hidden temp file, fsync, rename, fsync directory."""

import contextlib
import errno
import logging
import os
import re
import secrets
import stat as stat_mod
import time
from datetime import UTC, datetime
from pathlib import Path

from ..errors import SinkError, SinkObjectNotFound, SinkUnreachableError
from .base import (
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

TEMP_PREFIX = ".dbbs-"
TEMP_SUFFIX = ".tmp"
#: ``.dbbs-<final file name>.<12 hex>.tmp``: the only temp files we make.
TEMP_RE = re.compile(r"^\.dbbs-(?P<final>.+)\.[0-9a-f]{12}\.tmp$")
_BUFFER = 1024 * 1024


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stored(name, st):
    return StoredObject(name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))


class LocalWriter(SinkWriter):
    def __init__(self, sink, name):
        super().__init__(sink, name)
        self.final_path = sink._path(name)
        directory = self.final_path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.temp_path = directory / (
                f"{TEMP_PREFIX}{self.final_path.name}.{secrets.token_hex(6)}"
                f"{TEMP_SUFFIX}"
            )
            fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise sink._error(exc, f"creating {name!r}") from exc
        self._file = os.fdopen(fd, "wb", buffering=_BUFFER)

    def _write(self, view):
        try:
            self._file.write(view)
        except OSError as exc:
            raise self.sink._error(exc, f"writing {self.name!r}") from exc

    def _commit(self):
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.temp_path, self.final_path)
            _fsync_dir(self.final_path.parent)
            return _stored(self.name, os.stat(self.final_path))
        except OSError as exc:
            raise self.sink._error(exc, f"committing {self.name!r}") from exc

    def _abort(self):
        try:
            self._file.close()
        except OSError as exc:
            # Closing flushes the buffer, which fails again on a full disk;
            # the file is being discarded anyway.
            _logger.info("Closing the discarded temp file %s: %s", self.temp_path, exc)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)


class LocalSink(Sink):
    """Objects are files under ``path``; names map to sub-directories."""

    kind = "local"

    def __init__(self, path, **unknown):
        if unknown:
            raise SinkError(
                "Unknown local destination option(s): " + ", ".join(sorted(unknown))
            )
        if not path:
            raise SinkError("A local destination needs a directory path.")
        self.root = Path(path).expanduser()
        if not self.root.is_absolute():
            raise SinkError(f"The local destination {path!r} must be an absolute path.")

    def describe(self):
        return f"local:{self.root}"

    def _path(self, name):
        return self.root.joinpath(*validate_name(name).split("/"))

    def _error(self, exc, action):
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return SinkError(
                f"The disk is full at {self.root} while {action}: free some "
                "space or choose another destination; nothing was stored."
            )
        if isinstance(exc, FileNotFoundError):
            return SinkObjectNotFound(f"{action}: no such object in {self.root}.")
        return SinkError(
            f"Local destination {self.root}: {action} failed: {exc.strerror or exc}"
        )

    def open_write(self, name, size_hint=None):
        return LocalWriter(self, name)

    def open_read(self, name):
        return self.open_range(name, 0)

    def open_range(self, name, offset=0):
        offset = _check_offset(offset)
        path = self._path(name)
        try:
            fh = open(path, "rb")  # noqa: SIM115 (closed by the reader)
        except FileNotFoundError as exc:
            raise SinkObjectNotFound(f"No object {name!r} in {self.root}.") from exc
        except OSError as exc:
            raise self._error(exc, f"opening {name!r}") from exc
        if offset:
            try:
                fh.seek(offset)
            except OSError as exc:
                fh.close()
                raise self._error(exc, f"seeking in {name!r}") from exc
        return StreamReader(
            fh.read, fh.close, lambda exc, what: self._error(exc, what), name
        )

    def _walk(self):
        """Yield (relative name, stat) of every non-hidden regular file."""
        if not self.root.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = os.path.relpath(dirpath, self.root)
            for filename in filenames:
                if filename.startswith("."):
                    continue
                rel = filename if rel_dir == "." else f"{rel_dir}/{filename}"
                rel = rel.replace(os.sep, "/")
                try:
                    st = os.stat(os.path.join(dirpath, filename))
                except FileNotFoundError:
                    continue  # deleted while listing
                yield rel, st

    def list(self, prefix=""):
        prefix = validate_prefix(prefix)
        objects = [
            _stored(rel, st)
            for rel, st in self._walk()
            if rel.startswith(prefix)
            and os.path.isfile(self.root / rel)
            and not rel.endswith(".part")
        ]
        return sorted(objects, key=lambda obj: obj.name)

    def stat(self, name):
        path = self._path(name)
        try:
            st = os.stat(path)
        except FileNotFoundError as exc:
            raise SinkObjectNotFound(f"No object {name!r} in {self.root}.") from exc
        except OSError as exc:
            raise self._error(exc, f"reading {name!r}") from exc
        if not os.path.isfile(path):
            raise SinkObjectNotFound(f"{name!r} in {self.root} is not a file.")
        return _stored(name, st)

    def delete(self, name):
        path = self._path(name)
        try:
            os.unlink(path)
        except FileNotFoundError as exc:
            raise SinkObjectNotFound(f"No object {name!r} in {self.root}.") from exc
        except OSError as exc:
            raise self._error(exc, f"deleting {name!r}") from exc

    def test_connection(self):
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkUnreachableError(
                f"The local destination {self.root} cannot be created: "
                f"{exc.strerror or exc}"
            ) from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise SinkUnreachableError(
                f"The local destination {self.root} is not writable by this process."
            )
        usage = os.statvfs(self.root)
        free = usage.f_bavail * usage.f_frsize
        return f"{self.root}: writable, {free // (1024 * 1024)} MiB free"

    def list_incomplete(self, prefix=""):
        """Our own temp files (``.dbbs-<name>.<hex>.tmp``) whose final name
        starts with ``prefix``; anything else hidden is not ours."""
        prefix = validate_prefix(prefix)
        found = []
        # walk only the folder the prefix names (one database's, usually)
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*folder.split("/")) if folder else self.root
        if not start.is_dir() or start.is_symlink():
            return found
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            for filename in filenames:
                match = TEMP_RE.match(filename)
                if match is None:
                    continue
                # The temp name embeds the final name: match the prefix on it.
                final = match["final"]
                rel = final if rel_dir == "." else f"{rel_dir}/{final}"
                if not rel.startswith(prefix):
                    continue
                try:
                    validate_name(rel)
                except SinkError:
                    continue
                path = os.path.join(dirpath, filename)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if not stat_mod.S_ISREG(st.st_mode):
                    continue
                found.append(
                    IncompleteWrite(
                        rel,
                        "temp-file",
                        (path,),
                        datetime.fromtimestamp(st.st_mtime, UTC),
                        st.st_size,
                    )
                )
        return sorted(found, key=lambda item: item.ref)

    def remove_incomplete(self, item):
        (path,) = item.ref
        root = os.path.abspath(self.root)
        if (
            item.kind != "temp-file"
            or TEMP_RE.match(os.path.basename(path)) is None
            or not os.path.abspath(path).startswith(root + os.sep)
        ):
            raise SinkError(f"{path} is not a temp file of {self.describe()}.")
        try:
            if not stat_mod.S_ISREG(os.lstat(path).st_mode):
                raise SinkError(f"{path} is not a regular file; left alone.")
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self._error(exc, f"removing the temp file {path}") from exc
        _logger.info("Removed the incomplete write %s", path)
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
