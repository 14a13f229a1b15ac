"""Login and failed-login capture.

A failed login is the one audit event an anonymous client can cause, so it
is bounded twice: what one event stores (the tried login and the user agent
are cut, with a marker and the original length) and how many events are
stored (:class:`FailedLoginLimiter`: per address, per login and in all, per
minute and per process). What the limiter drops is counted and recorded in
a summary event once its minute is over, so the log still says how many
attempts there were.
"""

import collections
import datetime as dt
import logging
import threading
import time

from odoo import SUPERUSER_ID, api, models
from odoo.exceptions import AccessDenied

_logger = logging.getLogger(__name__)

# What one login event stores of client-supplied text (characters).
LOGIN_MAX = 64
USER_AGENT_MAX = 256
REASON_MAX = 256
TRUNCATED_MARKER = "…"

# Failed-login events stored per window and per process. An attacker
# cycling addresses (or logins) meets the per-login (or per-address) bound,
# both at once the global one; beyond it, attempts are only counted.
# 100 a minute is about 50 MB a year of rows at 1 KB if sustained.
FAILED_LOGIN_WINDOW = 60
FAILED_LOGIN_PER_ADDRESS = 10
FAILED_LOGIN_PER_LOGIN = 10
FAILED_LOGIN_TOTAL = 100
# Counters kept at most (each a key of at most LOGIN_MAX + 1 characters and
# three numbers: a few hundred KB at most). When full, the oldest counter is
# closed early (its dropped count is reported, not lost).
FAILED_LOGIN_MAX_KEYS = 4096


def cap_text(value, limit):
    """``value`` cut to ``limit`` characters, with a marker when it was cut."""
    if not isinstance(value, str):
        return value
    if len(value) <= limit:
        return value
    return value[:limit] + TRUNCATED_MARKER


