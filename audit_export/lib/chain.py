"""Canonical form, keyed hash chain and verification of audit events (pure Python).

Terms: ``K`` is the chain key of one database: the server keyring's HKDF
sub-key ``derive("audit-chain", database uuid, key_id)`` (key id
``kr:<id>``), or, without a keyring, SHA-256 of the database secret (key id
``db``, readable by anyone with SQL access). ``||`` is concatenation,
``HMAC`` is HMAC-SHA256, hex encoded.

Format 2 (``chain_version = 2``, every event written by this code):

- each personal value (login, user name, resource name, IP address, user
  agent, message, each entry of ``details``) sits in a *slot* with a fresh
  16-byte random salt: ``commitment = HMAC(salt, "audit-commit/v2" || 0 ||
  slot || 0 || JSON(value))``;
- ``digest = HMAC(K, canonical_v2)``, where ``canonical_v2`` is the JSON of
  the non-personal fields and the map slot -> commitment (:func:`canonical_v2`);
- when sealed, ``chain_hash = HMAC(K, "audit-link/v2" || 0 || prev_hash |
  sequence | digest | key_id)``: the position, the predecessor and the key id
  are authenticated, so renumbering or re-linking needs ``K``;
- erasing a value (GDPR) replaces it with ``erased under <reason>``, deletes
  its salt and keeps its commitment in a redaction record signed with ``K``:
  the digest still verifies, the value cannot be recovered from what is left.

Format 1 (legacy, ``chain_version`` NULL): ``digest = HMAC(K, canonical)``
of the plain values and an unkeyed link ``SHA-256(prev | sequence |
digest)``. Such events still verify with their old rule; once a keyring
signs the chain, the legacy prefix is pinned by a signed *adoption*
checkpoint and no legacy link may follow a keyed one.

Checkpoints (the recorded head, retention anchors, the adoption point) and
the lines of the external witness file are signed with ``K`` as well.
:func:`verify_log` walks the whole log and names the first problem; see
docs/audit-chain.md for the construction, the attacks and the limits.
"""

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
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


# ---------------------------------------------------------------------------
# Format 2: salted commitments of personal values, keyed links
# ---------------------------------------------------------------------------

LEGACY_VERSION = 1
KEYED_VERSION = 2
DB_KEY_ID = "db"
KEYRING_KEY_PREFIX = "kr:"
#: Columns holding personal values: committed, erasable.
COMMITTED_COLUMNS = (
    "login",
    "user_name",
    "res_name",
    "ip_address",
    "user_agent",
    "message",
)
#: Fields signed in clear in format 2 (``origin``: carried-over events).
PLAIN_FIELDS_V2 = (
    "uuid",
    "timestamp",
    "user_uid",
    "action",
    "result",
    "res_model",
    "res_id",
    "origin",
)
#: Every stored field format 2 reads (the legacy fields and ``origin``).
EVENT_FIELDS_V2 = (*CANONICAL_FIELDS, "origin")
SALT_BYTES = 16
ERASED_PREFIX = "erased under "
#: Slot prefixes of the entries of ``details``: ``details["fields"][name]``
#: (captured field values) and the other top-level keys.
FIELD_SLOT = "fields."
DETAIL_SLOT = "details."

_COMMIT_LABEL = b"odoo-suite/audit-commit/v2\x00"
_LINK_LABEL = b"odoo-suite/audit-link/v2\x00"
_CHECKPOINT_LABEL = b"odoo-suite/audit-checkpoint/v2\x00"
_REDACTION_LABEL = b"odoo-suite/audit-redaction/v2\x00"
_HEX64_RE = re.compile(r"[0-9a-f]{64}\Z")
_SALT_RE = re.compile(r"[0-9a-f]{%d}\Z" % (2 * SALT_BYTES))


def is_keyring_key(key_id):
    """True for a key id of the server keyring (``kr:<id>``)."""
    return isinstance(key_id, str) and key_id.startswith(KEYRING_KEY_PREFIX)


