"""The restore hook of data subject requests: after db_backup_suite restores
a database, the erasures recorded in the register (outside the database)
since the archive was taken are applied again, with everything an erasure
does.

An abstract model ``dsr.request`` inherits, so the hook runs on
``dsr.request`` (db_backup_suite calls ``_on_database_restored`` on every
non-abstract model defining it, never on this one).
"""

import logging
from datetime import UTC, datetime

from odoo import api, fields, models
from odoo.tools import SQL

from ..lib.erasure_register import digest, normalize_email
from .dsr_erasure import ERASURE_CONTEXT

_logger = logging.getLogger(__name__)


class DsrRestoreHook(models.AbstractModel):
    _name = "dsr.restore.hook"
    _description = "Data Subject Request: Erasures Re-applied After a Restore"

    # -- restore hook (called by db_backup_suite, never by this addon) ------------
    @api.model
    def _on_database_restored(self, restore_info):
        """Re-apply the erasures recorded after the archive was taken.

        db_backup_suite calls this in the restored database after every
        restore. Idempotent: what is already erased is not found again.
        Returns one dict per erasure re-applied (``step``, ``erasure_id``,
        ``archive_name``, ``records``, ``changed``, ``leftover_scan`` with the
        scan's result and the audit events redacted, ``cleanup``): no
        personal data, for the restore's own audit event.
        """
        created_at = restore_info.get("archive_created_at")
        if isinstance(created_at, str):
            created_at = datetime.fromisoformat(created_at)
        register = self._erasure_register(
            restore_info.get("archive_database_uuid") or self._database_uuid()
        )
        if created_at is None:
            # Unknown age: re-applying every erasure is safe (idempotent).
            _logger.warning("DSR: restore without archive date: re-applying all")
            entries = register.entries()
        else:
            if created_at.tzinfo is None:
                created_at = created_at.replace(tzinfo=UTC)
            entries = register.entries_after(created_at)
        applied = []
        for entry in entries:
            applied.append(self._reapply_erasure(entry, restore_info))
        return applied

    @api.model
    def _reapply_erasure(self, entry, restore_info):
        """Erase again, in a restored database, the subject of a register
        entry, with everything an erasure does (side effects, earlier
        requests, leftover scan, audit redaction, files). Returns what was
        done (no personal data): the restore reports it."""
        erasure = self.env["dsr.erasure"].sudo().with_context(**ERASURE_CONTEXT)
        scanner = self.env["dsr.leftover.scan"].sudo().with_context(**ERASURE_CONTEXT)
        label = entry.get("request_ref") or "erasure"
        request = self.sudo().search([("name", "=", entry.get("request_ref"))], limit=1)
        partner_ids = self._partners_matching_entry(entry)
        subject_ids, hits = (
            self.env["dsr.discovery"]
            .sudo()
            ._discover(None, extra_partner_ids=partner_ids)
        )
        partners = (
            self.env["res.partner"]
            .sudo()
            .with_context(active_test=False)
            .browse(subject_ids)
            .exists()
        )
        user_ids = partners.with_context(active_test=False).user_ids.ids
        identifiers = scanner._collect_identifiers(
            partners.ids,
            user_ids,
            emails=[request.subject_email],
            names=[request.subject_name],
            phones=[request.subject_phone],
        )
        known = {(hit["res_model"], hit["res_id"]) for hit in hits}
        category = {
            "res.partner": "profile",
            "res.users": "user",
            "mail.message": "message",
            "mail.mail": "mail",
            "mail.followers": "follower",
            "ir.attachment": "attachment",
        }
        for model_name, res_id, result in entry.get("records", []):
            if (model_name, res_id) in known or result not in ("deleted", "anonymized"):
                continue
            if model_name == "res.partner" and res_id not in partner_ids:
                # an id alone is not proof: the partner matched no fingerprint
                continue
            hits.append(
                {
                    "res_model": model_name,
                    "res_id": res_id,
                    "category": category.get(model_name, "record"),
                    "source": "erasure register",
                    "ref_fields": [],
                }
            )
        erasure._plan(hits, subject_ids)
        for hit in hits:
            recorded = next(
                (
                    r
                    for m, i, r in entry.get("records", [])
                    if m == hit["res_model"] and i == hit["res_id"]
                ),
                None,
            )
            if recorded == "deleted" and hit["planned_action"] != "retain":
                hit["planned_action"] = "delete"
        with erasure._running(user_ids) as running:
            erasure._execute(hits, subject_ids, label)
            done = [h for h in hits if h.get("result") in ("deleted", "anonymized")]
            if request and request.state != "done":
                evidence = request._identity_evidence()
                request.write(
                    {
                        "state": "done",
                        "erased_on": fields.Datetime.now(),
                        "erasure_id": entry.get("erasure_id"),
                        "subject_email": False,
                        "subject_name": False,
                        "subject_phone": False,
                        "verification_attachment_ids": [(5, 0, 0)],
                    }
                )
                evidence.unlink()
            if request:
                request.line_ids.sudo().write({"res_name": False})
            cleanup = self._leave_nothing_behind(
                erasure, subject_ids, user_ids, identifiers, entry, request
            )
            scan = scanner._run(
                identifiers,
                {
                    "label": label,
                    "partner_ids": partners.ids,
                    "user_ids": user_ids,
                    "kept": {},
                },
            )
            # what the steps above queued for the bus goes too
            cleanup["bus_notifications"] += erasure._drop_buffered_notifications(
                subject_ids, user_ids, identifiers
            )
            cleanup["files"] = erasure._purge_files(running["files"], label)
        details = {
            "step": "reapplied_after_restore",
            "erasure_id": entry.get("erasure_id"),
            "archive_name": restore_info.get("archive_name"),
            "records": len(done),
            "changed": [[h["res_model"], h["res_id"], h["result"]] for h in done],
            "leftover_scan": self._scan_summary(scan),
            "cleanup": {
                "queued_emails": cleanup["queued_emails"],
                "bus_notifications": cleanup["bus_notifications"],
                "wizards": cleanup["wizards"],
                "earlier_requests": len(cleanup["earlier_requests"]),
                "files_scheduled": cleanup["files"]["scheduled"],
            },
        }
        self.env["audit.event"].log_event(
            "dsr",
            res_model=self._name,
            res_id=request.id or None,
            res_name=entry.get("request_ref"),
            details=details,
            message=self.env._(
                "Erasure %(ref)s re-applied after a database restore; leftover scan "
                "and audit redaction re-run: %(result)s",
                ref=entry.get("request_ref"),
                result=scan["result"],
            ),
        )
        if request and not request.has_certificate:
            # the restored request predates its certificate: issue it again,
            # saying it is a re-application
            request._issue_certificate(
                hits,
                entry,
                scan=scan,
                cleanup=cleanup,
                extra={
                    "reapplied_after_restore": {
                        "archive_name": restore_info.get("archive_name"),
                        "archive_created_at": str(
                            restore_info.get("archive_created_at") or ""
                        ),
                    }
                },
            )
        if request:
            request._message_log(
                body=self.env._(
                    "Erasure re-applied after the restore of %(archive)s: %(count)s "
                    "records deleted or anonymised; leftover scan: %(result)s.",
                    archive=restore_info.get("archive_name") or "?",
                    count=len(done),
                    result=scan["result"],
                )
            )
        _logger.info(
            "DSR %s re-applied after a restore: %s records, leftover scan: %s",
            label,
            len(done),
            scan["result"],
        )
        return details

    @api.model
    def _partners_matching_entry(self, entry):
        """Partner ids of the restored database that are the erased subject:
        a recorded id whose email or name digest still matches, or any
        partner whose normalised email digest equals the subject's."""
        self.env.flush_all()
        ids = set()
        fingerprints = {p["id"]: p for p in entry.get("partners", [])}
        if fingerprints:
            self.env.cr.execute(
                SQL(
                    "SELECT id, email_normalized, email, name FROM res_partner "
                    "WHERE id = ANY(%s)",
                    list(fingerprints),
                )
            )
            for pid, normalized, email, name in self.env.cr.fetchall():
                print_ = fingerprints[pid]
                email_digest = digest(normalized or normalize_email(email))
                if (email_digest and email_digest == print_.get("email_sha256")) or (
                    digest(name) and digest(name) == print_.get("name_sha256")
                ):
                    ids.add(pid)
        if entry.get("email_sha256"):
            self.env.cr.execute(
                SQL(
                    """SELECT id FROM res_partner
                    WHERE encode(sha256(convert_to(
                              lower(btrim(email_normalized)), 'UTF8')), 'hex') = %s
                       OR encode(sha256(convert_to(
                              lower(btrim(email)), 'UTF8')), 'hex') = %s""",
                    entry["email_sha256"],
                    entry["email_sha256"],
                )
            )
            ids.update(row[0] for row in self.env.cr.fetchall())
        return ids
