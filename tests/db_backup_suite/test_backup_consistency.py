"""The database and the filestore are captured at one instant.

While a backup runs (acting from its progress callback, i.e. after the
snapshot is exported and pg_dump started, on real concurrent connections):
a user creates an attachment and deletes another, and Odoo's filestore
garbage collector tries to remove the deleted one's file. Users are not
blocked, the collector is (it gives up, as Odoo's does after its
lock_timeout), and the archive's filestore matches its own ir_attachment
rows exactly.
"""

import pytest

from db_backup_suite.lib import backup, crypto, restore
from db_backup_suite.lib.sinks import make_sink
from tests.fixtures.odoo_db import (
    add_attachment,
    connect,
    delete_attachment,
    filestore_listing,
    filestore_path,
    gc_filestore,
    referenced_files,
)

PREFIX = "h3_cs_"


@pytest.fixture
def keyring():
    return crypto.Keyring.parse(crypto.generate_key_line())


def _user_conn(dbname):
    conn = connect(dbname)
    with conn.cursor() as cr:
        # a user blocked by the backup would fail here instead of hanging
        cr.execute("SET lock_timeout = '3s'")
    return conn


def test_attachment_created_and_deleted_during_backup(
    odoo_db_factory, keyring, tmp_path
):
    db = odoo_db_factory(prefix=PREFIX, partners=500, attachments=8)
    sink = make_sink({"type": "local", "path": str(tmp_path / "dest")})
    before = referenced_files(db.dbname)
    conn = _user_conn(db.dbname)
    with conn.cursor() as cr:
        cr.execute(
            "SELECT id, store_fname FROM ir_attachment WHERE store_fname IS NOT NULL"
            " AND store_fname NOT IN (SELECT store_fname FROM ir_attachment"
            "   WHERE store_fname IS NOT NULL"
            "   GROUP BY store_fname HAVING count(*) > 1)"
            " ORDER BY id LIMIT 1"
        )
        doomed_id, doomed_fname = cr.fetchone()
    gc_conn = connect(db.dbname, autocommit=False)
    seen = {}

    def during(done, total, message):
        if seen:
            return
        # users work normally during the backup (not blocked by its lock)
        seen["new"] = add_attachment(conn, db.filestore, b"created during backup")[1]
        delete_attachment(conn, doomed_id, db.filestore)
        # the garbage collector cannot take its lock: it gives up
        seen["gc_during"] = gc_filestore(gc_conn, db.filestore, lock_timeout="1s")
        seen["file_still_there"] = (db.filestore / doomed_fname).exists()

    try:
        result = backup.run_backup(
            backup.BackupRequest(
                database=db.dbname,
                sink=sink,
                data_dir=db.data_dir,
                keyring=keyring,
                progress=during,
            )
        )
        assert seen["gc_during"] is None
        assert seen["file_still_there"]
        # once the backup is done, the collector runs and removes the file
        assert gc_filestore(gc_conn, db.filestore, lock_timeout="5s") == 1
        assert not (db.filestore / doomed_fname).exists()
    finally:
        gc_conn.close()
        conn.close()

    # the archive holds the state of the snapshot: deleted one in, new one out
    fs = result.manifest["filestore"]
    assert fs["files"] == len(before) and fs["missing"] == []
    assert result.manifest["row_counts"]["ir_attachment"] == 8 + 3

    sandbox = db.dbname + "_snap"
    restore.run_restore(
        restore.RestoreRequest(
            target=sandbox,
            mode="sandbox",
            sink=sink,
            name=result.name,
            keyring=keyring,
            expected_uuid=db.uuid,
            data_dir=db.data_dir,
            jobs=1,
        )
    )
    restored_files = set(filestore_listing(filestore_path(db.data_dir, sandbox)))
    restored_rows = referenced_files(sandbox)
    assert restored_files == restored_rows == before
    assert doomed_fname in restored_files
    assert seen["new"] not in restored_files


def test_rows_written_during_backup_are_not_counted(odoo_db_factory, keyring, tmp_path):
    db = odoo_db_factory(prefix=PREFIX, partners=2000, attachments=2)
    sink = make_sink({"type": "local", "path": str(tmp_path / "dest")})
    conn = _user_conn(db.dbname)
    done_once = []

    def during(done, total, message):
        if not done_once:
            done_once.append(True)
            with conn.cursor() as cr:
                cr.execute(
                    "INSERT INTO res_partner (name) SELECT 'late ' || g"
                    " FROM generate_series(1, 500) g"
                )
                cr.execute("DELETE FROM mail_message WHERE id <= 100")

    try:
        result = backup.run_backup(
            backup.BackupRequest(
                database=db.dbname,
                sink=sink,
                data_dir=db.data_dir,
                keyring=keyring,
                progress=during,
            )
        )
    finally:
        conn.close()
    counts = result.manifest["row_counts"]
    assert counts["res_partner"] == 2000 and counts["mail_message"] == 1000
    # and the dump agrees with the counts: the restore check passes
    res = restore.run_restore(
        restore.RestoreRequest(
            target=db.dbname + "_snap",
            mode="sandbox",
            sink=sink,
            name=result.name,
            keyring=keyring,
            expected_uuid=db.uuid,
            data_dir=db.data_dir,
        )
    )
    assert res.row_counts["res_partner"] == 2000
