"""Chunked, resumable uploads and prepared downloads over real HTTP.

Uploads (controllers/upload.py, lib/uploads.py): in chunks, a chunk cut by
a dropped connection and resumed, a repeated chunk, a gap; the wizard reads
the archive from the finished upload and the upload is removed when the
restore ends (success or failure); other users and roles, a missing CSRF
token, path traversal in ids and the size limit are refused with nothing
written; the daily cron removes day-old uploads only.

Downloads (lib/downloads.py, controllers/main.py): prepared by a detached
process (not the worker), sent from a local file with a single-use link,
removed once sent.
"""

import contextlib
import hashlib
import io
import json
import os
import re
import socket
import stat
import time
from urllib.parse import urlparse

from odoo.exceptions import AccessError, UserError
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tools import mute_logger

from ..lib import crypto, downloads, uploads
from ..service import backup_engine, restore_job
from .common import KeyringMixin, drop_derived_databases

PASSWORD = "Correct-Horse-42-battery!"
DOWNLOAD = "db.backup.download.wizard"


def wait_prepared(wizard, timeout=120):
    """Wait for the preparation of a download wizard to end; its status."""
    deadline = time.monotonic() + timeout
    while True:
        status = wizard.download_status()
        if status["state"] != "running" or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def prepared_download_action(wizard, timeout=120):
    """``action_download`` twice: start the preparation, wait for it, then
    the one-time link (in-process callers)."""
    wizard.action_download()
    status = wait_prepared(wizard, timeout)
    if status["state"] != "done":
        raise AssertionError("download not prepared: %s" % status)
    return wizard.action_download()


