"""Incremental, deduplicated backups: a content-addressed, encrypted blob
store per destination and database, on top of the existing sinks.

Pure Python (never imports odoo). Format: docs/repository-format.md.

Entry points:

- :func:`run_incremental_backup` (a :class:`~..backup.BackupRequest`):
  a snapshot of the database and filestore; only data the destination
  lacks is uploaded;
- :class:`StoredBackupsSink`: a destination's full archives and its
  snapshots together (what ``sinks.make_sink`` returns for a config with a
  ``storage`` mode: the Odoo destinations);
- :class:`SnapshotArchiveSink`: the snapshots of a destination as
  read-only archives named like full ones, for ``restore.run_restore``,
  ``verify.run_verify``, the CLI's decrypt / export-odoo-zip, retention
  and the Odoo screens (``delete`` forgets a snapshot);
- :func:`prune` (retention + garbage collection), :func:`collect_garbage`,
  :func:`verify_repository`, :func:`rebuild_index`;
- :class:`Repository` for lower-level access (snapshots, index, locks).
"""

from .archive import (
    SnapshotArchiveSink,
    SnapshotArchiveStream,
    check_snapshot,
    iter_payload,
    virtual_name,
)
from .incremental import IncrementalResult, run_incremental_backup
from .maintenance import (
    DEFAULT_GRACE,
    GcResult,
    PruneResult,
    VerifyReport,
    collect_garbage,
    prune,
    rebuild_index,
    verify_repository,
)
from .repo import (
    Repository,
    RepositoryDamagedError,
    RepositoryLockedError,
    RepositoryNotFound,
    SnapshotRef,
    repo_root,
)
from .stored import STORAGE_MODES, StoredBackupsSink, in_repository

__all__ = [
    "DEFAULT_GRACE",
    "STORAGE_MODES",
    "GcResult",
    "IncrementalResult",
    "PruneResult",
    "Repository",
    "RepositoryDamagedError",
    "RepositoryLockedError",
    "RepositoryNotFound",
    "SnapshotArchiveSink",
    "SnapshotArchiveStream",
    "SnapshotRef",
    "StoredBackupsSink",
    "VerifyReport",
    "check_snapshot",
    "collect_garbage",
    "in_repository",
    "iter_payload",
    "prune",
    "rebuild_index",
    "repo_root",
    "run_incremental_backup",
    "verify_repository",
    "virtual_name",
]
