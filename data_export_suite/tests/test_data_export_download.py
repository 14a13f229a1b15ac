import os
from unittest.mock import patch

from odoo.tests import HttpCase, new_test_user, tagged

from suite_core.keyring import generate_key_line


@tagged("post_install", "-at_install")
class TestExportDownload(HttpCase):
    def test_download_round_trip_over_http(self):
        environ = {k: v for k, v in os.environ.items() if "SUITE_KEYRING" not in k}
        environ["SUITE_KEYRING"] = generate_key_line("h6http")
        self.startPatcher(patch.dict(os.environ, environ, clear=True))
        groups = "base.group_user,data_export_suite.export_group_user"
        owner = new_test_user(
            self.env, login="h6_dl_owner", password="h6_dl_owner_pw", groups=groups
        )
        new_test_user(
            self.env, login="h6_dl_other", password="h6_dl_other_pw", groups=groups
        )
        partner = self.env["res.partner"].create(
            {"name": "Downloaded Partner", "email": "dl@example.com"}
        )
        job = (
            self.env["data.export.job"]
            .with_user(owner)
            .create(
                {
                    "model_name": "res.partner",
                    "domain": repr([("id", "=", partner.id)]),
                    "field_paths": "id\nname\nemail",
                }
            )
        )
        action = job._launch()
        self.assertRegex(
            action["url"], rf"^/data_export_suite/download/{job.id}\?token=[\w-]{{43}}$"
        )
        self.authenticate("h6_dl_owner", "h6_dl_owner_pw")
        response = self.url_open(action["url"])
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, job._read_file())
        self.assertEqual(
            response.content.decode().splitlines(),
            ["id,name,email", f"{partner.id},Downloaded Partner,dl@example.com"],
        )
        self.assertIn(job.file_name, response.headers["Content-Disposition"])
        self.assertEqual(response.headers["Cache-Control"], "no-store")
        # The link worked once.
        response = self.url_open(action["url"])
        self.assertEqual(response.status_code, 403)
        self.assertNotIn(b"dl@example.com", response.content)
        # A fresh link of the owner is useless to another exporter.
        action = job.action_download()
        self.authenticate("h6_dl_other", "h6_dl_other_pw")
        response = self.url_open(action["url"])
        self.assertEqual(response.status_code, 403)
        self.assertNotIn(b"dl@example.com", response.content)
        # ...and still works for the owner (the refusal did not spend it).
        self.authenticate("h6_dl_owner", "h6_dl_owner_pw")
        response = self.url_open(action["url"])
        self.assertEqual(response.status_code, 200)
        self.assertIn(b"dl@example.com", response.content)
