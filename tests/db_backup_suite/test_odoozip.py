"""Odoo's backup zip: written from our payload, read and imported (real
PostgreSQL, real pg_dump / pg_restore / psql)."""

import hashlib
import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from db_backup_suite.lib import odoozip
from db_backup_suite.lib.errors import FormatError, RestoreError, StreamCryptError
from db_backup_suite.lib.payload.reader import PayloadReader
from db_backup_suite.lib.payload.writer import PayloadWriter
from db_backup_suite.lib.pgtools import (
    PgParams,
    attachment_files,
    database_exists,
    database_info,
    drop_database,
    start_pg_dump,
)
from tests.fixtures.odoo_db import data_checksum, filestore_listing, list_databases

PREFIX = "h4_oz_"


@pytest.fixture
def pg():
    return PgParams.from_env(host="127.0.0.1", port=5432)


@pytest.fixture
def source(odoo_db_factory):
    return odoo_db_factory(prefix=PREFIX, partners=300, attachments=12)


@pytest.fixture
def new_db(pg):
    names = []

    def make(suffix):
        name = f"{PREFIX}new_{suffix}"
        drop_database(pg, name)
        names.append(name)
        return name

    yield make
    for name in names:
        drop_database(pg, name)


def make_payload(db, pg, compression="zstd") -> bytes:
    """A payload laid out as the backup pipeline writes it."""
    buf = io.BytesIO()
    writer = PayloadWriter(buf, compression)
    conn = pg.connect(db.dbname)
    try:
        info = database_info(conn)
        files = attachment_files(conn)
    finally:
        conn.close()
    head = {
        "database": info["database"],
        "odoo_version": info["odoo_version"],
        "modules": info["modules"],
        "postgresql": {
            "version": info["postgresql_version"],
            "version_num": info["postgresql_version_num"],
        },
    }
    writer.add_bytes("backup.json", json.dumps(head).encode())
    with start_pg_dump(pg, db.dbname) as dump:
        writer.add_stream("database.dump", dump.stdout, part_size=64 * 1024)
        dump.check()
    for entry in files:
        writer.add_file(
            f"filestore/{entry['store_fname']}", db.filestore / entry["store_fname"]
        )
    writer.add_bytes("manifest.json", json.dumps({"complete": True}).encode())
    writer.close()
    return buf.getvalue()


def referenced_listing(db):
    conn = db.connect()
    try:
        names = {f["store_fname"] for f in attachment_files(conn)}
    finally:
        conn.close()
    return {k: v for k, v in filestore_listing(db.filestore).items() if k in names}


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_write_then_import_round_trip(tmp_path, pg, source, new_db, compression):
    raw = make_payload(source, pg, compression)
    zip_path = tmp_path / "odoo.zip"
    with open(zip_path, "wb") as out:
        result = odoozip.write_odoo_zip(PayloadReader(io.BytesIO(raw)), out, pg=pg)
    expected_files = referenced_listing(source)
    assert result.filestore_files == len(expected_files) > 0
    assert result.dump_sql_bytes > 0
    assert result.skipped == []

    # Odoo's layout and manifest
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert names[0] == "manifest.json"
        assert "dump.sql" in names
        assert {n for n in names if n.startswith("filestore/")} == {
            f"filestore/{k}" for k in expected_files
        }
        manifest = json.loads(zf.read("manifest.json"))
        sql = zf.read("dump.sql")
        for name in expected_files:
            data = zf.read(f"filestore/{name}")
            assert hashlib.sha1(data).hexdigest() == name.rsplit("/", 1)[1]
    assert manifest["odoo_dump"] == "1"
    assert manifest["db_name"] == source.dbname
    assert manifest["version"] == manifest["major_version"] == "18.0"
    assert manifest["version_info"][:2] == [18, 0]
    assert manifest["modules"]["base"] == "18.0.1.3"
    assert manifest["pg_version"].split(".")[0] == "15"
    assert b"CREATE TABLE public.res_partner" in sql
    assert b"OWNER TO" not in sql
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-tq", str(zip_path)], check=True)

    # inspect and import it into a new database
    info = odoozip.read_odoo_zip(zip_path)
    assert info.db_name == source.dbname
    assert info.filestore_files == len(expected_files)
    assert info.dump_size == result.dump_sql_bytes
    target = new_db(compression)
    fs_dir = tmp_path / "imported" / "filestore" / target
    imported = odoozip.import_odoo_zip(zip_path, target, filestore_dir=fs_dir, pg=pg)
    assert imported.filestore_files == len(expected_files)
    assert data_checksum(target) == data_checksum(source.dbname)
    assert filestore_listing(fs_dir) == expected_files


def test_streams_into_an_unseekable_writable(pg, source):
    class Pipe(io.RawIOBase):
        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.data += b
            return len(b)

    raw = make_payload(source, pg)
    out = Pipe()
    odoozip.write_odoo_zip(PayloadReader(io.BytesIO(raw)), out, pg=pg)
    with zipfile.ZipFile(io.BytesIO(bytes(out.data))) as zf:
        assert zf.testzip() is None
        assert b"COPY public.res_partner" in zf.read("dump.sql")


def _odoo_style_zip(db, path: Path, dump_sql: bytes | None = None):
    """What odoo.service.db.dump_db writes: plain pg_dump --no-owner, the
    filestore directory, a manifest."""
    if dump_sql is None:
        dump_sql = subprocess.run(
            ["pg_dump", "--no-owner", db.dbname], check=True, capture_output=True
        ).stdout
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        zf.writestr("manifest.json", json.dumps({"odoo_dump": "1", "db_name": "x"}))
        zf.writestr("dump.sql", dump_sql)
        for file in sorted(db.filestore.rglob("*")):
            if file.is_file():
                zf.write(file, "filestore/" + str(file.relative_to(db.filestore)))


