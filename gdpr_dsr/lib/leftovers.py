"""The identifiers of a data subject, and how to find and erase them in text.

The leftover scan of an erasure searches every text column of the database
for what identifies the subject: email addresses, names, phone numbers,
logins, VAT numbers and bank account numbers (IBAN). Each identifier is
normalised once and compiled twice, to the same rule:

- a PostgreSQL regular expression (ARE, used with ``~*``, case-insensitive)
  that finds the rows and columns holding it;
- a Python regular expression that tells which kinds of identifier a value
  holds and replaces each occurrence (:meth:`SubjectIdentifiers.redact`).

What is searched, and what is left out because it is too short to be
searched without erasing other people's data:

- emails: lower-cased, trimmed, with an ``@`` and at least 6 characters,
  found anywhere (``Jane <jane@example.com>``, ``mailto:``);
- names (and logins without ``@``): whitespace collapsed, at least 5
  characters and two words, or one word of at least 8 characters; found as
  whole words, any whitespace (``&nbsp;`` included) between the words, and
  in their HTML-escaped form;
- phone numbers: at least 7 digits; the last 9 digits (the national number
  without its prefix, so ``+32 470 12 34 56`` and ``0470/12.34.56`` both
  match), any of `` ./()-`` (at most 3) between the digits, not followed by
  another digit;
- VAT and IBAN: letters and digits only, at least 6 (VAT) or 8 (IBAN)
  characters, a space, dot or dash allowed between any two of them, not
  inside a longer word.

Nothing here imports Odoo.
"""

import html
import json
import re
import unicodedata
from collections import Counter

KINDS = ("email", "name", "login", "phone", "vat", "iban")
REPLACEMENT = "[erased]"

MIN_EMAIL = 6
MIN_NAME = 5
MIN_SINGLE_WORD_NAME = 8
MIN_PHONE_DIGITS = 7
PHONE_TAIL_DIGITS = 9
MIN_VAT = 6
MIN_IBAN = 8

_EMAIL_RE = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")
# ASCII punctuation: escaped in both regex dialects (in a PostgreSQL ARE a
# backslash before a letter or digit starts an escape, before anything else
# it quotes the character).
_PUNCTUATION = frozenset("\\^$.|?*+()[]{}-/#&~'\"!%,:;<=>@`_ ")


def _quote(text):
    """Quote ``text`` for a PostgreSQL ARE and a Python pattern alike."""
    return "".join("\\" + ch if ch in _PUNCTUATION else ch for ch in text)


