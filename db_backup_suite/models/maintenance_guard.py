"""Maintenance mode of a database during a production restore: the Odoo side.

``lib.maintenance`` marks the database (a marker file in the data dir) and
sets it read-only by default in PostgreSQL. Odoo's own cursors begin every
transaction ``READ WRITE`` explicitly (``odoo.sql_db.Cursor`` calls
``set_session(readonly=False)``), which overrides that default, so Odoo is
held here, in every process that reads the same data dir:

* every HTTP request (JSON-RPC, website, controllers: ``ir.http._dispatch``
  in ``ir_http.py``) runs its transaction ``READ ONLY`` in PostgreSQL; a
  write, through the ORM or raw SQL, is refused with the clear message;
* the ORM refuses ``create``/``write``/``unlink`` on any model whatever the
  path (external XML-RPC, scripts, server actions) with the same message;
* the cron runner postpones its jobs until the restore ends.

Only the restore job's own cursor (:func:`restore_writer_cursor`: a private
connection flagged server-side, never pooled with the server's, never
reachable over RPC) writes to the live database meanwhile (its progress and
the banner's bus message).

A marker whose restore process is gone is cleared by the first check
(``lib.maintenance.current``): a killed restore cannot keep production
read-only.
"""

import contextlib
import logging
import os

import pytz

import odoo
from odoo import api, models
from odoo.exceptions import UserError

from ..service import backup_engine

_logger = logging.getLogger(__name__)

# set on the restore job's own cursors only (server side, never from a request)
RESTORE_WRITER = "_db_backup_restore_writer"
BUS_MAINTENANCE = "db_backup_suite/maintenance"


def _lib():
    from ..lib import maintenance

    return maintenance


def active_marker(dbname):
    """The maintenance marker of ``dbname`` while a restore holds it, else
    None (one ``stat`` when there is none; a stale marker is cleared)."""
    maintenance = _lib()
    data_dir = backup_engine.data_dir()
    try:
        path = maintenance.marker_path(data_dir, dbname)
    except Exception:  # a name the suite never puts in maintenance
        return None
    if not os.path.exists(path):
        return None
    try:
        return maintenance.current(backup_engine.pg_params(), data_dir, dbname)
    except Exception as exc:
        # the marker could not be cleared: refuse rather than divert writes
        # when it is a live one, let them through when it is stale
        _logger.warning("Maintenance marker of %s not checked: %s", dbname, exc)
        marker = maintenance.read(data_dir, dbname)
        return marker if marker and not maintenance.is_stale(marker) else None


def started_local(env, marker):
    """When the maintenance started, as HH:MM in the user's time zone."""
    started = _lib().started_at(marker)
    if started is None:
        return "?"
    tz_name = env.context.get("tz") or "UTC"
    try:
        tz = pytz.timezone(tz_name)
    except pytz.UnknownTimeZoneError:
        tz = pytz.utc
    return started.astimezone(tz).strftime("%H:%M")


def _internal(env):
    """Whether ``env``'s user is an internal user (the archive's name, an
    uploaded file's client-chosen name, is shown to them only)."""
    # the real user, not a sudo() a public route may use to write
    return bool(env.uid) and env["res.users"].sudo().browse(env.uid)._is_internal()


def maintenance_message(env, marker):
    """The clear, translated sentence a refused write shows."""
    archive = marker.get("archive") if _internal(env) else None
    return env._(
        "The database is being restored from %(archive)s since %(time)s; changes "
        "are refused until it ends.",
        archive=archive or env._("an archive"),
        time=started_local(env, marker),
    )


def maintenance_info(env):
    """What the web client's banner shows (session info, poll): internal
    users only (False for portal and public users)."""
    if not _internal(env):
        return False
    marker = active_marker(env.cr.dbname)
    if not marker:
        return False
    started = _lib().started_at(marker)
    return {
        "archive": marker.get("archive") or "",
        "started": started.isoformat() if started else False,
        "message": maintenance_message(env, marker),
    }


@contextlib.contextmanager
def restore_writer_cursor(dbname):
    """A cursor of the restore job itself on ``dbname``: its own connection
    (never given to the server's pool), read-write whatever the database's
    default, flagged so that the maintenance guard lets the restore's own
    writes through. Commits at the end of the ``with`` block."""
    _name, info = odoo.sql_db.connection_info_for(dbname)
    info = dict(info, options="-c default_transaction_read_only=off")
    pool = odoo.sql_db.ConnectionPool(maxconn=1)
    try:
        cr = odoo.sql_db.Connection(pool, dbname, info).cursor()
        setattr(cr, RESTORE_WRITER, True)
        with cr:
            yield cr
    finally:
        pool.close_all()


def check_writable(env):
    """UserError (the clear message) when ``env``'s database is being
    restored, unless ``env`` is the restore job's own cursor."""
    if getattr(env.cr, RESTORE_WRITER, False):
        return
    marker = active_marker(env.cr.dbname)
    if marker:
        raise UserError(maintenance_message(env, marker))


class Base(models.AbstractModel):
    _inherit = "base"

    @api.model_create_multi
    def create(self, vals_list):
        check_writable(self.env)
        return super().create(vals_list)

    def write(self, vals):
        check_writable(self.env)
        return super().write(vals)

    def unlink(self):
        check_writable(self.env)
        return super().unlink()
