"""The command line's incremental mode, run as users run it
(``python -m db_backup_suite.lib``), against the real PostgreSQL and a
local (and SeaweedFS S3) destination: backup --incremental, list, verify,
restore, decrypt, export-odoo-zip and prune of snapshots, with the same
security properties as archives."""

import json
import os
import zipfile

import pytest

from tests.db_backup_suite.cli_runner import keyring_environ, run_cli
from tests.fixtures.odoo_db import (
    add_attachment,
    connect,
    data_checksum,
    database_exists,
    filestore_listing,
    filestore_path,
    referenced_files,
)

PREFIX = "h15_cli_"


@pytest.fixture
def env(tmp_path):
    keyring = tmp_path / "keyring"
    out = run_cli(["keygen", "-o", str(keyring)], os.environ.copy())
    assert out.returncode == 0, out.stderr
    return keyring_environ(keyring)


def _tables(dbname):
    tables = data_checksum(dbname)
    tables.pop("ir_config_parameter")  # a restore may set its own uuid/secret
    return tables


def _state(db):
    files = filestore_listing(db.filestore)
    refs = referenced_files(db.dbname)
    return _tables(db.dbname), {k: v for k, v in files.items() if k in refs}


def _change(db):
    conn = connect(db.dbname)
    with conn.cursor() as cr:
        cr.execute("UPDATE res_partner SET comment = 'edited' WHERE id % 10 = 3")
        cr.execute(
            "INSERT INTO res_partner (name) SELECT 'new ' || g"
            " FROM generate_series(1, 50) g"
        )
    add_attachment(conn, db.filestore, os.urandom(50_000), name="new.bin")
    conn.close()


def _backup(db, dest, env, *extra):
    out = run_cli(
        [
            "backup",
            db.dbname,
            "--incremental",
            "--to",
            dest,
            "--data-dir",
            str(db.data_dir),
            "--label",
            "daily",
            "--json",
            *extra,
        ],
        env,
        check=True,
    )
    return json.loads(out.stdout)


