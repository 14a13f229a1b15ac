"""Maintenance mode over HTTP: read-only requests, a clear error, a banner.

While a production restore holds the database (``lib.maintenance``), every
request's transaction is made ``READ ONLY`` in PostgreSQL before its
endpoint runs: reads work, any write (ORM or raw SQL, any route) fails
inside PostgreSQL and is turned into the clear, translated message instead
of a raw "cannot execute INSERT in a read-only transaction". The web
client's session info carries what the banner shows.
"""

import psycopg2.errors

from odoo import models
from odoo.exceptions import UserError
from odoo.http import request
from odoo.tools import SQL

from . import maintenance_guard


class IrHttp(models.AbstractModel):
    _inherit = "ir.http"

    @classmethod
    def _dispatch(cls, endpoint):
        env = request.env
        marker = maintenance_guard.active_marker(env.cr.dbname)
        if not marker or getattr(env.cr, maintenance_guard.RESTORE_WRITER, False):
            return super()._dispatch(endpoint)
        # computed now: the transaction is aborted once a write was refused
        message = maintenance_guard.maintenance_message(env, marker)
        env.cr.execute(SQL("SET TRANSACTION READ ONLY"))
        try:
            result = super()._dispatch(endpoint)
            # pending ORM writes are refused here, with the message, rather
            # than when the request's transaction is committed
            request.env.flush_all()
        except psycopg2.errors.ReadOnlySqlTransaction as exc:
            raise UserError(message) from exc
        return result

    def session_info(self):
        info = super().session_info()
        info["db_backup_maintenance"] = maintenance_guard.maintenance_info(self.env)
        return info

    def _register_hook(self):
        # a registry loaded after a killed restore clears its stale marker
        super()._register_hook()
        maintenance_guard.active_marker(self.env.cr.dbname)
