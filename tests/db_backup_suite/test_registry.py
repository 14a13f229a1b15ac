"""The registry of the databases the suite made, outside every database.

``db_backup_suite.lib.registry`` against real files, real processes racing
on the lock, and the real PostgreSQL for ``prune``: entries survive any
number of concurrent writers, the file and its folder stay private, a
corrupt file is kept aside and never blocks the suite, and no entry whose
name is not the suite's own for its production database is accepted or
listed.
"""

import json
import logging
import multiprocessing
import os
import stat
import uuid
from pathlib import Path

import pytest
from psycopg2 import sql

from db_backup_suite.lib import registry, safety
from db_backup_suite.lib.errors import SafetyError
from tests.fixtures.odoo_db import connect, database_exists, drop_database

DAY = "20260101"
STAMP = "20260101120000"


@pytest.fixture
def prod():
    return f"reg_{uuid.uuid4().hex[:8]}"


def sandbox(prod, n=1):
    return safety.sandbox_name(prod, DAY, n)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_register_list_unregister(tmp_path, prod):
    name = sandbox(prod)
    safety_copy = safety.derived_name(prod, f"pre_restore_{STAMP}")
    entry = registry.register(
        tmp_path,
        name,
        "sandbox",
        prod,
        expires="2026-01-08T00:00:00Z",
        creator="admin",
        marker="m" * 48,
    )
    registry.register(tmp_path, safety_copy, "safety_copy", prod)
    # another database's entries are not this one's
    registry.register(tmp_path, sandbox(prod + "x"), "sandbox", prod + "x")
    assert entry.filestore == str(tmp_path / "filestore" / name)
    assert entry.marker_sha256
    assert "m" * 48 not in Path(registry.path_of(tmp_path)).read_text()
    assert registry.marker_matches(entry, "m" * 48)
    assert not registry.marker_matches(entry, "x" * 48)
    listed = registry.entries_for(tmp_path, prod)
    assert {e.name for e in listed} == {name, safety_copy}
    assert {e.kind for e in listed} == {"sandbox", "safety_copy"}
    got = registry.get(tmp_path, name)
    assert got.creator == "admin"
    assert got.expires_at.isoformat() == "2026-01-08T00:00:00+00:00"
    # an update keeps what it does not say
    again = registry.register(tmp_path, name, "sandbox", prod, expires=None)
    assert again.created == entry.created and again.creator == "admin"
    assert again.marker_sha256 == entry.marker_sha256
    # renamed (the daily sandbox takes its rolling name)
    daily = safety.daily_sandbox_name(prod)
    moved = registry.rename(tmp_path, name, daily)
    assert moved.name == daily and moved.marker_sha256 == entry.marker_sha256
    assert registry.get(tmp_path, name) is None
    assert registry.unregister(tmp_path, daily).name == daily
    assert registry.unregister(tmp_path, daily) is None
    assert [e.name for e in registry.entries_for(tmp_path, prod)] == [safety_copy]
    assert registry.check(tmp_path) == 2


def test_permissions(tmp_path, prod):
    folder = tmp_path / "db_backup_suite"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)  # whatever the umask made of it
    registry.register(tmp_path, sandbox(prod), "sandbox", prod)
    assert mode(folder) == 0o700
    assert mode(registry.path_of(tmp_path)) == 0o600
    assert mode(folder / "registry.lock") == 0o600
    # no temporary file is left behind
    assert sorted(os.listdir(folder)) == ["registry.json", "registry.lock"]


def test_symlinked_file_is_refused(tmp_path, prod):
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("keep me")
    folder = tmp_path / "db_backup_suite"
    folder.mkdir(mode=0o700)
    os.symlink(elsewhere, folder / "registry.json")
    with pytest.raises(registry.RegistryCorruptError, match="cannot be read safely"):
        registry.register(tmp_path, sandbox(prod), "sandbox", prod)
    assert elsewhere.read_text() == "keep me"


@pytest.mark.parametrize(
    "name_of, kind",
    [
        (lambda p: p, "sandbox"),  # the production database itself
        (lambda p: "postgres", "sandbox"),
        (lambda p: "template1", "safety_copy"),
        (lambda p: sandbox("other_db"), "sandbox"),  # another database's
        (lambda p: sandbox(p), "safety_copy"),  # a sandbox name as a safety copy
        (lambda p: p + "_pre_restore_x", "safety_copy"),
        (lambda p: p + "/../x-sandbox-20260101", "sandbox"),
        (lambda p: sandbox(p), "weird"),
    ],
)
def test_refused_names_write_nothing(tmp_path, prod, name_of, kind):
    with pytest.raises((SafetyError, registry.RegistryError)):
        registry.register(tmp_path, name_of(prod), kind, prod)
    assert not os.path.exists(registry.path_of(tmp_path))


