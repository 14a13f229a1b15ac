"""Logout capture and the audit export download.

Logouts are caught at the web routes: the session is already cleared by the
time ``ir.http._post_logout`` runs.
"""

import logging
import os
import tempfile

from odoo import SUPERUSER_ID, api, http
from odoo.http import Stream, request, route

from odoo.addons.web.controllers.session import Session

from ..wizards.audit_export_wizard import MIMETYPES

_logger = logging.getLogger(__name__)


def _log_logout():
    session = request.session
    uid, dbname = session.uid, session.db
    if not (uid and dbname):
        return
    from odoo.modules.registry import Registry

    try:
        # The logout routes run on a read-only cursor: use a fresh one.
        with Registry(dbname).cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            if "audit.event" not in env:
                return
            user = env["res.users"].browse(uid)
            events = env["audit.event"]
            events.create(
                [
                    events._prepare_event_vals(
                        "logout",
                        user=user,
                        res_model="res.users",
                        res_id=uid,
                        res_name=user.name,
                    )
                ]
            )
    except Exception:
        _logger.exception("Audit: could not record the logout of user %s", uid)


class AuditSession(Session):
    @route()
    def logout(self, redirect="/odoo"):
        _log_logout()
        return super().logout(redirect=redirect)

    @route()
    def destroy(self):
        _log_logout()
        return super().destroy()


class AuditExportController(http.Controller):
    @route("/audit_export/download/<int:wizard_id>", type="http", auth="user")
    def download(self, wizard_id):
        """Stream an export: written to a temporary file, never held in memory."""
        wizard = request.env["audit.export.wizard"].browse(wizard_id).exists()
        if not wizard:
            raise request.not_found()
        wizard.check_access("read")
        request.env["audit.event"].check_access("read")
        with tempfile.NamedTemporaryFile(
            prefix="audit-export-", suffix=f".{wizard.file_format}", delete=False
        ) as handle:
            path = handle.name
            try:
                count = wizard._write_export(handle)
            except Exception:
                os.unlink(path)
                raise
        try:
            wizard._log_export(count)
            stream = Stream(
                type="path",
                path=path,
                mimetype=MIMETYPES[wizard.file_format],
                download_name=wizard._filename(),
                as_attachment=True,
                conditional=False,
                etag=False,
            )
            # send_file opens the file now: it can be unlinked at once.
            return stream.get_response()
        finally:
            os.unlink(path)
