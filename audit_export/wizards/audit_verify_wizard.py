"""The result of "Verify integrity", shown to the auditor in a dialog."""

from odoo import api, fields, models


class AuditVerifyWizard(models.TransientModel):
    _name = "audit.verify.wizard"
    _description = "Audit Log Integrity Result"

    state = fields.Selection(
        [("intact", "Intact"), ("tampered", "Tampered")], readonly=True
    )
    message = fields.Text(readonly=True)
    problem_kind = fields.Selection(
        [
            ("altered", "Altered"),
            ("removed", "Removed"),
            ("inserted", "Inserted"),
            ("untrusted", "Untrusted key"),
            ("forged", "Forged checkpoint or witness"),
            ("truncated", "Truncated"),
            ("rolled_back", "Rolled back"),
        ],
        readonly=True,
    )
    problem_event_id = fields.Many2one("audit.event", readonly=True)
    warnings = fields.Text(readonly=True)
    keyring = fields.Boolean(string="Signed with the server keyring", readonly=True)
    checked = fields.Integer(string="Events verified", readonly=True)
    redacted = fields.Integer(string="Events with erased values", readonly=True)
    head_sequence = fields.Integer(string="Chain head position", readonly=True)
    head_hash = fields.Char(string="Chain head hash", readonly=True)
    anchor_sequence = fields.Integer(string="Retention anchor position", readonly=True)
    witness_path = fields.Char(string="Witness file", readonly=True)
    witness_sequence = fields.Integer(string="Witnessed head position", readonly=True)
    witness_sealed_at = fields.Char(string="Witnessed at (UTC)", readonly=True)

    @api.model
    def _from_report(self, report):
        """A result record for ``report`` (lib/chain.verify_log)."""
        problem = report["problem"]
        if problem is None:
            message = self.env._(
                "Audit log intact: %(count)s events verified (chain head %(head)s).",
                count=report["checked"],
                head=(report["head_hash"] or "")[:16],
            )
        else:
            message = self.env._(
                "Audit log TAMPERED: %(message)s", message=problem["message"]
            )
        witness = report.get("witness") or {}
        return self.create(
            {
                "state": "intact" if problem is None else "tampered",
                "message": message,
                "problem_kind": problem and problem["kind"],
                "problem_event_id": problem and problem.get("event_id") or False,
                "warnings": "\n".join(report.get("warnings") or []) or False,
                "keyring": report.get("keyring"),
                "checked": report["checked"],
                "redacted": report.get("redacted") or 0,
                "head_sequence": report["head_sequence"],
                "head_hash": report["head_hash"],
                "anchor_sequence": report["anchor_sequence"],
                "witness_path": witness.get("path") or False,
                "witness_sequence": witness.get("sequence") or 0,
                "witness_sealed_at": witness.get("sealed_at") or False,
            }
        )
