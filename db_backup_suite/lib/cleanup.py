"""Remove what killed runs of one database left behind.

A backup, restore or verify killed with ``kill -9`` (or a power cut) cannot
clean up after itself. What it leaves always carries a name the suite gave
it, so the next run (and a daily cron) can find it::

    where                what a killed run leaves             named by
    -------------------  -----------------------------------  ---------------
    local destination    <db>/.dbbs-<archive>.<hex>.tmp       sinks/local.py
    SFTP destination     <db>/<archive>.part                  sinks/sftp.py
    S3 destination       incomplete multipart upload of       sinks/s3.py
                         <prefix>/<db>/<archive>
    PostgreSQL           <db>_restoring_<ts>  (staging)       safety.py
                         <db>_verify_<ts>     (scratch)
    data dir             filestore/<db>_restoring_<ts>,       safety.py
                         filestore/<db>_verify_<ts>
    temp dir             dbbs-restore+<db>+*, dbbs-fetch+     restore.py,
                         <db>+*, dbbs-zip+<db>+*,             verify.py
                         dbbs-verify+<db>+*

:func:`clean_leftovers` removes exactly those, for ONE database:

- **Only the suite's own names.** A destination leftover counts only if
  the sink lists it as its own interrupted write (its temp / ``.part`` /
  multipart naming) AND the object it was for is an archive name of this
  database (``<db>/<db>_<label>_<ts>.tar.*``, :mod:`.naming`); databases
  and directories only if :mod:`.safety` recognises a staging or scratch
  name derived from this database (or from one of its sandboxes or scratch
  copies, whose restores stage the same way). A complete archive, a foreign
  file, another database's leftovers, a sandbox or a pre-restore safety
  copy are never touched. Every removal goes through the sink's own
  ``remove_incomplete`` or :mod:`.safety`'s guarded drop / rmtree.
- **Only what the suite can prove it made.** A name is no proof (anyone
  who may create a database can choose it): a staging or scratch database
  or filestore is removed only when the suite's registry lists it for its
  owner with the matching kind (:mod:`.provenance`; restores and verifies
  register before creating). Anything else merely NAMED like one is
  reported with the action ``left alone`` (logged, counted in
  :attr:`CleanupResult.left_alone`), never dropped. Without a data
  directory there is no registry: databases are only reported.
- **Never a run that is still alive.** The evidence is PostgreSQL's
  advisory locks, which die with the process holding them:

  * destinations: the backup lock of the database (:mod:`.lock`), taken
    here without waiting (or already held by the caller: ``locked=True``,
    as :func:`.backup.run_backup` does at its start). Held by someone else
    means a backup of this database is running: its destinations are left
    alone this time.
  * databases, filestores, temp dirs: the work lock every restore and
    verify holds (shared) for the database it works for
    (:func:`.lock.work_lock`), taken here exclusively without waiting.

  Without PostgreSQL (``pg=None``, or the database cannot be reached) the
  only evidence left is age: a live write touches its object every few
  seconds (a local temp file's and an SFTP ``.part``'s modification time,
  an S3 upload's latest part), so a destination leftover idle for
  ``max(older_than, UNLOCKED_MIN_AGE)`` (one hour) is taken as dead;
  databases and directories are then not examined at all.
  ``older_than`` also applies on top of the locks (default 0: the lock
  proves enough), e.g. to spare anything touched in the last minutes.
  The locks live in PostgreSQL, so they span processes and hosts, but
  they cannot see a database of the same name on ANOTHER PostgreSQL server
  writing to the same destination folder: give each server's backups their
  own destination (prefix, directory), as their archives would otherwise
  share one folder too.
- **Never raises for one destination.** A destination that cannot be
  listed is reported in ``errors``; the others are still cleaned.

One case is kept on purpose: a production restore killed in the middle of
its swap (the database already renamed, the filestore not) leaves a
staging filestore that the swapped database needs; it is reported, not
removed (move it in place, or restore again).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat as stat_mod
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg2

from . import lock, naming, pgtools, provenance, registry, safety
from .errors import BackupLockedError, SafetyError, SuiteError

_logger = logging.getLogger(__name__)

#: Without a lock to ask, a destination leftover idle this long is dead (a
#: live write touches its object every few seconds; a destination stalled
#: longer than the fan-out's stall timeout, 5 minutes, is dropped anyway).
UNLOCKED_MIN_AGE = 3600.0

#: Temp directories of restores and verifies: ``dbbs-<what>+<db>+<random>``
#: ("+" never occurs in a database name, so the database is unambiguous).
WORK_DIR_RE = re.compile(
    r"^dbbs-(?P<what>restore|fetch|verify|zip)\+(?P<db>[a-zA-Z0-9][a-zA-Z0-9_.-]+)"
    r"\+[A-Za-z0-9_]+$"
)
LEFTOVER_KINDS = {
    "temp-file": "temporary file of an interrupted upload",
    "part-file": "partial SFTP upload",
    "multipart-upload": "incomplete S3 multipart upload",
    "staging-database": "staging database of an interrupted restore",
    "scratch-database": "scratch database of an interrupted verify",
    "staging-filestore": "staging filestore of an interrupted restore",
    "scratch-filestore": "scratch filestore of an interrupted verify",
    "work-dir": "temporary directory of an interrupted restore or verify",
}


def work_dir_name(what: str, database: str) -> str:
    """The ``tempfile`` prefix of a restore's or verify's temp directory
    (``dbbs-restore+<db>+``), so :func:`clean_leftovers` can tell whose it
    is."""
    return f"dbbs-{what}+{database}+"


@dataclass
class Leftover:
    """One thing a killed run left. ``action``: ``removed``, ``kept`` (its
    run may be alive, or it is kept on purpose: ``reason``), ``left alone``
    (a database or filestore merely NAMED like the suite's: the suite cannot
    prove it made it, ``reason``), ``failed`` (removal failed: ``reason``)
    or ``would remove`` (dry run)."""

    kind: str
    where: str
    name: str
    action: str
    modified: datetime | None = None
    reason: str | None = None

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "where": self.where,
            "name": self.name,
            "action": self.action,
            "modified": self.modified.isoformat() if self.modified else None,
            "reason": self.reason,
        }


@dataclass
class CleanupResult:
    """What :func:`clean_leftovers` found and did.

    ``skipped``: areas not examined and why (a backup or restore of the
    database is running; no PostgreSQL); ``errors``: areas that could not
    be examined (a destination unreachable...); ``evidence``: how dead runs
    were told from live ones (``backup lock`` or ``age >= N s``).
    """

    database: str
    leftovers: list[Leftover] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    evidence: str = ""
    dry_run: bool = False

    def _with(self, action):
        return [item for item in self.leftovers if item.action == action]

    @property
    def removed(self) -> list[Leftover]:
        return self._with("removed")

    @property
    def kept(self) -> list[Leftover]:
        return self._with("kept")

    @property
    def failed(self) -> list[Leftover]:
        return self._with("failed")

    @property
    def left_alone(self) -> list[Leftover]:
        return self._with("left alone")

    def as_dict(self) -> dict:
        return {
            "database": self.database,
            "removed": len(self.removed),
            "kept": len(self.kept),
            "failed": len(self.failed),
            "left_alone": len(self.left_alone),
            "dry_run": self.dry_run,
            "evidence": self.evidence,
            "leftovers": [item.as_dict() for item in self.leftovers],
            "skipped": list(self.skipped),
            "errors": list(self.errors),
        }

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        count = len(self._with("would remove")) if self.dry_run else len(self.removed)
        text = f"{verb} {count} leftover(s) of {self.database}"
        if self.kept:
            text += f", kept {len(self.kept)}"
        if self.failed:
            text += f", {len(self.failed)} could not be removed"
        if self.left_alone:
            text += (
                f", left alone {len(self.left_alone)} not provably made by the suite"
            )
        return text


def _now() -> datetime:
    return datetime.now(UTC)


def _age(moment: datetime | None, now: datetime) -> float:
    if moment is None:
        return float("inf")
    return (now - moment).total_seconds()


def _resolve(sinks):
    from .sinks import make_sink

    out = []
    for item in sinks or ():
        if isinstance(item, tuple):  # (key, sink) as the backup takes them
            item = item[1]
        if isinstance(item, dict):
            try:
                out.append((make_sink(item), True, None))
            except SuiteError as exc:
                out.append((None, False, f"{item.get('type')} destination: {exc}"))
        else:
            out.append((item, False, None))
    return out


def _is_own_archive(name: str, database: str) -> bool:
    """``<db>/<db>_<label>_<ts>.<ext>`` and nothing else."""
    parsed = naming.parse_archive_name(name, database)
    return name.count("/") == 1 and parsed is not None


def clean_leftovers(
    sinks,
    database: str,
    *,
    pg=None,
    data_dir=None,
    work_dir=None,
    older_than: float = 0.0,
    locked: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
) -> CleanupResult:
    """Remove what killed runs of ``database`` left (see the module doc).

    ``sinks``: destinations (Sink objects, ``make_sink`` configs or
    ``(key, sink)`` pairs); ``pg``: :class:`~.pgtools.PgParams` (the locks,
    and the staging / scratch databases); ``data_dir``: Odoo's data
    directory (staging / scratch filestores); ``work_dir``: where restores
    put their temp dirs (default: the system temp dir); ``older_than``:
    seconds a leftover must have been idle (on top of the locks);
    ``locked``: the caller holds ``database``'s backup lock; ``dry_run``:
    report only. Returns a :class:`CleanupResult`; raises only for an
    invalid database name.
    """
    safety.check_database_name(database)
    now = now or _now()
    result = CleanupResult(database=database, dry_run=dry_run)
    resolved = _resolve(sinks)
    try:
        with contextlib.ExitStack() as stack:
            min_age = _destination_evidence(
                stack, result, database, pg, locked, older_than
            )
            if min_age is not None:
                for sink, _own, error in resolved:
                    if error is not None:
                        result.errors.append(error)
                        continue
                    _clean_destination(sink, database, min_age, now, dry_run, result)
        if pg is None:
            result.skipped.append(
                "no PostgreSQL connection given: staging and scratch databases, "
                "filestores and temp directories were not examined"
            )
        else:
            try:
                _clean_local(
                    pg, database, data_dir, work_dir, older_than, now, dry_run, result
                )
            except (SuiteError, psycopg2.Error, OSError) as exc:
                # a cleanup never fails the run that asked for it
                _logger.warning("cleanup of %s stopped: %s", database, exc)
                result.errors.append(
                    f"staging and scratch leftovers not examined: {exc}"
                )
    finally:
        for sink, own, _error in resolved:
            if own:
                sink.close()
    for item in result.leftovers:
        log = (
            _logger.warning if item.action in ("failed", "left alone") else _logger.info
        )
        log(
            "cleanup of %s: %s %s %s at %s%s",
            database,
            item.action,
            item.kind,
            item.name,
            item.where,
            f" ({item.reason})" if item.reason else "",
        )
    return result


# ---------------------------------------------------------------------------
# Destinations
# ---------------------------------------------------------------------------
def _destination_evidence(stack, result, database, pg, locked, older_than):
    """The minimum idle age for destination leftovers, or None to leave the
    destinations alone (a backup of ``database`` is running)."""
    if locked:
        result.evidence = "backup lock (held by this run)"
        return older_than
    if pg is not None:
        try:
            stack.enter_context(lock.backup_lock(pg, database))
        except BackupLockedError as exc:
            result.skipped.append(
                f"destinations not cleaned: {exc} (its uploads are in progress)"
            )
            result.evidence = "backup lock (held by a running backup)"
            return None
        except SuiteError as exc:
            result.errors.append(
                f"cannot take the backup lock of {database!r} ({exc}); only "
                f"leftovers idle for {UNLOCKED_MIN_AGE:.0f}s or more are removed"
            )
        else:
            result.evidence = "backup lock"
            return older_than
    min_age = max(older_than, UNLOCKED_MIN_AGE)
    result.evidence = f"age >= {min_age:.0f}s (no lock to ask)"
    return min_age


def _clean_destination(sink, database, min_age, now, dry_run, result):
    where = sink.describe()
    try:
        items = sink.list_incomplete(f"{database}/")
    except Exception as exc:  # a cleanup never fails the run that asked for it
        _logger.warning("listing the leftovers at %s: %s", where, exc)
        result.errors.append(f"{where}: cannot list the interrupted uploads: {exc}")
        return
    for item in items:
        if not _is_own_archive(item.name, database):
            continue  # not an archive upload of this database: not ours to judge
        leftover = Leftover(item.kind, where, item.name, "kept", item.modified)
        result.leftovers.append(leftover)
        age = _age(item.modified, now)
        if age < min_age:
            leftover.reason = (
                f"last written {age:.0f}s ago (< {min_age:.0f}s): maybe still "
                "in progress"
            )
            continue
        if dry_run:
            leftover.action = "would remove"
            continue
        try:
            gone = sink.remove_incomplete(item)
        except (SuiteError, OSError) as exc:
            leftover.action, leftover.reason = "failed", str(exc)
            continue
        leftover.action = "removed"
        if not gone:
            leftover.reason = "already gone"


# ---------------------------------------------------------------------------
# PostgreSQL, filestores, temp dirs
# ---------------------------------------------------------------------------
def _owner_of(name: str, database: str, scratches=()):
    """``(kind, owner)`` when ``name`` is a staging / scratch name derived
    from ``database`` or from one of its sandboxes or scratch copies (the
    owner is the database the restore or verify worked for), else None.
    ``scratches``: the registered scratch copies of ``database``, whose
    staging names may be cut (:func:`.safety.derived_name`)."""
    kind = safety.suite_database_kind(name)
    if kind not in ("staging", "scratch"):
        return None
    suffix = "_" + name.rsplit("_", 2)[-2] + "_" + name.rsplit("_", 1)[-1]
    candidates = [database]
    base = name[: -len(suffix)]
    if base != database:
        candidates.append(base)  # a sandbox or scratch of database?
    candidates += [s for s in scratches if s not in candidates]
    for owner in candidates:
        if owner != database:
            try:
                safety.check_suite_database_name(
                    owner, ("sandbox", "scratch"), database
                )
            except SafetyError:
                continue
        try:
            safety.check_suite_database_name(name, (kind,), owner)
        except SafetyError:
            continue
        return kind, owner
    return None


def _stamp_of(name: str) -> datetime | None:
    try:
        return datetime.strptime(name.rsplit("_", 1)[-1], "%Y%m%d%H%M%S").replace(
            tzinfo=UTC
        )
    except ValueError:
        return None


def _registered_scratches(data_dir, database) -> list[str]:
    """The scratch copies of ``database`` the registry lists (a verify
    registers its scratch before restoring into it)."""
    if data_dir is None:
        return []
    try:
        entries = registry.entries_for(data_dir, database)
    except (SuiteError, OSError):
        return []  # reported by the proof of each leftover
    return [
        e.name
        for e in entries
        if e.kind == "drill" and safety.suite_database_kind(e.name) == "scratch"
    ]


def _list_databases(pg) -> dict[str, bool]:
    with pgtools.admin_cursor(pg) as cr:
        cr.execute("SELECT datname, datistemplate FROM pg_database")
        return dict(cr.fetchall())


def _list_dirs(base) -> list[str]:
    try:
        with os.scandir(base) as entries:
            return [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _clean_local(pg, database, data_dir, work_dir, older_than, now, dry_run, result):
    try:
        databases = _list_databases(pg)
    except SuiteError as exc:
        result.errors.append(
            f"cannot list the databases ({exc}): staging and scratch databases, "
            "filestores and temp directories were not examined"
        )
        return
    scratches = _registered_scratches(data_dir, database)
    # owner -> [(kind, name, location)]
    groups: dict[str, list] = {}
    for name, is_template in databases.items():
        found = _owner_of(name, database, scratches)
        if found and not is_template:
            kind, owner = found
            groups.setdefault(owner, []).append((f"{kind}-database", name, None))
    fs_root = None
    if data_dir is not None:
        fs_root = os.path.join(os.path.abspath(data_dir), safety.FILESTORE)
        for name in _list_dirs(fs_root):
            found = _owner_of(name, database, scratches)
            if found:
                kind, owner = found
                groups.setdefault(owner, []).append((f"{kind}-filestore", name, None))
    temp_root = os.path.abspath(work_dir or tempfile.gettempdir())
    for entry in _list_dirs(temp_root):
        match = WORK_DIR_RE.match(entry)
        if match is None:
            continue
        tag = match["db"]
        owner = None
        if tag == database:
            owner = database
        else:
            with contextlib.suppress(SafetyError):
                safety.check_suite_database_name(tag, ("sandbox",), database)
                owner = tag
            found = _owner_of(tag, database) if owner is None else None
            if found:
                owner = found[1]
        if owner is not None:
            groups.setdefault(owner, []).append(("work-dir", entry, tag))
    for owner, items in sorted(groups.items()):
        with lock.work_lock(pg, owner, exclusive=True) as granted:
            for kind, name, _tag in sorted(items):
                where = {
                    "work-dir": temp_root,
                    "staging-filestore": fs_root,
                    "scratch-filestore": fs_root,
                }.get(kind, "postgresql")
                leftover = Leftover(kind, where, name, "kept")
                result.leftovers.append(leftover)
                if not granted:
                    leftover.reason = (
                        f"a restore or verify of {owner!r} is running (it holds "
                        "the work lock)"
                    )
                    continue
                _remove_local(
                    leftover,
                    pg=pg,
                    owner=owner,
                    data_dir=data_dir,
                    temp_root=temp_root,
                    databases=databases,
                    older_than=older_than,
                    now=now,
                    dry_run=dry_run,
                )
    if scratches and not dry_run:
        _forget_dead_scratches(pg, database, data_dir, scratches)


def _forget_dead_scratches(pg, database, data_dir, scratches):
    """Unregister the scratch copies of a dead verify that never got (or no
    longer have) a database, a filestore or a staging copy of their own."""
    with lock.work_lock(pg, database, exclusive=True) as granted:
        if not granted:  # a verify of database is alive: its entry stays
            return
        left = _list_databases(pg)
        fs_root = os.path.join(os.path.abspath(data_dir), safety.FILESTORE)
        dirs = set(_list_dirs(fs_root))
        for scratch in scratches:
            if scratch in left or scratch in dirs:
                continue
            if any(
                _owner_of(n, database, [scratch]) == ("staging", scratch)
                for n in set(left) | dirs
            ):
                continue
            provenance.unregister(data_dir, scratch)


def _remove_local(
    leftover, *, pg, owner, data_dir, temp_root, databases, older_than, now, dry_run
):
    kind, name = leftover.kind, leftover.name
    if kind != "work-dir":
        # a name is no proof: the registry (and the marker) must say so
        reason = provenance.unproven(
            data_dir, name, "staging" if kind.startswith("staging") else "drill", owner
        )
        if reason:
            leftover.action, leftover.reason = "left alone", reason
            return
    if kind == "work-dir":
        path = os.path.join(temp_root, name)
        try:
            leftover.modified = datetime.fromtimestamp(os.lstat(path).st_mtime, UTC)
        except FileNotFoundError:
            return
    else:
        leftover.modified = _stamp_of(name)
    age = _age(leftover.modified, now)
    if age < older_than:
        leftover.reason = f"made {age:.0f}s ago (< {older_than:.0f}s)"
        return
    reason = _keep_on_purpose(kind, name, owner, data_dir, databases)
    if reason:
        leftover.reason = reason
        return
    if dry_run:
        leftover.action = "would remove"
        return
    try:
        if kind.endswith("-database"):
            safety.drop_database_if_suite_owned(
                pg, name, production_db=owner, kinds=("staging", "scratch")
            )
        elif kind.endswith("-filestore"):
            safety.remove_filestore(
                data_dir, name, production_db=owner, kinds=("staging", "scratch")
            )
        else:
            _remove_work_dir(temp_root, name)
        if kind != "work-dir":
            _forget_if_gone(pg, data_dir, name)
    except (SuiteError, OSError) as exc:
        leftover.action, leftover.reason = "failed", str(exc)
        return
    leftover.action = "removed"


def _forget_if_gone(pg, data_dir, name):
    """Unregister ``name`` once neither its database nor its filestore is
    left (the registry is what proves the other one the suite's)."""
    if pgtools.database_exists(pg, name):
        return
    if data_dir is not None and os.path.lexists(safety.filestore_of(data_dir, name)):
        return
    provenance.unregister(data_dir, name)


def _keep_on_purpose(kind, name, owner, data_dir, databases) -> str | None:
    """Why a dead run's leftover must stay anyway (None: it may go)."""
    if (
        kind == "staging-database"
        and owner not in databases
        and safety.suite_database_kind(owner) not in ("sandbox", "scratch")
    ):
        return (
            f"{owner!r} does not exist: a restore stopped before or during "
            "its swap; this copy may be the only restored one (drop it by "
            "hand once checked)"
        )
    if kind == "staging-filestore" and data_dir is not None and name not in databases:
        # The swap renames the databases first, then the directories: a
        # staging directory whose database is gone may be the filestore of
        # the database just swapped in.
        stamp = name.rsplit("_", 1)[-1]
        fs = os.path.join(os.path.abspath(data_dir), safety.FILESTORE)
        safety_name = safety.derived_name(owner, f"pre_restore_{stamp}")
        production_cut = safety_name in databases and not os.path.lexists(
            os.path.join(fs, safety_name)
        )
        sandbox_cut = (
            safety.suite_database_kind(owner) == "sandbox"
            and owner in databases
            and not os.path.lexists(os.path.join(fs, owner))
        )
        if production_cut or sandbox_cut:
            return (
                f"the restore of {stamp} stopped in the middle of its swap: "
                f"{owner!r} is the restored database but its filestore was not "
                f"moved; move {name} to filestore/{owner} (keeping the old one) "
                "or restore again"
            )
    return None


def _remove_work_dir(temp_root: str, name: str):
    if WORK_DIR_RE.match(name) is None:  # never anything else
        raise SafetyError(f"{name} is not a temp directory of the suite")
    path = os.path.join(temp_root, name)
    st = os.lstat(path)
    if not stat_mod.S_ISDIR(st.st_mode):
        raise SafetyError(f"{path} is not a directory (a symlink?); left alone")
    shutil.rmtree(path)
