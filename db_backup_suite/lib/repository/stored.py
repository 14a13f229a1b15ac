"""A destination as its readers see it: full archives AND snapshots.

:class:`StoredBackupsSink` wraps a destination's sink (local, S3, SFTP)
for everything that reads, lists or deletes backups (restore, verify,
download, retention, the Odoo screens): its full archives are the
destination's own objects, its incremental snapshots appear beside them
as read-only archives (:class:`~.archive.SnapshotArchiveSink`, named
``<db>/repo-<uuid>/<db>/<db>_<label>_<stamp>.tar.zst.enc``), whatever mode
the destination writes in today. So a destination switched from full
archives to snapshots (or back) keeps every backup it holds listed and
restorable.

The repository's own objects (packs, index, snapshot objects, locks) are
never listed, read, written or deleted through this sink: only the
incremental backup and the garbage collection touch them. Writes of
anything else (a full archive) go to the destination unchanged.

The keyring that opens the repositories is loaded when a repository is
first met (a destination without one never needs it): the ``keyring``
given, else ``keyring_file``, else the environment
(``SUITE_KEYRING_FILE`` / ``SUITE_KEYRING``). A
repository that cannot be opened (no keyring, another server's keys) does
not hide the destination's archives: it is reported in :attr:`warnings`.
"""

from __future__ import annotations

import logging
import re

from ..errors import SinkError
from ..sinks.base import Sink
from .archive import SnapshotArchiveSink

_logger = logging.getLogger(__name__)

#: a name inside a repository: ``<db>/repo-<tag>/...``
_IN_REPOSITORY = re.compile(r"[^/]+/repo-[^/]+/")
_ROOT = re.compile(r"(?P<root>[^/]+/repo-[^/]+)/config\Z")
STORAGE_MODES = ("full", "incremental")


def in_repository(name: str) -> bool:
    """True for any name inside an incremental repository (its objects
    and its snapshots' archive names)."""
    return bool(isinstance(name, str) and _IN_REPOSITORY.match(name))


class StoredBackupsSink(Sink):
    """``sink``'s full archives and incremental snapshots (see module doc).

    ``storage``: the mode the destination writes in (``full`` or
    ``incremental``; informative here: the backup engine reads it);
    ``database``: when given, only that database's repositories are opened
    (others' snapshots are not listed, as their archives would not be
    offered either).
    """

    def __init__(
        self,
        sink: Sink,
        *,
        keyring=None,
        keyring_file: str | None = None,
        storage: str = "full",
        database: str | None = None,
    ):
        if storage not in STORAGE_MODES:
            raise SinkError(
                f"Unknown storage mode {storage!r}: expected one of "
                + ", ".join(STORAGE_MODES)
                + "."
            )
        self.sink = sink
        self.storage = storage
        self.database = database or None
        self.kind = sink.kind
        self.warnings: list[str] = []
        self._keyring = keyring
        self._keyring_file = keyring_file or None
        self._snapshots: SnapshotArchiveSink | None = None

    # helpers -------------------------------------------------------------------
    @property
    def keyring(self):
        if self._keyring is None:
            from .. import crypto

            self._keyring = crypto.load_keyring(self._keyring_file)
        return self._keyring

    @property
    def snapshots(self) -> SnapshotArchiveSink:
        """The snapshots of this destination as archives."""
        if self._snapshots is None:
            self._snapshots = SnapshotArchiveSink(self.sink, self.keyring)
        return self._snapshots

    def describe(self):
        return self.sink.describe()

    def __repr__(self):
        return f"<{type(self).__name__} {self.describe()} ({self.storage})>"

    def _route(self, name):
        return self.snapshots if in_repository(name) else self.sink

    def roots(self, prefix: str = "") -> list[str]:
        """The repositories (``<db>/repo-<tag>``) at the destination."""
        database = prefix.split("/", 1)[0] if "/" in prefix else self.database
        objects = self.sink.list(f"{database}/" if database else "")
        return self._roots_of(objects)

    def _roots_of(self, objects) -> list[str]:
        roots = []
        for obj in objects:
            match = _ROOT.match(obj.name)
            if not match:
                continue
            root = match["root"]
            if self.database and root.split("/", 1)[0] != self.database:
                continue
            roots.append(root)
        return sorted(roots)

    # Sink API ------------------------------------------------------------------
    def list(self, prefix=""):
        listing = self.sink.list(prefix)
        out = [obj for obj in listing if not in_repository(obj.name)]
        roots = self._roots_of(listing)
        if roots:
            try:
                snapshots = self.snapshots
                before = len(snapshots.warnings)
                out.extend(snapshots.list(prefix, roots=roots))
                new = snapshots.warnings[before:]
            except Exception as exc:  # no keyring: the archives still count
                new = [
                    f"{len(roots)} incremental repositor"
                    f"{'y' if len(roots) == 1 else 'ies'} at {self.describe()} "
                    f"cannot be opened: {exc}"
                ]
            for warning in new:
                _logger.warning("%s", warning)
            self.warnings.extend(new)
        return sorted(out, key=lambda o: o.name)

    def stat(self, name):
        return self._route(name).stat(name)

    def info(self, name) -> dict:
        """What a listing shows of a snapshot (see SnapshotArchiveSink.info);
        a full archive: its name and size."""
        if in_repository(name):
            return self.snapshots.info(name)
        obj = self.sink.stat(name)
        return {"name": name, "size": obj.size, "kind": "archive"}

    def reads_in_place(self, name) -> bool:
        """True for a snapshot: restore.open_source opens it in place (it
        is produced from the repository's packs on demand) instead of
        downloading it first, whatever the destination below."""
        return in_repository(name)

    def open_read(self, name):
        return self._route(name).open_read(name)

    def open_range(self, name, offset=0):
        return self._route(name).open_range(name, offset)

    def open_write(self, name, size_hint=None):
        if in_repository(name):
            raise SinkError(
                f"{name!r} is inside an incremental repository: only the "
                "incremental backup writes there."
            )
        return self.sink.open_write(name, size_hint=size_hint)

    def delete(self, name):
        """Delete a full archive, or forget a snapshot (its data goes at the
        next garbage collection: :meth:`collect_garbage`)."""
        return self._route(name).delete(name)

    def test_connection(self):
        return self.sink.test_connection()

    def cleanup_incomplete(self, prefix="", older_than=0.0):
        return self.sink.cleanup_incomplete(prefix, older_than=older_than)

    def list_incomplete(self, prefix=""):
        return self.sink.list_incomplete(prefix)

    def remove_incomplete(self, item):
        return self.sink.remove_incomplete(item)

    def close(self):
        self.sink.close()

    # maintenance -----------------------------------------------------------------
    def collect_garbage(self, database: str, **options) -> dict:
        """Garbage collection of each repository of ``database`` here
        (``maintenance.collect_garbage``: under the repository's exclusive
        lock, packs younger than ``grace`` spared). Returns root ->
        GcResult; a repository that is locked (a backup or restore runs)
        raises RepositoryLockedError: try again later, nothing is lost."""
        from .maintenance import collect_garbage

        results = {}
        for root in self.roots(f"{database}/"):
            repo = self.snapshots.repository(root)
            results[root] = collect_garbage(repo, **options)
        return results
