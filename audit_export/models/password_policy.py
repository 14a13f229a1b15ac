"""The suite's one password policy for password-protected files, in Odoo.

``lib/passwords`` decides (length and a real strength estimate); this model
gives every addon the same checks with the user's own words counted against
the password, and the reasons in the user's language.
"""

from odoo import api, models
from odoo.exceptions import AccessError, UserError

from suite_core import passwords


class AuditPasswordPolicy(models.AbstractModel):
    _name = "audit.password.policy"
    _description = "Password policy of protected files"

    @api.model
    def _user_inputs(self):
        """Words a password must not be made of: who the user is, this database."""
        user = self.env.user
        return [
            user.login,
            user.name,
            user.email,
            self.env.cr.dbname,
            user.company_id.name,
        ]

    @api.model
    def _message(self, verdict):
        """The policy's reason in the user's language."""
        params = verdict.params
        if verdict.code == "ok":
            return self.env._("Strong password.")
        if verdict.code == "empty":
            return self.env._(
                "Enter a password of at least %(count)s characters.",
                count=passwords.MIN_LENGTH,
            )
        if verdict.code == "too_short":
            return self.env._(
                "The password must have at least %(count)s characters "
                "(it has %(length)s).",
                count=params["min_length"],
                length=params["length"],
            )
        if verdict.code == "too_long":
            return self.env._(
                "The password must have at most %(count)s characters.",
                count=params["max_length"],
            )
        if verdict.code == "mismatch":
            return self.env._("The passwords do not match.")
        # zxcvbn's own hint stays in English (it has no translations).
        return self.env._(
            "This password is too easy to guess: %(hint)s Use at least "
            "%(count)s characters: several unrelated words, or a mix "
            "nobody could link to you.",
            hint=params.get("hint", ""),
            count=passwords.MIN_LENGTH,
        )

    @api.model
    def _check_new(self, password, confirm):
        """Raise a translated UserError unless ``password`` (typed twice) is
        accepted; return it."""
        verdict = passwords.check_new_password(
            password or "", confirm or "", self._user_inputs()
        )
        if not verdict.ok:
            raise UserError(self._message(verdict))
        return password

    @api.model
    def _strength(self, password):
        """What a strength meter shows (the password is never stored)."""
        verdict = passwords.check_password(password or "", self._user_inputs())
        summary = verdict.as_dict()
        summary["message"] = self._message(verdict)
        summary["label"] = {
            0: self.env._("Very weak"),
            1: self.env._("Weak"),
            2: self.env._("Fair"),
            3: self.env._("Good"),
            4: self.env._("Strong"),
        }[verdict.score]
        return summary

    @api.model
    def password_strength(self, password):
        """The strength meter's verdict on ``password`` (the one widget of
        the suite, ``audit_export/static/src/password_meter``).

        Any internal user may ask (portal and public users may not): it
        returns the score and the policy's words only, never the password
        nor anything derived from the server's data beyond them; nothing is
        logged, stored or changed.
        """
        if not self.env.user._is_internal():
            raise AccessError(
                self.env._("Only internal users may check password strength.")
            )
        if password is not None and not isinstance(password, str):
            raise UserError(self.env._("A password is text."))
        summary = self._strength(password)
        return {
            "ok": bool(summary["ok"]),
            "score": int(summary["score"]),
            "max_score": int(summary["max_score"]),
            "min_length": int(summary["min_length"]),
            "label": summary["label"],
            "message": summary["message"],
            "suggestions": [str(text) for text in summary["suggestions"]],
        }