class FailedLoginLimiter:
    """Admission of failed-login events: at most ``per_address`` stored per
    client address, ``per_login`` per tried login and ``total`` in all, in
    each window of ``window`` seconds.

    An attempt that is not admitted is counted against ONE counter (the
    first that is full: address, then login, then the total), so the
    counts reported in the summaries add up to the attempts dropped.
    Summaries are handed out when a counter's window is over (or when the
    counter is evicted to keep memory bounded), by the next call to
    :meth:`admit` or :meth:`due_summaries` in this process.

    Memory is bounded by ``max_keys`` counters. Thread-safe.
    """

    def __init__(
        self,
        *,
        window=FAILED_LOGIN_WINDOW,
        per_address=FAILED_LOGIN_PER_ADDRESS,
        per_login=FAILED_LOGIN_PER_LOGIN,
        total=FAILED_LOGIN_TOTAL,
        max_keys=FAILED_LOGIN_MAX_KEYS,
        clock=time.time,
    ):
        self.window = window
        self.limits = {"address": per_address, "login": per_login}
        self.total = total
        self.max_keys = max_keys
        self.clock = clock
        self._lock = threading.Lock()
        # (scope, value) -> [window_start, stored, dropped], oldest window
        # first: a counter whose window restarts moves to the end.
        self._counters = collections.OrderedDict()
        self._all = [None, 0, 0]

    def __len__(self):
        return len(self._counters)

    def admit(self, address, login):
        """``(admitted, summaries)`` for one failed login.

        ``summaries`` lists the closed counters that dropped attempts, as
        dicts: ``scope`` (address, login or all), ``value``, ``dropped``,
        ``window_start`` and ``window_end`` (epoch seconds).
        """
        now = self.clock()
        with self._lock:
            summaries = self._expire(now)
            counters = [
                self._counter(("address", address or ""), now, summaries),
                self._counter(("login", login or ""), now, summaries),
            ]
            if self._all[0] is None or now >= self._all[0] + self.window:
                summaries.extend(self._close(("all", ""), self._all, now))
                self._all = [now, 0, 0]
            limits = [self.limits["address"], self.limits["login"]]
            for counter, limit in zip(counters, limits, strict=True):
                if counter[1] >= limit:
                    counter[2] += 1
                    return False, summaries
            if self._all[1] >= self.total:
                self._all[2] += 1
                return False, summaries
            for counter in counters:
                counter[1] += 1
            self._all[1] += 1
            return True, summaries

    def due_summaries(self):
        """Summaries of the counters whose window is over (see :meth:`admit`)."""
        now = self.clock()
        with self._lock:
            summaries = self._expire(now)
            if self._all[0] is not None and now >= self._all[0] + self.window:
                summaries.extend(self._close(("all", ""), self._all, now))
                self._all = [None, 0, 0]
            return summaries

    def _counter(self, key, now, summaries):
        counter = self._counters.get(key)
        if counter is None:
            while len(self._counters) >= self.max_keys:
                old_key, old = self._counters.popitem(last=False)
                summaries.extend(self._close(old_key, old, now))
            counter = self._counters[key] = [now, 0, 0]
        return counter

    def _expire(self, now):
        summaries = []
        while self._counters:
            key, counter = next(iter(self._counters.items()))
            if now < counter[0] + self.window:
                break
            del self._counters[key]
            summaries.extend(self._close(key, counter, now))
        return summaries

    def _close(self, key, counter, now):
        start, _stored, dropped = counter
        if not dropped:
            return []
        return [
            {
                "scope": key[0],
                "value": key[1],
                "dropped": dropped,
                "window_start": start,
                "window_end": min(now, start + self.window),
            }
        ]


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
    def _audit_login_limiter(cls):
        """The failed-login limiter of this database in this process."""
        limiter = getattr(cls.pool, "_audit_login_limiter", None)
        if limiter is None:
            limiter = cls.pool._audit_login_limiter = FailedLoginLimiter()
        return limiter

    @classmethod
    def _audit_log_login(cls, action, login, uid, credential, **details):
        """Write the event in its own transaction.

        A failed login's transaction is rolled back (and a successful one has
        already committed), so the event needs its own cursor to survive.
        A failed login is stored only when the limiter admits it; summaries
        of what it dropped are written with the next event of this process.
        """
        details = {k: cap_text(v, REASON_MAX) for k, v in details.items() if v}
        details["credential_type"] = cap_text(credential.get("type"), REASON_MAX)
        if isinstance(login, str) and len(login) > LOGIN_MAX:
            details["login_length"] = len(login)
        stored_login = cap_text(login, LOGIN_MAX) if isinstance(login, str) else None
        failed = action == "login_failed"
        limiter = cls._audit_login_limiter()
        try:
            with cls.pool.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                events = env["audit.event"]
                info = events._request_info()
                if failed:
                    admitted, summaries = limiter.admit(
                        info.get("ip_address") or "", stored_login or ""
                    )
                else:
                    admitted, summaries = True, limiter.due_summaries()
                vals_list = [
                    cls._audit_dropped_vals(events, summary) for summary in summaries
                ]
                if admitted:
                    user = env["res.users"].browse(uid) if uid else env["res.users"]
                    vals = events._prepare_event_vals(
                        action,
                        user=user,
                        login=stored_login or False,
                        result="failure" if failed else "success",
                        res_model="res.users" if uid else None,
                        res_id=uid or None,
                        res_name=(user.name if uid else None),
                        details=details,
                    )
                    vals["user_agent"] = cap_text(
                        vals.get("user_agent"), USER_AGENT_MAX
                    )
                    vals_list.append(vals)
                if vals_list:
                    events.create(vals_list)
        except Exception:
            # Never turn an authentication answer into a server error.
            _logger.exception("Audit: could not record %s for %r", action, stored_login)

    @classmethod
    def _audit_dropped_vals(cls, events, summary):
        """Values of the event that reports failed logins not stored one by one."""
        scope, value, dropped = summary["scope"], summary["value"], summary["dropped"]
        start, end = (
            dt.datetime.fromtimestamp(summary[name], dt.UTC).replace(tzinfo=None)
            for name in ("window_start", "window_end")
        )
        env = events.env
        if scope == "address":
            message = env._(
                "%(count)s further failed logins from %(address)s not recorded "
                "individually",
                count=dropped,
                address=value or "?",
            )
        elif scope == "login":
            message = env._(
                "%(count)s further failed logins for %(login)s not recorded "
                "individually",
                count=dropped,
                login=value or "?",
            )
        else:
            message = env._(
                "%(count)s further failed logins not recorded individually",
                count=dropped,
            )
        vals = events._prepare_event_vals(
            "login_failed",
            user=env["res.users"],
            login=(value or False) if scope == "login" else False,
            result="failure",
            message=message,
            details={
                "not_recorded": dropped,
                "scope": scope,
                "window_start": start.isoformat(sep=" "),
                "window_end": end.isoformat(sep=" "),
            },
        )
        # The summary describes other clients: not the current request's.
        vals["ip_address"] = (value or False) if scope == "address" else False
        vals["user_agent"] = False
        return vals
