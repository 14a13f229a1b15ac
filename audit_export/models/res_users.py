"""Login and failed-login capture."""

import logging

from odoo import SUPERUSER_ID, api, models
from odoo.exceptions import AccessDenied

_logger = logging.getLogger(__name__)


class ResUsers(models.Model):
    _inherit = "res.users"

    @classmethod
    def _login(cls, db, credential, user_agent_env):
        login = credential.get("login")
        try:
            auth_info = super()._login(db, credential, user_agent_env)
        except AccessDenied as exc:
            cls._audit_log_login(
                "login_failed", login, None, credential, reason=str(exc) or None
            )
            raise
        cls._audit_log_login(
            "login",
            login,
            auth_info.get("uid"),
            credential,
            auth_method=auth_info.get("auth_method"),
        )
        return auth_info

    @classmethod
    def _audit_log_login(cls, action, login, uid, credential, **details):
        """Write the event in its own transaction.

        A failed login's transaction is rolled back (and a successful one has
        already committed), so the event needs its own cursor to survive.
        """
        details = {k: v for k, v in details.items() if v}
        details["credential_type"] = credential.get("type")
        try:
            with cls.pool.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                user = env["res.users"].browse(uid) if uid else env["res.users"]
                events = env["audit.event"]
                vals = events._prepare_event_vals(
                    action,
                    user=user,
                    login=login or False,
                    result="success" if action == "login" else "failure",
                    res_model="res.users" if uid else None,
                    res_id=uid or None,
                    res_name=(user.name if uid else None),
                    details=details,
                )
                events.create([vals])
        except Exception:
            # Never turn an authentication answer into a server error.
            _logger.exception("Audit: could not record %s for %r", action, login)
