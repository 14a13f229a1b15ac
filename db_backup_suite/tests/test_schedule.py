from datetime import datetime, timedelta

from freezegun import freeze_time

from odoo.exceptions import ValidationError
from odoo.tests import tagged

from ..models.db_backup_schedule import next_run_after
from .common import BackupCase


@tagged("post_install", "-at_install")
class TestNextRun(BackupCase):
    def test_next_run_per_frequency(self):
        now = datetime(2026, 3, 10, 13, 20)  # UTC; Europe/Brussels is UTC+1
        tz = "Europe/Brussels"
        expected = {
            "hourly": datetime(2026, 3, 10, 14, 0),
            # 02:00, 06:00, 10:00, 14:00 local -> 14:00 local = 13:00 UTC passed,
            # next slot 18:00 local = 17:00 UTC
            "4h": datetime(2026, 3, 10, 17, 0),
            "24h": datetime(2026, 3, 11, 1, 0),
            "3d": datetime(2026, 3, 11, 1, 0),
            "7d": datetime(2026, 3, 11, 1, 0),
            "15d": datetime(2026, 3, 11, 1, 0),
            "monthly": datetime(2026, 3, 11, 1, 0),
        }
        for frequency, when in expected.items():
            with self.subTest(frequency=frequency):
                self.assertEqual(next_run_after(frequency, 2, tz, now), when)

    def test_next_run_after_last_run(self):
        last = datetime(2026, 1, 31, 1, 0)  # 02:00 Brussels
        now = datetime(2026, 1, 31, 1, 5)
        tz = "Europe/Brussels"
        self.assertEqual(
            next_run_after("24h", 2, tz, now, last), datetime(2026, 2, 1, 1)
        )
        self.assertEqual(
            next_run_after("3d", 2, tz, now, last), datetime(2026, 2, 3, 1)
        )
        self.assertEqual(
            next_run_after("7d", 2, tz, now, last), datetime(2026, 2, 7, 1)
        )
        self.assertEqual(
            next_run_after("15d", 2, tz, now, last), datetime(2026, 2, 15, 1)
        )
        # January 31st + 1 month: the last day of February
        self.assertEqual(
            next_run_after("monthly", 2, tz, now, last), datetime(2026, 2, 28, 1)
        )

    def test_dst_change_keeps_local_hour(self):
        # Brussels switches to summer time on 2026-03-29: 02:00 local then
        # does not exist; the day after, 02:00 local is 00:00 UTC.
        last = datetime(2026, 3, 29, 1, 0)
        now = datetime(2026, 3, 29, 2, 0)
        self.assertEqual(
            next_run_after("24h", 2, "Europe/Brussels", now, last),
            datetime(2026, 3, 30, 0, 0),
        )

    def test_hour_is_validated(self):
        with self.assertRaisesRegex(ValidationError, "0 to 23"):
            self.env["db.backup.schedule"].create(
                {"frequency": "24h", "hour": 25, "destination_ids": self.local_dest.ids}
            )
        with self.assertRaises(ValidationError):
            self.env["db.backup.schedule"].create(
                {
                    "frequency": "24h",
                    "retention_days": 0,
                    "destination_ids": self.local_dest.ids,
                }
            )

    def test_settings_changes_are_audited(self):
        """Create, change and delete: one ``settings`` event each, naming
        the schedule and the fields changed (never their values); what the
        scheduler writes itself is not a settings change."""
        schedule = self.env["db.backup.schedule"].create(
            {
                "name": "Nightly",
                "frequency": "24h",
                "destination_ids": self.local_dest.ids,
            }
        )
        schedule.write({"retention_days": 14, "hour": 3})
        schedule._reschedule()
        schedule_id = schedule.id
        schedule.unlink()
        events = self.env["audit.event"].search(
            [
                ("action", "=", "settings"),
                ("res_model", "=", "db.backup.schedule"),
                ("res_id", "=", schedule_id),
            ],
            order="id",
        )
        self.assertEqual(
            events.mapped("message"),
            [
                "Backup schedule Nightly: create",
                "Backup schedule Nightly: write",
                "Backup schedule Nightly: delete",
            ],
        )
        self.assertEqual(
            events.mapped("details"),
            [
                {"operation": "create", "fields": []},
                {"operation": "write", "fields": ["hour", "retention_days"]},
                {"operation": "delete", "fields": []},
            ],
        )

    def test_default_retention_is_seven_days(self):
        schedule = self.env["db.backup.schedule"].create(
            {"frequency": "24h", "destination_ids": self.local_dest.ids}
        )
        self.assertEqual(schedule.retention_mode, "days")
        self.assertEqual(schedule.retention_days, 7)

    def test_due_schedules_are_queued_with_their_label(self):
        """For every frequency: not due before next_run, queued at next_run,
        then rescheduled one period later."""
        self.env.company.partner_id.tz = "UTC"
        Run = self.env["db.backup.run"]
        cases = {
            "hourly": (
                "2026-05-04 10:30:00",
                "2026-05-04 11:00:00",
                "2026-05-04 12:00:00",
            ),
            "4h": ("2026-05-04 10:30:00", "2026-05-04 14:00:00", "2026-05-04 18:00:00"),
            "24h": (
                "2026-05-04 10:30:00",
                "2026-05-05 02:00:00",
                "2026-05-06 02:00:00",
            ),
            "3d": ("2026-05-04 10:30:00", "2026-05-05 02:00:00", "2026-05-08 02:00:00"),
            "7d": ("2026-05-04 10:30:00", "2026-05-05 02:00:00", "2026-05-12 02:00:00"),
            "15d": (
                "2026-05-04 10:30:00",
                "2026-05-05 02:00:00",
                "2026-05-20 02:00:00",
            ),
            "monthly": (
                "2026-05-04 10:30:00",
                "2026-05-05 02:00:00",
                "2026-06-05 02:00:00",
            ),
        }
        for frequency, (created, first, second) in cases.items():
            with self.subTest(frequency=frequency):
                with freeze_time(created):
                    schedule = self.env["db.backup.schedule"].create(
                        {
                            "frequency": frequency,
                            "hour": 2,
                            "destination_ids": self.local_dest.ids,
                        }
                    )
                self.assertEqual(str(schedule.next_run), first)
                with freeze_time(datetime.fromisoformat(first) - timedelta(seconds=1)):
                    self.assertFalse(Run._queue_due_schedules())
                with freeze_time(first):
                    runs = Run._queue_due_schedules()
                self.assertEqual(len(runs), 1)
                self.assertEqual(runs.schedule_id, schedule)
                self.assertEqual(runs.label, schedule._label())
                self.assertEqual(runs.kind, "scheduled")
                self.assertEqual(runs.state, "queued")
                self.assertEqual(str(schedule.next_run), second)
                # one backup at a time: the queued run blocks the next one
                runs.state = "failed"
                schedule.active = False
