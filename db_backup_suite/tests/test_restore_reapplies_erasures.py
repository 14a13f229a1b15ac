"""A backup taken before an erasure, restored afterwards, comes back without
the subject: the real engine backup, the real erasure (when gdpr_dsr is
installed; this addon does not depend on it, so the model is used by name),
and the restore job the wizard runs, with its ``_on_database_restored`` hooks.

The test's own database cannot be restored over under its running
transaction: like the end-to-end restore tests, a second database
(``dsr_copy_*``) is made from an engine backup of it, and everything happens there.
"""

import os
import unittest
import uuid
from unittest.mock import patch

from odoo import SUPERUSER_ID, api
from odoo.exceptions import UserError
from odoo.modules.registry import Registry
from odoo.tests import new_test_user, tagged
from odoo.tools import config

from ..service import backup_engine, restore_job
from .common import BackupCase, drop_test_databases

SUBJECT_EMAIL = "H13.Subject@Example.com"
SUBJECT_NAME = "H13 Subject Person"
NOTE = "H13 private note about the subject"
NO_MAIL = {
    "mail_create_nolog": True,
    "mail_create_nosubscribe": True,
    "mail_notrack": True,
    "tracking_disable": True,
    "no_reset_password": True,
}


@tagged("post_install", "-at_install")
class TestRestoreReappliesErasures(BackupCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if "dsr.request" not in cls.env:
            raise unittest.SkipTest("gdpr_dsr is not installed: no erasures")
        cls.second = "dsr_copy_%s" % uuid.uuid4().hex[:8]
        # the second database, its pre-restore safety copy (``<db>_pre_restore_*``)
        cls.addClassCleanup(drop_test_databases, cls.second)
        # the erasure register lives outside the database; keep the test's
        # own register in the class's temporary folder
        cls.register_dir = os.path.join(cls.tmp_dir, "dsr-register")
        cls.startClassPatcher(
            patch.dict(config.options, {"dsr_erasure_register_dir": cls.register_dir})
        )

    # helpers ---------------------------------------------------------------
    def _sinks(self):
        return [
            {
                "destination_id": self.local_dest.id,
                "config": self.local_dest._sink_config(),
            }
        ]

    def _backup(self, dbname):
        result = backup_engine.run_job(
            {
                "action": "backup",
                "db": backup_engine.db_params(dbname),
                "filestore": backup_engine.filestore_dir(dbname),
                "archive_label": "manual",
                "sinks": self._sinks(),
            }
        )
        self.assertTrue(result["copies"][0]["ok"], result)
        return result

    def _job(self, dbname, archive, target="production", **extra):
        job = {
            "database": dbname,
            "target": target,
            "requested_by": "h13 test",
            "archive_name": archive["name"],
            "archive_created_at": archive.get("created_at"),
            "db": backup_engine.db_params(dbname),
            "data_dir": config["data_dir"],
            "pre_restore_sinks": self._sinks(),
            "source": {"sink": self.local_dest._sink_config(), "name": archive["name"]},
        }
        job.update(extra)
        return job

    def _on(self, func, uid=SUPERUSER_ID):
        """Run ``func(env)`` in the second database and commit."""
        with Registry(self.second).cursor() as cr:
            return func(api.Environment(cr, uid, {"active_test": False}))

    def _subject_footprint(self, env):
        """What of the subject the database still holds."""
        partners = env["res.partner"].search(
            ["|", ("email", "=ilike", SUBJECT_EMAIL), ("name", "ilike", "H13 Subject")]
        )
        messages = env["mail.message"].search([("body", "ilike", NOTE)])
        return {
            "partners": sorted(partners.mapped("name")),
            "messages": messages.ids,
        }

    def _snapshot(self, env):
        """Every subject-related table, to compare before/after re-running the
        hooks (the request's own chatter and the audit log excluded)."""
        env.invalidate_all()
        return {
            "partners": sorted(
                env["res.partner"].search([]).mapped(lambda p: (p.id, p.name, p.email))
            ),
            "users": sorted(
                env["res.users"].search([]).mapped(lambda u: (u.id, u.login, u.active))
            ),
            "messages": sorted(
                env["mail.message"]
                .search([("model", "!=", "dsr.request")])
                .mapped(lambda m: (m.id, m.body, m.author_id.id))
            ),
            "attachments": sorted(
                env["ir.attachment"]
                .search([("res_model", "!=", "dsr.request")])
                .mapped(lambda a: (a.id, a.name, a.checksum))
            ),
        }

    # the test ----------------------------------------------------------------
    def test_backup_before_erasure_restored_without_subject(self):
        # 1. a second database from an engine backup of the test database
        base = self._backup(self.env.cr.dbname)
        created = restore_job.run_job(
            self._job(
                self.second,
                base,
                target="sandbox",
                sandbox_name=self.second,
                expected_uuid=self.env["ir.config_parameter"].get_param(
                    "database.uuid"
                ),
            )
        )
        self.assertTrue(created["ok"], created["message"])

        def prepare(env):
            # a database of its own (its own erasure register file); a restore
            # must bring this identity back with the data
            env["ir.config_parameter"].set_param("database.uuid", str(uuid.uuid4()))
            env["db.backup.destination"].create(
                {"name": "Local", "dest_type": "local", "local_path": self.local_dir}
            )
            officer = new_test_user(
                env,
                login="copy_officer",
                groups="base.group_user,gdpr_dsr.dsr_group_officer",
            )
            quiet = env(context=dict(env.context, **NO_MAIL))
            partner = quiet["res.partner"].create(
                {
                    "name": SUBJECT_NAME,
                    "email": SUBJECT_EMAIL,
                    "phone": "+32 470 13 13 13",
                }
            )
            contact = quiet["res.partner"].create(
                {
                    "name": SUBJECT_NAME + " (home)",
                    "parent_id": partner.id,
                    "type": "delivery",
                    "street": "13 Forgotten Street",
                }
            )
            bystander = quiet["res.partner"].create(
                {"name": "H13 Bystander", "email": "h13.bystander@example.org"}
            )
            note = partner.with_context(**NO_MAIL).message_post(
                body=NOTE,
                author_id=partner.id,
                message_type="comment",
                subtype_xmlid="mail.mt_note",
            )
            # the officer files and verifies the erasure request
            request = env(user=officer)["dsr.request"].create(
                {
                    "subject_email": SUBJECT_EMAIL,
                    "subject_name": SUBJECT_NAME,
                    "request_type": "erasure",
                    "regime": "gdpr",
                }
            )
            evidence = env(user=officer)["ir.attachment"].create(
                {
                    "name": "id-check.txt",
                    "raw": b"ID card checked at the counter",
                    "res_model": "dsr.request",
                    "res_id": request.id,
                }
            )
            request.write(
                {
                    "verification_method": "id_document",
                    "verification_attachment_ids": [(6, 0, evidence.ids)],
                }
            )
            request.action_verify()
            request.action_discover()
            return {
                "officer": officer.id,
                "request": request.id,
                "partner": partner.id,
                "contact": contact.id,
                "bystander": bystander.id,
                "note": note.id,
                "register": env["dsr.request"]._erasure_register().path,
            }

        ids = self._on(prepare)
        before = self._on(self._subject_footprint)
        self.assertEqual(
            before["partners"],
            sorted([SUBJECT_NAME, SUBJECT_NAME + " (home)"]),
        )
        self.assertEqual(before["messages"], [ids["note"]])

        # 2. the backup, taken before the erasure
        archive = self._backup(self.second)

        # 3. the erasure, through the wizard and its typed-email gate
        def wizard(typed):
            def confirm(env):
                env["dsr.erasure.wizard"].create(
                    {"request_id": ids["request"], "typed_email": typed}
                ).action_confirm()

            return confirm

        with self.assertRaises(UserError):
            self._on(wizard("someone.else@example.com"), uid=ids["officer"])
        self.assertEqual(self._on(self._subject_footprint), before)
        self._on(wizard(SUBJECT_EMAIL), uid=ids["officer"])

        def erased(env):
            request = env["dsr.request"].browse(ids["request"])
            self.assertEqual(request.state, "done")
            return {
                (line.res_model, line.res_id): line.result for line in request.line_ids
            }

        results = self._on(erased)
        self.assertEqual(results[("res.partner", ids["contact"])], "deleted")
        self.assertEqual(results[("mail.message", ids["note"])], "deleted")
        self.assertIn(
            results[("res.partner", ids["partner"])], ("deleted", "anonymized")
        )
        self.assertNotIn(("res.partner", ids["bystander"]), results)
        self.assertEqual(
            self._on(self._subject_footprint), {"partners": [], "messages": []}
        )
        self.assertTrue(os.path.exists(ids["register"]))

        # 4. restore the pre-erasure backup over the database, as the wizard does
        result = restore_job.run_job(self._job(self.second, archive))
        self.assertTrue(result["ok"], result["message"])
        self.assertNotIn("post-restore steps failed", result["message"])

        # 5. the restored database: the archive held the subject, the hook
        # erased it again
        def check_restored(env):
            restore_event = env["audit.event"].search(
                [("action", "=", "restore"), ("result", "=", "success")],
                order="id desc",
                limit=1,
            )
            self.assertEqual(restore_event.details["archive"], archive["name"])
            # the restore brought back the identity the register is kept under
            self.assertEqual(
                env["dsr.request"]._erasure_register().path, ids["register"]
            )
            reapplied = (
                env["audit.event"]
                .search([("action", "=", "dsr")], order="id")
                .filtered(
                    lambda e: (e.details or {}).get("step") == "reapplied_after_restore"
                )
            )
            self.assertEqual(len(reapplied), 1, reapplied.mapped("details"))
            changed = {
                (model, res_id)
                for model, res_id, _result in reapplied.details["changed"]
            }
            # the subject was back in the archive, and the hook erased it again
            self.assertIn(("res.partner", ids["partner"]), changed)
            self.assertIn(("res.partner", ids["contact"]), changed)
            self.assertIn(("mail.message", ids["note"]), changed)
            self.assertEqual(
                self._subject_footprint(env), {"partners": [], "messages": []}
            )
            for (model, res_id), outcome in results.items():
                if outcome == "deleted":
                    self.assertFalse(
                        env[model].browse(res_id).exists(), (model, res_id)
                    )
            partner = env["res.partner"].browse(ids["partner"])
            if partner.exists():  # anonymised where it must be kept
                self.assertFalse(partner.email)
                self.assertFalse(partner.phone)
                self.assertNotIn("H13", partner.name)
            self.assertFalse(env["res.partner"].browse(ids["contact"]).exists())
            self.assertFalse(env["mail.message"].browse(ids["note"]).exists())
            bystander = env["res.partner"].browse(ids["bystander"])
            self.assertEqual(
                (bystander.name, bystander.email),
                ("H13 Bystander", "h13.bystander@example.org"),
            )
            request = env["dsr.request"].browse(ids["request"])
            self.assertEqual(request.state, "done")
            self.assertFalse(request.subject_email)
            return restore_event.details["archive_created_at"], restore_event.details

        created_at, details = self._on(check_restored)
        self.assertTrue(created_at, details)

        # 6. running every hook again changes nothing
        snapshot = self._on(self._snapshot)
        info = {
            "archive_created_at": backup_engine.aware_utc(created_at),
            "archive_name": archive["name"],
            "target": "production",
            "database": self.second,
        }
        called = self._on(lambda env: restore_job.call_restore_hooks(env, info))
        self.assertIn("dsr.request", called)
        self.assertEqual(self._on(self._snapshot), snapshot)

        def last_reapply(env):
            events = (
                env["audit.event"]
                .search([("action", "=", "dsr")], order="id")
                .filtered(
                    lambda e: (e.details or {}).get("step") == "reapplied_after_restore"
                )
            )
            self.assertEqual(len(events), 2)
            return events[-1].details

        again = self._on(last_reapply)
        self.assertEqual((again["records"], again["changed"]), (0, []), again)