def _json(value):
    return json.dumps(value, **_COMPACT)


def erased(reason):
    """What an erased value reads: ``erased under <reason>``."""
    return f"{ERASED_PREFIX}{reason}"


def personal_values(values):
    """``{slot: value}`` of the personal values of an event (JSON-normal).

    Slots: the names of :data:`COMMITTED_COLUMNS`, ``fields.<name>`` for
    each entry of ``details["fields"]`` (captured changes), ``details.<key>``
    for the other keys of ``details``, and ``details`` for details that are
    not an object. Empty values have no slot. The mapping is one-to-one, so
    a value cannot be moved to another slot unnoticed.
    """
    slots = {}
    for name in COMMITTED_COLUMNS:
        value = _norm(name, values.get(name))
        if value is not None:
            slots[name] = value
    details = _norm("details", values.get("details"))
    if isinstance(details, dict):
        for key, value in details.items():
            if key == "fields" and isinstance(value, dict):
                for name, entry in value.items():
                    slots[FIELD_SLOT + name] = entry
            else:
                slots[DETAIL_SLOT + key] = value
    elif details is not None:
        slots["details"] = details
    return slots


_ENCODER = json.JSONEncoder(**_COMPACT)


def _value_json(value):
    """``json.dumps(value, **_COMPACT)``, with shortcuts for scalars."""
    if type(value) is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if type(value) is int:
        return int.__repr__(value)
    return _ENCODER.encode(value)


def commit(salt_hex, slot, value):
    """The salted commitment (hex) of ``value`` in ``slot``:
    ``SHA-256(salt || "audit-commit/v2" || 0 || slot || 0 || JSON(value))``.

    The 128-bit random salt makes it hiding (a guessed value cannot be
    checked against it once the salt is gone) and SHA-256 makes it binding.
    Plain SHA-256 rather than HMAC keyed by the salt: the message has a fixed
    prefix and length-extension does not apply; measured on 10,000 captured
    updates it halves the cost of the commitments (the salt as an HMAC key
    is a new key schedule per value).
    """
    return hashlib.sha256(
        b"".join(
            (
                bytes.fromhex(salt_hex),
                _COMMIT_LABEL,
                slot.encode(),
                b"\x00",
                _value_json(value).encode(),
            )
        )
    ).hexdigest()


def new_salts(slots):
    """A fresh random salt (hex) for each slot name."""
    raw = secrets.token_bytes(SALT_BYTES * len(slots)).hex()
    width = 2 * SALT_BYTES
    return {slot: raw[i * width : (i + 1) * width] for i, slot in enumerate(slots)}


def canonical_v2(values, commitments):
    """Canonical bytes of a format 2 event: clear fields and commitments."""
    data = {name: _norm(name, values.get(name)) for name in PLAIN_FIELDS_V2}
    data["c"] = commitments
    data["v"] = KEYED_VERSION
    return _ENCODER.encode(data).encode("utf-8")


def sign_v2(key, values):
    """Sign a new event: ``(digest, salts, details JSON text or None)``.

    ``values["details"]`` is normalised once; the returned text is what the
    ``details`` column must store (the commitments cover exactly it).
    """
    details = _norm("details", values.get("details"))
    if isinstance(details, dict) and type(details) is not NormalizedDetails:
        details = NormalizedDetails(details)
    values = dict(values, details=details)
    slots = personal_values(values)
    salts = new_salts(slots)
    commitments = {
        slot: commit(salts[slot], slot, value) for slot, value in slots.items()
    }
    event_digest = sign(key, canonical_v2(values, commitments))
    return event_digest, salts, None if details is None else _ENCODER.encode(details)


def link_v2(key, prev_hash, sequence, event_digest, key_id):
    """The keyed chain hash of the event at ``sequence``."""
    message = _LINK_LABEL + (
        f"{prev_hash}|{int(sequence)}|{event_digest}|{key_id}".encode()
    )
    return hmac.digest(key, message, "sha256").hex()


