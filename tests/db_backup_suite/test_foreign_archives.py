"""An archive of database A never silently replaces database B.

Against the real PostgreSQL: the engine (``restore.run_restore``), the
command line (``python -m db_backup_suite.lib restore``) and
``owner.describe_archive_owner``. Each refusal leaves the target exactly as
it was (data checksum, filestore, list of databases); a confirmed restore
keeps the target's own uuid and secret.
"""

import io
import json
import os
import shutil
from pathlib import Path

import pytest

from db_backup_suite.lib import backup, crypto, odoozip, owner, restore
from db_backup_suite.lib.errors import ForeignArchiveError, RestoreError
from db_backup_suite.lib.payload.reader import PayloadReader
from db_backup_suite.lib.sinks import make_sink
from tests.db_backup_suite.cli_runner import keyring_environ, run_cli
from tests.fixtures.odoo_db import (
    connect,
    data_checksum,
    database_exists,
    filestore_listing,
    list_databases,
)

PREFIX = "h3_fa_"


@pytest.fixture
def key_line():
    return crypto.generate_key_line()


@pytest.fixture
def keyring(key_line):
    return crypto.Keyring.parse(key_line)


@pytest.fixture
def two_dbs(odoo_db_factory, tmp_path):
    """Databases A and B (different uuids and data), a backup of A."""
    a = odoo_db_factory(prefix=PREFIX, partners=80, attachments=4, seed=1)
    b = odoo_db_factory(prefix=PREFIX, partners=30, attachments=3, seed=2)
    assert a.uuid != b.uuid
    _set_param(b.dbname, "database.secret", "secret-of-b")
    return a, b


def _set_param(dbname, key, value):
    conn = connect(dbname)
    with conn.cursor() as cr:
        cr.execute(
            "INSERT INTO ir_config_parameter (key, value) VALUES (%s, %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (key, value),
        )
    conn.close()


def _param(dbname, key):
    conn = connect(dbname)
    with conn.cursor() as cr:
        cr.execute("SELECT value FROM ir_config_parameter WHERE key = %s", (key,))
        row = cr.fetchone()
    conn.close()
    return row[0] if row else None


def _backup(db, keyring, dest):
    sink = make_sink({"type": "local", "path": str(dest)})
    result = backup.run_backup(
        backup.BackupRequest(
            database=db.dbname, sink=sink, data_dir=db.data_dir, keyring=keyring
        )
    )
    return Path(dest) / result.name, result


def _state(db):
    return (
        data_checksum(db.dbname),
        filestore_listing(db.filestore),
        list_databases(PREFIX),
        sorted(p.name for p in (db.data_dir / "filestore").iterdir()),
    )


def _without_identity(checksum):
    return {k: v for k, v in checksum.items() if k != "ir_config_parameter"}


# ---------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("explicit", [False, True])
def test_foreign_archive_is_refused_before_anything(
    two_dbs, keyring, tmp_path, jobs, explicit
):
    a, b = two_dbs
    archive, result = _backup(a, keyring, tmp_path / "dest")
    # the attack: A's archive renamed as one of B's
    renamed = tmp_path / "dest" / b.dbname / f"{b.dbname}_manual_20260101T000000Z"
    renamed = renamed.with_suffix(".tar.zst.enc")
    renamed.parent.mkdir(parents=True)
    shutil.copy(archive, renamed)
    before = _state(b)
    kw = {"expected_uuid": b.uuid} if explicit else {}  # default: B's own uuid
    with pytest.raises(ForeignArchiveError) as info:
        restore.run_restore(
            restore.RestoreRequest(
                target=b.dbname,
                path=renamed,
                keyring=keyring,
                data_dir=b.data_dir,
                jobs=jobs,
                **kw,
            )
        )
    err = info.value
    assert (err.source_name, err.source_uuid, err.expected_uuid) == (
        a.dbname,
        a.uuid,
        b.uuid,
    )
    assert err.created_at == result.manifest["created_at"]
    assert a.dbname in str(err) and b.dbname in str(err) and a.uuid in str(err)
    assert isinstance(err, RestoreError)
    assert _state(b) == before  # nothing created, renamed or dropped


def test_foreign_archive_confirmed_keeps_the_target_identity(
    two_dbs, keyring, tmp_path
):
    a, b = two_dbs
    archive, _ = _backup(a, keyring, tmp_path / "dest")
    res = restore.run_restore(
        restore.RestoreRequest(
            target=b.dbname,
            path=archive,
            keyring=keyring,
            data_dir=b.data_dir,
            allow_foreign=True,
        )
    )
    assert res.foreign and res.source_name == a.dbname and res.source_uuid == a.uuid
    # A's data, B's identity
    assert _without_identity(data_checksum(b.dbname)) == _without_identity(
        data_checksum(a.dbname)
    )
    assert _param(b.dbname, "database.uuid") == b.uuid == res.uuid
    assert _param(b.dbname, "database.secret") == "secret-of-b"
    assert any("another database" in w for w in res.warnings)
    # the safety copy is B as it was
    assert _param(res.safety_database, "database.uuid") == b.uuid


