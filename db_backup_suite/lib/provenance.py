"""Proof that the suite made a database, before any cleanup drops it.

A name is not a proof: anyone who may create a database can call it
``<db>_restoring_<stamp>``, ``<db>_verify_<stamp>`` or ``<db>_drill_<stamp>``.
The cleanups (:mod:`.cleanup`, :mod:`.drill`) therefore drop a leftover only
when the suite's registry (:mod:`.registry`, one file in the data
directory, outside every database and out of reach of whoever can only
create databases) lists the name with the matching kind (``staging`` for
``<target>_restoring_<stamp>``, ``drill`` for ``<db>_drill_<stamp>`` and
``<db>_verify_<stamp>``) for the database the cleanup works for.

Restores, verifies and drills register their databases BEFORE creating them
(after checking the name is free), so a run killed at any point leaves a
leftover the next run can prove; they unregister a name once its database
and filestore are gone or renamed, and when the name turned out to be taken
by someone else (they never drop a database they did not create).

Without a data directory there is no registry: nothing is provable, so a
look-alike (and a real leftover) is only reported ("left alone"), never
dropped.
"""

from __future__ import annotations

import logging

from . import registry
from .errors import SuiteError

_logger = logging.getLogger(__name__)


def register(data_dir, name: str, kind: str, production_db: str) -> bool:
    """Register ``name`` before creating it; False when there is no registry
    (no data directory) or it cannot be written (the run goes on: its
    leftovers, if any, will be reported instead of dropped)."""
    if data_dir is None:
        return False
    try:
        registry.register(data_dir, name, kind, production_db, creator="engine")
    except (SuiteError, OSError) as exc:
        _logger.warning("%s not registered: %s", name, exc)
        return False
    return True


def unregister(data_dir, name: str) -> None:
    """Forget ``name`` (best effort: a stale entry names no database)."""
    if data_dir is None:
        return
    try:
        registry.unregister(data_dir, name)
    except (SuiteError, OSError) as exc:
        _logger.warning("%s not unregistered: %s", name, exc)


def unproven(data_dir, name: str, kind: str, production_db: str) -> str | None:
    """None when the registry proves the suite made ``name`` (a ``kind``
    database of ``production_db``, or its filestore); else why not (the
    leftover is then left alone)."""
    if data_dir is None:
        return "no registry (no data directory): the suite cannot prove it made it"
    try:
        entry = registry.get(data_dir, name)
    except (SuiteError, OSError) as exc:
        return f"the registry cannot be read ({exc})"
    if entry is None or entry.kind != kind or entry.production_db != production_db:
        return (
            f"named like the suite's, but not in its registry as a {kind} "
            f"database of {production_db!r}"
        )
    return None