def link_for(version, key, prev_hash, sequence, event_digest, key_id):
    """The chain hash by the rule of ``version`` (legacy links are unkeyed)."""
    if (version or LEGACY_VERSION) >= KEYED_VERSION:
        return link_v2(key, prev_hash, sequence, event_digest, key_id)
    return link(prev_hash, sequence, event_digest)


# -- Checkpoints (head, retention anchors, keyring adoption) -----------------

CHECKPOINT_FIELDS = (
    "kind",
    "sequence",
    "chain_hash",
    "purged_count",
    "cutoff",
    "sealed_at",
    "key_id",
)


def _stamp(value):
    if value is None or value is False or value == "":
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)[:19]


def checkpoint_message(checkpoint):
    data = {name: checkpoint.get(name) for name in CHECKPOINT_FIELDS}
    data["sequence"] = int(data["sequence"] or 0)
    data["purged_count"] = int(data["purged_count"] or 0)
    data["cutoff"] = _stamp(data["cutoff"])
    data["sealed_at"] = _stamp(data["sealed_at"])
    data["chain_hash"] = data["chain_hash"] or None
    return _CHECKPOINT_LABEL + _json(data).encode()


def sign_checkpoint(key, checkpoint):
    """MAC (hex) of a checkpoint; ``checkpoint["key_id"]`` must be set."""
    return hmac.digest(key, checkpoint_message(checkpoint), "sha256").hex()


# -- Redaction records -------------------------------------------------------


def redaction_message(event_uuid, record):
    data = {k: v for k, v in record.items() if k != "mac"}
    data["event"] = event_uuid
    return _REDACTION_LABEL + _json(data).encode()


def sign_redaction(key, event_uuid, record):
    """MAC (hex) of a redaction record of event ``event_uuid``."""
    return hmac.digest(key, redaction_message(event_uuid, record), "sha256").hex()


def legacy_attestation(values):
    """SHA-256 of the legacy canonical form of an (erased) format 1 event."""
    return hashlib.sha256(canonical(values)).hexdigest()


def set_slot(values, slot, value):
    """Put ``value`` in ``slot`` of event ``values`` (a dict, changed in
    place; ``details`` is copied)."""
    if slot in COMMITTED_COLUMNS:
        values[slot] = value
        return
    details = values.get("details")
    if slot == "details":
        values["details"] = value
        return
    details = json.loads(_json(details)) if isinstance(details, dict) else {}
    if slot.startswith(FIELD_SLOT):
        fields = details.get("fields")
        if not isinstance(fields, dict):
            fields = details["fields"] = {}
        fields[slot[len(FIELD_SLOT) :]] = value
    else:
        details[slot[len(DETAIL_SLOT) :]] = value
    values["details"] = details


def erase_slots(row, slots, *, reason, key, key_id, uid, at, verified=True):
    """Erase ``slots`` of event ``row``: ``(values, salts, record)``.

    ``values``: the event's fields (:data:`EVENT_FIELDS_V2`) with each erased
    value replaced by ``erased under <reason>``; ``salts``: what is left of
    them; ``record``: the redaction record to append, signed with ``key``.
    Format 2: the record keeps each erased value's commitment (computed
    from its salt, which goes), so the digest still verifies. Legacy
    format: the digest covers the plain values, so the record attests, under
    ``key``, the SHA-256 of the erased event's legacy canonical form and
    whether the event verified before (``verified``).
    """
    placeholder = erased(reason)
    personal = personal_values(row)
    values = {name: row.get(name) for name in EVENT_FIELDS_V2}
    record = {"reason": reason, "uid": uid, "at": at, "key_id": key_id}
    salts = row.get("salts")
    if (row.get("chain_version") or LEGACY_VERSION) >= KEYED_VERSION:
        salts = dict(salts or {})
        commitments = {}
        for slot in sorted(slots):
            salt = salts.pop(slot, None)
            # Without its salt the value was already tampered with: the event
            # keeps failing verification, but the value goes.
            commitments[slot] = commit(salt, slot, personal[slot]) if salt else "0" * 64
            set_slot(values, slot, placeholder)
        record["slots"] = commitments
    else:
        for slot in sorted(slots):
            set_slot(values, slot, placeholder)
        record["erased"] = sorted(slots)
        record["legacy"] = {
            "digest": row.get("digest"),
            "verified": bool(verified),
            "attests": legacy_attestation(values),
        }
    record["mac"] = sign_redaction(key, row.get("uuid"), record)
    return values, salts, record


