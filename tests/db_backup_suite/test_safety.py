"""DROP DATABASE and rmtree act only on what the suite created.

``db_backup_suite.lib.safety`` against the real PostgreSQL and real
directories: every refused name or path leaves the database and the
directory in place; a suite sandbox of the right database is dropped with
its filestore.
"""

import os
import uuid

import pytest
from psycopg2 import sql

from db_backup_suite.lib import restore, safety
from db_backup_suite.lib.errors import (
    InvalidDatabaseNameError,
    NotSuiteDatabaseError,
    SafetyError,
    SuiteError,
    UnsafePathError,
)
from db_backup_suite.lib.pgtools import PgParams
from tests.fixtures.odoo_db import connect, database_exists, drop_database

PREFIX = "h3_sf_"
DAY = "20260101"


@pytest.fixture
def pg():
    return PgParams.from_env()


@pytest.fixture
def make_db():
    """``make(name, template=False)``: a real (empty) database, dropped after."""
    made = []

    def make(name, template=False):
        admin = connect("postgres")
        with admin.cursor() as cr:
            cr.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            if template:
                cr.execute(
                    sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(
                        sql.Identifier(name)
                    )
                )
        admin.close()
        made.append((name, template))
        return name

    yield make
    for name, template in made:
        if template:
            admin = connect("postgres")
            with admin.cursor() as cr:
                cr.execute(
                    sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(
                        sql.Identifier(name)
                    )
                )
            admin.close()
        drop_database(name)


@pytest.fixture
def prod():
    return f"{PREFIX}{uuid.uuid4().hex[:8]}"


def _filestore(data_dir, name):
    path = data_dir / "filestore" / name
    path.mkdir(parents=True)
    (path / "ab").mkdir()
    (path / "ab" / "abcdef").write_bytes(b"a file")
    return path


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["prod", "a1", "my.db-2_x", "x" * 63, "9lives"])
def test_valid_database_names(name):
    assert safety.check_database_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "a", "-x", ".x", "_x", "a b", "a/b", "a;drop", "é" * 10, "x" * 64, None],
)
def test_invalid_database_names(name):
    with pytest.raises(InvalidDatabaseNameError):
        safety.check_database_name(name)


def test_the_suites_own_names_are_sandbox_names():
    prod = "prod"
    sandbox = safety.sandbox_name(prod, DAY)
    assert sandbox == "prod-sandbox-20260101"
    assert safety.sandbox_name(prod, DAY, 3) == "prod-sandbox-20260101-3"
    safety_copy = restore._derived_name(prod, "pre_restore_20260101000000")
    long_prod = "p" * 63
    long_copy = restore._derived_name(long_prod, "pre_restore_20260101000000")
    long_sandbox = safety.sandbox_name(long_prod, DAY)
    for name, owner in [
        (sandbox, prod),
        (safety.sandbox_name(prod, DAY, 2), prod),
        (safety_copy, prod),
        (long_copy, long_prod),
        (long_sandbox, long_prod),
    ]:
        assert safety.check_sandbox_name(name) == name
        assert safety.check_sandbox_name(name, production_db=owner) == name
    # what the engine derives from a sandbox still fits
    assert len(restore._derived_name(long_sandbox, "pre_restore_20260101000000")) <= 63
    assert safety.suite_database_kind("prod_restoring_20260101000000") == "staging"
    assert safety.suite_database_kind("prod_verify_20260101000000") == "scratch"


@pytest.mark.parametrize(
    "name, error",
    [
        ("prod", NotSuiteDatabaseError),  # the production database itself
        ("postgres", NotSuiteDatabaseError),
        ("template0", NotSuiteDatabaseError),
        ("template1", NotSuiteDatabaseError),
        ("..", InvalidDatabaseNameError),
        ("../prod-sandbox-20260101", InvalidDatabaseNameError),
        ("prod/../x-sandbox-20260101", InvalidDatabaseNameError),
        ("a..b-sandbox-20260101", InvalidDatabaseNameError),
        ("/tmp/x-sandbox-20260101", InvalidDatabaseNameError),
        ("prod_copy", NotSuiteDatabaseError),  # outside the pattern
        ("prod-sandbox-2026", NotSuiteDatabaseError),
        ("prod-sandbox-20260101-1", NotSuiteDatabaseError),  # never made
        ("prod_restoring_20260101000000", NotSuiteDatabaseError),  # not a sandbox
        ("other-sandbox-20260101", NotSuiteDatabaseError),  # another db's
        ("other_pre_restore_20260101000000", NotSuiteDatabaseError),
        ("prod2-sandbox-20260101", NotSuiteDatabaseError),
    ],
)
def test_refused_sandbox_names(name, error):
    with pytest.raises(error):
        safety.check_sandbox_name(name, production_db="prod")
    assert issubclass(error, SafetyError) and issubclass(error, SuiteError)


