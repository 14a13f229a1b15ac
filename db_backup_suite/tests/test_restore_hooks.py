"""Post-restore hooks: each runs alone, a failing one is reported."""

from unittest.mock import patch

from odoo.tests import TransactionCase, tagged
from odoo.tools import SQL, mute_logger

from ..service import restore_job


@tagged("post_install", "-at_install")
class TestRestoreHooks(TransactionCase):
    def test_failing_hook_is_isolated_and_reported(self):
        seen = []

        def broken(model, info):
            # A database error aborts the transaction unless a savepoint
            # contains it.
            model.env.cr.execute(SQL("SELECT * FROM no_such_table_for_hooks"))

        def working(model, info):
            model.env["ir.config_parameter"].set_param(
                "db_backup_suite.test_hook", info["archive_name"]
            )
            seen.append(model._name)

        partner_cls = type(self.env["res.partner"])
        country_cls = type(self.env["res.country"])
        info = {"archive_name": "db/db_manual_20260101T000000Z.tar.zst.enc"}
        failures = []
        with (
            mute_logger("odoo.sql_db", restore_job.__name__),
            patch.object(partner_cls, "_on_database_restored", broken, create=True),
            patch.object(country_cls, "_on_database_restored", working, create=True),
        ):
            called = restore_job.call_restore_hooks(self.env, info, failures)
        self.assertIn("res.country", called)
        self.assertNotIn("res.partner", called)
        self.assertEqual(seen, ["res.country"])
        self.assertEqual([model for model, _error in failures], ["res.partner"])
        self.assertIn("no_such_table_for_hooks", failures[0][1])
        # The transaction is still usable and kept the working hook's write.
        self.assertEqual(
            self.env["ir.config_parameter"].get_param("db_backup_suite.test_hook"),
            info["archive_name"],
        )
