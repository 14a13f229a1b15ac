"""Retention planning: examples plus hypothesis properties."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from db_backup_suite.lib.naming import archive_name, parse_archive_name
from db_backup_suite.lib.retention import (
    Archive,
    RetentionPolicy,
    _bucket,
    plan_retention,
)

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
DB = "prod"


def arch(hours_ago, label="daily", ok=True, db=DB):
    created = NOW - timedelta(hours=hours_ago)
    return Archive(archive_name(db, label, created), db, label, created, ok)


def names(items):
    return sorted(i if isinstance(i, str) else i.name for i in items)


# -- examples -----------------------------------------------------------------
def test_keep_last():
    archives = [arch(h) for h in range(0, 240, 24)]  # 10 daily backups
    plan = plan_retention(archives, RetentionPolicy(keep_last=3), NOW, DB)
    assert names(plan.keep) == names(archives[:3])
    assert names(plan.delete) == names(archives[3:])
    assert plan.reasons[archives[5].name] == "not selected by keep_last or GFS rules"


def test_gfs_daily_weekly_monthly():
    # one backup every 6 hours for 120 days
    archives = [arch(h) for h in range(0, 120 * 24, 6)]
    policy = RetentionPolicy(keep_daily=7, keep_weekly=4, keep_monthly=3)
    plan = plan_retention(archives, policy, NOW, DB)
    kept = list(plan.keep)
    days = {_bucket(a.created_at, "daily") for a in kept}
    # 7 daily picks; weekly/monthly picks add older buckets (some overlap)
    assert len(kept) == len(days)
    newest_days = sorted({_bucket(a.created_at, "daily") for a in archives})[-7:]
    assert set(newest_days) <= days
    months = {_bucket(a.created_at, "monthly") for a in kept}
    assert len(months) >= 3
    assert len(plan.keep) + len(plan.delete) == len(archives)


def test_newest_good_is_kept_even_when_failed_ones_are_newer():
    good = arch(48)
    failed = [arch(1, ok=False), arch(2, ok=False)]
    policy = RetentionPolicy(max_age_days=1)
    plan = plan_retention([*failed, good], policy, NOW, DB)
    assert plan.keep == [good]
    assert plan.reasons[good.name] == "newest good backup: always kept"
    assert names(plan.delete) == names(failed)


def test_manual_only_when_asked():
    manual = [arch(100, "manual"), arch(200, "manual")]
    newest = arch(1)
    policy = RetentionPolicy(keep_last=1)
    plan = plan_retention([newest, *manual], policy, NOW, DB)
    assert plan.delete == []
    policy = RetentionPolicy(keep_last=1, include_manual=True)
    plan = plan_retention([newest, *manual], policy, NOW, DB)
    assert names(plan.delete) == names(manual)


def test_pre_restore_copies_expire_after_seven_days():
    young = arch(24 * 6, "pre-restore")
    old = arch(24 * 8, "pre-restore")
    plan = plan_retention([arch(0), young, old], RetentionPolicy(), NOW, DB)
    assert plan.delete == [old]
    plan = plan_retention(
        [arch(0), young, old], RetentionPolicy(pre_restore_days=30), NOW, DB
    )
    assert plan.delete == []


def test_labels_limit_the_policy():
    hourly = [arch(h, "hourly") for h in range(1, 10)]
    daily = [arch(h, "daily") for h in range(0, 240, 24)]
    policy = RetentionPolicy(keep_last=2, labels={"hourly"})
    plan = plan_retention(hourly + daily, policy, NOW, DB)
    assert names(plan.delete) == names(hourly[2:])


def test_empty_policy_deletes_nothing():
    archives = [arch(h) for h in range(0, 1000, 24)]
    plan = plan_retention(archives, RetentionPolicy(), NOW, DB)
    assert plan.delete == []


def test_foreign_files_and_other_databases_are_never_touched():
    ours = [arch(h) for h in range(0, 100, 24)]
    foreign = [
        "prod/notes.txt",
        "prod/prod_daily_20200101T000000Z.zip",
        "prod/prod_daily_20200101T000000Z.tar.zst.enc.part",
        archive_name("other", "daily", NOW - timedelta(days=400)),
        "prod_2020-01-01_00-00-00.zip",
    ]
    plan = plan_retention(ours + foreign, RetentionPolicy(keep_last=1), NOW, DB)
    assert set(foreign) <= set(plan.keep)
    assert names(plan.delete) == names(ours[1:])
    # plain names work too, and each database is planned on its own
    plain = [a.name for a in ours] + [
        archive_name("other", "daily", NOW - timedelta(days=d)) for d in range(3)
    ]
    plan = plan_retention(plain, RetentionPolicy(keep_last=1), NOW)
    assert len(plan.delete) == len(ours) - 1 + 2


def test_max_age():
    archives = [arch(h) for h in range(0, 24 * 20, 24)]
    plan = plan_retention(archives, RetentionPolicy(max_age_days=10), NOW, DB)
    assert names(plan.keep) == names(archives[:11])  # 0..10 days, 10 inclusive
    plan = plan_retention(
        archives, RetentionPolicy(keep_last=5, max_age_days=3), NOW, DB
    )
    assert names(plan.keep) == names(archives[:4])


@pytest.mark.parametrize(
    "kwargs", [{"keep_last": -1}, {"keep_daily": 1.5}, {"max_age_days": 0}]
)
def test_invalid_policy(kwargs):
    with pytest.raises(ValueError):
        RetentionPolicy(**kwargs)


# -- properties ---------------------------------------------------------------
LABELS = ["daily", "hourly", "4h", "manual", "pre-restore", "monthly"]

archive_st = st.builds(
    lambda minutes, label, ok, db: arch(minutes / 60, label, ok, db),
    st.integers(min_value=0, max_value=60 * 24 * 800),
    st.sampled_from(LABELS),
    st.booleans(),
    st.sampled_from([DB, DB, DB, "prod_2"]),
)
foreign_st = st.sampled_from(
    [
        "prod/readme.txt",
        "prod/prod_daily_20250101T000000Z.zip",
        "prod/prod_daily_20250101T000000Z.tar.zst.enc.part",
        "prod/prod_Daily_20250101T000000Z.tar.zst.enc",
        "elsewhere/prod_daily_20250101T000000Z.tar.zst.enc",
    ]
)
policy_st = st.builds(
    RetentionPolicy,
    keep_last=st.integers(0, 5),
    keep_hourly=st.integers(0, 5),
    keep_daily=st.integers(0, 10),
    keep_weekly=st.integers(0, 6),
    keep_monthly=st.integers(0, 12),
    keep_yearly=st.integers(0, 3),
    max_age_days=st.one_of(st.none(), st.integers(1, 900)),
    labels=st.one_of(st.none(), st.sets(st.sampled_from(LABELS), min_size=1)),
    include_manual=st.booleans(),
    pre_restore_days=st.integers(0, 30),
)
inputs_st = st.lists(st.one_of(archive_st, archive_st, foreign_st), max_size=60)


def _unique(items):
    seen, out = set(), []
    for item in items:
        name = item if isinstance(item, str) else item.name
        if name not in seen:
            seen.add(name)
            out.append(item)
    return out


@settings(max_examples=300, deadline=None)
@given(items=inputs_st, policy=policy_st)
def test_properties(items, policy):
    items = _unique(items)
    plan = plan_retention(items, policy, NOW, DB)
    # keep and delete partition the input
    assert len(plan.keep) + len(plan.delete) == len(items)
    assert set(map(id, plan.keep)).isdisjoint(map(id, plan.delete))
    assert set(map(id, plan.keep)) | set(map(id, plan.delete)) == set(map(id, items))
    assert set(plan.reasons) == {i if isinstance(i, str) else i.name for i in items}
    # nothing foreign or of another database is ever deleted
    for item in plan.delete:
        assert isinstance(item, Archive)
        assert parse_archive_name(item.name, DB) is not None
        assert item.database == DB
        if item.label == "manual":
            assert policy.include_manual
    # the newest good backup survives
    good = [i for i in items if isinstance(i, Archive) and i.ok and i.database == DB]
    if good:
        newest = max(good, key=lambda a: (a.created_at, a.name))
        assert any(k is newest for k in plan.keep)
    # idempotent: planning again on what is left deletes nothing more
    again = plan_retention(plan.keep, policy, NOW, DB)
    assert again.delete == []


@settings(max_examples=200, deadline=None)
@given(
    hours=st.lists(st.integers(0, 24 * 1500), min_size=1, max_size=80, unique=True),
    period=st.sampled_from(["hourly", "daily", "weekly", "monthly", "yearly"]),
    count=st.integers(1, 15),
)
def test_gfs_keeps_exactly_the_expected_buckets(hours, period, count):
    archives = [arch(h, "daily") for h in hours]
    policy = RetentionPolicy(**{f"keep_{period}": count})
    plan = plan_retention(archives, policy, NOW, DB)
    buckets = sorted({_bucket(a.created_at, period) for a in archives}, reverse=True)
    expected = buckets[:count]
    kept_buckets = [_bucket(a.created_at, period) for a in plan.keep]
    assert len(plan.keep) == min(count, len(buckets))
    assert sorted(kept_buckets, reverse=True) == expected
    # each kept archive is the newest of its bucket
    for kept in plan.keep:
        same = [
            a
            for a in archives
            if _bucket(a.created_at, period) == _bucket(kept.created_at, period)
        ]
        assert kept.created_at == max(a.created_at for a in same)
