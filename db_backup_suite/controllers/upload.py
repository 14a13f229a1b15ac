"""Chunked, resumable archive uploads for the restore wizard.

Routes (``POST``, a logged-in user of the **Backup Restore** group, checked
here, not only by the menus; CSRF: the ``X-CSRF-Token`` header must carry
the session's token, which a page of another site can neither read nor
send, so the check is done by the route itself rather than with a
``csrf_token`` parameter that would end in the access log of every chunk)::

    /db_backup_suite/upload/open            {"size", "sha256"?, "filename"?}
    /db_backup_suite/upload/<id>/chunk?offset=N   body: the chunk's bytes
    /db_backup_suite/upload/<id>/status     where to resume
    /db_backup_suite/upload/<id>/finish     size (and digest) checked

Every answer is JSON: ``{"id", "offset", "size", "finished"}`` or, refused,
``{"error": <translated text>, "code", "offset"?}`` with a 4xx status. The
bytes go straight from the request body to the upload's file, one block at
a time (``lib/uploads.py``): a worker never holds more than a block.
"""

import functools
import json
import logging

from odoo import http
from odoo.exceptions import AccessError
from odoo.http import request

from ..lib import uploads
from ..service import backup_engine

_logger = logging.getLogger(__name__)
MAX_SIZE_PARAM = "db_backup_suite.upload_max_bytes"
CHUNK_PARAM = "db_backup_suite.upload_chunk_bytes"
#: what the browser sends per request (bytes), unless CHUNK_PARAM says
CHUNK_SIZE = 8 * 1024**2
MIN_CHUNK = 64 * 1024
STATUS = {
    "not_found": 404,
    "too_large": 413,
    "chunk_too_large": 413,
    "disk_full": 507,
    "gap": 409,
    "overlap": 409,
    "conflict": 409,
    "incomplete": 409,
    "finished": 409,
    "digest": 422,
    "bad_request": 400,
    "too_many": 429,
}


def human_bytes(value):
    from ..models.db_backup_run import human_size

    return human_size(value)


def upload_error_text(env, exc):
    """The translated sentence for an ``uploads.UploadError``."""
    params = exc.params
    texts = {
        "not_found": lambda: env._("This upload does not exist (or is not yours)."),
        "too_large": lambda: env._(
            "The archive (%(size)s) is larger than the largest upload allowed "
            "(%(max)s, system parameter %(param)s).",
            size=human_bytes(params.get("size") or 0),
            max=human_bytes(params.get("max_size") or 0),
            param=MAX_SIZE_PARAM,
        ),
        "chunk_too_large": lambda: env._(
            "A chunk may hold at most %(max)s.", max=human_bytes(uploads.MAX_CHUNK)
        ),
        "disk_full": lambda: env._(
            "Not enough free disk space on the server for this archive "
            "(%(size)s needed, %(free)s free).",
            size=human_bytes(params.get("size") or 0),
            free=human_bytes(params.get("free") or 0),
        ),
        "gap": lambda: env._(
            "A chunk is missing before this one: resume at byte %(offset)s.",
            offset=exc.offset,
        ),
        "overlap": lambda: env._(
            "This chunk overlaps what is stored: resume at byte %(offset)s.",
            offset=exc.offset,
        ),
        "conflict": lambda: env._(
            "This chunk differs from the one stored at its offset; upload the "
            "file again."
        ),
        "incomplete": lambda: env._(
            "The upload is not complete: resume at byte %(offset)s.",
            offset=exc.offset or 0,
        ),
        "too_many": lambda: (
            env._(
                "You have %(limit)s unfinished uploads already: finish or wait "
                "for them (abandoned ones are removed after a day) before "
                "starting another.",
                limit=params.get("limit"),
            )
            if params.get("scope") == "user"
            else env._(
                "The server holds %(limit)s unfinished uploads already: try "
                "again once some are finished or removed.",
                limit=params.get("limit"),
            )
        ),
        "finished": lambda: env._("This upload is complete already."),
        "digest": lambda: env._(
            "The file received differs from the one sent (SHA-256); it was "
            "removed: upload it again."
        ),
    }
    text = texts.get(exc.code)
    return text() if text else env._("Invalid upload request: %(e)s", e=exc)


def request_body(httprequest):
    """The request body as werkzeug's stream (bounded by Content-Length and
    Odoo's ``max_content_length``, read as it arrives). Odoo's request
    wrapper does not expose it; a raw ``application/octet-stream`` body is
    left unread by the form parsing that builds ``request.params``."""
    return httprequest._HTTPRequest__wrapped.stream