# -- Checking one event ---------------------------------------------------

ALTERED = "does not match its digest: it was altered, or inserted outside the audit API"


class EventCheck:
    """Check one event's digest (and its redaction records).

    ``key_for(key_id)`` returns key bytes or raises; ``trusted(key_id)``
    says whether a key id may sign under the current policy.
    """

    def __init__(self, key_for, trusted):
        self.key_for = key_for
        self.trusted = trusted

    def problem(self, row):
        """``None`` when the event is intact, else a message."""
        try:
            key = self.key_for(row.get("key_id"))
        except Exception as exc:
            return f"names an unavailable key {row.get('key_id')!r} ({exc})"
        records = row.get("redactions") or []
        if not isinstance(records, list):
            return "has malformed erasure records"
        for record in records:
            message = self._record_problem(row, record)
            if message:
                return message
        if (row.get("chain_version") or LEGACY_VERSION) >= KEYED_VERSION:
            return self._problem_v2(row, key, records)
        return self._problem_v1(row, key, records)

    def _record_problem(self, row, record):
        if not isinstance(record, dict) or not isinstance(record.get("mac"), str):
            return (
                "has an erasure record that is not signed: values were removed "
                "outside the audit API"
            )
        key_id = record.get("key_id")
        if not self.trusted(key_id):
            return (
                f"has an erasure record signed with the key {key_id!r}, which is "
                "not trusted while a server keyring is configured"
            )
        try:
            key = self.key_for(key_id)
        except Exception:
            return f"has an erasure record naming an unavailable key {key_id!r}"
        expected = sign_redaction(key, row.get("uuid"), record)
        if not hmac.compare_digest(expected, record["mac"]):
            return (
                "has an erasure record that does not match its signature: values "
                "were removed or changed outside the audit API"
            )
        return None

    def _problem_v1(self, row, key, records):
        if not records:
            if hmac.compare_digest(digest(key, row), row.get("digest") or ""):
                return None
            return ALTERED
        last = records[-1].get("legacy") or {}
        if not all((r.get("legacy") or {}).get("verified") for r in records):
            return "was already altered when its personal data were erased"
        if last.get("digest") != row.get("digest") or not hmac.compare_digest(
            str(last.get("attests") or ""), legacy_attestation(row)
        ):
            return (
                "does not match the content attested when it was erased: it was altered"
            )
        return None

    def _problem_v2(self, row, key, records):
        redacted = {}
        for record in records:
            slots = record.get("slots")
            if not isinstance(slots, dict):
                return "has a malformed erasure record"
            for slot, commitment in slots.items():
                redacted[slot] = (commitment, record.get("reason"))
        salts = row.get("salts")
        if not isinstance(salts, dict):
            salts = {}
        commitments = {}
        for slot, value in personal_values(row).items():
            if slot in redacted:
                commitment, reason = redacted[slot]
                if value != erased(reason):
                    return f"its erased value {slot!r} was changed after the erasure"
                commitments[slot] = commitment
                continue
            salt = salts.get(slot)
            if not isinstance(salt, str) or not _SALT_RE.match(salt):
                return (
                    f"its value {slot!r} has no valid salt: it was added or "
                    "altered outside the audit API"
                )
            commitments[slot] = commit(salt, slot, value)
        missing = set(redacted) - set(commitments)
        if missing:
            return f"its erased value {sorted(missing)[0]!r} was removed"
        expected = sign(key, canonical_v2(row, commitments))
        if hmac.compare_digest(expected, row.get("digest") or ""):
            return None
        return ALTERED


