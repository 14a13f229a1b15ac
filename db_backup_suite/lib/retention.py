"""Retention: which archives to delete. A pure function, no I/O.

``plan_retention(archives, policy, now, database=None) -> RetentionPlan``

Rules, in order (the first that applies decides; ``reasons`` says which):

1. Anything that is not one of the suite's archives for the database (a name
   :func:`naming.parse_archive_name` rejects, or another database's) is kept
   and never considered again: retention only ever deletes its own files.
2. The newest good (``ok``) archive of the database is always kept, whatever
   its label and age.
3. ``manual`` archives are kept unless ``policy.include_manual``.
4. ``pre-restore`` safety copies expire after ``policy.pre_restore_days``
   (7 by default) and are kept until then.
5. Archives whose label the policy does not cover (``policy.labels``) are kept.
6. Failed archives (``ok=False``) in scope are deleted: they restore nothing.
7. Good archives in scope: kept when selected by ``keep_last`` (the N newest)
   or by grandfather-father-son (``keep_hourly/daily/weekly/monthly/yearly``:
   the newest archive of each of the N most recent hours/days/ISO weeks/
   months/years that have one), and not older than ``max_age_days``. With no
   count at all, only ``max_age_days`` applies; with neither, everything is
   kept (a policy never deletes by accident).

Buckets are computed in UTC. Applying a plan and planning again with the same
policy and ``now`` deletes nothing more (idempotent).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .naming import MANUAL, PRE_RESTORE, ArchiveName, parse_archive_name, to_utc

GFS_PERIODS = ("hourly", "daily", "weekly", "monthly", "yearly")


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    max_age_days: float | None = None
    labels: frozenset[str] | None = None  # None: every label but the special ones
    include_manual: bool = False
    pre_restore_days: float = 7

    def __post_init__(self):
        for attr in ("keep_last", *(f"keep_{p}" for p in GFS_PERIODS)):
            value = getattr(self, attr)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{attr} must be a whole number >= 0, not {value!r}")
        if self.max_age_days is not None and self.max_age_days <= 0:
            raise ValueError("max_age_days must be positive (or None)")
        if self.pre_restore_days < 0:
            raise ValueError("pre_restore_days must be >= 0")
        if self.labels is not None:
            object.__setattr__(self, "labels", frozenset(self.labels))

    @property
    def has_counts(self) -> bool:
        return bool(self.keep_last) or any(
            getattr(self, f"keep_{p}") for p in GFS_PERIODS
        )


@dataclass(frozen=True)
class Archive:
    """One archive as retention sees it (what a sink listing plus the run
    history know)."""

    name: str
    database: str
    label: str
    created_at: datetime
    ok: bool = True

    @classmethod
    def from_name(cls, parsed: ArchiveName, ok: bool = True) -> Archive:
        return cls(parsed.name, parsed.database, parsed.label, parsed.created_at, ok)


@dataclass
class RetentionPlan:
    keep: list = field(default_factory=list)
    delete: list = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # name -> why

    @property
    def delete_names(self) -> list[str]:
        return [_name_of(item) for item in self.delete]


def _name_of(item) -> str:
    return item if isinstance(item, str) else item.name


def _as_archive(item, database) -> Archive | None:
    """The Archive for ``item`` (a name or an object), or None when foreign."""
    if isinstance(item, str):
        parsed = parse_archive_name(item, database)
        return Archive.from_name(parsed) if parsed else None
    name = getattr(item, "name", None)
    if not isinstance(name, str):
        return None
    # the name must be one of ours too: an object never overrides that
    parsed = parse_archive_name(name, database)
    if parsed is None:
        return None
    item_db = getattr(item, "database", parsed.database)
    if item_db != parsed.database:
        return None
    return Archive(
        name=name,
        database=parsed.database,
        label=getattr(item, "label", parsed.label),
        created_at=to_utc(getattr(item, "created_at", parsed.created_at)),
        ok=bool(getattr(item, "ok", True)),
    )


def _bucket(moment: datetime, period: str):
    if period == "hourly":
        return (moment.year, moment.month, moment.day, moment.hour)
    if period == "daily":
        return (moment.year, moment.month, moment.day)
    if period == "weekly":
        iso = moment.isocalendar()
        return (iso.year, iso.week)
    if period == "monthly":
        return (moment.year, moment.month)
    return (moment.year,)


def gfs_select(archives: list[Archive], period: str, count: int) -> list[Archive]:
    """The newest archive of each of the ``count`` most recent ``period``
    buckets that hold one (``archives`` sorted newest first)."""
    chosen, seen = [], set()
    for archive in archives:
        if len(seen) >= count:
            break
        key = _bucket(archive.created_at, period)
        if key not in seen:
            seen.add(key)
            chosen.append(archive)
    return chosen


def plan_retention(
    archives: Iterable, policy: RetentionPolicy, now: datetime, database=None
) -> RetentionPlan:
    """Decide what to keep and delete.

    ``archives``: archive names (str), :class:`Archive` objects, or any
    object with ``name`` (and optionally ``database``, ``label``,
    ``created_at``, ``ok``). With ``database``, only that database's archives
    are candidates; without it, every parsable name is grouped by its own
    database and each group is planned on its own. ``keep`` and ``delete``
    hold the input items themselves, in input order.
    """
    now = to_utc(now)
    items = list(archives)
    plan = RetentionPlan()
    decisions: dict[int, tuple[bool, str]] = {}  # index -> (keep?, reason)
    groups: dict[str, list[tuple[int, Archive]]] = {}
    for index, item in enumerate(items):
        archive = _as_archive(item, database)
        if archive is None:
            decisions[index] = (True, "not an archive of this suite for the database")
        else:
            groups.setdefault(archive.database, []).append((index, archive))
    for group in groups.values():
        decisions.update(_plan_group(group, policy, now))
    for index, item in enumerate(items):
        keep, reason = decisions[index]
        (plan.keep if keep else plan.delete).append(item)
        plan.reasons[_name_of(item)] = reason
    return plan


def _plan_rules(group, policy: RetentionPolicy, now: datetime):
    decisions = {}
    # newest first; ties broken by name for a deterministic plan
    group = sorted(group, key=lambda ia: (ia[1].created_at, ia[1].name), reverse=True)
    in_scope = []
    for index, archive in group:
        if archive.label == MANUAL and not policy.include_manual:
            decisions[index] = (True, "manual backup: kept (include_manual is off)")
        elif archive.label == PRE_RESTORE:
            expiry = archive.created_at + timedelta(days=policy.pre_restore_days)
            if now >= expiry:
                decisions[index] = (
                    False,
                    f"pre-restore copy older than {policy.pre_restore_days:g} days",
                )
            else:
                decisions[index] = (True, "pre-restore copy: not expired yet")
        elif (
            policy.labels is not None
            and archive.label not in policy.labels
            and not (archive.label == MANUAL and policy.include_manual)
        ):
            decisions[index] = (True, f"label {archive.label!r} not covered by policy")
        elif not archive.ok:
            decisions[index] = (False, "failed backup")
        else:
            in_scope.append((index, archive))

    if not policy.has_counts and policy.max_age_days is None:
        for index, _archive in in_scope:
            decisions[index] = (True, "policy has no rule: everything is kept")
        return decisions

    selected: dict[int, list[str]] = {}
    if policy.has_counts:
        ordered = [a for _, a in in_scope]
        by_id = {id(a): i for i, a in in_scope}
        for archive in ordered[: policy.keep_last]:
            selected.setdefault(by_id[id(archive)], []).append("keep_last")
        for period in GFS_PERIODS:
            count = getattr(policy, f"keep_{period}")
            for archive in gfs_select(ordered, period, count):
                selected.setdefault(by_id[id(archive)], []).append(period)
    else:
        selected = {index: ["max_age_days"] for index, _a in in_scope}

    cutoff = (
        now - timedelta(days=policy.max_age_days)
        if policy.max_age_days is not None
        else None
    )
    for index, archive in in_scope:
        rules = selected.get(index)
        if cutoff is not None and archive.created_at < cutoff:
            decisions[index] = (
                False,
                f"older than max_age_days={policy.max_age_days:g}",
            )
        elif rules:
            decisions[index] = (True, "kept by " + ", ".join(rules))
        else:
            decisions[index] = (False, "not selected by keep_last or GFS rules")
    return decisions


def _plan_group(group, policy: RetentionPolicy, now: datetime):
    decisions = _plan_rules(group, policy, now)
    # rule 2 last: the newest good backup counts in its GFS buckets like any
    # other, but is kept whatever the rules said
    newest_good = max(
        (ia for ia in group if ia[1].ok),
        key=lambda ia: (ia[1].created_at, ia[1].name),
        default=None,
    )
    if newest_good is not None:
        index = newest_good[0]
        keep, reason = decisions[index]
        if not keep:
            reason = "newest good backup: always kept"
        decisions[index] = (True, reason)
    return decisions
