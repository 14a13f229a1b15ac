from odoo import fields, models


class DbBackupCopy(models.Model):
    """Where a run's archive is stored: written by the server only (its
    object name is what a restore reads and a retention delete removes)."""

    _name = "db.backup.copy"
    _inherit = ["db.backup.guarded.mixin"]
    _description = "Backup Copy at a Destination"
    _order = "run_id desc, id"
    _user_create_fields = ()
    _user_write_fields = ()
    _server_creates_only = True

    run_id = fields.Many2one(
        "db.backup.run", required=True, ondelete="cascade", index=True, readonly=True
    )
    destination_id = fields.Many2one(
        "db.backup.destination", ondelete="set null", readonly=True
    )
    destination_name = fields.Char(readonly=True)
    dest_type = fields.Char(readonly=True)
    state = fields.Selection(
        [
            ("pending", "Pending"),
            ("done", "Stored"),
            ("failed", "Failed"),
            ("deleted", "Deleted"),
        ],
        default="pending",
        required=True,
        readonly=True,
    )
    object_name = fields.Char(
        readonly=True, help="The archive's name at the destination."
    )
    size = fields.Float(readonly=True, digits=(20, 0))
    error = fields.Text(readonly=True)

    def _status_line(self):
        """``Local disk: stored`` (words, not symbols a font may lack)."""
        self.ensure_one()
        state = dict(self._fields["state"]._description_selection(self.env))
        return "%s: %s" % (self.destination_name or "?", state[self.state].lower())