# -- Walking the chain ----------------------------------------------------


def _problem(kind, row, message, sequence=None):
    return {
        "kind": kind,
        "event_id": row["id"] if row else False,
        "sequence": row["sequence"] if row else sequence,
        "message": message,
    }


class ChainWalker:
    """Verify events in chain order, batch after batch.

    ``keyring``: a server keyring is configured; events after the adoption
    point (``adopted``: ``(sequence, chain_hash)`` of a verified adoption
    checkpoint, or None) must then be signed with it and use keyed links.
    """

    def __init__(
        self,
        key_for,
        *,
        keyring=False,
        anchor_sequence=0,
        anchor_hash=GENESIS,
        adopted=None,
    ):
        self.key_for = key_for
        self.keyring = keyring
        self.adopted = adopted
        self.last_seq = anchor_sequence
        self.last_hash = anchor_hash
        self.checked = 0
        self.before_keyring = 0
        self.legacy = 0
        self.redacted = 0
        self.keyed_seen = False
        self.check = EventCheck(key_for, self.trusted)

    def trusted(self, key_id):
        if self.keyring:
            return is_keyring_key(key_id)
        return key_id == DB_KEY_ID or is_keyring_key(key_id)

    def feed(self, rows):
        """Check ``rows`` (dicts ordered by sequence); the first problem or None."""
        for row in rows:
            problem = self._row(row)
            if problem:
                return problem
        return None

    def _row(self, row):
        seq, prev_seq = row["sequence"], self.last_seq
        if seq <= prev_seq:
            return _problem(
                "inserted",
                row,
                f"event {row['id']} repeats chain position {seq} "
                f"(expected {prev_seq + 1}): it was inserted outside the audit API",
            )
        if seq > prev_seq + 1:
            missing = (
                f"{prev_seq + 1}"
                if seq == prev_seq + 2
                else f"{prev_seq + 1} to {seq - 1}"
            )
            return _problem(
                "removed",
                row,
                f"events at chain position {missing} were removed "
                f"(just before event {row['id']})",
            )
        version = row.get("chain_version") or LEGACY_VERSION
        key_id = row.get("key_id")
        adopted_seq = self.adopted[0] if self.adopted else 0
        pre_keyring = self.keyring and seq <= adopted_seq
        if version < KEYED_VERSION and self.keyed_seen:
            return _problem(
                "untrusted",
                row,
                f"event {row['id']} (position {seq}) uses the legacy unkeyed chain "
                "link after keyed links: it was re-linked outside the audit API",
            )
        if self.keyring and not pre_keyring:
            if not is_keyring_key(key_id):
                return _problem(
                    "untrusted",
                    row,
                    f"event {row['id']} (position {seq}) is signed with the "
                    f"database key ({key_id!r}), which anyone with SQL access can "
                    "read: UNTRUSTED while a server keyring is configured",
                )
            if version < KEYED_VERSION:
                return _problem(
                    "untrusted",
                    row,
                    f"event {row['id']} (position {seq}) uses the legacy unkeyed "
                    "chain link after the server keyring was adopted: UNTRUSTED",
                )
        elif not self.keyring and not self.trusted(key_id):
            return _problem(
                "altered",
                row,
                f"event {row['id']} (position {seq}) names an unknown key {key_id!r}",
            )
        message = self.check.problem(row)
        if message:
            return _problem(
                "altered", row, f"event {row['id']} (position {seq}) {message}"
            )
        key = self.key_for(key_id)
        expected = link_for(
            version, key, self.last_hash, seq, row.get("digest") or "", key_id
        )
        if not hmac.compare_digest(expected, row.get("chain_hash") or ""):
            return _problem(
                "altered",
                row,
                f"event {row['id']} (position {seq}) breaks the chain: its chain "
                "hash or position was altered, or an event before it was removed "
                "and the chain re-linked",
            )
        if pre_keyring and seq == adopted_seq and self.adopted[1] != expected:
            return _problem(
                "altered",
                row,
                f"event {row['id']} (position {seq}): the events recorded before "
                "the server keyring was adopted were changed since",
            )
        self.keyed_seen = self.keyed_seen or version >= KEYED_VERSION
        self.before_keyring += 1 if pre_keyring else 0
        self.legacy += 1 if version < KEYED_VERSION else 0
        self.redacted += 1 if row.get("redactions") else 0
        self.last_seq, self.last_hash = seq, expected
        self.checked += 1
        return None