def test_forged_entry_is_ignored(tmp_path, prod, caplog):
    """A hand-written entry naming a database the suite would not make for
    that production database is never listed (so never dropped)."""
    registry.register(tmp_path, sandbox(prod), "sandbox", prod)
    path = registry.path_of(tmp_path)
    data = json.loads(Path(path).read_text())
    forged = {
        prod: dict(data["entries"][sandbox(prod)], name=prod),
        "postgres": dict(data["entries"][sandbox(prod)], name="postgres"),
        sandbox("victim"): dict(data["entries"][sandbox(prod)], name=sandbox("victim")),
    }
    data["entries"].update(forged)
    with open(path, "w") as handle:
        json.dump(data, handle)
    with caplog.at_level(logging.WARNING, logger="db_backup_suite.lib.registry"):
        listed = registry.entries_for(tmp_path, prod)
    assert [e.name for e in listed] == [sandbox(prod)]
    assert registry.get(tmp_path, "postgres") is None
    assert "ignored" in caplog.text


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe garbage",
        b'["a list"]',
        b'{"format": "db_backup_suite.registry", "version": 1, "entries": {"a": 1}}',
        b'{"format": "db_backup_suite.registry", "version": 99, "entries": {}}',
        b"",
    ],
)
def test_corrupt_file(tmp_path, prod, content, caplog):
    folder = tmp_path / "db_backup_suite"
    folder.mkdir(mode=0o700)
    path = folder / "registry.json"
    path.write_bytes(content)
    with pytest.raises(registry.RegistryCorruptError, match="registry.json"):
        registry.check(tmp_path)
    assert path.read_bytes() == content  # check changes nothing
    # the suite goes on: the bad file is kept aside, a new registry starts
    with caplog.at_level(logging.WARNING, logger="db_backup_suite.lib.registry"):
        registry.register(tmp_path, sandbox(prod), "sandbox", prod)
    assert "is kept as" in caplog.text
    bad = [p for p in os.listdir(folder) if p.endswith(".bad")]
    assert len(bad) == 1
    assert (folder / bad[0]).read_bytes() == content
    assert mode(folder / bad[0]) == 0o600
    assert registry.check(tmp_path) == 1
    assert [e.name for e in registry.entries_for(tmp_path, prod)] == [sandbox(prod)]


def _writer(data_dir, prod, worker, count):
    for n in range(count):
        name = safety.sandbox_name(prod, DAY, 2 + worker * 1000 + n)
        registry.register(data_dir, name, "sandbox", prod, creator=f"w{worker}")
        if n % 3 == 2:  # and some go again
            registry.unregister(data_dir, name)


def test_concurrent_processes(tmp_path, prod):
    """Processes registering and unregistering at once lose nothing: the
    lock serialises read-modify-write, the rename keeps the file whole."""
    workers, count = 6, 12
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_writer, args=(str(tmp_path), prod, w, count))
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    # a reader in the middle of it all always sees a whole registry
    seen = 0
    while any(p.is_alive() for p in procs):
        seen = max(seen, registry.check(tmp_path))
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    expected = {
        safety.sandbox_name(prod, DAY, 2 + w * 1000 + n)
        for w in range(workers)
        for n in range(count)
        if n % 3 != 2
    }
    assert {e.name for e in registry.entries_for(tmp_path, prod)} == expected
    assert registry.check(tmp_path) == len(expected)
    leftovers = [p for p in os.listdir(tmp_path / "db_backup_suite") if ".tmp" in p]
    assert leftovers == []


def test_prune_against_postgresql(tmp_path, prod):
    """Entries whose database is gone are pruned; a live one stays."""
    live, gone = sandbox(prod), sandbox(prod, 2)
    admin = connect("postgres")
    with admin.cursor() as cr:
        cr.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(live)))
    admin.close()
    try:
        registry.register(tmp_path, live, "sandbox", prod)
        registry.register(tmp_path, gone, "sandbox", prod)
        other = sandbox(prod + "o")
        registry.register(tmp_path, other, "sandbox", prod + "o")
        # only this production database's entries when it is given
        removed = registry.prune(tmp_path, database_exists, production_db=prod)
        assert [e.name for e in removed] == [gone]
        assert [e.name for e in registry.entries_for(tmp_path, prod)] == [live]
        assert registry.get(tmp_path, other) is not None
        assert [e.name for e in registry.prune(tmp_path, database_exists)] == [other]
    finally:
        drop_database(live)
    assert [e.name for e in registry.prune(tmp_path, database_exists)] == [live]
    assert registry.check(tmp_path) == 0