def test_foreign_archive_confirmed_without_keep_uuid_takes_the_archives(
    two_dbs, keyring, tmp_path
):
    a, b = two_dbs
    archive, _ = _backup(a, keyring, tmp_path / "dest")
    res = restore.run_restore(
        restore.RestoreRequest(
            target=b.dbname,
            path=archive,
            keyring=keyring,
            data_dir=b.data_dir,
            allow_foreign=True,
            keep_uuid=False,
            jobs=1,
        )
    )
    assert _param(b.dbname, "database.uuid") == a.uuid == res.uuid
    assert data_checksum(b.dbname) == data_checksum(a.dbname)


def test_own_archive_restores_and_keeps_its_uuid(two_dbs, keyring, tmp_path):
    _a, b = two_dbs
    archive, _ = _backup(b, keyring, tmp_path / "dest")
    at_backup = data_checksum(b.dbname)
    conn = connect(b.dbname)
    with conn.cursor() as cr:
        cr.execute("DELETE FROM mail_message")
    conn.close()
    res = restore.run_restore(
        restore.RestoreRequest(
            target=b.dbname, path=archive, keyring=keyring, data_dir=b.data_dir
        )
    )
    assert not res.foreign and res.uuid == b.uuid
    assert data_checksum(b.dbname) == at_backup


def test_sandbox_for_another_database_is_refused(two_dbs, keyring, tmp_path):
    a, b = two_dbs
    archive, _ = _backup(a, keyring, tmp_path / "dest")
    sandbox = f"{b.dbname}-sandbox-20260101"
    before = _state(b)
    with pytest.raises(ForeignArchiveError, match=a.dbname):
        restore.run_restore(
            restore.RestoreRequest(
                target=sandbox,
                mode="sandbox",
                path=archive,
                keyring=keyring,
                data_dir=b.data_dir,
                expected_uuid=b.uuid,  # restored for B
            )
        )
    assert not database_exists(sandbox) and _state(b) == before
    # a new database must say whose archive it takes
    with pytest.raises(RestoreError, match="expected_uuid"):
        restore.run_restore(
            restore.RestoreRequest(
                target=sandbox,
                mode="sandbox",
                path=archive,
                keyring=keyring,
                data_dir=b.data_dir,
            )
        )
    assert not database_exists(sandbox)


def test_sandbox_gets_a_new_identity(two_dbs, keyring, tmp_path):
    a, _b = two_dbs
    _set_param(a.dbname, "database.secret", "secret-of-a")
    archive, _ = _backup(a, keyring, tmp_path / "dest")
    sandbox = f"{a.dbname}-sandbox-20260101"
    res = restore.run_restore(
        restore.RestoreRequest(
            target=sandbox,
            mode="sandbox",
            path=archive,
            keyring=keyring,
            data_dir=a.data_dir,
            expected_uuid=a.uuid,
        )
    )
    new_uuid = _param(sandbox, "database.uuid")
    assert new_uuid == res.uuid and new_uuid not in (None, a.uuid)
    assert _param(sandbox, "database.secret") not in (None, "secret-of-a")
    assert _param(a.dbname, "database.uuid") == a.uuid  # the source unchanged
    assert _without_identity(data_checksum(sandbox)) == _without_identity(
        data_checksum(a.dbname)
    )


def test_legacy_plaintext_archive_of_another_database_is_refused(
    two_dbs, keyring, tmp_path
):
    a, b = two_dbs
    archive, _ = _backup(a, keyring, tmp_path / "dest")
    with archive.open("rb") as fh:
        plain = crypto.open_archive(fh, keyring=keyring, tenant=a.uuid).read()
    legacy = tmp_path / f"{b.dbname}_manual_20240101T000000Z.tar.zst"
    legacy.write_bytes(plain)
    before = _state(b)
    with pytest.raises(ForeignArchiveError) as info:
        restore.run_restore(
            restore.RestoreRequest(target=b.dbname, path=legacy, data_dir=b.data_dir)
        )
    assert info.value.source_uuid == a.uuid and info.value.source_name == a.dbname
    assert _state(b) == before


def test_odoo_zip_of_another_database_is_refused_in_staging(two_dbs, keyring, tmp_path):
    a, b = two_dbs
    archive, _ = _backup(a, keyring, tmp_path / "dest")
    zip_path = tmp_path / "a.zip"
    with archive.open("rb") as fh, zip_path.open("wb") as out:
        reader = crypto.open_archive(fh, keyring=keyring, tenant=a.uuid)
        odoozip.write_odoo_zip(PayloadReader(reader), out)
    before = _state(b)
    with pytest.raises(ForeignArchiveError) as info:
        restore.run_restore(
            restore.RestoreRequest(target=b.dbname, path=zip_path, data_dir=b.data_dir)
        )
    assert info.value.source_uuid == a.uuid and info.value.source_name == a.dbname
    assert _state(b) == before  # the staging copy was dropped


