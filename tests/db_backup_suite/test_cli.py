"""The command line, run as users run it (``python -m db_backup_suite.lib``),
against the real PostgreSQL: happy paths and error exit codes."""

import json
import os
import subprocess
import zipfile

import pytest

from db_backup_suite.lib import cli
from tests.db_backup_suite.cli_runner import keyring_environ, run_cli
from tests.fixtures.odoo_db import (
    connect,
    data_checksum,
    database_exists,
    filestore_listing,
    filestore_path,
    referenced_files,
)

PREFIX = "h3_cli_"


@pytest.fixture
def env(tmp_path):
    keyring = tmp_path / "keyring"
    out = run_cli(["keygen", "-o", str(keyring)], os.environ.copy())
    assert out.returncode == 0, out.stderr
    assert keyring.stat().st_mode & 0o777 == 0o600
    return keyring_environ(keyring)


def _param(dbname, key):
    conn = connect(dbname)
    with conn.cursor() as cr:
        cr.execute("SELECT value FROM ir_config_parameter WHERE key = %s", (key,))
        row = cr.fetchone()
    conn.close()
    return row[0] if row else None


def test_backup_list_verify_restore_decrypt(odoo_db_factory, env, tmp_path):
    db = odoo_db_factory(prefix=PREFIX, partners=200, attachments=5)
    dest = f"local:{tmp_path / 'dest'}"
    out = run_cli(
        ["backup", db.dbname, "--to", dest, "--data-dir", str(db.data_dir), "--json"],
        env,
        check=True,
    )
    result = json.loads(out.stdout)
    name = result["name"]
    assert result["manifest"]["filestore"]["files"] == 5
    original = (data_checksum(db.dbname), filestore_listing(db.filestore))

    listed = json.loads(
        run_cli(["list", "--from", dest, "--json"], env, check=True).stdout
    )
    assert [r["name"] for r in listed] == [name] and listed[0]["label"] == "manual"

    out = run_cli(["verify", name, "--from", dest, "--test-restore"], env, check=True)
    assert (
        out.stdout.startswith("OK: encrypted archive")
        and "test restore OK" in out.stdout
    )

    conn = connect(db.dbname)
    with conn.cursor() as cr:
        cr.execute("DELETE FROM mail_message")
    conn.close()
    refused = run_cli(
        [
            "restore",
            name,
            "--from",
            dest,
            "--target",
            db.dbname,
            "--data-dir",
            str(db.data_dir),
        ],
        env,
    )
    assert refused.returncode == 2 and "--confirm" in refused.stderr
    typo = run_cli(
        [
            "restore",
            name,
            "--from",
            dest,
            "--target",
            db.dbname,
            "--data-dir",
            str(db.data_dir),
            "--confirm",
            db.dbname + "x",
        ],
        env,
    )
    assert typo.returncode == 2 and "does not match" in typo.stderr
    out = run_cli(
        [
            "restore",
            name,
            "--from",
            dest,
            "--target",
            db.dbname,
            "--data-dir",
            str(db.data_dir),
            "--confirm",
            db.dbname,
            "--json",
        ],
        env,
        check=True,
    )
    restored = json.loads(out.stdout)
    assert restored["safety_database"].startswith(f"{db.dbname}_pre_restore_")
    assert data_checksum(db.dbname) == original[0]
    assert set(filestore_listing(db.filestore)) == referenced_files(db.dbname)

    extract = tmp_path / "x"
    run_cli(
        ["decrypt", name, "--from", dest, "--extract", str(extract)], env, check=True
    )
    assert json.loads((extract / "manifest.json").read_text())["complete"] is True
    listing = subprocess.run(
        ["pg_restore", "--list", str(extract / "database.dump")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "res_partner" in listing
    assert len([p for p in (extract / "filestore").rglob("*") if p.is_file()]) == 5

    plain_tar = tmp_path / "payload.tar"
    run_cli(
        ["decrypt", name, "--from", dest, "--tar", "-o", str(plain_tar)],
        env,
        check=True,
    )
    names = subprocess.run(
        ["tar", "-tf", str(plain_tar)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert names[0] == "backup.json" and names[-1] == "manifest.json"


def test_odoo_zip_export_and_import(odoo_db_factory, env, tmp_path):
    db = odoo_db_factory(prefix=PREFIX, partners=50, attachments=3)
    dest = f"local:{tmp_path / 'dest'}"
    name = json.loads(
        run_cli(
            [
                "backup",
                db.dbname,
                "--to",
                dest,
                "--data-dir",
                str(db.data_dir),
                "--json",
            ],
            env,
            check=True,
        ).stdout
    )["name"]
    zip_path = tmp_path / "odoo.zip"
    run_cli(
        ["export-odoo-zip", name, "--from", dest, "-o", str(zip_path)], env, check=True
    )
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
    assert "dump.sql" in names and manifest["db_name"] == db.dbname
    target = db.dbname + "_z"
    run_cli(
        [
            "restore",
            str(zip_path),
            "--target",
            target,
            "--sandbox",
            "--data-dir",
            str(db.data_dir),
        ],
        env,
        check=True,
    )
    # the same data; a sandbox is a new database: a new uuid and secret
    restored, source = data_checksum(target), data_checksum(db.dbname)
    assert restored.pop("ir_config_parameter") != source.pop("ir_config_parameter")
    assert restored == source
    assert _param(target, "database.uuid") not in (None, db.uuid)
    assert set(filestore_listing(filestore_path(db.data_dir, target))) == (
        referenced_files(target)
    )


def test_password_mode_from_env_and_file(odoo_db_factory, tmp_path):
    db = odoo_db_factory(prefix=PREFIX, partners=10, attachments=1)
    environ = os.environ.copy()
    environ.pop("SUITE_KEYRING_FILE", None)
    environ.pop("SUITE_KEYRING", None)
    environ["BACKUP_PW"] = "a long offsite password"
    dest = f"local:{tmp_path / 'dest'}"
    out = run_cli(
        [
            "backup",
            db.dbname,
            "--to",
            dest,
            "--password-env",
            "BACKUP_PW",
            "--no-filestore",
            "--json",
        ],
        environ,
        check=True,
    )
    name = json.loads(out.stdout)["name"]
    pw_file = tmp_path / "pw"
    pw_file.write_text("a long offsite password\n")
    run_cli(
        ["verify", name, "--from", dest, "--password-file", str(pw_file)],
        environ,
        check=True,
    )
    pw_file.write_text("not the password\n")
    bad = run_cli(
        ["verify", name, "--from", dest, "--password-file", str(pw_file)], environ
    )
    assert bad.returncode == cli.EXIT_WRONG_KEY == 5
    assert bad.stderr.startswith("error: ") and "password" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_error_exit_codes(odoo_db_factory, env, tmp_path):
    """Each error family exits with its own code, through real runs; --help
    prints the table."""
    # usage errors: 2
    assert run_cli([], env).returncode == 2
    assert run_cli(["backup", "x"], env).returncode == 2  # --to missing
    bad_dest = run_cli(["backup", "x", "--to", "ftp://nowhere"], env)
    assert bad_dest.returncode == 2 and "unknown destination" in bad_dest.stderr
    no_kh = run_cli(["list", "--from", "sftp://u@127.0.0.1/x"], env)
    assert no_kh.returncode == 2 and "known_hosts" in no_kh.stderr
    # pg_dump failed: 11, one line, and --json gives a machine-readable error
    dest = f"local:{tmp_path / 'dest'}"
    out = run_cli(["backup", "h3_cli_no_such_db", "--to", dest, "--json"], env)
    assert out.returncode == cli.EXIT_TOOL == 11
    assert json.loads(out.stdout)["type"] == "DumpError"
    assert "h3_cli_no_such_db" in out.stderr
    assert not (tmp_path / "dest").exists() or not any(
        (tmp_path / "dest").rglob("*.enc")
    )
    # the archive is not there: 8
    out = run_cli(["verify", str(tmp_path / "missing.enc")], env)
    assert out.returncode == cli.EXIT_DESTINATION == 8
    assert out.stderr.startswith("error: ")
    out = run_cli(["verify", "nobody_x.tar.zst.enc", "--from", dest], env)
    assert out.returncode == 8, out.stderr
    # not an archive: 6, and nothing restored
    junk = tmp_path / "junk.tar.zst.enc"
    junk.write_bytes(b"this is not an archive at all")
    out = run_cli(
        ["restore", str(junk), "--target", PREFIX + "never", "--sandbox"], env
    )
    assert out.returncode == cli.EXIT_DAMAGED == 6 and "not an archive" in out.stderr
    assert not database_exists(PREFIX + "never")
    # a real archive, tampered with then truncated: 6; whole: 0
    db = odoo_db_factory(prefix=PREFIX, partners=1, attachments=0)
    out = run_cli(["backup", db.dbname, "--to", dest, "--no-filestore", "--json"], env)
    assert out.returncode == 0, out.stderr
    archive = next((tmp_path / "dest").rglob("*.enc"))
    data = archive.read_bytes()
    assert run_cli(["verify", str(archive)], env).returncode == 0
    tampered = tmp_path / "tampered.tar.zst.enc"
    tampered.write_bytes(
        data[: len(data) // 2]
        + bytes([data[len(data) // 2] ^ 1])
        + data[len(data) // 2 + 1 :]
    )
    out = run_cli(["verify", str(tampered)], env)
    assert out.returncode == 6, out.stderr
    truncated = tmp_path / "truncated.tar.zst.enc"
    truncated.write_bytes(data[: len(data) - 100])
    assert run_cli(["verify", str(truncated)], env).returncode == 6
    # another keyring: the archive's key is not in it: 4
    other = tmp_path / "other.keyring"
    run_cli(["keygen", "-o", str(other)], env, check=True)
    out = run_cli(["verify", str(archive)], {**env, "SUITE_KEYRING_FILE": str(other)})
    assert out.returncode == cli.EXIT_KEYRING == 4, out.stderr
    # no keyring configured: 4, with a clear message naming keygen
    environ = dict(env)
    environ.pop("SUITE_KEYRING_FILE")
    out = run_cli(["backup", db.dbname, "--to", dest], environ)
    assert out.returncode == 4 and "keygen" in out.stderr
    # the table, in --help
    helped = run_cli(["--help"], env, check=True).stdout
    assert "exit codes:" in helped
    for code, meaning, _classes in cli.EXIT_CODES:
        assert f"{code:>2}  {meaning}" in helped
    assert len({code for code, _m, _c in cli.EXIT_CODES}) == len(cli.EXIT_CODES) == 12


def test_exit_code_for_maps_the_most_specific_family():
    from db_backup_suite.lib import errors
    from suite_core import streamcrypt

    cases = {
        cli.UsageError("x"): 2,
        errors.MissingKeyError.__new__(errors.MissingKeyError): 4,
        errors.KeyringError("x"): 4,
        streamcrypt.WrongPasswordError("x"): 5,
        streamcrypt.WrongKeyError("x"): 5,
        streamcrypt.TamperedError("x"): 6,
        streamcrypt.TruncatedError("x"): 6,
        streamcrypt.FormatError("x"): 6,
        errors.VerificationError("x"): 7,
        errors.SinkUnreachableError("x"): 8,
        errors.ArchiveNotFoundError("x"): 8,
        errors.NotSuiteDatabaseError("x"): 9,
        errors.InvalidDatabaseNameError("x"): 9,
        errors.BackupLockedError("x"): 10,
        errors.DumpError("x"): 11,
        errors.RestoreError("x"): 11,
        errors.SuiteError("x"): 1,
        ValueError("x"): 1,
    }
    for exc, code in cases.items():
        assert cli.exit_code_for(exc) == code, type(exc).__name__


def test_parse_destination():
    assert cli.parse_destination("local:/srv/b") == {"type": "local", "path": "/srv/b"}
    s3 = cli.parse_destination(
        "s3://bkt/odoo/prod?endpoint=http://127.0.0.1:8333&region=eu-west-1"
        "&checksum_when_required=1&sse=AES256",
        environ={"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"},
    )
    assert s3 == {
        "type": "s3",
        "bucket": "bkt",
        "prefix": "odoo/prod",
        "endpoint_url": "http://127.0.0.1:8333",
        "region": "eu-west-1",
        "checksum_when_required": True,
        "sse": "AES256",
        "access_key": "AK",
        "secret_key": "SK",
    }
    with pytest.raises(cli.UsageError, match="password"):
        cli.parse_destination("sftp://u:secret@host/x")
    with pytest.raises(cli.UsageError, match="unknown s3"):
        cli.parse_destination("s3://b/p?acl=public")
