from odoo import fields, models


class DbBackupCopy(models.Model):
    _name = "db.backup.copy"
    _description = "Backup Copy at a Destination"
    _order = "run_id desc, id"

    run_id = fields.Many2one(
        "db.backup.run", required=True, ondelete="cascade", index=True
    )
    destination_id = fields.Many2one("db.backup.destination", ondelete="set null")
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
    )
    object_name = fields.Char(
        readonly=True, help="The archive's name at the destination."
    )
    size = fields.Float(readonly=True, digits=(20, 0))
    error = fields.Text(readonly=True)

    def _status_line(self):
        self.ensure_one()
        mark = {"pending": "…", "done": "✔", "failed": "✘", "deleted": "🗑"}[self.state]
        return "%s %s" % (mark, self.destination_name or "?")
