import csv
import io
import json
import re

import openpyxl

from odoo.tests import HttpCase, new_test_user, tagged


@tagged("post_install", "-at_install")
class TestAuditHttp(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Event = cls.env["audit.event"]
        cls.auditor = new_test_user(
            cls.env,
            login="h5_http_auditor",
            password="h5_http_auditor_pw1",
            groups="base.group_user,audit_export.audit_group_auditor",
        )
        cls.employee = new_test_user(
            cls.env,
            login="h5_http_employee",
            password="h5_http_employee_pw1",
            groups="base.group_user",
        )

    def _web_login(self, login, password):
        page = self.url_open("/web/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        return self.url_open(
            "/web/login",
            data={"login": login, "password": password, "csrf_token": token},
        )

    def _last(self, action, login):
        return self.Event.search(
            [("action", "=", action), ("login", "=", login)], limit=1, order="id desc"
        )

    def test_login_success_and_failures(self):
        self._web_login("h5_http_employee", "h5_http_employee_pw1")
        ok = self._last("login", "h5_http_employee")
        self.assertEqual(ok.result, "success")
        self.assertEqual(ok.user_id, self.employee)
        self.assertEqual(ok.ip_address, "127.0.0.1")
        self.assertTrue(ok.user_agent)

        self.url_open("/web/session/logout")
        out = self._last("logout", "h5_http_employee")
        self.assertEqual(out.user_id, self.employee)

        self._web_login("h5_http_employee", "wrong password")
        failed = self._last("login_failed", "h5_http_employee")
        self.assertEqual(failed.result, "failure")
        self.assertEqual(failed.ip_address, "127.0.0.1")
        self.assertFalse(failed.user_id)
        self.assertNotIn("wrong password", json.dumps(failed.details))

        self._web_login("h5_nobody_at_all", "whatever")
        unknown = self._last("login_failed", "h5_nobody_at_all")
        self.assertEqual(unknown.result, "failure")
        # The failed attempts survive their rolled-back transactions, sealed.
        self.assertTrue(self.Event._verify_chain()["ok"])

    def _export(self, **wizard_vals):
        self.authenticate("h5_http_auditor", "h5_http_auditor_pw1")
        wizard = (
            self.env["audit.export.wizard"]
            .with_user(self.auditor)
            .create({"action": "backup", **wizard_vals})
        )
        action = wizard.action_export()
        self.assertEqual(action["target"], "download")
        response = self.url_open(action["url"])
        self.assertEqual(response.status_code, 200, response.text[:500])
        return response

    def _make_events(self):
        first = self.Event.log_event(
            "backup",
            res_model="db.backup.run",
            res_id=7,
            res_name='=HYPERLINK("x")',
            details={"size": 10},
        )
        second = self.Event.log_event(
            "backup",
            res_model="db.backup.run",
            res_id=8,
            res_name="nightly",
            result="failure",
            message="@SUM(1)",
        )
        return first + second

    def test_export_csv_exact_content(self):
        events = self._make_events()
        response = self._export(
            file_format="csv", delimiter="semicolon", bom=True, tz="Europe/Brussels"
        )
        self.assertTrue(response.content.startswith(b"\xef\xbb\xbf"))
        rows = list(
            csv.reader(io.StringIO(response.content[3:].decode()), delimiter=";")
        )
        self.assertEqual(
            rows[0][:6],
            ["Timestamp", "User", "Action", "Resource", "IP address", "Result"],
        )
        body = rows[1:]
        self.assertEqual(len(body), 2)
        first, second = events
        self.assertEqual(
            body[0][0],
            first.timestamp.replace(tzinfo=__import__("datetime").UTC)
            .astimezone(__import__("zoneinfo").ZoneInfo("Europe/Brussels"))
            .isoformat(),
        )
        self.assertEqual(body[0][2], "Backup")
        self.assertEqual(body[0][3], '\'=HYPERLINK("x") (db.backup.run,7)')
        self.assertEqual(body[0][5], "Success")
        self.assertEqual(json.loads(body[0][6]), {"size": 10})
        self.assertEqual(body[1][3], "nightly (db.backup.run,8)")
        self.assertEqual(body[1][5], "Failure")
        self.assertEqual(body[1][8], "'@SUM(1)")
        self.assertEqual(body[1][9], second.uuid)
        # The export is itself an audit event.
        export = self._last("export", "h5_http_auditor")
        self.assertEqual(export.details["events"], 2)
        self.assertEqual(export.details["format"], "csv")

    def test_export_json_exact_content(self):
        first, second = self._make_events()
        items = json.loads(self._export(file_format="json", tz="UTC").content)
        self.assertEqual([i["uuid"] for i in items], [first.uuid, second.uuid])
        self.assertEqual(items[0]["timestamp"], first.timestamp.isoformat() + "+00:00")
        self.assertEqual(
            items[0]["resource"],
            {"model": "db.backup.run", "id": 7, "name": '=HYPERLINK("x")'},
        )
        self.assertEqual(items[1]["result"], "failure")
        self.assertEqual(items[1]["message"], "@SUM(1)")
        self.assertEqual(items[0]["details"], {"size": 10})

    def test_export_xlsx_exact_content(self):
        first, _second = self._make_events()
        content = self._export(file_format="xlsx", tz="UTC").content
        sheet = openpyxl.load_workbook(io.BytesIO(content)).active
        rows = [[c.value for c in r] for r in sheet.iter_rows()]
        self.assertEqual(rows[0][0], "Timestamp (UTC)")
        self.assertEqual(len(rows), 3)
        self.assertEqual(rows[1][0], first.timestamp)
        cell = sheet.cell(row=2, column=4)
        self.assertEqual(cell.value, '=HYPERLINK("x") (db.backup.run,7)')
        self.assertEqual(cell.data_type, "s")
        self.assertTrue(cell.quotePrefix)

    def test_export_refused_without_auditor_group(self):
        self._make_events()
        self.authenticate("h5_http_employee", "h5_http_employee_pw1")
        wizard = self.env["audit.export.wizard"].sudo().create({"file_format": "csv"})
        response = self.url_open(f"/audit_export/download/{wizard.id}")
        self.assertNotEqual(response.status_code, 200)
