"""Chain anchors (left by retention purges) and the recorded chain head."""

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from ..lib import chain


class AuditCheckpoint(models.Model):
    _name = "audit.checkpoint"
    _description = "Audit Chain Checkpoint"
    _order = "sequence desc, id desc"
    _rec_name = "sequence"

    kind = fields.Selection(
        [("anchor", "Retention anchor"), ("head", "Chain head")],
        required=True,
        readonly=True,
        index=True,
    )
    sequence = fields.Integer(string="Chain Position", readonly=True)
    chain_hash = fields.Char(readonly=True)
    purged_count = fields.Integer(string="Events Purged", readonly=True)
    cutoff = fields.Datetime(string="Purged Before", readonly=True)

    def write(self, vals):
        raise UserError(self.env._("Audit checkpoints cannot be modified."))

    def unlink(self):
        raise UserError(self.env._("Audit checkpoints cannot be deleted."))

    @api.model
    def _anchor(self):
        """``(sequence, chain_hash)`` the chain continues from."""
        self.env.cr.execute(
            SQL(
                "SELECT sequence, chain_hash FROM audit_checkpoint "
                "WHERE kind = 'anchor' ORDER BY sequence DESC LIMIT 1"
            )
        )
        row = self.env.cr.fetchone()
        return (row[0], row[1]) if row else (0, chain.GENESIS)

    @api.model
    def _head(self):
        self.env.cr.execute(
            SQL(
                "SELECT sequence, chain_hash FROM audit_checkpoint WHERE kind = 'head' "
                "ORDER BY id DESC LIMIT 1"
            )
        )
        row = self.env.cr.fetchone()
        return (row[0], row[1]) if row else (0, None)

    @api.model
    def _set_head(self, sequence, chain_hash):
        """Record the chain head (called under the chain lock)."""
        self.flush_model()
        self.env.cr.execute(
            SQL(
                "UPDATE audit_checkpoint SET sequence = %s, chain_hash = %s, "
                "write_date = now() AT TIME ZONE 'UTC' WHERE kind = 'head'",
                sequence,
                chain_hash,
            )
        )
        if not self.env.cr.rowcount:
            self.sudo().create(
                [{"kind": "head", "sequence": sequence, "chain_hash": chain_hash}]
            )
            self.flush_model()
        self.invalidate_model()

    @api.model
    def _add_anchor(self, sequence, chain_hash, purged_count, cutoff):
        return self.sudo().create(
            [
                {
                    "kind": "anchor",
                    "sequence": sequence,
                    "chain_hash": chain_hash,
                    "purged_count": purged_count,
                    "cutoff": cutoff,
                }
            ]
        )
