import datetime as dt

from freezegun import freeze_time

from odoo.exceptions import AccessError, UserError
from odoo.tests import TransactionCase, new_test_user, tagged
from odoo.tools import SQL, mute_logger


@tagged("post_install", "-at_install")
class TestAuditEvent(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.auditor = new_test_user(
            cls.env,
            login="h5_auditor",
            groups="base.group_user,audit_export.audit_group_auditor",
        )
        cls.employee = new_test_user(
            cls.env, login="h5_employee", groups="base.group_user"
        )
        cls.Event = cls.env["audit.event"]

    def _log(self, n=1, **kwargs):
        events = self.Event
        for i in range(n):
            events |= self.Event.log_event(
                "backup",
                res_model="db.backup.run",
                res_id=i + 1,
                res_name=f"backup {i}",
                details={"size": i, "ok": True},
                **kwargs,
            )
        return events

    def test_log_event_api_as_plain_user(self):
        partner = self.env["res.partner"].create({"name": "Audited Partner"})
        event = self.Event.with_user(self.employee).log_event(
            "download",
            record=partner.with_user(self.employee),
            result="failure",
            details={"file": "x.zip"},
            message="denied",
        )
        self.assertEqual(event.action, "download")
        self.assertEqual(event.result, "failure")
        self.assertEqual(event.user_id, self.employee)
        self.assertEqual(event.login, "h5_employee")
        self.assertEqual((event.res_model, event.res_id), ("res.partner", partner.id))
        self.assertEqual(event.res_name, "Audited Partner")
        self.assertEqual(event.details, {"file": "x.zip"})
        self.assertEqual(event.message, "denied")
        self.assertEqual(len(event.digest), 64)
        with self.assertRaises(UserError):
            self.Event.log_event("no_such_action")
        with self.assertRaises(UserError):
            self.Event.log_event("backup", result="maybe")

    def test_events_are_append_only_even_for_superuser(self):
        event = self._log()
        for env_event in (
            event,
            event.sudo(),
            event.with_user(self.env.ref("base.user_admin")),
        ):
            with self.assertRaises(UserError):
                env_event.write({"res_name": "forged"})
            with self.assertRaises(UserError):
                env_event.unlink()
        self.assertEqual(event.res_name, "backup 0")

    def test_access_rights(self):
        event = self._log()
        with self.assertRaises(AccessError):
            self.Event.with_user(self.employee).search([])
        with self.assertRaises(AccessError):
            event.with_user(self.employee).read(["res_name"])
        self.assertEqual(
            event.with_user(self.auditor).read(["res_name"])[0]["res_name"], "backup 0"
        )
        with self.assertRaises(AccessError):
            self.env["audit.rule"].with_user(self.auditor).create(
                {"model_id": self.env.ref("base.model_res_partner").id}
            )
        with self.assertRaises(AccessError):
            self.Event.with_user(self.auditor).create(
                {"action": "login", "result": "success"}
            )

    def test_verify_intact_chain(self):
        self._log(5)
        report = self.Event._verify_chain()
        self.assertTrue(report["ok"], report["problem"])
        self.assertGreaterEqual(report["checked"], 5)
        action = self.Event.with_user(self.auditor).action_verify_integrity()
        self.assertEqual(action["res_model"], "audit.verify.wizard")
        Result = self.env["audit.verify.wizard"].with_user(self.auditor)
        result = Result.browse(action["res_id"])
        self.assertEqual(result.state, "intact")
        self.assertIn("Audit log intact", result.message)
        # The auditor reads the server's result; cannot write one.
        with self.assertRaises(AccessError):
            Result.create({"state": "intact", "message": "Audit log intact"})
        with self.assertRaises(AccessError):
            result.write({"state": "tampered"})

    def test_sql_update_detected(self):
        events = self._log(4)
        self.Event._verify_chain()
        target = events[2]
        self.env.cr.execute(
            SQL("UPDATE audit_event SET res_name = 'forged' WHERE id = %s", target.id)
        )
        report = self.Event._verify_chain()
        self.assertFalse(report["ok"])
        self.assertEqual(report["problem"]["kind"], "altered")
        self.assertEqual(report["problem"]["event_id"], target.id)
        action = self.Event.action_verify_integrity()
        result = self.env["audit.verify.wizard"].browse(action["res_id"])
        self.assertEqual(result.state, "tampered")
        self.assertEqual(result.problem_event_id.id, target.id)
        self.assertIn(f"event {target.id} ", result.message)

    def test_sql_update_of_details_detected(self):
        events = self._log(3)
        self.Event._verify_chain()
        self.env.cr.execute(
            SQL(
                'UPDATE audit_event SET details = \'{"size": 99, "ok": true}\' '
                "WHERE id = %s",
                events[1].id,
            )
        )
        report = self.Event._verify_chain()
        self.assertEqual(report["problem"]["event_id"], events[1].id)

    def test_sql_delete_detected(self):
        events = self._log(4)
        self.Event._verify_chain()
        self.env.cr.execute(SQL("DELETE FROM audit_event WHERE id = %s", events[1].id))
        report = self.Event._verify_chain()
        self.assertEqual(report["problem"]["kind"], "removed")
        # Named by the event right after the gap.
        self.assertEqual(report["problem"]["event_id"], events[2].id)

    def test_sql_delete_of_last_event_detected(self):
        events = self._log(3)
        self.Event._verify_chain()
        self.env.cr.execute(SQL("DELETE FROM audit_event WHERE id = %s", events[-1].id))
        report = self.Event._verify_chain()
        self.assertEqual(report["problem"]["kind"], "removed")

    def test_sql_insert_detected(self):
        events = self._log(3)
        self.Event._verify_chain()
        # A forged copy of a genuine event, appended at the next position
        # with the genuine digest and chain hash.
        self.env.cr.execute(
            SQL(
                "INSERT INTO audit_event (uuid, timestamp, action, result, "
                "res_name, digest, key_id, sequence, chain_hash) "
                "SELECT 'forged-uuid', timestamp, action, result, 'forged', "
                "digest, key_id, (SELECT max(sequence) + 1 FROM audit_event), "
                "chain_hash FROM audit_event WHERE id = %s RETURNING id",
                events[1].id,
            )
        )
        forged_id = self.env.cr.fetchone()[0]
        report = self.Event._verify_chain()
        self.assertFalse(report["ok"])
        self.assertEqual(report["problem"]["event_id"], forged_id)
        self.assertIn(str(forged_id), report["problem"]["message"])

    def test_sql_insert_without_chain_position_detected(self):
        self._log(2)
        self.Event._verify_chain()
        self.env.cr.execute(
            SQL(
                "INSERT INTO audit_event (uuid, timestamp, action, result, res_name) "
                "VALUES ('naive-forgery', now() at time zone 'UTC', 'login', "
                "'success', 'forged') RETURNING id"
            )
        )
        forged_id = self.env.cr.fetchone()[0]
        report = self.Event._verify_chain()
        self.assertFalse(report["ok"])
        self.assertEqual(report["problem"]["event_id"], forged_id)

    def test_retention_purge_keeps_chain_verifiable(self):
        self.env["ir.config_parameter"].sudo().set_param(
            "audit_export.retention_days", "30"
        )
        # Retention purges a prefix of the chain, so the "old" events must be
        # newer than every event already there (other addons' installs and
        # tests log real-time events): run the scenario after today.
        start = dt.datetime.now() + dt.timedelta(days=400)
        with freeze_time(start):
            old = self._log(3)
            self.Event._verify_chain()
        with freeze_time(start + dt.timedelta(days=60)):
            recent = self._log(2)
            self.Event._verify_chain()
            # Everything 30 days before goes, including install-time events.
            purged = self.Event._cron_purge()
        self.assertGreaterEqual(purged, 3)
        self.assertFalse(self.Event.search([("id", "in", old.ids)]))
        self.assertEqual(len(self.Event.search([("id", "in", recent.ids)])), 2)
        anchor = self.env["audit.checkpoint"].search([("kind", "=", "anchor")], limit=1)
        self.assertEqual(anchor.purged_count, purged)
        purge_event = self.Event.search([("action", "=", "purge")], limit=1)
        self.assertEqual(purge_event.details["purged"], purged)
        report = self.Event._verify_chain()
        self.assertTrue(report["ok"], report["problem"])
        self.assertEqual(report["anchor_sequence"], anchor.sequence)
        # Tampering after the purge is still detected.
        self.env.cr.execute(
            SQL("UPDATE audit_event SET login = 'x' WHERE id = %s", recent[0].id)
        )
        self.assertEqual(
            self.Event._verify_chain()["problem"]["event_id"], recent[0].id
        )

    def test_checkpoints_cannot_be_edited(self):
        self._log()
        self.Event._verify_chain()
        head = self.env["audit.checkpoint"].search([("kind", "=", "head")])
        self.assertTrue(head)
        with self.assertRaises(UserError):
            head.write({"sequence": 1})
        with self.assertRaises(UserError):
            head.unlink()

    @mute_logger("odoo.addons.audit_export.models.audit_event")
    def test_timestamps_normalized_and_ordered(self):
        with freeze_time("2024-05-06 07:08:09.123456"):
            event = self._log()
        self.assertEqual(event.timestamp, dt.datetime(2024, 5, 6, 7, 8, 9))
