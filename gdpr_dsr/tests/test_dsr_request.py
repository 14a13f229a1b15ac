from datetime import date

from freezegun import freeze_time

from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged

from .common import SUBJECT_EMAIL, DsrCase, make_verified_request


@tagged("post_install", "-at_install")
class TestDsrRequest(DsrCase):
    def test_register_sequence_deadline_and_overdue(self):
        env = self.officer_env()
        with freeze_time("2026-03-01"):
            gdpr = env["dsr.request"].create(
                {
                    "subject_email": SUBJECT_EMAIL,
                    "received_date": "2026-01-10",
                }
            )
            ccpa = env["dsr.request"].create(
                {
                    "subject_email": SUBJECT_EMAIL,
                    "regime": "ccpa",
                    "received_date": "2026-02-20",
                }
            )
            self.assertRegex(gdpr.name, r"^DSR/2026/\d{4}$")
            self.assertNotEqual(gdpr.name, ccpa.name)
            self.assertEqual(gdpr.deadline, date(2026, 2, 9))
            self.assertEqual(ccpa.deadline, date(2026, 4, 6))
            self.assertTrue(gdpr.is_overdue)
            self.assertFalse(ccpa.is_overdue)
            overdue = env["dsr.request"].search(
                [
                    ("id", "in", (gdpr | ccpa).ids),
                    ("is_overdue", "=", True),
                ]
            )
            self.assertEqual(overdue, gdpr)
            not_overdue = env["dsr.request"].search(
                [
                    ("id", "in", (gdpr | ccpa).ids),
                    ("is_overdue", "=", False),
                ]
            )
            self.assertEqual(not_overdue, ccpa)
        self.assertEqual(gdpr.state, "received")
        events = (
            self.env["audit.event"]
            .sudo()
            .search(
                [
                    ("res_model", "=", "dsr.request"),
                    ("res_id", "=", gdpr.id),
                ]
            )
        )
        self.assertEqual(len(events), 1)
        self.assertEqual(events.action, "dsr")

    def test_invalid_email_refused(self):
        with self.assertRaises(UserError):
            self.officer_env()["dsr.request"].create({"subject_email": "not-an-email"})

    def test_verification_requires_method_and_evidence(self):
        env = self.officer_env()
        request = env["dsr.request"].create({"subject_email": SUBJECT_EMAIL})
        with self.assertRaises(UserError):
            request.action_verify()
        request.verification_method = "email_challenge"
        with self.assertRaises(UserError):
            request.action_verify()
        # nothing can be released before verification
        with self.assertRaises(UserError):
            request.action_open_package_wizard()
        verified = make_verified_request(env, "access")
        self.assertEqual(verified.state, "verified")
        self.assertEqual(verified.verified_by_id, self.officer)
        self.assertTrue(verified.verified_on)

    def test_reject_needs_reason(self):
        request = self.officer_env()["dsr.request"].create(
            {"subject_email": SUBJECT_EMAIL}
        )
        with self.assertRaises(UserError):
            request.action_reject()
        request.rejection_reason = "Identity could not be verified"
        request.action_reject()
        self.assertEqual(request.state, "rejected")
        steps = (
            self.env["audit.event"]
            .sudo()
            .search(
                [
                    ("res_model", "=", "dsr.request"),
                    ("res_id", "=", request.id),
                ]
            )
            .mapped(lambda e: (e.details or {}).get("step"))
        )
        self.assertEqual(sorted(steps), ["received", "rejected"])
        with self.assertRaises(UserError):
            request.action_discover()

    def test_reminder_activity_for_assignee_once(self):
        env = self.officer_env()
        with freeze_time("2026-03-01"):
            due = env["dsr.request"].create(
                {
                    "subject_email": SUBJECT_EMAIL,
                    "received_date": "2026-02-05",
                }
            )
            later = env["dsr.request"].create(
                {
                    "subject_email": SUBJECT_EMAIL,
                    "received_date": "2026-02-27",
                }
            )
            requests = due | later
            self.env["dsr.request"]._cron_remind_deadlines()
            self.env["dsr.request"]._cron_remind_deadlines()
        activities = self.env["mail.activity"].search(
            [
                ("res_model", "=", "dsr.request"),
                ("res_id", "in", requests.ids),
            ]
        )
        self.assertEqual(len(activities), 1)
        self.assertEqual(activities.res_id, due.id)
        self.assertEqual(activities.user_id, self.officer)
        self.assertEqual(activities.date_deadline, date(2026, 3, 7))

    def test_outsider_and_auditor_access(self):
        request = make_verified_request(self.officer_env(), "erasure")
        request.action_discover()
        # an internal user outside the officer group sees nothing
        with self.assertRaises(AccessError):
            request.with_user(self.outsider).read(["name"])
        with self.assertRaises(AccessError):
            self.env["dsr.request"].with_user(self.outsider).create(
                {"subject_email": SUBJECT_EMAIL}
            )
        with self.assertRaises(AccessError):
            request.with_user(self.outsider).action_discover()
        # auditors read the register but cannot act on it
        as_auditor = request.with_user(self.auditor)
        self.assertEqual(as_auditor.read(["state"])[0]["state"], "in_progress")
        self.assertTrue(as_auditor.line_ids)
        with self.assertRaises(AccessError):
            as_auditor._erase(SUBJECT_EMAIL)
        with self.assertRaises(AccessError):
            as_auditor._generate_package()
        with self.assertRaises(AccessError):
            as_auditor.write({"subject_phone": "123"})
        self.assertTrue(self.subject["partner"].exists())