def check_chain(rows, anchor_sequence, anchor_hash, key_for, **options):
    """``(checked, last_sequence, last_hash, problem)`` of ``rows`` (one batch).

    ``problem`` is None or a dict ``{"kind", "event_id", "sequence",
    "message"}``; see :class:`ChainWalker` for ``options``.
    """
    walker = ChainWalker(
        key_for, anchor_sequence=anchor_sequence, anchor_hash=anchor_hash, **options
    )
    problem = walker.feed(rows)
    return walker.checked, walker.last_seq, walker.last_hash, problem


# -- Whole-log verification -----------------------------------------------

NO_KEYRING_WARNING = (
    "No server keyring is configured: the audit log is signed with a key "
    "derived from the database secret, so it is only tamper-evident against "
    "people without SQL access to the database."
)
VERIFY_BATCH = 5000


_CHECKPOINT_LABELS = {
    "anchor": "retention anchor",
    "head": "chain head checkpoint",
    "adopt": "keyring adoption checkpoint",
}


def checkpoint_problem(cp, key_for, trusted):
    """None when checkpoint ``cp`` is signed by a trusted key, else a problem."""
    label = _CHECKPOINT_LABELS.get(cp.get("kind"), "checkpoint")
    where = f"the {label} at position {cp.get('sequence')}"
    key_id = cp.get("key_id")
    if not cp.get("mac"):
        kind, message = (
            "forged",
            f"{where} is not signed: it was forged or inserted outside the "
            "audit API (events before it may have been deleted)",
        )
    elif not trusted(key_id):
        kind, message = (
            "untrusted",
            f"{where} is signed with the database key ({key_id!r}), which anyone "
            "with SQL access can read: UNTRUSTED while a server keyring is "
            "configured",
        )
    else:
        try:
            key = key_for(key_id)
        except Exception as exc:
            return _problem(
                "forged",
                None,
                f"{where} names an unavailable key ({exc})",
                cp.get("sequence"),
            )
        if hmac.compare_digest(sign_checkpoint(key, cp), cp["mac"]):
            return None
        kind, message = (
            "forged",
            f"{where} does not match its signature: it was forged or altered "
            "(events before it may have been deleted)",
        )
    return _problem(kind, None, message, cp.get("sequence"))


def check_checkpoints(checkpoints, key_for, trusted):
    """Verify the anchors' and adoption points' signatures.

    Returns ``(anchor, adopted, head, problem)``: the highest retention
    anchor, the highest adoption point (both verified) and the newest head
    checkpoint (NOT verified here: :func:`verify_log` checks it after the
    walk, so that a moved head does not hide the more precise problem of
    the events).
    """
    anchor = adopted = head = None
    for cp in sorted(checkpoints, key=lambda c: c.get("sequence") or 0):
        kind = cp.get("kind")
        if kind == "head":
            if head is None or (cp.get("sequence") or 0) >= (head.get("sequence") or 0):
                head = cp
            continue
        problem = checkpoint_problem(cp, key_for, trusted)
        if problem:
            return None, None, None, problem
        if kind == "anchor":
            anchor = cp
        elif kind == "adopt":
            adopted = cp
    return anchor, adopted, head, None