def _markup_escape(text):
    """markupsafe's escape (what Odoo stores in HTML), without importing it."""
    return (
        text.replace("&", "&amp;")
        .replace(">", "&gt;")
        .replace("<", "&lt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )


def normalize_space(text):
    """NFC, every run of whitespace (non-breaking included) as one space."""
    text = unicodedata.normalize("NFC", str(text or ""))
    return " ".join(text.replace("\xa0", " ").split())


class Identifier:
    """One normalised identifier and its two compiled patterns."""

    __slots__ = ("kind", "value", "raw", "sql", "regex")

    def __init__(self, kind, value, sql, python, raw=None):
        self.kind = kind
        self.value = value
        # the forms met in the database (for the audit trail's redaction)
        self.raw = set(raw or ()) | {value}
        self.sql = sql
        self.regex = re.compile(python, re.IGNORECASE)

    def __repr__(self):
        # never the value: identifiers are personal data
        return f"<Identifier {self.kind}>"


class SubjectIdentifiers:
    """The identifiers of one data subject (see the module docstring)."""

    def __init__(self):
        self._items = {}
        self.skipped = Counter()

    # -- building -------------------------------------------------------------
    def add(self, kind, value):
        """Add ``value`` as an identifier of ``kind``; return True when it is
        searched (False: empty, a duplicate, or too short to search safely,
        counted in :attr:`skipped`)."""
        if kind not in KINDS:
            raise ValueError(f"unknown identifier kind {kind!r}")
        if value is None or value is False:
            return False
        text = normalize_space(value)
        if not text:
            return False
        if kind == "email" or (kind == "login" and "@" in text):
            added = [self._add_email(found) for found in self._emails(text)]
            return any(added)
        builder = {
            "name": self._name,
            "login": self._name,
            "phone": self._phone,
            "vat": self._compact,
            "iban": self._compact,
        }[kind]
        built = builder(kind, text)
        if built is None:
            self.skipped[kind] += 1
            return False
        return self._store(*built, raw=text)

    def _emails(self, text):
        found = _EMAIL_RE.findall(text)
        if not found:
            self.skipped["email"] += 1
        return [email.strip(".").lower() for email in found]

    def _add_email(self, email):
        if len(email) < MIN_EMAIL or email.startswith("@") or email.endswith("@"):
            self.skipped["email"] += 1
            return False
        pattern = _quote(email)
        return self._store("email", email, pattern, pattern)

    def _name(self, kind, text):
        words = text.lower().split(" ")
        if len(text) < MIN_NAME or (
            len(words) < 2 and len(text) < MIN_SINGLE_WORD_NAME
        ):
            return None
        value = " ".join(words)
        # as typed, and as HTML bodies store it (Python's and markupsafe's
        # escapes of quotes differ)
        variants = {value, html.escape(value), str(_markup_escape(value))}
        sql = "|".join(
            "(?:[[:space:]\xa0]|&nbsp;)+".join(_quote(w) for w in variant.split(" "))
            for variant in sorted(variants)
        )
        python = "|".join(
            r"(?:\s|&nbsp;)+".join(_quote(w) for w in variant.split(" "))
            for variant in sorted(variants)
        )
        return (
            kind,
            value,
            rf"(?<![[:alnum:]_])(?:{sql})(?![[:alnum:]_])",
            rf"(?<!\w)(?:{python})(?!\w)",
        )

    def _phone(self, kind, text):
        digits = re.sub(r"\D", "", text)
        if len(digits) < MIN_PHONE_DIGITS:
            return None
        tail = digits[-PHONE_TAIL_DIGITS:]
        # an optional international or trunk prefix, erased with the number
        sql_prefix = (
            "(?:(?:[+]|00)?[0-9]{1,3}[ ./()\xa0-]{0,3})?(?:[(]?0[)]?[ ./\xa0-]{0,2})?"
        )
        python_prefix = (
            r"(?:(?:\+|00)?\d{1,3}[ ./()\xa0\-]{0,3})?(?:\(?0\)?[ ./\xa0\-]{0,2})?"
        )
        sql = "[ ./()\xa0-]{0,3}".join(tail)
        python = r"[ ./()\xa0\-]{0,3}".join(tail)
        return (
            kind,
            tail,
            rf"{sql_prefix}{sql}(?![0-9])",
            rf"{python_prefix}{python}(?![0-9])",
        )

    def _compact(self, kind, text):
        compact = re.sub(r"[^0-9A-Za-z]", "", text).upper()
        if len(compact) < (MIN_VAT if kind == "vat" else MIN_IBAN):
            return None
        sql = "[ .-]?".join(compact)
        python = r"[ .\-]?".join(compact)
        return (
            kind,
            compact,
            rf"(?<![[:alnum:]]){sql}(?![[:alnum:]])",
            rf"(?<![^\W_]){python}(?![^\W_])",
        )

    def _store(self, kind, value, sql, python, raw=None):
        key = (kind, value)
        if key in self._items:
            if raw:
                self._items[key].raw.add(raw)
            return False
        self._items[key] = Identifier(
            kind, value, sql, python, raw=[raw] if raw else ()
        )
        return True

    # -- reading --------------------------------------------------------------
    def __bool__(self):
        return bool(self._items)

    def __iter__(self):
        return iter(self._items.values())

    def __len__(self):
        return len(self._items)

    def values(self, *kinds):
        """The normalised values of ``kinds`` (personal data: server only)."""
        return sorted(item.value for item in self if item.kind in kinds)

    def counts(self):
        """``{kind: number searched}`` for every kind (no values)."""
        counts = Counter(item.kind for item in self)
        return {kind: counts.get(kind, 0) for kind in KINDS}

    def sql_pattern(self):
        """One ARE alternation of every identifier (for ``column ~* %s``)."""
        return "|".join(f"(?:{item.sql})" for item in self)

    def kinds_in(self, text):
        """The sorted kinds of identifier found in ``text`` (any JSON value)."""
        found = set()
        for string in _strings(text):
            for item in self:
                if item.kind not in found and item.regex.search(string):
                    found.add(item.kind)
        return sorted(found)

    def redact(self, text, replacement=REPLACEMENT):
        """Return ``(text, count)`` with every occurrence replaced."""
        if not isinstance(text, str) or not text:
            return text, 0
        total = 0
        for item in sorted(self, key=lambda i: len(i.value), reverse=True):
            text, count = item.regex.subn(replacement, text)
            total += count
        return text, total

    def redact_json(self, value, replacement=REPLACEMENT):
        """:meth:`redact` every string of a JSON value (keys kept)."""
        if isinstance(value, str):
            return self.redact(value, replacement)
        if isinstance(value, dict):
            total, result = 0, {}
            for key, item in value.items():
                result[key], count = self.redact_json(item, replacement)
                total += count
            return result, total
        if isinstance(value, list):
            total, result = 0, []
            for item in value:
                new, count = self.redact_json(item, replacement)
                result.append(new)
                total += count
            return result, total
        return value, 0

    def for_audit(self, partner_ids=(), user_ids=()):
        """The identifiers as the audit trail's redaction takes them.

        Phone, VAT and IBAN values go with the names (texts that identify
        the subject, matched as whole words), in their usual written forms.
        """
        names = set(self.values("name"))
        for item in self:
            if item.kind in ("phone", "vat", "iban"):
                names |= {form.lower() for form in item.raw}
        logins = set(self.values("login"))
        return {
            "emails": sorted(set(self.values("email"))),
            "logins": sorted(logins),
            "names": sorted(names),
            "partner_ids": sorted({int(pid) for pid in partner_ids}),
            "user_ids": sorted({int(uid) for uid in user_ids}),
        }


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def parse_json_text(text):
    """A JSON column's text as a value (``None`` when it is not JSON)."""
    if text is None or isinstance(text, dict | list):
        return text
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def scan_result_text(remaining):
    """The one-line outcome of a scan, as the certificate states it."""
    if not remaining:
        return "no identifier left"
    kept = [occ for occ in remaining if occ.get("basis")]
    if len(kept) == len(remaining):
        return (
            f"{len(remaining)} occurrence(s) kept, each with the legal basis "
            "for keeping it"
        )
    return (
        f"{len(remaining)} occurrence(s) left, {len(remaining) - len(kept)} "
        "without a legal basis: review them"
    )