def test_describe_archive_owner(two_dbs, keyring, tmp_path):
    a, _b = two_dbs
    archive, result = _backup(a, keyring, tmp_path / "dest")
    facts = owner.describe_archive_owner(archive, keyring)
    assert facts["kind"] == "suite" and facts["encrypted"] and facts["manifest_read"]
    assert (facts["database"], facts["uuid"], facts["tenant"]) == (
        a.dbname,
        a.uuid,
        a.uuid,
    )
    assert facts["created_at"] == result.manifest["created_at"]
    assert facts["label"] == "manual" and facts["error"] is None
    # without a key: the header's tenant only, and why
    bare = owner.describe_archive_owner(str(archive))
    assert bare["uuid"] == a.uuid and bare["database"] is None
    assert not bare["manifest_read"] and "no key" in bare["error"]
    # with a wrong key: the same, and the error says so
    other = crypto.Keyring.parse(crypto.generate_key_line())
    with archive.open("rb") as fh:
        wrong = owner.describe_archive_owner(fh, other)
    assert wrong["uuid"] == a.uuid and wrong["database"] is None and wrong["error"]
    # a legacy archive needs no key
    with archive.open("rb") as fh:
        plain = crypto.open_archive(fh, keyring=keyring, tenant=a.uuid).read()
    legacy = owner.describe_archive_owner(io.BytesIO(plain))
    assert legacy["legacy"] and (legacy["database"], legacy["uuid"]) == (
        a.dbname,
        a.uuid,
    )


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------
def _env(tmp_path, key_line):
    path = tmp_path / "keyring"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key_line + "\n")
    return keyring_environ(path)


def test_cli_refuses_a_foreign_archive_unless_named(
    two_dbs, key_line, keyring, tmp_path
):
    a, b = two_dbs
    environ = _env(tmp_path, key_line)
    archive, result = _backup(a, keyring, tmp_path / "dest")
    base = [
        "restore",
        str(archive),
        "--target",
        b.dbname,
        "--confirm",
        b.dbname,
        "--data-dir",
        str(b.data_dir),
    ]
    before = _state(b)
    out = run_cli(base, environ)
    assert out.returncode == 9, out.stderr  # safety refusal
    assert out.stderr.startswith("error: the archive is a backup of database")
    for shown in (a.dbname, a.uuid, result.manifest["created_at"], b.uuid):
        assert shown in out.stderr
    assert f"--allow-foreign-archive {a.dbname}" in out.stderr
    assert _state(b) == before
    # a flag naming another database is not a confirmation
    out = run_cli([*base, "--allow-foreign-archive", b.dbname], environ)
    assert out.returncode == 9 and "does not name" in out.stderr
    assert _state(b) == before
    # JSON output carries the facts
    out = run_cli([*base, "--json"], environ)
    error = json.loads(out.stdout)
    assert error["type"] == "ForeignArchiveError"
    assert (error["source_name"], error["source_uuid"], error["expected_uuid"]) == (
        a.dbname,
        a.uuid,
        b.uuid,
    )
    assert _state(b) == before
    # named: restored, B keeps its uuid and secret
    out = run_cli([*base, "--allow-foreign-archive", a.dbname, "--json"], environ)
    assert out.returncode == 0, out.stderr
    restored = json.loads(out.stdout)
    assert restored["foreign"] and restored["uuid"] == b.uuid
    assert _param(b.dbname, "database.uuid") == b.uuid
    assert _param(b.dbname, "database.secret") == "secret-of-b"
    assert _without_identity(data_checksum(b.dbname)) == _without_identity(
        data_checksum(a.dbname)
    )


def test_cli_plaintext_outputs_are_private(two_dbs, key_line, keyring, tmp_path):
    a, _b = two_dbs
    environ = _env(tmp_path, key_line)
    archive, _ = _backup(a, keyring, tmp_path / "dest")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    runs = {
        "payload": ["decrypt", str(archive), "-o", str(out_dir / "payload")],
        "tar": ["decrypt", str(archive), "--tar", "-o", str(out_dir / "p.tar")],
        "extract": ["decrypt", str(archive), "--extract", str(out_dir / "x")],
        "zip": ["export-odoo-zip", str(archive), "-o", str(out_dir / "a.zip")],
    }
    for what, args in runs.items():
        # a permissive umask: the modes come from how the files are created
        out = run_cli(args, environ, umask=0)
        assert out.returncode == 0, (what, out.stderr)
    written = [out_dir / "payload", out_dir / "p.tar", out_dir / "a.zip"]
    folders = [out_dir / "x"]
    for path in (out_dir / "x").rglob("*"):
        (folders if path.is_dir() else written).append(path)
    assert len(written) > 3 + 4 and len(folders) > 2  # dump, manifests, files
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o600, path
    for path in folders:
        assert path.stat().st_mode & 0o777 == 0o700, path
    # and the help says whose archives the command line reads
    help_text = run_cli(["decrypt", "--help"], environ).stdout
    assert "ANY_TENANT" in help_text and "0600" in help_text
