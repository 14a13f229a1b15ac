"""Masking of payment information in data subject export packages.

Bank account numbers keep their last 4 characters; card-like numbers
(13 to 19 digits, optionally grouped with spaces or dashes, passing the Luhn
check) found in any text keep their last 4 digits.
"""

import re

MASK_CHAR = "*"
_CARD_RE = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")


def mask_account_number(value, keep=4):
    """Mask every letter or digit of ``value`` but the last ``keep`` ones.

    Separators (spaces, dashes) stay where they are so the shape of the
    number is still recognisable: ``NL91 ABNA 0417 1643 00`` becomes
    ``**** **** **** **43 00``.
    """
    if not value:
        return value
    text = str(value)
    alnum_positions = [i for i, ch in enumerate(text) if ch.isalnum()]
    to_mask = set(alnum_positions[:-keep] if keep else alnum_positions)
    return "".join(MASK_CHAR if i in to_mask else ch for i, ch in enumerate(text))


def luhn_valid(digits):
    """True when the string of digits passes the Luhn checksum."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        number = int(char)
        if index % 2:
            number *= 2
            if number > 9:
                number -= 9
        total += number
    return total % 10 == 0


def mask_card_numbers(text):
    """Mask card-like numbers (Luhn-valid, 13-19 digits) inside ``text``."""
    if not isinstance(text, str) or not text:
        return text

    def _replace(match):
        candidate = match.group(0)
        digits = re.sub(r"\D", "", candidate)
        if not 13 <= len(digits) <= 19 or not luhn_valid(digits):
            return candidate
        return mask_account_number(candidate)

    return _CARD_RE.sub(_replace, text)


def mask_document(value, secrets=()):
    """Return a deep copy of a JSON-like ``value`` with payment data masked.

    ``secrets`` are exact strings (for example the subject's bank account
    numbers) replaced by their masked form wherever they occur in a string,
    including inside display names; card-like numbers are masked everywhere.
    """
    ordered = sorted({s for s in secrets if s and len(s) > 4}, key=len, reverse=True)

    def _mask_text(text):
        for secret in ordered:
            if secret in text:
                text = text.replace(secret, mask_account_number(secret))
        return mask_card_numbers(text)

    def _walk(node):
        if isinstance(node, str):
            return _mask_text(node)
        if isinstance(node, dict):
            return {key: _walk(item) for key, item in node.items()}
        if isinstance(node, list | tuple):
            return [_walk(item) for item in node]
        return node

    return _walk(value)