def rpc_prepared_download_action(test, login, wizard_id, timeout=120):
    """The same over JSON-RPC as ``login`` (``test.rpc_as`` / ``test.assertRpcOk``)."""
    test.assertRpcOk(test.rpc_as(login, DOWNLOAD, "action_download", [wizard_id]))
    deadline = time.monotonic() + timeout
    while True:
        status = test.assertRpcOk(
            test.rpc_as(login, DOWNLOAD, "download_status", [wizard_id])
        )
        if status["state"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if status["state"] != "done":
        raise AssertionError("download not prepared: %s" % status)
    return test.assertRpcOk(
        test.rpc_as(login, DOWNLOAD, "action_download", [wizard_id])
    )


@tagged("post_install", "-at_install")
class TestChunkedUpload(KeyringMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        cls.setup_local_destination()
        groups = "base.group_user,db_backup_suite.backup_group_restore"
        cls.restorer = new_test_user(cls.env, login="h6_up_restorer", groups=groups)
        cls.restorer2 = new_test_user(cls.env, login="h6_up_restorer2", groups=groups)
        cls.operator = new_test_user(
            cls.env,
            login="h6_up_operator",
            groups="base.group_user,db_backup_suite.backup_group_operator",
        )
        cls.backup_run = cls.env["db.backup.run"]._queue_backup(kind="manual")
        cls.env["db.backup.run"]._run_queued()
        cls.backup_run.invalidate_recordset()
        copy = cls.backup_run.copy_ids.filtered(lambda c: c.state == "done")[:1]
        with open(os.path.join(cls.local_dir, copy.object_name), "rb") as handle:
            cls.archive = handle.read()
        cls.base = backup_engine.jobs_dir()
        cls.folder = uploads.upload_dir(cls.base)
        cls.addClassCleanup(drop_derived_databases, cls.env.cr.dbname)

    # -- helpers ---------------------------------------------------------
    def login(self, user):
        self.authenticate(user.login, user.login)
        page = self.url_open("/odoo").text
        self.csrf = re.search(r'csrf_token: "([0-9a-fo]+)"', page).group(1)

    def post(self, path, body=None, csrf=True, content_type="application/json"):
        headers = {"Content-Type": content_type}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        if body is None or isinstance(body, dict):
            # never empty: an empty body would make url_open send a GET
            body = json.dumps(body or {}).encode()
        return self.url_open(path, data=body, headers=headers, timeout=60)

    def open_upload(self, size, **extra):
        return self.post("/db_backup_suite/upload/open", dict(extra, size=size))

    def chunk(self, upload_id, offset, data, **kwargs):
        return self.post(
            "/db_backup_suite/upload/%s/chunk?offset=%s" % (upload_id, offset),
            data,
            content_type="application/octet-stream",
            **kwargs,
        )

    def files(self):
        return sorted(os.listdir(self.folder))

    def cut_chunk(self, upload_id, offset, data):
        """Send a chunk whose connection drops half-way (raw socket)."""
        url = urlparse(self.base_url())
        head = (
            "POST /db_backup_suite/upload/%s/chunk?offset=%s HTTP/1.1\r\n"
            "Host: %s\r\nCookie: session_id=%s\r\nX-CSRF-Token: %s\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: %s\r\n"
            "Connection: close\r\n\r\n"
            % (
                upload_id,
                offset,
                url.netloc,
                self.session.sid,
                self.csrf,
                len(data),
            )
        )
        with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
            sock.sendall(head.encode() + data[: len(data) // 2])
            time.sleep(0.5)
            sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                sock.recv(65536)

    def upload_archive(self, data, piece=None):
        digest = hashlib.sha256(data).hexdigest()
        answer = self.open_upload(len(data), sha256=digest, filename="a.tar.zst.enc")
        self.assertEqual(answer.status_code, 200, answer.text)
        upload_id = answer.json()["id"]
        piece = piece or max(len(data) // 3 + 1, 1)
        for offset in range(0, len(data), piece):
            answer = self.chunk(upload_id, offset, data[offset : offset + piece])
            self.assertEqual(answer.status_code, 200, answer.text)
        answer = self.post("/db_backup_suite/upload/%s/finish" % upload_id)
        self.assertEqual(answer.status_code, 200, answer.text)
        return upload_id

    # -- uploads -----------------------------------------------------------
    def test_chunks_resume_read_restore_removed(self):
        self.assertEqual(self.backup_run.state, "done", self.backup_run.error)
        self.login(self.restorer)
        data = self.archive
        third = len(data) // 3 + 1
        answer = self.open_upload(
            len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            filename="../../offsite.tar.zst.enc",
        )
        self.assertEqual(answer.status_code, 200, answer.text)
        upload_id = answer.json()["id"]
        self.assertRegex(upload_id, r"^[0-9a-f]{32}$")
        part = os.path.join(self.folder, upload_id + ".part")
        self.assertEqual(stat.S_IMODE(os.stat(part).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.folder).st_mode), 0o700)
        self.assertEqual(self.chunk(upload_id, 0, data[:third]).json()["offset"], third)
        # the connection drops in the middle of the second chunk
        self.cut_chunk(upload_id, third, data[third : 2 * third])
        status = self.post("/db_backup_suite/upload/%s/status" % upload_id).json()
        self.assertEqual(status["offset"], third, "a cut chunk is not kept")
        self.assertEqual(os.path.getsize(part), third)
        # the first chunk again (its answer lost): accepted, nothing written
        answer = self.chunk(upload_id, 0, data[:third])
        self.assertEqual((answer.status_code, answer.json()["offset"]), (200, third))
        # a gap is refused, with where to resume
        answer = self.chunk(upload_id, 2 * third, data[2 * third :])
        self.assertEqual(answer.status_code, 409)
        self.assertEqual(answer.json()["offset"], third)
        self.assertIn("missing", answer.json()["error"])
        # finishing early says where to resume
        answer = self.post("/db_backup_suite/upload/%s/finish" % upload_id)
        self.assertEqual((answer.status_code, answer.json()["offset"]), (409, third))
        for offset in (third, 2 * third):
            answer = self.chunk(upload_id, offset, data[offset : offset + third])
            self.assertEqual(answer.status_code, 200, answer.text)
        answer = self.post("/db_backup_suite/upload/%s/finish" % upload_id)
        self.assertEqual(answer.status_code, 200, answer.text)
        self.assertTrue(answer.json()["finished"])
        with open(part, "rb") as handle:
            self.assertEqual(handle.read(), data)

        # the wizard reads the archive from the finished upload
        wizard = (
            self.env["db.backup.restore.wizard"]
            .with_user(self.restorer)
            .create({"source": "upload", "upload_id": upload_id, "target": "sandbox"})
        )
        self.assertEqual(wizard.upload_filename, "offsite.tar.zst.enc")
        self.assertEqual(wizard.archive_name, "offsite.tar.zst.enc")
        self.assertTrue(wizard.compatible, wizard.incompatibility)
        self.assertEqual(wizard.source_db_name, self.env.cr.dbname)
        self.assertTrue(os.path.exists(part), "kept until the restore")
        result = wizard._restore_now()
        self.assertTrue(result["ok"], result["message"])
        self.assertEqual(wizard.sandbox_id.state, "ready")
        self.assertFalse(os.path.exists(part), "removed after the restore")
        self.assertNotIn(upload_id + ".json", self.files())

    def test_failed_restore_removes_the_upload(self):
        base, owner = self.base, {"database": self.env.cr.dbname, "uid": 2}
        meta = uploads.open_upload(base, size=5, **owner)
        uploads.write_chunk(
            base,
            meta["id"],
            offset=0,
            stream=io.BytesIO(b"junk!"),
            length=5,
            **owner,
        )
        uploads.finish(base, meta["id"], **owner)
        path = uploads.part_path(base, meta["id"])
        job = {
            "database": self.env.cr.dbname,
            "target": "sandbox",
            "sandbox_name": self.env.cr.dbname + "-sandbox-h6fail",
            "expected_uuid": self.env["ir.config_parameter"].get_param("database.uuid"),
            "source": {"path": path, "password": None, "remove_after": True},
            "archive_name": "junk",
            "db": backup_engine.db_params(self.env.cr.dbname),
            "data_dir": backup_engine.data_dir(),
        }
        with mute_logger("odoo.addons.db_backup_suite.service.restore_job"):
            result = restore_job.run_job(job)
        self.assertFalse(result["ok"])
        self.assertFalse(os.path.exists(path), "removed after a failed restore")
        self.assertNotIn(meta["id"] + ".json", self.files())

    def test_other_roles_and_users_refused_nothing_written(self):
        self.login(self.restorer)
        upload_id = self.upload_archive(b"0123456789")
        part = os.path.join(self.folder, upload_id + ".part")
        mine = self.open_upload(10).json()["id"]
        before = self.files()
        # a Backup Operator: no route at all
        self.login(self.operator)
        answer = self.open_upload(10)
        self.assertEqual(answer.status_code, 403)
        self.assertIn("error", answer.json())
        for action in ("status", "finish"):
            self.assertEqual(
                self.post("/db_backup_suite/upload/%s/%s" % (mine, action)).status_code,
                403,
            )
        self.assertEqual(self.chunk(mine, 0, b"x" * 10).status_code, 403)
        # another restore user: someone else's upload does not exist for them
        self.login(self.restorer2)
        self.assertEqual(self.chunk(mine, 0, b"x" * 10).status_code, 404)
        for action in ("status", "finish"):
            answer = self.post("/db_backup_suite/upload/%s/%s" % (mine, action))
            self.assertEqual(answer.status_code, 404)
        with self.assertRaisesRegex(UserError, "not yours"):
            self.env["db.backup.restore.wizard"].with_user(self.restorer2).create(
                {"source": "upload", "upload_id": upload_id}
            )
        # no CSRF token (a page of another site): refused
        self.login(self.restorer)
        self.assertEqual(self.chunk(mine, 0, b"x" * 10, csrf=False).status_code, 403)
        answer = self.post("/db_backup_suite/upload/open", {"size": 10}, csrf=False)
        self.assertEqual(answer.status_code, 403)
        self.assertEqual(self.files(), before)
        self.assertEqual(os.path.getsize(os.path.join(self.folder, mine + ".part")), 0)
        self.assertEqual(os.path.getsize(part), 10)

    def test_path_traversal_in_ids_refused(self):
        self.login(self.restorer)
        outside = os.path.join(self.base, "victim.part")
        with open(outside, "wb") as handle:
            handle.write(b"keep")
        self.addCleanup(os.unlink, outside)
        before = self.files()
        for bad in ("..", "..%2Fvictim", "%2E%2E%2Fvictim", "victim", "A" * 32):
            answer = self.chunk(bad, 0, b"evil")
            self.assertIn(answer.status_code, (404, 405), bad)
            answer = self.post("/db_backup_suite/upload/%s/finish" % bad)
            self.assertIn(answer.status_code, (404, 405), bad)
        with open(outside, "rb") as handle:
            self.assertEqual(handle.read(), b"keep")
        self.assertEqual(self.files(), before)
        for bad in ("../victim", "../../etc/passwd", "/etc/passwd"):
            with self.assertRaisesRegex(UserError, "not yours"):
                self.env["db.backup.restore.wizard"].with_user(self.restorer).create(
                    {"source": "upload", "upload_id": bad}
                )

    def test_size_limit_refused_clearly(self):
        self.env["ir.config_parameter"].set_param(
            "db_backup_suite.upload_max_bytes", "1000"
        )
        self.login(self.restorer)
        before = self.files()
        answer = self.open_upload(2000)
        self.assertEqual(answer.status_code, 413)
        self.assertIn("larger than the largest upload allowed", answer.json()["error"])
        self.assertIn("db_backup_suite.upload_max_bytes", answer.json()["error"])
        # more than the free disk space, under the limit
        self.env["ir.config_parameter"].set_param(
            "db_backup_suite.upload_max_bytes", str(1 << 60)
        )
        answer = self.open_upload(1 << 59)
        self.assertEqual(answer.status_code, 507)
        self.assertIn("free disk space", answer.json()["error"])
        self.assertEqual(self.files(), before)
        # a chunk past the declared size
        upload_id = self.open_upload(4).json()["id"]
        answer = self.chunk(upload_id, 0, b"12345")
        self.assertEqual(answer.status_code, 413)
        self.assertEqual(
            os.path.getsize(os.path.join(self.folder, upload_id + ".part")), 0
        )

    def test_cron_removes_day_old_uploads_and_downloads_only(self):
        owner = {"database": self.env.cr.dbname, "uid": self.restorer.id}
        old = uploads.open_upload(self.base, size=4, **owner)["id"]
        fresh = uploads.open_upload(self.base, size=4, **owner)["id"]
        day_ago = time.time() - 25 * 3600
        for name in (old + ".part", old + ".json"):
            os.utime(os.path.join(self.folder, name), (day_ago, day_ago))
        old_dl, fresh_dl = "a" * 32, "b" * 32
        for download_id in (old_dl, fresh_dl):
            with open(downloads.file_path(self.base, download_id), "wb") as handle:
                handle.write(b"x")
        os.utime(downloads.file_path(self.base, old_dl), (day_ago, day_ago))
        cron = self.env.ref("db_backup_suite.ir_cron_db_backup_remove_stale_uploads")
        self.assertEqual(cron.interval_type, "days")
        cron.method_direct_trigger()
        files = self.files()
        self.assertNotIn(old + ".part", files)
        self.assertNotIn(old + ".json", files)
        self.assertIn(fresh + ".part", files)
        self.assertFalse(os.path.exists(downloads.file_path(self.base, old_dl)))
        self.assertTrue(os.path.exists(downloads.file_path(self.base, fresh_dl)))
        uploads.remove(self.base, fresh)
        downloads.remove(self.base, fresh_dl)

    # -- downloads ---------------------------------------------------------
    def test_download_prepared_outside_the_worker_single_use_removed(self):
        self.authenticate(self.restorer.login, self.restorer.login)
        wizard = (
            self.env[DOWNLOAD]
            .with_user(self.restorer)
            .create(
                {
                    "run_id": self.backup_run.id,
                    "password": PASSWORD,
                    "password_confirm": PASSWORD,
                }
            )
        )
        first = wizard.action_download()
        self.assertEqual(first["type"], "ir.actions.act_window", "prepared first")
        self.assertFalse(wizard.sudo().password_sealed, "the password left")
        status = wait_prepared(wizard)
        self.assertEqual(status["state"], "done", status)
        prepare_id = wizard.sudo().prepare_id
        path = downloads.file_path(self.base, prepare_id)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        # re-encrypted by another process than this server's
        written_by = downloads.read_status(self.base, prepare_id)["pid"]
        self.assertNotEqual(written_by, os.getpid())
        size = os.path.getsize(path)
        # another restore user cannot see its progress or take its link
        with self.assertRaises(AccessError):
            wizard.with_user(self.restorer2).download_status()
        action = wizard.action_download()
        self.assertEqual(action["type"], "ir.actions.act_url")
        self.authenticate(self.restorer2.login, self.restorer2.login)
        self.assertEqual(self.url_open(action["url"]).status_code, 403)
        self.assertTrue(os.path.exists(path))
        self.authenticate(self.restorer.login, self.restorer.login)
        response = self.url_open(action["url"], timeout=120)
        self.assertEqual(response.status_code, 200)
        # a file sent as it is on disk (its length known before any byte)
        self.assertEqual(int(response.headers["Content-Length"]), size)
        self.assertEqual(len(response.content), size)
        uuid = self.env["ir.config_parameter"].get_param("database.uuid")
        crypto.verify_archive(
            io.BytesIO(response.content), password=PASSWORD, tenant=uuid
        )
        self.assertFalse(os.path.exists(path), "removed once sent")
        self.assertEqual(self.url_open(action["url"]).status_code, 403, "single use")
        self.assertEqual(
            self.env["audit.event"].search_count([("action", "=", "download")]), 1
        )

    # -- the dialog, in a browser -----------------------------------------
    def test_upload_widget_sends_chunks_in_a_browser(self):
        # headless Chrome under the test server sends a request body at about
        # 150 KB/s (8 MiB: a minute): small chunks keep the tour short
        self.env["ir.config_parameter"].set_param(
            "db_backup_suite.upload_chunk_bytes", str(256 * 1024)
        )
        before = set(self.files())
        self.start_tour(
            "/odoo/action-db_backup_suite.db_backup_dashboard_action",
            "db_backup_suite_chunked_upload",
            login=self.restorer.login,
            timeout=180,
        )
        new = sorted(set(self.files()) - before)
        parts = [name for name in new if name.endswith(".part")]
        self.assertEqual(len(parts), 1, new)
        upload_id = parts[0][: -len(".part")]
        meta = uploads.read_meta(
            self.base, upload_id, database=self.env.cr.dbname, uid=self.restorer.id
        )
        self.assertTrue(meta["finished"])
        self.assertEqual(meta["size"], 1024 * 1024 + 1000)
        self.assertEqual(meta["filename"], "not-an-archive.tar.zst.enc")
        uploads.remove(self.base, upload_id)