def _list(dest, env, database):
    out = run_cli(["list", "--from", dest, "--database", database, "--json"], env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _two_snapshots(db, dest, env):
    first = _backup(db, dest, env)
    state = _state(db)
    _change(db)
    second = _backup(db, dest, env)
    return first, second, state


def test_incremental_backup_list_restore_verify_decrypt_export(
    odoo_db_factory, env, tmp_path
):
    db = odoo_db_factory(
        prefix=PREFIX, partners=2000, attachments=20, attachment_size=30_000
    )
    dest = f"local:{tmp_path / 'dest'}"
    first, second, state1 = _two_snapshots(db, dest, env)
    assert "/repo-" in first["name"] and first["name"] != second["name"]
    # the second run stores what changed, not what exists
    assert 0 < second["size"] < first["size"] / 3

    # a full archive at the same destination is listed beside the snapshots
    full = run_cli(
        ["backup", db.dbname, "--to", dest, "--data-dir", str(db.data_dir), "--json"],
        env,
        check=True,
    )
    full_name = json.loads(full.stdout)["name"]
    rows = _list(dest, env, db.dbname)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {first["name"], second["name"], full_name}
    assert by_name[full_name]["kind"] == "archive"
    snaps = [r for r in rows if r["kind"] == "snapshot"]
    assert [r["name"] for r in snaps] == [first["name"], second["name"]]
    # new data: the packs each run added (its size also counts its index
    # and snapshot objects)
    assert 0.9 * first["size"] < snaps[0]["new_data"] <= first["size"]
    assert 0 < snaps[1]["new_data"] <= second["size"]
    assert snaps[1]["new_data"] < snaps[0]["new_data"] / 3
    assert snaps[1]["logical_size"] == second["logical_size"]
    # the text listing says "new data" for snapshots
    text = run_cli(["list", "--from", dest, "--database", db.dbname], env, check=True)
    line = next(x for x in text.stdout.splitlines() if x.startswith(second["name"]))
    assert f"new data {snaps[1]['new_data']:,} bytes" in line
    # without the keyring: archives only, and a warning that snapshots exist
    bare = {k: v for k, v in env.items() if k != "SUITE_KEYRING_FILE"}
    out = run_cli(["list", "--from", dest, "--database", db.dbname, "--json"], bare)
    assert out.returncode == 0 and "give the keyring" in out.stderr
    assert [r["name"] for r in json.loads(out.stdout)] == [full_name]

    # restore of the FIRST snapshot into a new database matches its data
    target = f"{db.dbname}_new"
    out = run_cli(
        [
            "restore",
            first["name"],
            "--from",
            dest,
            "--target",
            target,
            "--confirm",
            target,
            "--data-dir",
            str(db.data_dir),
            "--json",
        ],
        env,
        check=True,
    )
    restored = json.loads(out.stdout)
    assert restored["archive_name"] == first["name"]
    assert restored["rows"] == first["manifest"]["rows"]
    assert restored["tables"] == first["manifest"]["tables"]
    assert _tables(target) == state1[0]
    assert filestore_listing(filestore_path(db.data_dir, target)) == state1[1]

    # verify a snapshot as an archive (deep by default), then the repository
    out = run_cli(["verify", second["name"], "--from", dest], env, check=True)
    assert out.stdout.startswith("OK: encrypted archive")
    assert "deep check OK" in out.stdout
    out = run_cli(
        ["verify", "--repository", "--from", dest, "--database", db.dbname, "--deep"],
        env,
        check=True,
    )
    assert out.stdout.startswith("OK: repository") and "2 snapshot(s)" in out.stdout

    # decrypt --extract and export-odoo-zip: private outputs
    ext = tmp_path / "ext"
    run_cli(
        ["decrypt", second["name"], "--from", dest, "--extract", str(ext)],
        env,
        check=True,
    )
    assert ext.stat().st_mode & 0o777 == 0o700
    assert (ext / "database.dump").stat().st_mode & 0o777 == 0o600
    manifest = json.loads((ext / "manifest.json").read_text())
    assert manifest["rows"] == second["manifest"]["rows"]
    payload = tmp_path / "payload.tar"
    run_cli(
        ["decrypt", second["name"], "--from", dest, "--tar", "-o", str(payload)],
        env,
        check=True,
    )
    assert payload.stat().st_mode & 0o777 == 0o600
    zpath = tmp_path / "odoo.zip"
    run_cli(
        ["export-odoo-zip", second["name"], "--from", dest, "-o", str(zpath)],
        env,
        check=True,
    )
    assert zpath.stat().st_mode & 0o777 == 0o600
    with zipfile.ZipFile(zpath) as zf:
        assert "dump.sql" in zf.namelist()

    # a password is refused for snapshots (keyring only), nothing written
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery staple 42")
    refused = run_cli(
        [
            "decrypt",
            second["name"],
            "--from",
            dest,
            "--password-file",
            str(pw),
            "-o",
            str(tmp_path / "nope"),
        ],
        env,
    )
    assert refused.returncode == 2 and "keyring, not a password" in refused.stderr
    assert not (tmp_path / "nope").exists()


def test_incremental_backup_refuses_a_password_and_several_destinations(
    odoo_db_factory, env, tmp_path
):
    db = odoo_db_factory(prefix=PREFIX, partners=20, attachments=1)
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery staple 42")
    dest = tmp_path / "dest"
    out = run_cli(
        [
            "backup",
            db.dbname,
            "--incremental",
            "--to",
            f"local:{dest}",
            "--password-file",
            str(pw),
        ],
        env,
    )
    assert out.returncode == 2 and "server keyring only" in out.stderr
    out = run_cli(
        [
            "backup",
            db.dbname,
            "--incremental",
            "--to",
            f"local:{dest}",
            "--to",
            f"local:{tmp_path / 'other'}",
        ],
        env,
    )
    assert out.returncode == 2 and "ONE destination" in out.stderr
    assert not dest.exists() and not (tmp_path / "other").exists()
    # the options are documented
    helptext = run_cli(["backup", "--help"], env, check=True).stdout
    assert "--incremental" in helptext
    assert "--repository" in run_cli(["restore", "--help"], env, check=True).stdout
    verify_help = run_cli(["verify", "--help"], env, check=True).stdout
    assert "--sample" in verify_help and "--deep" in verify_help
    assert "--repository" in run_cli(["prune", "--help"], env, check=True).stdout


def test_foreign_snapshot_refused_over_an_existing_database(
    odoo_db_factory, env, tmp_path
):
    a = odoo_db_factory(prefix=PREFIX, partners=30, attachments=2, seed=1)
    b = odoo_db_factory(prefix=PREFIX, partners=40, attachments=2, seed=2)
    assert a.uuid != b.uuid
    dest = f"local:{tmp_path / 'dest'}"
    snap_b = _backup(b, dest, env)
    before = _tables(a.dbname), filestore_listing(a.filestore)
    base = [
        "restore",
        snap_b["name"],
        "--from",
        dest,
        "--target",
        a.dbname,
        "--data-dir",
        str(a.data_dir),
        "--confirm",
        a.dbname,
    ]
    out = run_cli(base, env)
    assert out.returncode == 9  # safety refusal
    assert f"a backup of database {b.dbname!r}" in out.stderr
    assert "nothing was restored" in out.stderr
    assert (_tables(a.dbname), filestore_listing(a.filestore)) == before
    # naming another source is refused too
    out = run_cli([*base, "--allow-foreign-archive", a.dbname], env)
    assert out.returncode == 9 and "does not name" in out.stderr
    assert (_tables(a.dbname), filestore_listing(a.filestore)) == before
    # confirmed by the source's name: restored, the target keeps its uuid
    uuid_a = a.uuid
    out = run_cli([*base, "--allow-foreign-archive", b.dbname], env, check=True)
    assert _tables(a.dbname) == _tables(b.dbname)
    conn = connect(a.dbname)
    with conn.cursor() as cr:
        cr.execute("SELECT value FROM ir_config_parameter WHERE key = 'database.uuid'")
        assert cr.fetchone()[0] == uuid_a
    conn.close()


def test_damaged_repository_named_by_verify_and_refused_by_restore(
    odoo_db_factory, env, tmp_path
):
    db = odoo_db_factory(prefix=PREFIX, partners=200, attachments=5)
    dest_dir = tmp_path / "dest"
    dest = f"local:{dest_dir}"
    snap = _backup(db, dest, env)
    packs = sorted(p for p in dest_dir.rglob("packs/*/*") if p.is_file())
    assert packs
    victim = max(packs, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    out = run_cli(
        ["verify", "--repository", "--from", dest, "--database", db.dbname, "--deep"],
        env,
    )
    assert out.returncode == 6 and out.stdout.startswith("DAMAGED")
    assert victim.name in out.stdout
    target = f"{db.dbname}_new"
    out = run_cli(
        [
            "restore",
            snap["name"],
            "--from",
            dest,
            "--target",
            target,
            "--confirm",
            target,
            "--data-dir",
            str(db.data_dir),
        ],
        env,
    )
    assert out.returncode == 6  # damaged
    assert not database_exists(target)
    assert not filestore_path(db.data_dir, target).exists()


def test_prune_repository_forgets_snapshots_and_collects_garbage(
    odoo_db_factory, env, tmp_path
):
    db = odoo_db_factory(prefix=PREFIX, partners=200, attachments=5)
    dest = f"local:{tmp_path / 'dest'}"
    first, second, _state1 = _two_snapshots(db, dest, env)
    base = [
        "prune",
        "--repository",
        "--from",
        dest,
        "--database",
        db.dbname,
        "--keep-last",
        "1",
        "--json",
    ]
    dry = json.loads(run_cli([*base, "--dry-run"], env, check=True).stdout)
    assert dry["delete"] == [first["name"]] and dry["deleted"] == []
    assert [r["name"] for r in _list(dest, env, db.dbname)] == [
        first["name"],
        second["name"],
    ]
    done = json.loads(run_cli(base, env, check=True).stdout)
    assert done["deleted"] == [first["name"]] and len(done["gc"]) == 1
    assert [r["name"] for r in _list(dest, env, db.dbname)] == [second["name"]]
    # the kept snapshot still verifies completely
    run_cli(
        ["verify", "--repository", "--from", dest, "--database", db.dbname, "--deep"],
        env,
        check=True,
    )


def test_incremental_through_s3(odoo_db_factory, env, tmp_path, s3_config):
    db = odoo_db_factory(
        prefix=PREFIX, partners=2000, attachments=20, attachment_size=30_000
    )
    config = tmp_path / "s3.json"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(s3_config, fh)
    dest = str(config)
    first, second, state1 = _two_snapshots(db, dest, env)
    assert 0 < second["size"] < first["size"] / 3
    rows = _list(dest, env, db.dbname)
    assert [r["name"] for r in rows] == [first["name"], second["name"]]
    assert rows[1]["new_data"] < rows[0]["new_data"]
    target = f"{db.dbname}_s3"
    run_cli(
        [
            "restore",
            first["name"],
            "--from",
            dest,
            "--target",
            target,
            "--confirm",
            target,
            "--data-dir",
            str(db.data_dir),
        ],
        env,
        check=True,
    )
    assert _tables(target) == state1[0]
    assert filestore_listing(filestore_path(db.data_dir, target)) == state1[1]
