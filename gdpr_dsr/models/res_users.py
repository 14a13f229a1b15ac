import logging

from odoo import models

from .dsr_erasure import running_erasure

_logger = logging.getLogger(__name__)


class ResUsers(models.Model):
    _inherit = "res.users"

    def _notify_security_setting_update(self, subject, content, mail_values=None, **kw):
        """No "Security Update" email to a user an erasure is anonymising:
        the erasure changes their login, it must not write to them about it
        (nor keep that email queued with their address). Only the users the
        running erasure names (a mark on the cursor, never a context key a
        client could send) are skipped."""
        state = running_erasure(self.env.cr)
        erased = self.filtered(lambda user: state and user.id in state["user_ids"])
        if erased:
            _logger.info(
                "DSR erasure: security notification to user(s) %s not sent",
                erased.ids,
            )
        others = self - erased
        if not others:
            return None
        return super(ResUsers, others)._notify_security_setting_update(
            subject, content, mail_values=mail_values, **kw
        )
