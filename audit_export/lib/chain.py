"""Canonical form and hash chain of audit events (pure Python).

Each event gets, when it is written, a ``digest``: HMAC-SHA256 under the
audit key of the canonical JSON of its fields (:func:`canonical`). When the
event is sealed into the chain (right after its transaction commits), it gets
a ``sequence`` (1, 2, 3, ... without gaps) and
``chain_hash = SHA-256(prev_chain_hash || sequence || digest)``.

Verification walks the events by sequence from the anchor (the genesis
value, or the chain hash of the last event purged by retention):

- a changed field makes the digest differ (event *altered*);
- a removed event leaves a gap in the sequence (event *removed*);
- a row inserted by SQL has no valid digest, or a duplicated / out-of-chain
  sequence (event *inserted*).

The key is the server keyring's HKDF sub-key when a keyring is configured
(then a database superuser cannot forge digests) and otherwise a key derived
from the database secret (detects tampering by anyone who does not read that
secret first).
"""

import datetime as dt
import hashlib
import hmac
import json
import re
from json.encoder import encode_basestring

GENESIS = "0" * 64
CANONICAL_VERSION = 1
CANONICAL_FIELDS = (
    "uuid",
    "timestamp",
    "user_uid",
    "login",
    "user_name",
    "action",
    "result",
    "res_model",
    "res_id",
    "res_name",
    "ip_address",
    "user_agent",
    "details",
    "message",
)


def normalize_details(details):
    """A JSON round trip: what is hashed is exactly what the database returns."""
    if details is None:
        return None
    return json.loads(json.dumps(details, default=str))


class NormalizedDetails(dict):
    """Details already in JSON-normal form: string keys, and only ``str``,
    ``int``, ``float``, ``bool``, ``None``, ``list`` and such dicts as values
    (what a JSON round trip returns). The encoder then skips the round trip;
    anything else in it would make the event fail verification.
    """

    __slots__ = ()


def _norm(name, value):
    if value is None or value is False or value == "":
        return None
    if name == "timestamp":
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            return value.strftime("%Y-%m-%d %H:%M:%S")
        return str(value)
    if name in ("user_uid", "res_id"):
        return int(value) or None
    if name == "details":
        if type(value) is NormalizedDetails:
            return value
        return normalize_details(value)
    return str(value)


