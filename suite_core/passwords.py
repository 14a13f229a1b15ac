"""The suite's one password policy for password-protected files.

Every file the suite lets a user protect with a password of their own (a
data export ZIP, a downloaded backup archive, a DSR package) is checked
here, so the three addons accept and refuse the same passwords and say why
in the same words.

The rule:

1. at least :data:`MIN_LENGTH` characters (12) and at most
   :data:`MAX_LENGTH`;
2. a strength estimate of :data:`MIN_SCORE` (4, the top band) by
   ``zxcvbn`` (Dropbox's estimator, the ``zxcvbn`` package on PyPI), which
   counts the guesses an attacker needs by matching dictionaries (common
   passwords, names, English words), keyboard patterns, sequences,
   repeats, dates and l33t substitutions -- so ``abcdefghijkl``,
   ``qwertyuiop123`` or ``Password1234!`` are refused although long
   enough, while ``correct horse battery staple`` is accepted.
   ``user_inputs`` (the user's login, name, email, the database name) count
   as dictionary words too.

Why the top band: the files leave the server. A stolen file is attacked
offline at the speed of its key derivation; WinZip AES-256 (the format
7-Zip and Windows tools open) derives with PBKDF2-HMAC-SHA1 and only 1,000
iterations, about ten million guesses a second on one GPU. Score 3 (10^8
guesses) falls in seconds there; score 4 (10^10 and up) takes from
minutes for the weakest accepted password to centuries for a passphrase,
and a length of 12 keeps random passwords far above that.

zxcvbn reads at most :data:`ESTIMATE_LENGTH` characters (its own limit;
its run time grows with the length): a longer password is judged by that
prefix, a lower bound of its real strength.

Nothing here logs, stores or returns the password.
"""

from dataclasses import dataclass, field

from zxcvbn import zxcvbn

from .keyring import SuiteError

#: Shortest password accepted.
MIN_LENGTH = 12
#: Longest password accepted (a pasted document is a mistake, not a password).
MAX_LENGTH = 1024
#: zxcvbn score (0-4) a password needs; 4 means at least 10^10 guesses.
MIN_SCORE = 4
#: How many characters zxcvbn reads (its ``max_length``).
ESTIMATE_LENGTH = 72
#: Labels of the zxcvbn scores, for meters.
SCORE_LABELS = ("very weak", "weak", "fair", "good", "strong")

#: Reason codes (:attr:`Verdict.code`) and their English message templates;
#: the Odoo layer translates by code.
MESSAGES = {
    "ok": "Strong password.",
    "empty": "Enter a password.",
    "too_short": "The password must have at least {min_length} characters "
    "(it has {length}).",
    "too_long": "The password must have at most {max_length} characters.",
    "weak": "This password is too easy to guess ({label}): {hint}",
    "mismatch": "The passwords do not match.",
}
#: What a weak password gets as a hint when zxcvbn gives no warning.
DEFAULT_HINT = "add words or characters that are not a known pattern."


@dataclass(frozen=True)
class Verdict:
    """What the policy says of one password.

    ``ok``: accepted; ``code``: a key of :data:`MESSAGES`; ``params``: the
    values of its template; ``score``: zxcvbn's 0-4 (0 when not estimated);
    ``warning`` and ``suggestions``: zxcvbn's feedback (English).
    """

    ok: bool
    code: str
    score: int = 0
    params: dict = field(default_factory=dict)
    warning: str = ""
    suggestions: tuple = ()

    @property
    def message(self):
        """The English reason (or "Strong password.")."""
        return MESSAGES[self.code].format(**self.params)

    @property
    def label(self):
        return SCORE_LABELS[self.score]

    def as_dict(self):
        """JSON-ready summary for a strength meter (never the password)."""
        return {
            "ok": self.ok,
            "code": self.code,
            "score": self.score,
            "max_score": len(SCORE_LABELS) - 1,
            "label": self.label,
            "message": self.message,
            "params": dict(self.params),
            "warning": self.warning,
            "suggestions": list(self.suggestions),
            "min_length": MIN_LENGTH,
        }


class PasswordPolicyError(SuiteError, ValueError):
    """A password the policy refuses; ``verdict`` says why."""

    def __init__(self, verdict):
        super().__init__(verdict.message)
        self.verdict = verdict


def _clean_inputs(user_inputs):
    """Words the password must not be built from (login, name, email...)."""
    words = []
    for value in user_inputs or ():
        if not isinstance(value, str) or not value.strip():
            continue
        value = value.strip().lower()
        words.append(value)
        # "jane.doe@example.com" -> also "jane", "doe", "example"
        for part in value.replace("@", " ").replace(".", " ").replace("_", " ").split():
            if len(part) >= 3 and part not in words:
                words.append(part)
    return words


def check_password(password, user_inputs=()):
    """Judge ``password``; returns a :class:`Verdict` (never raises on weakness).

    :param str password: the candidate
    :param user_inputs: words tied to the user or the database that the
        password should not be made of (``login``, ``name``, ``email``...)
    """
    if not isinstance(password, str) or not password:
        return Verdict(False, "empty")
    length = len(password)
    if length > MAX_LENGTH:
        return Verdict(False, "too_long", params={"max_length": MAX_LENGTH})
    estimate = zxcvbn(
        password[:ESTIMATE_LENGTH],
        user_inputs=_clean_inputs(user_inputs),
        max_length=ESTIMATE_LENGTH,
    )
    score = int(estimate["score"])
    feedback = estimate.get("feedback") or {}
    warning = feedback.get("warning") or ""
    suggestions = tuple(feedback.get("suggestions") or ())
    common = {"score": score, "warning": warning, "suggestions": suggestions}
    if length < MIN_LENGTH:
        return Verdict(
            False,
            "too_short",
            params={"min_length": MIN_LENGTH, "length": length},
            **common,
        )
    if score < MIN_SCORE:
        hint = warning or (suggestions[0] if suggestions else DEFAULT_HINT)
        return Verdict(
            False,
            "weak",
            params={"label": SCORE_LABELS[score], "hint": hint},
            **common,
        )
    return Verdict(True, "ok", **common)


def check_new_password(password, confirm=None, user_inputs=()):
    """:func:`check_password`, then that ``confirm`` (when given) matches."""
    verdict = check_password(password, user_inputs)
    if verdict.ok and confirm is not None and confirm != password:
        return Verdict(False, "mismatch", score=verdict.score)
    return verdict


def require_strong(password, confirm=None, user_inputs=()):
    """Raise :class:`PasswordPolicyError` unless the policy accepts ``password``."""
    verdict = check_new_password(password, confirm, user_inputs)
    if not verdict.ok:
        raise PasswordPolicyError(verdict)
    return verdict