def test_the_daily_sandbox_name():
    assert safety.daily_sandbox_name("prod") == "prod-sandbox-daily"
    assert (
        safety.check_sandbox_name("prod-sandbox-daily", "prod") == "prod-sandbox-daily"
    )
    long_prod = "p" * 63
    long_daily = safety.daily_sandbox_name(long_prod)
    assert long_daily.endswith("-sandbox-daily")
    assert len(long_daily.encode()) <= safety.MAX_SANDBOX_NAME
    assert safety.check_sandbox_name(long_daily, long_prod) == long_daily
    # another database's, near misses and dots stay refused
    for name, owner, error in [
        ("other-sandbox-daily", "prod", NotSuiteDatabaseError),
        ("prod-sandbox-dailyx", "prod", NotSuiteDatabaseError),
        ("prod-sandbox-daily-2", "prod", NotSuiteDatabaseError),
        ("prod-sandbox-Daily", "prod", NotSuiteDatabaseError),
        ("prod2-sandbox-daily", "prod", NotSuiteDatabaseError),
        ("a..b-sandbox-daily", "prod", InvalidDatabaseNameError),
        ("prod-sandbox-daily", "prod-sandbox-daily", NotSuiteDatabaseError),
    ]:
        with pytest.raises(error):
            safety.check_sandbox_name(name, production_db=owner)


def test_template_names_refused_even_in_the_pattern():
    with pytest.raises(NotSuiteDatabaseError):
        safety.check_sandbox_name("postgres", production_db=None)
    with pytest.raises(NotSuiteDatabaseError):
        safety.check_sandbox_name("prod-sandbox-20260101", "prod-sandbox-20260101")


# ---------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------
def test_safe_data_path_accepts_a_filestore_child(tmp_path):
    got = safety.safe_data_path(tmp_path, "filestore", "prod-sandbox-20260101")
    assert got == tmp_path / "filestore" / "prod-sandbox-20260101"


@pytest.mark.parametrize(
    "parts",
    [
        (),
        ("filestore",),  # the filestore itself
        ("filestore", ".."),
        ("filestore", "."),
        ("filestore", "a/../.."),
        ("filestore", "/etc"),
        ("filestore", ""),
        ("filestore", "a\0b"),
        ("sessions", "x"),  # outside the filestore
        ("..", "filestore", "x"),
        ("filestore", "..", "filestore", "x"),
    ],
)
def test_safe_data_path_refuses_escapes(tmp_path, parts):
    with pytest.raises(UnsafePathError):
        safety.safe_data_path(tmp_path, *parts)


def test_safe_data_path_refuses_symlinks_below_the_filestore(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "data" / "filestore").mkdir(parents=True)
    link = tmp_path / "data" / "filestore" / "prod-sandbox-20260101"
    link.symlink_to(outside)
    with pytest.raises(UnsafePathError, match="symlink"):
        safety.safe_data_path(tmp_path / "data", "filestore", link.name)
    with pytest.raises(UnsafePathError, match="symlink"):
        safety.safe_data_path(tmp_path / "data", "filestore", link.name, "ab")
    with pytest.raises(UnsafePathError):
        safety.remove_filestore(tmp_path / "data", link.name)
    assert outside.is_dir() and link.is_symlink()


def test_a_filestore_folder_on_another_disk_is_allowed(tmp_path):
    """An administrator may symlink <data_dir>/filestore itself elsewhere."""
    disk = tmp_path / "disk"
    (disk / "prod-sandbox-20260101").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "filestore").symlink_to(disk)
    removed = safety.remove_filestore(tmp_path / "data", "prod-sandbox-20260101")
    assert removed is not None and not (disk / "prod-sandbox-20260101").exists()
    assert disk.is_dir()


