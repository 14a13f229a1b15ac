import base64

from odoo import api, models
from odoo.exceptions import AccessError

from .dsr_erasure import running_erasure
from .dsr_request import (
    CERTIFICATE_FIELDS,
    SERVER_BINARY_FIELDS,
    issuing_certificate,
)

DSR_MODEL = "dsr.request"
CONTENT_FIELDS = frozenset({"raw", "datas", "db_datas"})
# What storage changes write on an attachment (``force_storage``): allowed
# on a certificate file when the content stays the same.
STORAGE_FIELDS = frozenset(
    {"raw", "datas", "db_datas", "mimetype", "store_fname", "file_size", "checksum"}
)


class IrAttachment(models.Model):
    """The files of a data subject request the server owns: its export
    package and erasure certificates (stored fields) and, once the identity
    is verified, the evidence it rests on. Odoo lets a user who may write a
    record create or change the attachments of its stored binary fields
    directly; for these files nobody but the server may.

    Erasure certificates are immutable, as the audit log: nobody, the
    superuser included, changes or deletes them once issued (only the
    issuing step of the server writes them, and a module uninstall removes
    them). Their content is read through the request's download route,
    which records every download.
    """

    _inherit = "ir.attachment"

    @api.model
    def _dsr_is_server_file(self, res_model, res_field):
        return res_model == DSR_MODEL and res_field in SERVER_BINARY_FIELDS

    @api.model
    def _dsr_is_certificate(self, res_model, res_field):
        return res_model == DSR_MODEL and res_field in CERTIFICATE_FIELDS

    def _dsr_certificates(self):
        return self.sudo().filtered(
            lambda att: self._dsr_is_certificate(att.res_model, att.res_field)
        )

    def _dsr_check_certificates(self, vals=None):
        """Refuse any change of an issued certificate file, whoever asks."""
        if self.env.context.get("MODULE_UNINSTALL_FLAG"):
            return
        certificates = self._dsr_certificates()
        if not certificates:
            return
        if self.env.su and issuing_certificate(self.env.cr):
            return
        if (
            vals is not None
            and self.env.su
            and set(vals) <= STORAGE_FIELDS
            and self._dsr_same_content(certificates, vals)
        ):
            return  # a storage move (database <-> filestore) of the same bytes
        raise AccessError(
            self.env._(
                "An erasure certificate is immutable: it cannot be changed or "
                "deleted, by anyone."
            )
        )

    @api.model
    def _dsr_same_content(self, certificates, vals):
        new = self._compute_checksum(self._dsr_vals_bytes(vals))
        return all(att.checksum == new for att in certificates)

    @api.model
    def _dsr_vals_bytes(self, vals):
        if "raw" in vals:
            raw = vals["raw"]
            return raw.encode() if isinstance(raw, str) else (raw or b"")
        if "datas" in vals:
            return base64.b64decode(vals["datas"] or b"")
        if "db_datas" in vals:
            return vals["db_datas"] or b""
        return None

    def _dsr_check_server_files(self, vals=None):
        self._dsr_check_certificates(vals)
        if self.env.su:
            return
        evidence_locked = (
            self.env[DSR_MODEL]
            .sudo()
            .search_count(
                [
                    ("verification_attachment_ids", "in", self.ids),
                    ("state", "!=", "received"),
                ],
                limit=1,
            )
            if self.ids
            else 0
        )
        for attachment in self.sudo():
            targets = {(attachment.res_model, attachment.res_field)}
            if vals:
                targets.add(
                    (
                        vals.get("res_model", attachment.res_model),
                        vals.get("res_field", attachment.res_field),
                    )
                )
            if any(self._dsr_is_server_file(*target) for target in targets):
                raise AccessError(
                    self.env._(
                        "The export package and the erasure certificates of a data "
                        "subject request are written by the server only."
                    )
                )
        if evidence_locked:
            raise AccessError(
                self.env._(
                    "The evidence of a verified identity cannot change any more."
                )
            )

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            target = (vals.get("res_model"), vals.get("res_field"))
            if self._dsr_is_certificate(*target) and not (
                self.env.su and issuing_certificate(self.env.cr)
            ):
                raise AccessError(
                    self.env._("Erasure certificates are issued by the erasure only.")
                )
            if not self.env.su and self._dsr_is_server_file(*target):
                raise AccessError(
                    self.env._(
                        "The export package and the erasure certificates of a "
                        "data subject request are written by the server only."
                    )
                )
        return super().create(vals_list)

    def write(self, vals):
        self._dsr_check_server_files(vals)
        return super().write(vals)

    def unlink(self):
        self._dsr_check_server_files()
        return super().unlink()

    def read(self, fields=None, load="_classic_read"):
        """The content of a certificate file is read through the request's
        download route (recorded in the audit trail), not here."""
        if (
            not self.env.su
            and not self.env.context.get("bin_size")
            and (not fields or CONTENT_FIELDS & set(fields))
            and self._dsr_certificates()
        ):
            raise AccessError(
                self.env._(
                    "Download the erasure certificate from its request: every "
                    "download is recorded."
                )
            )
        return super().read(fields, load=load)

    @api.model
    def _file_delete(self, fname):
        """Files released by an erasure are deleted at once when it ends
        (see ``dsr.erasure._purge_files``); Odoo's checklist still gets
        them, for the garbage collector."""
        state = running_erasure(self.env.cr)
        if state is not None and fname:
            state["files"].add(fname)
        return super()._file_delete(fname)
