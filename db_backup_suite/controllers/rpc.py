"""Maintenance mode on the external API (``/xmlrpc``, ``/xmlrpc/2``,
``/jsonrpc``: the ``object`` service).

These routes are ``auth="none"`` and mostly served without a database
bound to the request (the routing map without a database holds the
server-wide modules' controllers only: an inherited ``RPC`` controller of
this addon is not even reached then). The call runs on a cursor of its own
opened by ``odoo.service.model.execute``, not the request's:
``ir.http._dispatch``'s ``SET TRANSACTION READ ONLY`` never applies to it
and the ORM guard only covers ``create``/``write``/``unlink``, so a method
writing through raw SQL (``ir.sequence.next_by_code``: ``nextval`` or an
``UPDATE``) went through during a production restore and the change ended
in the safety copy only.

``execute`` is therefore wrapped where it opens that cursor: while the
target database is in maintenance, the call (same credential check before,
same method checks, same ``retrying``) runs in a transaction PostgreSQL
itself keeps ``READ ONLY``: reads work, every write (ORM or raw SQL) is
refused with the clear, translated maintenance message (an XML-RPC fault,
a JSON-RPC error) and nothing changes. Otherwise Odoo's own ``execute``
runs unchanged. ``dispatch`` checks the credentials (loading the registry,
hence this module) before it looks ``execute`` up: every call is covered,
whichever route and worker serves it.
"""

import psycopg2.errors

from odoo import api
from odoo.exceptions import UserError
from odoo.modules.registry import Registry
from odoo.service import model as service_model
from odoo.tools import SQL

from ..models import maintenance_guard


def execute(db, uid, obj, method, *args, **kw):
    """``odoo.service.model.execute``, in a ``READ ONLY`` transaction while
    ``db`` is in maintenance."""
    marker = maintenance_guard.active_marker(db) if isinstance(db, str) else None
    if not marker:
        return execute.odoo_execute(db, uid, obj, method, *args, **kw)
    with Registry(db).cursor() as cr:
        cr.execute(SQL("SET TRANSACTION READ ONLY"))
        env = api.Environment(cr, uid, {})
        env = env(context=env["res.users"].browse(uid).context_get())
        # computed now: the transaction is aborted once a write was refused
        message = maintenance_guard.maintenance_message(env, marker)
        try:
            return service_model.execute_cr(cr, uid, obj, method, *args, **kw)
        except psycopg2.errors.ReadOnlySqlTransaction as exc:
            raise UserError(message) from exc


# once per process (a reloaded module does not wrap the wrapper)
execute.odoo_execute = getattr(
    service_model.execute, "odoo_execute", service_model.execute
)
service_model.execute = execute