def chunk_size(env):
    """The chunk size the browser is told to use (system parameter
    ``db_backup_suite.upload_chunk_bytes``, kept within 64 KiB and the
    largest chunk accepted)."""
    value = env["ir.config_parameter"].sudo().get_param(CHUNK_PARAM)
    try:
        size = int(value) if value else CHUNK_SIZE
    except ValueError:
        size = CHUNK_SIZE
    return min(max(size, MIN_CHUNK), uploads.MAX_CHUNK)


def owner():
    return {"database": request.db, "uid": request.env.uid}


def upload_route(path):
    """A route of the upload protocol: ``POST`` by a logged-in user, checked
    by the controller's ``_guard`` (the Backup Restore group, the
    ``X-CSRF-Token`` header) before the method runs. The method returns the
    JSON payload of the answer; an ``AccessError`` or ``UploadError`` it
    raises is answered as the refusal (``_refuse``)."""

    def decorator(method):
        @functools.wraps(method)
        def answer(self, *args, **kwargs):
            try:
                self._guard()
                payload = method(self, *args, **kwargs)
            except (AccessError, uploads.UploadError) as exc:
                return self._refuse(exc)
            return self._answer(payload)

        # csrf: checked by _guard (X-CSRF-Token header)
        return http.route(path, type="http", auth="user", methods=["POST"], csrf=False)(
            answer
        )

    return decorator


class DbBackupUploadController(http.Controller):
    def _answer(self, payload, status=200):
        return request.make_json_response(
            payload, status=status, headers=[("Cache-Control", "no-store")]
        )

    def _refuse(self, exc):
        if isinstance(exc, uploads.UploadError):
            payload = {"error": upload_error_text(request.env, exc), "code": exc.code}
            if exc.offset is not None:
                payload["offset"] = exc.offset
            return self._answer(payload, STATUS.get(exc.code, 400))
        return self._answer({"error": str(exc), "code": "access"}, 403)

    def _guard(self):
        """The Backup Restore group and the session's CSRF token (header)."""
        env = request.env
        env["db.backup.run"]._check_restore_access()
        token = request.httprequest.headers.get("X-CSRF-Token")
        if not request.validate_csrf(token):
            raise AccessError(
                env._("Session expired or invalid request: reload the page.")
            )

    def _json_body(self):
        try:
            data = json.loads(request.httprequest.get_data(cache=False) or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise uploads.UploadError("bad_request", "a JSON object is expected")
        return data

    @upload_route("/db_backup_suite/upload/open")
    def upload_open(self, **kwargs):
        data = self._json_body()
        max_size = uploads.max_size_of(
            request.env["ir.config_parameter"].sudo().get_param(MAX_SIZE_PARAM)
        )
        meta = uploads.open_upload(
            backup_engine.jobs_dir(),
            size=data.get("size"),
            sha256=data.get("sha256") or None,
            filename=data.get("filename"),
            max_size=max_size,
            **owner(),
        )
        _logger.info(
            "Upload %s opened by uid %s (%s bytes)",
            meta["id"],
            request.env.uid,
            meta["size"],
        )
        return {
            "id": meta["id"],
            "offset": 0,
            "size": meta["size"],
            "finished": False,
            "chunk_size": chunk_size(request.env),
        }

    @upload_route("/db_backup_suite/upload/<string:upload_id>/chunk")
    def upload_chunk(self, upload_id, offset=None, **kwargs):
        httprequest = request.httprequest
        try:
            offset = int(offset)
            length = int(httprequest.headers.get("Content-Length"))
        except (TypeError, ValueError):
            raise uploads.UploadError(
                "bad_request", "offset and Content-Length are required"
            ) from None
        new_offset = uploads.write_chunk(
            backup_engine.jobs_dir(),
            upload_id,
            offset=offset,
            stream=request_body(httprequest),
            length=length,
            **owner(),
        )
        return {"id": upload_id, "offset": new_offset}

    @upload_route("/db_backup_suite/upload/<string:upload_id>/status")
    def upload_status(self, upload_id, **kwargs):
        return uploads.status(backup_engine.jobs_dir(), upload_id, **owner())

    @upload_route("/db_backup_suite/upload/<string:upload_id>/finish")
    def upload_finish(self, upload_id, **kwargs):
        meta = uploads.finish(backup_engine.jobs_dir(), upload_id, **owner())
        return {
            "id": upload_id,
            "offset": meta["size"],
            "size": meta["size"],
            "finished": True,
            "filename": meta["filename"],
        }