def verify_log(store, key_for, *, keyring, checkpoints, witness=None):
    """Verify the whole audit log; returns the report dict.

    ``store`` gives the sealed events: ``rows_after(sequence, limit)``
    (ordered by sequence), ``first_at_or_before(sequence)`` (a row or None)
    and ``hashes_at(sequences)`` (``{sequence: chain_hash}``).
    ``witness``: None, or ``{"path", "records", "uuid"}`` (the lines read by
    :func:`.witness.read`, the database uuid) to compare the chain with the
    external witness.
    """
    report = {
        "ok": False,
        "checked": 0,
        "head_sequence": 0,
        "head_hash": GENESIS,
        "anchor_sequence": 0,
        "problem": None,
        "keyring": bool(keyring),
        "warnings": [] if keyring else [NO_KEYRING_WARNING],
        "before_keyring": 0,
        "legacy": 0,
        "redacted": 0,
        "witness": None,
    }
    probe = ChainWalker(key_for, keyring=keyring)
    anchor, adopted, head, problem = check_checkpoints(
        checkpoints, key_for, probe.trusted
    )
    if problem:
        report["problem"] = problem
        return report
    anchor_seq = anchor["sequence"] if anchor else 0
    anchor_hash = anchor["chain_hash"] if anchor else GENESIS
    report["anchor_sequence"] = anchor_seq
    walker = ChainWalker(
        key_for,
        keyring=keyring,
        anchor_sequence=anchor_seq,
        anchor_hash=anchor_hash,
        adopted=(adopted["sequence"], adopted["chain_hash"]) if adopted else None,
    )
    stale = store.first_at_or_before(anchor_seq) if anchor_seq else None
    if stale:
        problem = _problem(
            "inserted",
            stale,
            f"event {stale['id']} sits at chain position {stale['sequence']}, "
            f"before the retention anchor {anchor_seq}: it was inserted outside "
            "the audit API",
        )
    while problem is None:
        rows = store.rows_after(walker.last_seq, VERIFY_BATCH)
        if not rows:
            break
        problem = walker.feed(rows)
    report.update(
        checked=walker.checked,
        head_sequence=walker.last_seq,
        head_hash=walker.last_hash,
        before_keyring=walker.before_keyring,
        legacy=walker.legacy,
        redacted=walker.redacted,
    )
    if problem is None and head is not None:
        problem = checkpoint_problem(head, key_for, walker.trusted) or _check_head(
            head, walker
        )
    if problem is None and witness is not None:
        from suite_core import witness as witness_lib

        problem, summary = witness_lib.check(
            witness["records"],
            key_for=key_for,
            trusted=walker.trusted,
            hashes_at=store.hashes_at,
            anchor=(anchor_seq, anchor_hash),
            last=(walker.last_seq, walker.last_hash),
            uuid=witness.get("uuid"),
            path=witness.get("path"),
        )
        report["witness"] = summary
        if summary and summary.get("warning"):
            report["warnings"].append(summary["warning"])
    if keyring and adopted and walker.before_keyring:
        report["warnings"].append(
            f"{walker.before_keyring} events up to chain position "
            f"{adopted['sequence']} were recorded before the server keyring "
            f"signed the chain; they are protected by it only since "
            f"{_stamp(adopted.get('sealed_at'))}."
        )
    if walker.legacy:
        report["warnings"].append(
            f"{walker.legacy} events use the legacy format (unkeyed chain link, "
            "values not erasable); they verify with the rule they were written "
            "under."
        )
    report["problem"] = problem
    report["ok"] = problem is None
    return report


def _check_head(head, walker):
    head_seq = head.get("sequence") or 0
    if head_seq > walker.last_seq:
        return _problem(
            "removed",
            None,
            f"the last events (chain positions {walker.last_seq + 1} to {head_seq}) "
            "were removed",
            walker.last_seq + 1,
        )
    if head_seq == walker.last_seq and head.get("chain_hash") != walker.last_hash:
        return _problem(
            "altered",
            None,
            "the chain head does not match the recorded head",
            head_seq,
        )
    return None
