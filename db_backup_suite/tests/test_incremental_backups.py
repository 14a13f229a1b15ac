"""Incremental (deduplicated snapshot) destinations from Odoo.

A schedule whose destinations store snapshots (a local folder and
SeaweedFS S3), run twice through the real engine in child processes: the
second run costs a fraction of the first ("New data"), both are listed, the
second restores through the restore wizard into a sandbox holding exactly
what the database held then; retention forgets the older snapshot and the
garbage collection gives its space back; a tampered pack is refused before
anything is created. A schedule mixing a full and an incremental
destination stores both kinds in one run, and a destination switched from
one mode to the other keeps listing what it holds.

The engine's child processes see the database's committed state only: the
data that must differ between the two runs (a large attachment, present in
the first and deleted before the second) is written through a connection of
its own, and removed again at the end.
"""

import hashlib
import json
import os

from odoo import release
from odoo.tests import tagged
from odoo.tools import SQL, config, mute_logger

from ..service import backup_engine
from .common import BackupCase, drop_derived_databases

MB = 1024 * 1024
BIG_FILE_SIZE = 12 * MB


def _dir_bytes(path):
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _dirs, names in os.walk(path)
        for name in names
    )


@tagged("post_install", "-at_install")
class TestIncrementalBackups(BackupCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from tests.fixtures.s3_server import start_seaweedfs

        cls.s3 = start_seaweedfs()
        cls.addClassCleanup(cls.s3.cleanup)
        cls.bucket = cls.s3.new_bucket()
        Destination = cls.env["db.backup.destination"]
        cls.incr_dir = os.path.join(cls.tmp_dir, "incremental")
        os.makedirs(cls.incr_dir)
        cls.incr_dest = Destination.create(
            {
                "name": "Local snapshots",
                "dest_type": "local",
                "local_path": cls.incr_dir,
                "storage_mode": "incremental",
            }
        )
        cls.s3_dest = Destination.create(
            {
                "name": "SeaweedFS snapshots",
                "dest_type": "s3",
                "s3_bucket": cls.bucket,
                "s3_prefix": "odoo",
                "s3_endpoint_url": cls.s3.endpoint_url,
                "s3_region": cls.s3.region,
                "s3_access_key": cls.s3.access_key,
                "s3_secret_key": cls.s3.secret_key,
                "s3_checksum_when_required": True,
            }
        )
        cls.schedule = cls.env["db.backup.schedule"].create(
            {
                "frequency": "24h",
                "destination_ids": (cls.incr_dest | cls.s3_dest).ids,
                "retention_mode": "gfs",
                "keep_daily": 1,
                "keep_weekly": 0,
                "keep_monthly": 0,
                "alert_size_mb": 10000,
            }
        )
        cls.dbname = cls.env.cr.dbname
        cls.addClassCleanup(drop_derived_databases, cls.dbname)

    # helpers -------------------------------------------------------------------
    def _run_schedule(self, schedule):
        schedule.with_user(self.admin).action_run_now()
        run = self.env["db.backup.run"].search(
            [("schedule_id", "=", schedule.id)], limit=1
        )
        self.assertEqual(run.state, "queued")
        self.env["db.backup.run"]._run_queued()
        run.invalidate_recordset()
        self.assertIn(run.state, ("done", "partial"), run.error)
        return run

    def _committed(self, sql, params=None):
        """Rows of ``sql`` in the committed state of this database (what the
        engine's processes see), autocommitted."""
        conn = backup_engine.pg_params().connect(self.dbname, autocommit=True)
        try:
            with conn.cursor() as cr:
                cr.execute(sql, params or ())
                return cr.fetchall() if cr.description else None
        finally:
            conn.close()

    def _add_committed_attachment(self, size):
        """A committed attachment of ``size`` random bytes (incompressible),
        named to sort last in the filestore; removed at the end."""
        data = os.urandom(size)
        sha1 = hashlib.sha1(data).hexdigest()
        fname = "ff/" + "f" * 4 + sha1[4:]
        path = os.path.join(config.filestore(self.dbname), fname)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        att_id = self._committed(
            "INSERT INTO ir_attachment (name, type, store_fname, file_size, "
            "checksum, mimetype, res_model) VALUES (%s, 'binary', %s, %s, %s, "
            "'application/octet-stream', 'res.partner') RETURNING id",
            ("incremental test blob", fname, size, sha1),
        )[0][0]

        def remove():
            self._committed("DELETE FROM ir_attachment WHERE id = %s", (att_id,))
            if os.path.exists(path):
                os.unlink(path)

        self.addCleanup(remove)
        return att_id, fname, remove

    def _copy(self, run, dest):
        copy = run.copy_ids.filtered(lambda c: c.destination_id == dest)
        self.assertEqual(len(copy), 1, run.copy_ids.mapped("object_name"))
        return copy

    # the test --------------------------------------------------------------------
    def test_snapshots_end_to_end(self):
        self.assertEqual(self.s3_dest.storage_mode, "incremental", "S3 default")
        self.assertEqual(self.local_dest.storage_mode, "full", "local default")
        # 1. first run, with a large attachment that the second will not have
        _att_id, big_fname, remove_big = self._add_committed_attachment(BIG_FILE_SIZE)
        first = self._run_schedule(self.schedule)
        self.assertEqual(first.state, "done", first.error or first.warning)
        self.assertEqual(first.storage, "incremental")
        self.assertGreater(first.new_data, BIG_FILE_SIZE)
        self.assertGreater(first.logical_size, BIG_FILE_SIZE)
        for dest in (self.incr_dest, self.s3_dest):
            copy = self._copy(first, dest)
            self.assertEqual(copy.state, "done")
            self.assertIn("/repo-", copy.object_name)
        self.assertTrue(first.name.startswith("%s/repo-" % self.dbname), first.name)
        # 2. the attachment goes, the second run stores what changed only
        remove_big()
        second = self._run_schedule(self.schedule)
        self.assertEqual(second.state, "done", second.error or second.warning)
        self.assertLess(
            second.new_data,
            first.new_data / 10,
            "the second snapshot re-stored data the destinations already held",
        )
        self.assertLess(second.logical_size, first.logical_size)
        # the list shows both figures, side by side
        self.assertTrue(second.new_data_display and second.logical_size_display)
        arch = self.env["db.backup.run"].get_views([(False, "list")])["views"]["list"][
            "arch"
        ]
        self.assertIn('name="new_data_display"', arch)
        self.assertIn('name="logical_size_display"', arch)
        # 3. both listed at each destination, as archives
        for dest in (self.incr_dest, self.s3_dest):
            found = self.env["db.backup.run"]._find_archives(dest)
            names = {self._copy(run, dest).object_name for run in (first, second)}
            self.assertLessEqual(names, set(found), sorted(found))
        # 4. restore the second one through the wizard, into a sandbox
        wizard = (
            self.env["db.backup.restore.wizard"]
            .with_user(self.restorer)
            .create({"run_id": second.id, "target": "sandbox"})
        )
        self.assertTrue(wizard.compatible, wizard.incompatibility)
        self.assertFalse(wizard.foreign)
        result = wizard._restore_now()
        self.assertTrue(result["ok"], result["message"])
        sandbox = wizard.sandbox_id.name
        self.assertTrue(backup_engine.database_exists(sandbox))
        self._check_sandbox(sandbox, big_fname)
        # 5. retention keeps one daily backup: the first snapshot is forgotten
        # and the garbage collection (no grace here) gives its space back
        self.env["ir.config_parameter"].set_param(
            "db_backup_suite.repository_gc_grace_hours", "0"
        )
        before = _dir_bytes(self.incr_dir)
        doomed = self.env["db.backup.run"]._cron_retention()
        self.assertIn(first, doomed)
        self.assertNotIn(second, doomed)
        self.assertEqual(first.state, "deleted", first.warning)
        self.assertEqual(second.state, "done")
        reclaimed = before - _dir_bytes(self.incr_dir)
        self.assertGreater(reclaimed, 4 * MB, "the big file's packs stayed")
        for dest in (self.incr_dest, self.s3_dest):
            found = self.env["db.backup.run"]._find_archives(dest)
            self.assertNotIn(self._copy(first, dest).object_name, found)
            self.assertIn(self._copy(second, dest).object_name, found)
        gc_events = self.env["audit.event"].search(
            [("message", "like", "Garbage collection at")]
        )
        self.assertEqual(len(gc_events), 2, gc_events.mapped("message"))
        # 6. a tampered pack: refused before anything is created
        self._tamper_a_pack_of(self._copy(second, self.incr_dest).object_name)
        other = (
            self.env["db.backup.restore.wizard"]
            .with_user(self.restorer)
            .create({"run_id": second.id, "target": "sandbox"})
        )
        # the copy tried is the first stored one: the tampered local folder
        self.assertEqual(other._stored_copy().destination_id, self.incr_dest)
        with mute_logger(
            "odoo.addons.db_backup_suite.service.restore_job",
            "odoo.addons.db_backup_suite.lib.restore",
        ):
            refused = other._restore_now()
        self.assertFalse(refused["ok"])
        self.assertRegex(refused["message"], "(?i)tamper|authentic|damaged|altered")
        self.assertFalse(backup_engine.database_exists(other.sandbox_id.name))
        # the sandbox made before is untouched
        self._check_sandbox(sandbox, big_fname)

    def _check_sandbox(self, sandbox, absent_fname):
        """The sandbox holds this database's committed partners and files
        as of the second run (without the attachment deleted before it)."""
        partners = self._committed("SELECT count(*) FROM res_partner")[0][0]
        conn = backup_engine.pg_params().connect(sandbox, autocommit=True)
        try:
            with conn.cursor() as cr:
                cr.execute("SELECT count(*) FROM res_partner")
                self.assertEqual(cr.fetchone()[0], partners)
                cr.execute(
                    "SELECT count(*) FROM ir_attachment WHERE store_fname = %s",
                    [absent_fname],
                )
                self.assertEqual(cr.fetchone()[0], 0)
        finally:
            conn.close()
        files = self._committed(
            "SELECT store_fname FROM ir_attachment WHERE store_fname IS NOT NULL "
            "AND file_size > 0 ORDER BY file_size DESC LIMIT 3"
        )
        self.assertTrue(files)
        for (fname,) in files:
            with open(os.path.join(config.filestore(self.dbname), fname), "rb") as fh:
                live = fh.read()
            with open(os.path.join(config.filestore(sandbox), fname), "rb") as fh:
                self.assertEqual(fh.read(), live, fname)
        self.assertFalse(
            os.path.exists(os.path.join(config.filestore(sandbox), absent_fname))
        )

    def _tamper_a_pack_of(self, name):
        """Flip one byte inside a blob the snapshot ``name`` needs (the first
        chunk of its dump), in its pack at the local destination."""
        sink = self.incr_dest._make_sink()
        try:
            snapshots = sink.snapshots
            repo, snap = snapshots.preflight(name)
            blob_id, _size = next(iter(repo.iter_list(snap["dump"]["lists"])))
            loc = repo.index.locate(blob_id)
            root = repo.store.root
        finally:
            sink.close()
        path = os.path.join(self.incr_dir, root, "packs", loc.pack[:2], loc.pack)
        with open(path, "r+b") as handle:
            handle.seek(loc.entry.offset + loc.entry.stored // 2)
            byte = handle.read(1)
            handle.seek(-1, os.SEEK_CUR)
            handle.write(bytes([byte[0] ^ 0x01]))

    def test_relisted_snapshot_restores(self):
        """After a production restore the run table is the archive's: the
        backups made since are listed again from the destinations, without
        a manifest of their own. A re-listed snapshot (and a re-listed full
        archive) is read by the restore dialog like any run, and the
        snapshot restores into a sandbox."""
        schedule = self.env["db.backup.schedule"].create(
            {
                "frequency": "24h",
                "destination_ids": (self.local_dest | self.incr_dest).ids,
                "alert_size_mb": 10000,
            }
        )
        run = self._run_schedule(schedule)
        self.assertEqual(run.state, "done", run.error or run.warning)
        names = {
            "snapshot": self._copy(run, self.incr_dest).object_name,
            "full": self._copy(run, self.local_dest).object_name,
        }
        self.assertIn("/repo-", names["snapshot"])
        # the restored database does not have the run: as the restore hook
        # does, the destinations' backups are listed again
        self.env.cr.execute(SQL("DELETE FROM db_backup_run WHERE id = %s", run.id))
        self.env.invalidate_all()
        Run = self.env["db.backup.run"].sudo()
        Run._sync_from_destinations()
        version = self.env["db.backup.restore.wizard"]._series(release.version)
        relisted = {}
        for kind, name in names.items():
            relisted[kind] = Run.search([("name", "=", name)])
            self.assertEqual(len(relisted[kind]), 1, name)
            self.assertFalse(relisted[kind].manifest_json, "a re-listed run")
            wizard = (
                self.env["db.backup.restore.wizard"]
                .with_user(self.restorer)
                .create({"run_id": relisted[kind].id, "target": "sandbox"})
            )
            self.assertTrue(wizard.compatible, (kind, wizard.incompatibility))
            self.assertEqual(wizard._series(wizard.archive_odoo_version), version)
            self.assertEqual(wizard.source_db_name, self.dbname, kind)
            self.assertFalse(wizard.foreign, kind)
        # the re-listed snapshot restores into a sandbox
        wizard = (
            self.env["db.backup.restore.wizard"]
            .with_user(self.restorer)
            .create({"run_id": relisted["snapshot"].id, "target": "sandbox"})
        )
        self.assertEqual(wizard._stored_copy().destination_id, self.incr_dest)
        result = wizard._restore_now()
        self.assertTrue(result["ok"], result["message"])
        sandbox = wizard.sandbox_id.name
        self.assertTrue(backup_engine.database_exists(sandbox))
        partners = self._committed("SELECT count(*) FROM res_partner")[0][0]
        conn = backup_engine.pg_params().connect(sandbox, autocommit=True)
        try:
            with conn.cursor() as cr:
                cr.execute("SELECT count(*) FROM res_partner")
                self.assertEqual(cr.fetchone()[0], partners)
        finally:
            conn.close()

    def test_mixed_schedule_and_mode_change(self):
        """One full and one incremental destination in one schedule; a
        failing incremental one makes the run partial, each copy saying
        why; switching a destination's mode keeps both kinds listed."""
        broken = self.env["db.backup.destination"].create(
            {
                "name": "Unwritable snapshots",
                "dest_type": "local",
                "local_path": "/proc/h7-no-repository-here",
                "storage_mode": "incremental",
            }
        )
        schedule = self.env["db.backup.schedule"].create(
            {
                "frequency": "24h",
                "destination_ids": (self.local_dest | self.incr_dest | broken).ids,
                "alert_size_mb": 10000,
            }
        )
        run = self._run_schedule(schedule)
        self.assertEqual(run.state, "partial", run.error)
        self.assertEqual(run.storage, "mixed")
        full = self._copy(run, self.local_dest)
        snap = self._copy(run, self.incr_dest)
        bad = self._copy(run, broken)
        self.assertEqual(
            (full.state, snap.state, bad.state), ("done", "done", "failed")
        )
        self.assertTrue(bad.error and bad.error.strip())
        self.assertIn("Unwritable snapshots", run.warning)
        self.assertIn("1 of 3 destinations failed", run.warning)
        # the run's file is the full archive, whole at its folder
        self.assertEqual(run.name, full.object_name)
        path = os.path.join(self.local_dir, full.object_name)
        self.assertEqual(os.path.getsize(path), run.size)
        self.assertIn("/repo-", snap.object_name)
        # new data: the archive at the full destination plus the snapshot's
        self.assertGreater(run.new_data, run.size)
        # the manifest of the run (the full archive's) is the database's
        manifest = json.loads(run.manifest_json)
        self.assertEqual(manifest["database"], self.dbname)
        # the full destination now stores snapshots too: both kinds listed
        self.local_dest.storage_mode = "incremental"
        second = self._run_schedule(schedule)
        self.assertEqual(self._copy(second, self.local_dest).state, "done")
        found = self.env["db.backup.run"]._find_archives(self.local_dest)
        self.assertIn(full.object_name, found)
        self.assertIn(self._copy(second, self.local_dest).object_name, found)
        # and back: the snapshot stays listed and readable
        self.local_dest.storage_mode = "full"
        sink = self.local_dest._make_sink()
        try:
            name = self._copy(second, self.local_dest).object_name
            self.assertEqual(
                sink.stat(name).size, self._copy(second, self.local_dest).size
            )
            with sink.open_read(name) as raw:
                self.assertTrue(raw.read(64))
        finally:
            sink.close()
        # nobody reaches a repository's own objects through the destination
        from ..lib.errors import SinkError, SinkObjectNotFound

        sink = self.local_dest._make_sink()
        try:
            root = name.rsplit("/", 2)[0]
            with self.assertRaises(SinkError):
                sink.open_write(root + "/config")
            with self.assertRaises(SinkObjectNotFound):
                sink.delete(root + "/config")
            self.assertTrue(
                os.path.isfile(os.path.join(self.local_dir, root, "config"))
            )
        finally:
            sink.close()
