"""Deep verify: an archive that is authentic and matches its own manifest
but whose content was wrong when it was written (a dump cut short, a
damaged filestore file) is caught without a test restore.

The damaged archives are built with the lib itself (PayloadWriter and the
encrypting writer), from a real backup, with a manifest recomputed to match
the damaged content, so every check of the shallow verify passes."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from db_backup_suite.lib import backup, crypto, pgtools, verify
from db_backup_suite.lib import manifest as mf
from db_backup_suite.lib.errors import VerificationError
from db_backup_suite.lib.payload.reader import PayloadReader
from db_backup_suite.lib.payload.writer import PayloadWriter
from db_backup_suite.lib.sinks import make_sink

PREFIX = "h12_dv_"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def key_line():
    return crypto.generate_key_line()


@pytest.fixture
def keyring(key_line):
    return crypto.Keyring.parse(key_line)


@pytest.fixture
def made(odoo_db_factory, keyring, tmp_path):
    """A real archive of a small Odoo-shaped database, and its bytes."""
    db = odoo_db_factory(prefix=PREFIX, partners=3000, attachments=8)
    sink = make_sink({"type": "local", "path": str(tmp_path / "dest")})
    result = backup.run_backup(
        backup.BackupRequest(
            database=db.dbname, sink=sink, data_dir=db.data_dir, keyring=keyring
        )
    )
    out = io.BytesIO()
    sink.get(result.name, out)
    return db, sink, result, out.getvalue()


def rebuild(raw, keyring, tenant, *, cut_dump=None, damage_file=None) -> bytes:
    """Re-write an archive with the lib's writers, cutting the dump to
    ``cut_dump`` bytes or flipping a byte of filestore file
    ``damage_file``, and a manifest recomputed to match: authentic,
    complete, consistent, and wrong."""
    reader = crypto.open_archive(io.BytesIO(raw), keyring=keyring, tenant=tenant)
    members = [(m.name, m.read()) for m in PayloadReader(reader) if m.type == "file"]
    by_name = dict(members)
    head = mf.loads(by_name[mf.HEAD_MEMBER])
    final = mf.loads(by_name[mf.MANIFEST_MEMBER])
    dump = b"".join(
        data for name, data in members if name.startswith(mf.DUMP_MEMBER + ".part-")
    )
    if cut_dump is not None:
        dump = dump[:cut_dump]
    out = io.BytesIO()
    enc = crypto.encrypting_writer(out, keyring=keyring, tenant=tenant)
    pw = PayloadWriter(enc, compression="zstd")
    pw.add_bytes(mf.HEAD_MEMBER, mf.dumps(head))
    info = pw.add_stream(mf.DUMP_MEMBER, io.BytesIO(dump))
    digest = mf.FilestoreDigest()
    for name, data in members:
        if not name.startswith(mf.FILESTORE_DIR):
            continue
        fname = name[len(mf.FILESTORE_DIR) :]
        if fname == damage_file:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        member = pw.add_bytes(name, data)
        digest.add(fname, len(data), member.sha256)
    final["dump"].update(parts=info.parts, size=info.size, sha256=info.sha256)
    final["filestore"].update(
        files=digest.files, bytes=digest.bytes, digest=digest.hexdigest()
    )
    pw.add_bytes(mf.MANIFEST_MEMBER, mf.dumps(final))
    pw.close()
    enc.close()
    return out.getvalue()


def _verify(path, keyring, *, deep):
    return verify.run_verify(
        verify.VerifyRequest(
            path=path, keyring=keyring, tenant=crypto.ANY_TENANT, deep=deep
        )
    )


def test_pg_restore_list_reads_the_toc_only_the_file_check_reads_every_block(
    odoo_db_factory, tmp_path
):
    """Why the deep check runs ``pg_restore -f /dev/null`` and not
    ``pg_restore -l``: a dump cut inside its data passes the listing."""
    db = odoo_db_factory(prefix=PREFIX, partners=20_000, attachments=1)
    with pgtools.start_pg_dump(pgtools.PgParams.from_env(), db.dbname) as proc:
        dump = proc.stdout.read()
        proc.check()
    cut = dump[: len(dump) // 2]
    path = tmp_path / "cut.dump"
    path.write_bytes(cut)
    listing = subprocess.run(
        ["pg_restore", "-l", str(path)], capture_output=True, text=True
    )
    assert listing.returncode == 0  # the TOC is whole: -l is satisfied
    check = subprocess.run(
        pgtools.pg_restore_check_argv(), input=cut, capture_output=True
    )
    assert check.returncode == 1
    assert b"could not read from input file: end of file" in check.stderr
    whole = subprocess.run(
        pgtools.pg_restore_check_argv(), input=dump, capture_output=True
    )
    assert whole.returncode == 0, whole.stderr


@pytest.mark.parametrize("where", ["toc", "half", "last-byte"])
def test_cut_dump_with_consistent_manifest_is_caught_by_the_deep_check(
    made, keyring, tmp_path, where
):
    db, _sink, result, raw = made
    size = result.manifest["dump"]["size"]
    cut = {"toc": 200, "half": size // 2, "last-byte": size - 1}[where]
    bad = tmp_path / "cut.tar.zst.enc"
    bad.write_bytes(rebuild(raw, keyring, db.uuid, cut_dump=cut))

    shallow = _verify(bad, keyring, deep=False)  # the manifest agrees
    assert shallow.report.dump_size == cut
    assert shallow.report.manifest["dump"]["size"] == cut
    assert shallow.report.deep is None
    with pytest.raises(VerificationError) as info:
        _verify(bad, keyring, deep=True)
    message = str(info.value)
    assert "authentic and matches its manifest" in message
    assert "the database dump cannot be read to its end" in message
    assert "pg_restore exited with 1" in message


def test_damaged_filestore_file_with_consistent_manifest_is_caught(
    made, keyring, tmp_path
):
    db, _sink, result, raw = made
    names = sorted(
        p.relative_to(db.filestore).as_posix()
        for p in db.filestore.rglob("*")
        if p.is_file()
    )
    victim = next(n for n in names if n in _archived_files(raw, keyring, db.uuid))
    bad = tmp_path / "damaged.tar.zst.enc"
    bad.write_bytes(rebuild(raw, keyring, db.uuid, damage_file=victim))
    assert (
        _verify(bad, keyring, deep=False).report.filestore["files"]
        == (result.manifest["filestore"]["files"])
    )
    with pytest.raises(VerificationError) as info:
        _verify(bad, keyring, deep=True)
    assert "1 filestore file(s) do not hash to their name" in str(info.value)
    assert victim in str(info.value)


def _archived_files(raw, keyring, tenant) -> set[str]:
    reader = crypto.open_archive(io.BytesIO(raw), keyring=keyring, tenant=tenant)
    return {
        m.name[len(mf.FILESTORE_DIR) :]
        for m in PayloadReader(reader)
        if m.name.startswith(mf.FILESTORE_DIR) and m.type == "file"
    }


def test_a_good_archive_passes_the_deep_check_and_says_what_it_read(made, keyring):
    db, sink, result, _raw = made
    checked = verify.run_verify(
        verify.VerifyRequest(
            sink=sink, name=result.name, keyring=keyring, tenant=db.uuid
        )
    )
    deep = checked.report.deep
    assert deep["dump_read_by_pg_restore"] is True
    assert deep["dump_bytes"] == result.manifest["dump"]["size"]
    assert deep["files"] == result.manifest["filestore"]["files"] > 0
    assert deep["files_content_checked"] == deep["files"]
    assert deep["problems"] == []
    assert checked.as_dict()["deep"] == deep


def test_cli_verify_is_deep_by_default(made, keyring, key_line, tmp_path):
    db, _sink, result, raw = made
    keyfile = tmp_path / "keyring"
    keyfile.write_text(key_line + "\n")
    keyfile.chmod(0o600)
    environ = dict(os.environ, SUITE_KEYRING_FILE=str(keyfile))
    environ.pop("SUITE_KEYRING", None)
    bad = tmp_path / "cut.tar.zst.enc"
    bad.write_bytes(rebuild(raw, keyring, db.uuid, cut_dump=5000))
    good = tmp_path / "good.tar.zst.enc"
    good.write_bytes(raw)

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "db_backup_suite.lib", "verify", *args],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )

    out = cli(str(good))
    assert out.returncode == 0, out.stderr
    assert "deep check OK: pg_restore read the whole dump" in out.stdout
    out = cli(str(bad))
    assert out.returncode == 7  # verification failed
    assert "the database dump cannot be read to its end" in out.stderr
    out = cli(str(bad), "--no-deep")
    assert out.returncode == 0 and "deep check" not in out.stdout
    out = cli(str(bad), "--json")
    assert out.returncode == 7
    assert json.loads(out.stdout)["type"] == "VerificationError"
