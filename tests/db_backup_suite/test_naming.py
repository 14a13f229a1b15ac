"""Archive names: one folder per database, label, UTC timestamp, extension."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from db_backup_suite.lib.naming import (
    EXTENSIONS,
    KNOWN_LABELS,
    archive_name,
    parse_archive_name,
)

WHEN = datetime(2025, 3, 9, 14, 5, 7, 123456, tzinfo=UTC)


def test_archive_name_layout():
    assert (
        archive_name("prod", "daily", WHEN)
        == "prod/prod_daily_20250309T140507Z.tar.zst.enc"
    )
    assert (
        archive_name("my_db.v2", "4h", WHEN, ext=".tar.gz")
        == "my_db.v2/my_db.v2_4h_20250309T140507Z.tar.gz"
    )


def test_timezones_are_normalised_to_utc():
    cet = timezone(timedelta(hours=1))
    local = datetime(2025, 3, 9, 15, 5, 7, tzinfo=cet)
    naive_utc = datetime(2025, 3, 9, 14, 5, 7)
    assert archive_name("db", "manual", local) == archive_name("db", "manual", WHEN)
    assert archive_name("db", "manual", naive_utc) == archive_name("db", "manual", WHEN)


@pytest.mark.parametrize(
    "database,label,ext",
    [
        ("", "daily", ".tar.zst.enc"),
        ("../etc", "daily", ".tar.zst.enc"),
        ("a/b", "daily", ".tar.zst.enc"),
        ("db", "my_label", ".tar.zst.enc"),
        ("db", "Daily", ".tar.zst.enc"),
        ("db", "", ".tar.zst.enc"),
        ("db", "daily", ".zip"),
    ],
)
def test_archive_name_rejects_bad_input(database, label, ext):
    with pytest.raises(ValueError):
        archive_name(database, label, WHEN, ext=ext)


@pytest.mark.parametrize("label", KNOWN_LABELS)
@pytest.mark.parametrize("ext", list(EXTENSIONS))
def test_round_trip_every_label_and_extension(label, ext):
    name = archive_name("odoo_prod", label, WHEN, ext=ext)
    parsed = parse_archive_name(name, database="odoo_prod")
    assert parsed is not None
    assert parsed.name == name
    assert parsed.database == "odoo_prod"
    assert parsed.label == label
    assert parsed.created_at == WHEN.replace(microsecond=0)
    assert parsed.ext == ext
    assert parsed.encrypted == ext.endswith(".enc")
    assert parsed.compression == EXTENSIONS[ext][0]


def test_legacy_plaintext_archives_are_recognised():
    parsed = parse_archive_name("db/db_daily_20240101T000000Z.tar.gz")
    assert parsed.compression == "gzip" and not parsed.encrypted
    parsed = parse_archive_name("db_daily_20240101T000000Z.tar")  # flat layout
    assert parsed.compression == "none" and parsed.database == "db"


def test_with_a_prefix_in_front():
    name = "backups/site-1/prod/prod_hourly_20250101T010203Z.tar.zst.enc"
    assert parse_archive_name(name, "prod").label == "hourly"


@pytest.mark.parametrize(
    "name",
    [
        "prod/prod_daily_20250309T140507Z.tar.zst.enc.part",  # unfinished upload
        "prod/prod_daily_20250309T140507Z.zip",  # Odoo's own zip
        "prod/prod_2025-03-09_14-05-07.zip",  # auto_backup's names
        "prod/notes.txt",
        "prod/prod_daily_20251309T140507Z.tar.zst.enc",  # month 13
        "prod/prod_daily_20250309T1405Z.tar.zst.enc",
        "prod/prod__20250309T140507Z.tar.zst.enc",
        "other/prod_daily_20250309T140507Z.tar.zst.enc",  # wrong folder
        "prod\\prod_daily_20250309T140507Z.tar.zst.enc",
        "",
    ],
)
def test_foreign_names_are_not_ours(name):
    assert parse_archive_name(name) is None


def test_other_databases_are_not_ours():
    other = archive_name("prod2", "daily", WHEN)
    assert parse_archive_name(other, database="prod") is None
    assert parse_archive_name(other, database="prod2") is not None
    # a database whose name ends like another's label is still told apart
    tricky = archive_name("prod_daily", "daily", WHEN)
    assert parse_archive_name(tricky, database="prod") is None
    assert parse_archive_name(tricky).database == "prod_daily"


@given(
    database=st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{1,20}", fullmatch=True),
    label=st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}", fullmatch=True),
    created=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)
    ),
    ext=st.sampled_from(list(EXTENSIONS)),
)
def test_parse_inverts_archive_name(database, label, created, ext):
    name = archive_name(database, label, created, ext)
    parsed = parse_archive_name(name, database)
    assert (parsed.database, parsed.label, parsed.ext) == (database, label, ext)
    assert parsed.created_at == created.replace(microsecond=0, tzinfo=UTC)
    assert parse_archive_name(name, database + "x") is None
