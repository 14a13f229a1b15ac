"""Tours that follow a job live through Odoo's bus (for the suite's addons
that use the bus; these tests import it as
``odoo.addons.audit_export.tests.live_bus``).

The bus in tests: websockets are off by default and a test cursor never
runs post-commit hooks, so the NOTIFY that wakes a websocket in production
never happens. ``LiveBusMixin`` lets the websocket connect and wakes every
one when a transaction that sent bus messages commits (they then poll, as
after a NOTIFY). The work that a cron or a detached process does in
production runs here in a thread of the test process (``JobThread``): its
cursors are the test's, taken in turn with the browser's requests.
"""

import threading
from unittest.mock import patch

from odoo import SUPERUSER_ID, api


class JobThread(threading.Thread):
    """Runs ``target(env)`` (or ``target()``) in a thread, as the server's
    cron or detached job process would, once ``wait_for`` (an event: the
    page showed the job queued) is set; keeps its exception for the test."""

    def __init__(self, registry, target, *, wait_for=None, with_env=True):
        super().__init__(daemon=True)
        self.registry = registry
        self.target = target
        self.wait_for = wait_for
        self.with_env = with_env
        self.error = None

    def run(self):
        try:
            if self.wait_for is not None and not self.wait_for.wait(60):
                raise TimeoutError("the page never showed the queued job")
            if not self.with_env:
                self.target()
                return
            with self.registry.cursor() as cr:
                self.target(api.Environment(cr, SUPERUSER_ID, {}))
        except BaseException as exc:  # reported by the test
            self.error = exc


class LiveBusMixin:
    """For an ``HttpCase``: call :meth:`enable_live_bus` in ``setUpClass``."""

    @classmethod
    def enable_live_bus(cls):
        from odoo.addons.bus.websocket import WebsocketConnectionHandler

        cls.startClassPatcher(
            patch.object(
                WebsocketConnectionHandler, "websocket_allowed", return_value=True
            )
        )
        bus_class = type(cls.env["bus.bus"])
        send = bus_class._sendone

        def sendone(bus, target, notification_type, message):
            send(bus, target, notification_type, message)
            bus.env.cr.precommit.add(wake_websockets)

        cls.startClassPatcher(patch.object(bus_class, "_sendone", sendone))


def wake_websockets():
    """What the NOTIFY of a commit does: every websocket polls the bus (it
    waits for the test cursor until the transaction is over)."""
    from odoo.addons.bus.models.bus import dispatch

    for websockets in list(dispatch._channels_to_ws.values()):
        for websocket in list(websockets):
            websocket.trigger_notification_dispatching()