# ---------------------------------------------------------------------------
# Against real databases and directories
# ---------------------------------------------------------------------------
def test_drop_refuses_the_production_database(pg, make_db, tmp_path, prod):
    make_db(prod)
    fs = _filestore(tmp_path, prod)
    with pytest.raises(NotSuiteDatabaseError, match="production database"):
        safety.drop_database_if_suite_owned(
            pg, prod, production_db=prod, data_dir=tmp_path
        )
    with pytest.raises(NotSuiteDatabaseError):  # and without naming it
        safety.drop_database_if_suite_owned(pg, prod, data_dir=tmp_path)
    with pytest.raises(NotSuiteDatabaseError):
        safety.remove_filestore(tmp_path, prod)
    assert database_exists(prod) and (fs / "ab" / "abcdef").is_file()


def test_drop_refuses_another_databases_sandbox(pg, make_db, tmp_path, prod):
    other = make_db(safety.sandbox_name(f"{PREFIX}other", DAY))
    fs = _filestore(tmp_path, other)
    with pytest.raises(NotSuiteDatabaseError, match="not a sandbox database of"):
        safety.drop_database_if_suite_owned(
            pg, other, production_db=prod, data_dir=tmp_path
        )
    assert database_exists(other) and fs.is_dir()


def test_drop_refuses_postgres_and_templates(pg, make_db, tmp_path, prod):
    for name in ("postgres", "template1"):
        with pytest.raises(NotSuiteDatabaseError):
            safety.drop_database_if_suite_owned(pg, name, data_dir=tmp_path)
        assert database_exists(name)
    # a template database named like a sandbox is a template all the same
    template = make_db(safety.sandbox_name(prod, DAY), template=True)
    with pytest.raises(NotSuiteDatabaseError, match="template"):
        safety.drop_database_if_suite_owned(pg, template, production_db=prod)
    assert database_exists(template)


def test_drop_refuses_names_with_dots_and_slashes(pg, make_db, tmp_path, prod):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    for name in ("../outside", f"{prod}/../../outside-sandbox-{DAY}"):
        make_db(name)
        with pytest.raises(InvalidDatabaseNameError):
            safety.drop_database_if_suite_owned(
                pg, name, production_db=prod, data_dir=tmp_path / "data"
            )
        with pytest.raises(SafetyError):
            safety.remove_filestore(tmp_path / "data", name)
        assert database_exists(name)
    assert (outside / "precious").read_text() == "keep me"


def test_drop_refuses_a_name_outside_the_pattern(pg, make_db, tmp_path, prod):
    name = make_db(f"{prod}_copy")
    fs = _filestore(tmp_path, name)
    with pytest.raises(NotSuiteDatabaseError, match="not a name the backup suite"):
        safety.drop_database_if_suite_owned(
            pg, name, production_db=prod, data_dir=tmp_path
        )
    assert database_exists(name) and fs.is_dir()


def test_drops_a_suite_sandbox_and_its_filestore(pg, make_db, tmp_path, prod):
    sandbox = make_db(safety.sandbox_name(prod, DAY, 2))
    copy = make_db(restore._derived_name(prod, "pre_restore_20260101000000"))
    fs = _filestore(tmp_path, sandbox)
    out = safety.drop_database_if_suite_owned(
        pg, sandbox, production_db=prod, data_dir=tmp_path
    )
    assert out == {"database": sandbox, "filestore": str(fs)}
    assert not database_exists(sandbox) and not fs.exists()
    assert (tmp_path / "filestore").is_dir()  # only the sandbox's own folder
    out = safety.drop_database_if_suite_owned(pg, copy, production_db=prod)
    assert out["filestore"] is None and not database_exists(copy)


def test_staging_is_dropped_only_as_staging(pg, make_db, prod):
    staging = make_db(restore._derived_name(prod, "restoring_20260101000000"))
    with pytest.raises(NotSuiteDatabaseError):  # not a sandbox kind
        safety.drop_database_if_suite_owned(pg, staging, production_db=prod)
    assert database_exists(staging)
    safety.drop_database_if_suite_owned(
        pg, staging, production_db=prod, kinds=("staging",)
    )
    assert not database_exists(staging)


def test_remove_filestore_only_removes_a_directory(tmp_path):
    (tmp_path / "filestore").mkdir()
    file = tmp_path / "filestore" / "prod-sandbox-20260101"
    file.write_text("not a folder")
    with pytest.raises(UnsafePathError, match="not a directory"):
        safety.remove_filestore(tmp_path, file.name)
    assert file.exists()
    assert safety.remove_filestore(tmp_path, "prod-sandbox-20260102") is None
    assert os.listdir(tmp_path / "filestore") == [file.name]
