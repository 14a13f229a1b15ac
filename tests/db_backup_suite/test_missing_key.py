"""A missing server key is named with the object it locks and its key id:
destination credentials, archive or export, never a generic "the key that
encrypted this archive"."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from db_backup_suite.lib import backup, crypto, restore, verify
from db_backup_suite.lib.errors import (
    KeyringError,
    MissingKeyError,
    UnknownKeyError,
    WrongKeyError,
    naming_missing_key,
)
from db_backup_suite.lib.sinks import make_sink
from tests.fixtures.odoo_db import data_checksum, list_databases

PREFIX = "h12_mk_"
ROOT = Path(__file__).resolve().parents[2]


def test_message_names_the_object_and_the_key_for_each_kind():
    dest = MissingKeyError(
        kind="destination", name="Offsite SFTP", key_id="k2024", held=["k2025"]
    )
    assert str(dest).startswith(
        "The credentials of destination 'Offsite SFTP' cannot be decrypted: the "
        "server key that encrypted it, 'k2024', is not in the server keyring "
        "(it holds: k2025)."
    )
    assert "type the destination's credentials again" in str(dest)
    archive = MissingKeyError(
        kind="archive", name="db/db_24h_x.tar.zst.enc", key_id="a"
    )
    assert str(archive).startswith("Archive 'db/db_24h_x.tar.zst.enc' cannot be")
    assert "verify or restore it" in str(archive)
    export = MissingKeyError(kind="export", name="Partners 2026-01-01", key_id="e1")
    assert str(export).startswith("Export 'Partners 2026-01-01' cannot be")
    assert "run the export again" in str(export)
    assert (dest.kind, dest.object_name, dest.key_id, dest.held) == (
        "destination",
        "Offsite SFTP",
        "k2024",
        ("k2025",),
    )
    # still caught where UnknownKeyError / KeyringError were
    assert isinstance(dest, UnknownKeyError) and isinstance(dest, KeyringError)
    with pytest.raises(ValueError):
        MissingKeyError(kind="sandwich", name="x", key_id="k")


def test_the_crypto_layer_error_is_translated_with_its_key_id():
    keyring = crypto.Keyring.parse(crypto.generate_key_line("current"))
    with (
        pytest.raises(MissingKeyError) as info,
        naming_missing_key("destination", "S3 Frankfurt"),
    ):
        keyring.get("retired-2024")
    err = info.value
    assert (err.kind, err.object_name, err.key_id) == (
        "destination",
        "S3 Frankfurt",
        "retired-2024",
    )
    assert err.held == ("current",)
    assert "'retired-2024'" in str(err) and "S3 Frankfurt" in str(err)
    assert isinstance(err.__cause__, UnknownKeyError)
    # other errors pass through untouched
    with pytest.raises(WrongKeyError), naming_missing_key("export", "x"):
        raise WrongKeyError("wrong key")


@pytest.fixture
def old_archive(odoo_db_factory, tmp_path):
    """An archive made with key 'old-2024', and a keyring that lost it."""
    db = odoo_db_factory(prefix=PREFIX, partners=50, attachments=2)
    old = crypto.Keyring.parse(crypto.generate_key_line("old-2024"))
    sink = make_sink({"type": "local", "path": str(tmp_path / "dest")})
    result = backup.run_backup(
        backup.BackupRequest(
            database=db.dbname, sink=sink, data_dir=db.data_dir, keyring=old
        )
    )
    new_line = crypto.generate_key_line("new-2025")
    return db, sink, result.name, new_line


def test_verify_and_restore_name_the_archive_and_the_missing_key(old_archive):
    db, sink, name, new_line = old_archive
    new = crypto.Keyring.parse(new_line)
    with pytest.raises(MissingKeyError) as info:
        verify.run_verify(
            verify.VerifyRequest(sink=sink, name=name, keyring=new, tenant=db.uuid)
        )
    assert (info.value.kind, info.value.object_name, info.value.key_id) == (
        "archive",
        name,
        "old-2024",
    )
    assert info.value.held == ("new-2025",)
    before = data_checksum(db.dbname)
    with pytest.raises(MissingKeyError) as info:
        restore.run_restore(
            restore.RestoreRequest(
                target=db.dbname,
                sink=sink,
                name=name,
                keyring=new,
                data_dir=db.data_dir,
            )
        )
    assert f"Archive '{name}'" in str(info.value)
    assert "'old-2024'" in str(info.value)
    assert data_checksum(db.dbname) == before
    assert list_databases(f"{db.dbname}_") == []


def test_cli_says_which_archive_needs_which_key(old_archive, tmp_path):
    db, sink, name, new_line = old_archive
    keyfile = tmp_path / "keyring"
    keyfile.write_text(new_line + "\n")
    keyfile.chmod(0o600)
    environ = dict(os.environ, SUITE_KEYRING_FILE=str(keyfile))
    environ.pop("SUITE_KEYRING", None)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "db_backup_suite.lib",
            "verify",
            name,
            "--from",
            f"local:{sink.root}",
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 4  # the key is not in the keyring
    assert out.stderr.startswith(
        f"error: Archive '{name}' cannot be decrypted: the server key that "
        "encrypted it, 'old-2024', is not in the server keyring (it holds: "
        "new-2025)."
    )