# Placeholder for the details in the canonical form: a structural
# ``"details":null`` appears once (string values escape their quotes).
_DETAILS_SLOT = '"details":null'
_COMPACT = {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": False}


def encode(values):
    """``(canonical bytes, details JSON text or None)`` of an event.

    One serialisation of the details serves both the canonical form and the
    ``jsonb`` column, so bulk inserts do not encode them twice.
    """
    data = {
        name: _norm(name, values.get(name))
        for name in CANONICAL_FIELDS
        if name != "details"
    }
    data["details"] = None
    data["v"] = CANONICAL_VERSION
    text = json.dumps(data, **_COMPACT)
    details = _norm("details", values.get("details"))
    if details is None:
        return text.encode("utf-8"), None
    details_text = json.dumps(details, **_COMPACT)
    text = text.replace(_DETAILS_SLOT, f'"details":{details_text}', 1)
    return text.encode("utf-8"), details_text


_SLOT_RE = re.compile(r'"\\u0000(\d+)\\u0000"')


def _all_same(values):
    """True when every value equals the first, with the same type (1 != True)."""
    first = values[0]
    return values.count(first) == len(values) and len(set(map(type, values))) == 1


def _encode_value(name, value):
    """JSON text of one canonical field, as ``json.dumps`` writes it."""
    value = _norm(name, value)
    if value is None:
        return "null"
    if name == "details":
        return json.dumps(value, **_COMPACT)
    if isinstance(value, int):
        return int.__repr__(value)
    return encode_basestring(value)


def encode_many(vals_list):
    """``[encode(vals) for vals in vals_list]``, faster for batches.

    Fields with the same value in every event (user, action, model, time...
    of a captured batch) are encoded once into a template; only the others
    (uuid, record, details...) are encoded per event.
    """
    if len(vals_list) < 2:
        return [encode(vals) for vals in vals_list]
    first = vals_list[0]
    varying = [
        name
        for name in CANONICAL_FIELDS
        if name == "details" or not _all_same([vals.get(name) for vals in vals_list])
    ]
    data = {
        name: f"\x00{varying.index(name)}\x00"
        if name in varying
        else _norm(name, first.get(name))
        for name in CANONICAL_FIELDS
    }
    data["v"] = CANONICAL_VERSION
    # [text, slot, text, slot, ..., text]; slots in sorted key order.
    pieces = _SLOT_RE.split(json.dumps(data, **_COMPACT))
    texts = pieces[0::2]
    slots = [int(slot) for slot in pieces[1::2]]
    if sorted(slots) != list(range(len(varying))):
        # A shared value looks like a slot (it holds NUL characters).
        return [encode(vals) for vals in vals_list]
    order = [varying[slot] for slot in slots]
    details_at = order.index("details")
    result = []
    for vals in vals_list:
        encoded = [_encode_value(name, vals.get(name)) for name in order]
        parts = [texts[0]]
        for value_text, text in zip(encoded, texts[1:], strict=True):
            parts.append(value_text)
            parts.append(text)
        details_text = encoded[details_at]
        result.append(
            (
                "".join(parts).encode("utf-8"),
                None if details_text == "null" else details_text,
            )
        )
    return result


def canonical(values):
    """The canonical bytes of an event (sorted keys, no whitespace, UTF-8)."""
    return encode(values)[0]


def sign(key, canonical_bytes):
    """HMAC-SHA256 (hex) of canonical bytes under ``key`` (bytes)."""
    return hmac.new(key, canonical_bytes, hashlib.sha256).hexdigest()


def digest(key, values):
    """HMAC-SHA256 (hex) of the canonical form under ``key`` (bytes)."""
    return sign(key, canonical(values))


def link(prev_hash, sequence, event_digest):
    """The chain hash of the event at ``sequence``."""
    data = f"{prev_hash}|{int(sequence)}|{event_digest}".encode("ascii")
    return hashlib.sha256(data).hexdigest()


def check_chain(rows, anchor_sequence, anchor_hash, key_for):
    """Walk ``rows`` (dicts ordered by sequence) and return the first problem.

    ``key_for(key_id)`` returns the key bytes for a row's ``key_id``.
    Returns ``(checked_count, last_sequence, last_hash, problem)`` where
    ``problem`` is ``None`` or a dict ``{"kind": "altered" | "removed" |
    "inserted", "event_id", "sequence", "message"}``.
    """
    prev_seq, prev_hash = anchor_sequence, anchor_hash
    checked = 0
    for row in rows:
        seq = row["sequence"]
        if seq <= prev_seq:
            return (
                checked,
                prev_seq,
                prev_hash,
                _problem(
                    "inserted",
                    row,
                    f"event {row['id']} repeats chain position {seq} "
                    f"(expected {prev_seq + 1}): it was inserted outside the audit API",
                ),
            )
        if seq > prev_seq + 1:
            missing = (
                f"{prev_seq + 1}"
                if seq == prev_seq + 2
                else f"{prev_seq + 1} to {seq - 1}"
            )
            return (
                checked,
                prev_seq,
                prev_hash,
                _problem(
                    "removed",
                    row,
                    f"events at chain position {missing} were removed "
                    f"(just before event {row['id']})",
                ),
            )
        try:
            key = key_for(row.get("key_id"))
        except Exception as exc:  # noqa: BLE001 - reported as the problem
            return (
                checked,
                prev_seq,
                prev_hash,
                _problem("altered", row, f"event {row['id']}: key unavailable ({exc})"),
            )
        expected_digest = digest(key, row)
        if not hmac.compare_digest(expected_digest, row.get("digest") or ""):
            return (
                checked,
                prev_seq,
                prev_hash,
                _problem(
                    "altered",
                    row,
                    f"event {row['id']} (position {seq}) does not match its digest: "
                    "it was altered, or inserted outside the audit API",
                ),
            )
        expected_hash = link(prev_hash, seq, expected_digest)
        if not hmac.compare_digest(expected_hash, row.get("chain_hash") or ""):
            return (
                checked,
                prev_seq,
                prev_hash,
                _problem(
                    "altered",
                    row,
                    f"event {row['id']} (position {seq}) breaks the chain: "
                    "its chain hash was altered",
                ),
            )
        prev_seq, prev_hash = seq, expected_hash
        checked += 1
    return checked, prev_seq, prev_hash, None


def _problem(kind, row, message):
    return {
        "kind": kind,
        "event_id": row["id"],
        "sequence": row["sequence"],
        "message": message,
    }