def test_import_of_an_odoo_made_zip(tmp_path, pg, source, new_db):
    zip_path = tmp_path / "odoo.zip"
    _odoo_style_zip(source, zip_path)
    target = new_db("odoo")
    fs_dir = tmp_path / "fs"
    fs_dir.mkdir()  # an existing EMPTY directory is accepted
    odoozip.import_odoo_zip(zip_path, target, filestore_dir=fs_dir, pg=pg)
    assert data_checksum(target) == data_checksum(source.dbname)
    assert filestore_listing(fs_dir) == filestore_listing(source.filestore)


def test_import_stops_on_the_first_sql_error(tmp_path, pg, source, new_db):
    good = subprocess.run(
        ["pg_dump", "--no-owner", source.dbname], check=True, capture_output=True
    ).stdout
    # a damaged dump: one statement in the middle fails
    cut = good.index(b"CREATE TABLE public.res_users")
    damaged = good[:cut] + b"INSERT INTO no_such_table VALUES (1);\n" + good[cut:]
    zip_path = tmp_path / "damaged.zip"
    _odoo_style_zip(source, zip_path, damaged)

    # what Odoo's restore_db does (psql without ON_ERROR_STOP) "succeeds"
    odoo_way = new_db("odoo_way")
    subprocess.run(["createdb", odoo_way], check=True)
    proc = subprocess.run(
        ["psql", "-q", f"--dbname={odoo_way}", "-f", "-"],
        input=damaged,
        capture_output=True,
    )
    assert proc.returncode == 0, "psql alone reports success on a partial restore"

    target = new_db("damaged")
    fs_dir = tmp_path / "fs_new"
    with pytest.raises(RestoreError, match="psql exited with 3.*no_such_table"):
        odoozip.import_odoo_zip(zip_path, target, filestore_dir=fs_dir, pg=pg)
    assert not database_exists(pg, target), "the half-made database is dropped"
    assert not fs_dir.exists(), "the directory we created is removed"


def test_import_never_replaces_an_existing_database(tmp_path, pg, source):
    zip_path = tmp_path / "odoo.zip"
    _odoo_style_zip(source, zip_path)
    before = data_checksum(source.dbname)
    with pytest.raises(RestoreError, match="already exists"):
        odoozip.import_odoo_zip(zip_path, source.dbname, pg=pg)
    assert data_checksum(source.dbname) == before
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep").write_text("mine")
    with pytest.raises(RestoreError, match="not an empty directory"):
        odoozip.import_odoo_zip(zip_path, f"{PREFIX}never", filestore_dir=busy, pg=pg)
    assert (busy / "keep").read_text() == "mine"
    assert not database_exists(pg, f"{PREFIX}never")


@pytest.mark.parametrize(
    "evil", ["filestore/../../escape", "filestore//etc/passwd", "filestore/a\\..\\b"]
)
def test_zip_escapes_are_refused_before_anything_is_created(tmp_path, pg, evil):
    zip_path = tmp_path / "evil.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("dump.sql", "CREATE TABLE t (id int);\n")
        zf.writestr(evil, "boom")
    before = list_databases(PREFIX)
    with pytest.raises(StreamCryptError):
        odoozip.import_odoo_zip(
            zip_path, f"{PREFIX}evil", filestore_dir=tmp_path / "fs", pg=pg
        )
    assert list_databases(PREFIX) == before
    assert not (tmp_path / "fs").exists()
    assert not (tmp_path.parent / "escape").exists()


def test_zip_symlink_entries_are_refused(tmp_path, pg):
    zip_path = tmp_path / "link.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("dump.sql", "SELECT 1;\n")
        link = zipfile.ZipInfo("filestore/ab/link")
        link.external_attr = 0o120777 << 16  # S_IFLNK
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(StreamCryptError, match="not a regular file"):
        odoozip.read_odoo_zip(zip_path)


def test_not_an_odoo_zip(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(FormatError, match="no dump.sql"):
        odoozip.read_odoo_zip(path)
    text = tmp_path / "text.zip"
    text.write_text("not a zip")
    with pytest.raises(FormatError, match="not a zip"):
        odoozip.read_odoo_zip(text)


def test_payload_that_is_not_ours(pg):
    buf = io.BytesIO()
    w = PayloadWriter(buf)
    w.add_bytes("something.txt", b"x")
    w.close()
    buf.seek(0)
    with pytest.raises(FormatError, match="backup.json"):
        odoozip.write_odoo_zip(PayloadReader(buf), io.BytesIO(), pg=pg)


def test_odoo_manifest_mapping():
    manifest = odoozip.odoo_manifest(
        {
            "database": "prod",
            "odoo_version": "18.0.1.3",
            "modules": {"base": "18.0.1.3", "mail": "18.0.1.15"},
            "postgresql": {"version": "15.10", "version_num": 150010},
        }
    )
    assert manifest == {
        "odoo_dump": "1",
        "db_name": "prod",
        "version": "18.0",
        "version_info": [18, 0, 0, "final", 0, ""],
        "major_version": "18.0",
        "pg_version": "15.0",  # what Odoo's own formula gives for 150010
        "modules": {"base": "18.0.1.3", "mail": "18.0.1.15"},
    }
