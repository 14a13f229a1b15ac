import os

from freezegun import freeze_time

from odoo.tests import tagged

from .common import BackupCase


@tagged("post_install", "-at_install")
class TestRetention(BackupCase):
    def _archive(self, label, stamp, schedule=None, kind="scheduled"):
        """A stored run with a real (small) file at the local destination."""
        db = self.env.cr.dbname
        name = "%s/%s_%s_%s.tar.zst.enc" % (db, db, label, stamp)
        path = os.path.join(self.local_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(b"x" * 10)
        run = self.env["db.backup.run"].create(
            {
                "name": name,
                "kind": kind,
                "state": "done",
                "label": label,
                "schedule_id": schedule.id if schedule else False,
                "date": "%s-%s-%s %s:%s:%s"
                % (
                    stamp[:4],
                    stamp[4:6],
                    stamp[6:8],
                    stamp[9:11],
                    stamp[11:13],
                    stamp[13:15],
                ),
            }
        )
        self.env["db.backup.copy"].create(
            {
                "run_id": run.id,
                "destination_id": self.local_dest.id,
                "destination_name": self.local_dest.name,
                "state": "done",
                "object_name": name,
                "size": 10,
            }
        )
        return run, path

    def test_retention_policy(self):
        schedule = self.env["db.backup.schedule"].create(
            {
                "frequency": "24h",
                "destination_ids": self.local_dest.ids,
                "retention_days": 7,
            }
        )
        old, old_path = self._archive("24h", "20260101T020000Z", schedule)
        recent, recent_path = self._archive("24h", "20260118T020000Z", schedule)
        manual, manual_path = self._archive("manual", "20251201T020000Z", kind="manual")
        pre_old, pre_old_path = self._archive(
            "pre-restore", "20260105T020000Z", kind="pre_restore"
        )
        pre_new, pre_new_path = self._archive(
            "pre-restore", "20260117T020000Z", kind="pre_restore"
        )
        # A foreign file in the same folder is never touched.
        foreign = os.path.join(self.local_dir, self.env.cr.dbname, "notes.txt")
        with open(foreign, "w") as handle:
            handle.write("mine")
        with freeze_time("2026-01-20 12:00:00"):
            deleted = self.env["db.backup.run"]._cron_retention()
        self.assertEqual(deleted, old | pre_old)
        self.assertEqual(old.state, "deleted")
        self.assertFalse(os.path.exists(old_path))
        self.assertFalse(os.path.exists(pre_old_path))
        for path in (recent_path, manual_path, pre_new_path, foreign):
            self.assertTrue(os.path.exists(path), path)
        self.assertEqual((recent | manual | pre_new).mapped("state"), ["done"] * 3)

    def test_newest_good_backup_is_never_deleted(self):
        schedule = self.env["db.backup.schedule"].create(
            {
                "frequency": "24h",
                "destination_ids": self.local_dest.ids,
                "retention_days": 1,
            }
        )
        only, path = self._archive("24h", "20250101T020000Z", schedule)
        with freeze_time("2026-06-01 00:00:00"):
            self.env["db.backup.run"]._cron_retention()
        self.assertEqual(only.state, "done")
        self.assertTrue(os.path.exists(path))

    def test_gfs_counts(self):
        schedule = self.env["db.backup.schedule"].create(
            {
                "frequency": "24h",
                "destination_ids": self.local_dest.ids,
                "retention_mode": "gfs",
                "keep_daily": 2,
                "keep_weekly": 0,
                "keep_monthly": 0,
            }
        )
        runs = [
            self._archive("24h", "202603%02dT020000Z" % day, schedule)[0]
            for day in (1, 2, 3, 4)
        ]
        with freeze_time("2026-03-05 00:00:00"):
            deleted = self.env["db.backup.run"]._cron_retention()
        self.assertEqual(deleted, runs[0] | runs[1])

    def test_only_this_database_archives_are_listed(self):
        """Several databases share a destination: each sees its own only."""
        db = self.env.cr.dbname
        shared = os.path.join(self.tmp_dir, "shared-dest")
        self.local_dest.active = False
        dest = self.env["db.backup.destination"].create(
            {"name": "Shared", "dest_type": "local", "local_path": shared}
        )
        other = os.path.join(
            shared, "otherdb", "otherdb_manual_20260101T000000Z.tar.zst.enc"
        )
        os.makedirs(os.path.dirname(other), exist_ok=True)
        with open(other, "wb") as handle:
            handle.write(b"theirs")
        mine = os.path.join(
            shared, db, "%s_pre-restore_20260102T000000Z.tar.zst.enc" % db
        )
        os.makedirs(os.path.dirname(mine), exist_ok=True)
        with open(mine, "wb") as handle:
            handle.write(b"mine")
        created = self.env["db.backup.run"]._sync_from_destinations()
        self.assertEqual(
            created.mapped("name"), ["%s/%s" % (db, os.path.basename(mine))]
        )
        self.assertEqual(created.kind, "pre_restore")
        self.assertEqual(created.label, "pre-restore")
        self.assertEqual(created.copy_ids.destination_id, dest)
        # a second scan adds nothing
        self.assertFalse(self.env["db.backup.run"]._sync_from_destinations())
