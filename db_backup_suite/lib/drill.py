"""Restore drill: prove that an archive restores, then leave nothing behind.

A drill restores one archive of a database into a temporary database
``<db>_drill_<YYYYmmddHHMMSS>`` (:func:`.safety.drill_name`) through the
engine's verified restore (:func:`.restore.run_restore`, ``sandbox`` mode:
the whole archive authenticated and checked against its manifest first,
then restored beside everything, every table's row count and the filestore
compared with the manifest), checks those counts again against the
archive's manifest and, when given, against the counts the backup recorded
when it was taken (the Odoo run's copy of the manifest); then it drops the
temporary database and its filestore whatever happened.

Nothing outlives a drill that ends, well or badly. A drill KILLED half-way
cannot drop what it made; it holds the work lock of the database it drills
(:func:`.lock.work_lock`, shared) for its whole duration, so
:func:`clean_drill_leftovers` (run before every drill and by the drill
cron) knows when none is alive and removes what dead ones left: drill
databases and filestores of that database, their staging databases and
filestores (``<drill>_restoring_<ts>``) and their temp directories
(``dbbs-restore+<drill>+*``, ``dbbs-fetch+<drill>+*``). Only names the
suite gives, through :mod:`.safety`'s guarded drop and rmtree.

With a data directory, the drill database is listed in the suite's
registry (:mod:`.registry`, kind ``drill``, expiring a day later) from
before it is created until it is dropped, so that it is known whatever
database is restored meanwhile (its staging copy too: :mod:`.restore`
registers it, kind ``staging``). The cleanup drops ONLY what the registry
lists (:mod:`.provenance`) and forgets what it dropped; a database merely
named like a drill (or its staging copy), or only recorded by the caller
(``known``), is left alone and reported (``left_alone``). A drill never
drops a database it did not create (a name found taken is refused).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat as stat_mod
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from . import lock, pgtools, provenance, registry, restore, safety
from . import manifest as mf
from .cleanup import WORK_DIR_RE
from .errors import RestoreError, SafetyError, SuiteError, VerificationError
from .pgtools import PgParams

_logger = logging.getLogger(__name__)

#: ``_restoring_<YYYYmmddHHMMSS>``: the engine's staging suffix
_STAGING_TAIL = len("_restoring_") + 14


@dataclass
class DrillRequest:
    """Drill the archive ``name`` at ``sink`` (or the local file ``path``)
    of ``database``.

    ``expected_uuid``: the uuid the archive must carry (the database's own:
    the engine refuses another's archive before anything is created).
    ``expected_row_counts``: the per-table counts the backup recorded when
    it was taken (None: only the archive's own manifest is compared).
    ``progress``: the engine's byte callback; ``on_step(name)``: called as
    the drill moves on (``count``, ``drop``).
    """

    database: str
    sink: object = None
    name: str | None = None
    path: str | os.PathLike | None = None
    keyring: object = None
    password: str | None = None
    pg: PgParams | None = None
    data_dir: str | os.PathLike | None = None
    work_dir: str | os.PathLike | None = None
    expected_uuid: str | None = None
    expected_row_counts: dict | None = None
    progress: object = None
    on_step: object = None
    stamp: str | None = None


@dataclass
class DrillResult:
    drill_database: str
    archive_name: str
    archive_created_at: datetime | None
    tables: int
    rows: int
    filestore: dict
    duration: float
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "drill_database": self.drill_database,
            "archive_name": self.archive_name,
            "archive_created_at": (
                self.archive_created_at.isoformat() if self.archive_created_at else None
            ),
            "tables": self.tables,
            "rows": self.rows,
            "filestore": self.filestore,
            "duration": round(self.duration, 3),
            "warnings": list(self.warnings),
        }


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


def _is_kind(name: str, kind: str, production_db: str) -> bool:
    try:
        safety.check_suite_database_name(name, (kind,), production_db)
    except SafetyError:
        return False
    return True


def check_counts(manifest: dict, counts: dict, recorded: dict | None = None):
    """Raise :class:`VerificationError` unless ``counts`` (the restored
    copy's) equal the archive manifest's row counts and, when given, the
    counts recorded at backup time."""
    expected = (manifest or {}).get("row_counts")
    if not expected:
        raise VerificationError(
            "the archive's manifest holds no row counts: nothing to prove the "
            "restore against"
        )
    problems = mf.compare_row_counts(expected, counts)
    if recorded:
        problems += [
            f"{problem} (as recorded when the backup was taken)"
            for problem in mf.compare_row_counts(recorded, counts)
        ]
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise VerificationError(
            f"the drill's copy does not match the manifest's row counts: {shown}{more}"
        )


def _register(data_dir, database, drill):
    if data_dir is None:
        return
    try:
        registry.register(
            data_dir,
            drill,
            "drill",
            database,
            expires=datetime.now(UTC) + timedelta(days=1),
            creator="restore drill",
        )
    except (SuiteError, OSError) as exc:  # a list, not a permission
        _logger.warning("drill database %s not registered: %s", drill, exc)


def drop_drill(pg, database: str, drill: str, data_dir=None) -> None:
    """Drop the drill database ``drill`` of ``database`` and its filestore
    (the guarded drop: only a drill name derived from ``database``), then
    forget it in the registry."""
    safety.drop_database_if_suite_owned(
        pg, drill, production_db=database, kinds=("drill",), data_dir=data_dir
    )
    if data_dir is not None:
        try:
            registry.unregister(data_dir, drill)
        except (SuiteError, OSError) as exc:
            _logger.warning("drill database %s not unregistered: %s", drill, exc)


def registered_drills(data_dir, database: str) -> list[str]:
    """The drill databases of ``database`` the registry lists."""
    if data_dir is None:
        return []
    try:
        entries = registry.entries_for(data_dir, database)
    except (SuiteError, OSError) as exc:
        _logger.warning("registry not read: %s", exc)
        return []
    return [e.name for e in entries if e.kind == "drill"]


def _step(req, name):
    if req.on_step is not None:
        try:
            req.on_step(name)
        except Exception as exc:  # a report never stops the drill
            _logger.warning("drill step %s not reported: %s", name, exc)


def run_drill(req: DrillRequest) -> DrillResult:
    """Restore, count, compare, drop. Raises what the engine raises (a
    damaged archive, a foreign one, a wrong key...), a
    :class:`VerificationError` when the counts differ, a
    :class:`RestoreError` when the drill database cannot be dropped; in
    every case the drill database and its filestore are gone (or the error
    says they could not be dropped)."""
    safety.check_database_name(req.database)
    pg = req.pg or PgParams.from_env()
    drill = safety.drill_name(req.database, req.stamp or _stamp())
    started = time.monotonic()
    with lock.work_lock(pg, req.database):
        failure, made = None, False
        if pgtools.database_exists(pg, drill):
            raise RestoreError(
                f"{drill} already exists (a drill started this second?); try again"
            )
        _register(req.data_dir, req.database, drill)
        try:
            result = restore.run_restore(
                restore.RestoreRequest(
                    target=drill,
                    mode="sandbox",
                    sink=req.sink,
                    name=req.name,
                    path=req.path,
                    keyring=req.keyring,
                    password=req.password,
                    pg=pg,
                    data_dir=req.data_dir,
                    work_dir=req.work_dir,
                    expected_uuid=req.expected_uuid,
                    progress=req.progress,
                )
            )
            made = True
            _step(req, "count")
            # the engine's exact count of every table of the restored copy
            # (before it took its own uuid, which may add a parameter row)
            counts = result.row_counts
            check_counts(result.manifest, counts, req.expected_row_counts)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            _step(req, "drop")
            try:
                if made:
                    drop_drill(pg, req.database, drill, req.data_dir)
                else:  # never a database of that name someone else made
                    provenance.unregister(req.data_dir, drill)
            except (SuiteError, OSError) as exc:
                _logger.warning("cannot drop the drill database %s: %s", drill, exc)
                if failure is None:
                    raise RestoreError(
                        f"the drill restored and checked {drill!r} but cannot drop "
                        f"it: {exc}"
                    ) from exc
                failure.add_note(f"the drill database {drill!r} was not dropped: {exc}")
    return DrillResult(
        drill_database=drill,
        archive_name=result.archive_name,
        archive_created_at=result.archive_created_at,
        tables=len(counts),
        rows=sum(counts.values()),
        filestore=result.filestore,
        duration=time.monotonic() - started,
        warnings=list(result.warnings),
    )


# ---------------------------------------------------------------------------
# Leftovers of killed drills
# ---------------------------------------------------------------------------
def _list_databases(pg) -> set[str]:
    with pgtools.admin_cursor(pg) as cr:
        cr.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")
        return {row[0] for row in cr.fetchall()}


def _list_dirs(base) -> set[str]:
    try:
        with os.scandir(base) as entries:
            return {e.name for e in entries if e.is_dir(follow_symlinks=False)}
    except FileNotFoundError:
        return set()


def _drills_of(database: str, names, known=()) -> set[str]:
    """Drill names of ``database`` among ``names`` (drill databases and
    filestores, and the drills whose (uncut) staging names appear)."""
    drills = {n for n in set(names) | set(known) if _is_kind(n, "drill", database)}
    for name in names:
        if safety.suite_database_kind(name) == "staging":
            base = name[:-_STAGING_TAIL]
            if _is_kind(base, "drill", database) and _is_kind(name, "staging", base):
                drills.add(base)
    return drills


def clean_drill_leftovers(
    pg, database: str, *, data_dir=None, work_dir=None, known=()
) -> dict:
    """Remove what killed drills of ``database`` left (see the module doc),
    only when no restore, verify or drill of ``database`` is alive (its
    work lock, taken exclusively without waiting), and only what the suite
    can prove it made (:mod:`.provenance`): a drill the registry lists for
    ``database``, a staging database registered for that drill and carrying
    the suite's marker. A database merely NAMED like one (or a drill name
    ``known`` to the caller but not registered) is left alone and reported.
    ``known``: drill names recorded by the caller (found even when only
    their staging copy is left under a shortened name). Returns
    ``{"removed": [...], "left_alone": [...], "errors": [...], "skipped":
    reason or None}``; never raises for one leftover."""
    safety.check_database_name(database)
    out = {"removed": [], "left_alone": [], "errors": [], "skipped": None}
    with lock.work_lock(pg, database, exclusive=True) as granted:
        if not granted:
            out["skipped"] = (
                f"a restore, verify or drill of {database!r} is running: its "
                "databases are left alone"
            )
            return out
        databases = _list_databases(pg)
        fs_root = (
            os.path.join(os.path.abspath(data_dir), safety.FILESTORE)
            if data_dir is not None
            else None
        )
        dirs = _list_dirs(fs_root) if fs_root else set()
        temp_root = os.path.abspath(work_dir or tempfile.gettempdir())
        registered = set(registered_drills(data_dir, database))
        known = set(known) | registered
        for drill in sorted(_drills_of(database, databases | dirs, known)):
            found = (databases, dirs, temp_root)
            _clean_one(pg, database, drill, registered, found, data_dir, out)
    for name in out["removed"]:
        _logger.info("drill leftovers of %s: removed %s", database, name)
    for item in out["left_alone"]:
        _logger.warning("drill leftovers of %s: left alone %s", database, item)
    return out


def _clean_one(pg, database, drill, registered, found, data_dir, out):
    databases, dirs, temp_root = found

    def attempt(label, action):
        try:
            action()
        except (SuiteError, OSError) as exc:
            out["errors"].append(f"{label}: {exc}")
            return False
        out["removed"].append(label)
        return True

    stagings = sorted(n for n in databases | dirs if _is_kind(n, "staging", drill))
    here = drill in databases or drill in dirs
    if drill not in registered:
        # named like a drill of database, but the suite cannot prove it made
        # it: neither it nor what is named after it is touched
        reason = provenance.unproven(data_dir, drill, "drill", database)
        for name in stagings + ([drill] if here else []):
            out["left_alone"].append(f"{name} ({reason})")
        return
    for name in stagings:
        reason = provenance.unproven(data_dir, name, "staging", drill)
        if reason:
            out["left_alone"].append(f"{name} ({reason})")
        elif attempt(
            name,
            lambda n=name: safety.drop_database_if_suite_owned(
                pg, n, production_db=drill, kinds=("staging",), data_dir=data_dir
            ),
        ):
            provenance.unregister(data_dir, name)
    if here:
        attempt(drill, lambda: drop_drill(pg, database, drill, data_dir))
    elif data_dir is not None:  # listed, gone: forget it
        with contextlib.suppress(SuiteError, OSError):
            registry.unregister(data_dir, drill)
    _clean_work_dirs(drill, temp_root, attempt, out)


def _clean_work_dirs(drill, temp_root, attempt, out):
    for entry in sorted(_list_dirs(temp_root)):
        match = WORK_DIR_RE.match(entry)
        if match is None or match["db"] != drill:
            continue
        path = os.path.join(temp_root, entry)
        with contextlib.suppress(FileNotFoundError):
            if not stat_mod.S_ISDIR(os.lstat(path).st_mode):
                out["errors"].append(f"{path}: not a directory; left alone")
                continue
            attempt(path, lambda p=path: shutil.rmtree(p))
