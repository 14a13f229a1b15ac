"""Tier 1: the audit chain (audit_export/lib/chain.py, lib/witness.py).

The canonical form, then property tests: a simulated server signs, seals,
witnesses, purges and erases; an attacker with SQL access (the rows, the
checkpoints and the database key, not the keyring key, and no write access
to the witness) changes the stored log in any single or combined way, and
verification must name it.
"""

import copy
import datetime as dt
import hashlib
import hmac
import json
import os

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from audit_export.lib import chain
from suite_core import witness

json_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
texts = st.none() | st.just(False) | st.text(max_size=12)
events = st.fixed_dictionaries(
    {
        "uuid": st.text(max_size=8),
        "timestamp": st.datetimes(min_value=dt.datetime(2000, 1, 1)),
        "user_uid": st.none() | st.integers(0, 50),
        "login": texts,
        "action": st.sampled_from(["update", "create", 'x"details":null']),
        "res_id": st.none() | st.just(False) | st.integers(0, 10**6),
        "res_name": texts,
        "details": st.none() | st.dictionaries(st.text(max_size=6), json_values),
        "message": texts,
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(events, min_size=1, max_size=6), st.booleans())
def test_encode_many_matches_encode(vals_list, share):
    if share:
        # A captured batch: the same user, action and time for every event.
        for vals in vals_list[1:]:
            for name in ("timestamp", "user_uid", "login", "action"):
                vals[name] = vals_list[0][name]
    expected = [chain.encode(vals) for vals in vals_list]
    assert chain.encode_many(vals_list) == expected
    for (canonical, details_text), vals in zip(expected, vals_list, strict=True):
        assert canonical == chain.canonical(vals)
        data = json.loads(canonical)
        assert data["details"] == (
            None if vals["details"] is None else json.loads(details_text)
        )


def test_details_text_is_what_the_database_returns():
    values = {"uuid": "u", "action": "update", "details": {"b": (1, 2), "a": 1.5}}
    canonical, details_text = chain.encode(values)
    assert details_text == '{"a":1.5,"b":[1,2]}'
    stored = dict(values, details=json.loads(details_text))
    assert chain.canonical(stored) == canonical


def test_normalized_details_skip_the_round_trip_and_hash_the_same():
    plain = {"fields": {"name": {"old": None, "new": "x"}, "ids": {"new": [1, 2]}}}
    assert chain.encode({"action": "a", "details": plain}) == chain.encode(
        {"action": "a", "details": chain.NormalizedDetails(plain)}
    )


def test_integer_and_bool_not_confused_when_sharing_values():
    vals_list = [
        {"action": "a", "login": 1, "details": None},
        {"action": "a", "login": True, "details": None},
    ]
    assert chain.encode_many(vals_list) == [chain.encode(v) for v in vals_list]
    assert b'"login":"True"' in chain.encode_many(vals_list)[1][0]


def test_nul_characters_in_shared_values_fall_back_safely():
    vals_list = [
        {"action": "a", "login": "\x000\x00", "uuid": str(i), "details": None}
        for i in range(3)
    ]
    assert chain.encode_many(vals_list) == [chain.encode(v) for v in vals_list]


def test_tampered_digest_detected_by_check_chain():
    key = b"k" * 32
    rows, prev = [], chain.GENESIS
    for seq in (1, 2):
        row = {
            "id": seq,
            "sequence": seq,
            "uuid": str(seq),
            "action": "login",
            "key_id": "db",
        }
        row["digest"] = chain.digest(key, row)
        prev = row["chain_hash"] = chain.link(prev, seq, row["digest"])
        rows.append(row)
    assert chain.check_chain(rows, 0, chain.GENESIS, lambda _k: key)[3] is None
    rows[1]["action"] = "logout"
    problem = chain.check_chain(rows, 0, chain.GENESIS, lambda _k: key)[3]
    assert problem["kind"] == "altered" and problem["event_id"] == 2


# ---------------------------------------------------------------------------
# A simulated server (what the Odoo layer does, on lists instead of tables)
# ---------------------------------------------------------------------------

KR_ID, KR_KEY = "kr:k1", bytes(range(32))
DB_ID, DB_KEY = "db", b"d" * 32
DB_UUID = "3f1c-test-uuid"
REASON = "DSR/2026/0003"


def key_for(key_id):
    return {KR_ID: KR_KEY, DB_ID: DB_KEY}[key_id]


class Server:
    """Signs, seals, witnesses, purges and erases like the Odoo layer."""

    def __init__(self, legacy=0):
        self.rows, self.checkpoints, self.witness = [], [], []
        self.next_id, self.clock = 1, 0
        if legacy:
            self._legacy(legacy)

    # -- writing ---------------------------------------------------------
    def _stamp(self):
        self.clock += 1
        return dt.datetime(2026, 1, 1) + dt.timedelta(seconds=self.clock)

    def log(self, n=1):
        for _ in range(n):
            i = self.next_id
            values = {
                "uuid": f"u{i}",
                "timestamp": self._stamp(),
                "user_uid": i % 3 + 1,
                "login": f"user{i % 3}@example.com",
                "user_name": f"User {i % 3}",
                "action": "update",
                "result": "success",
                "res_model": "res.partner",
                "res_id": i,
                "res_name": f"Partner {i}",
                "details": {"fields": {"email": {"old": None, "new": f"p{i}@x.org"}}},
            }
            event_digest, salts, details_text = chain.sign_v2(KR_KEY, values)
            values.update(
                id=i,
                details=json.loads(details_text),
                salts=salts,
                digest=event_digest,
                key_id=KR_ID,
                chain_version=2,
                sequence=None,
                chain_hash=None,
                redactions=None,
            )
            self.rows.append(values)
            self.next_id += 1

    def head(self):
        sealed = [r for r in self.rows if r["sequence"] is not None]
        if sealed:
            last = max(sealed, key=lambda r: r["sequence"])
            return last["sequence"], last["chain_hash"]
        anchors = [c for c in self.checkpoints if c["kind"] == "anchor"]
        if anchors:
            top = max(anchors, key=lambda c: c["sequence"])
            return top["sequence"], top["chain_hash"]
        return 0, chain.GENESIS

    def _checkpoint(self, kind, seq, chain_hash, **extra):
        cp = {
            "kind": kind,
            "sequence": seq,
            "chain_hash": chain_hash,
            "purged_count": extra.get("purged_count", 0),
            "cutoff": extra.get("cutoff"),
            "sealed_at": self._stamp(),
            "key_id": KR_ID,
        }
        cp["mac"] = chain.sign_checkpoint(KR_KEY, cp)
        return cp

    def seal(self):
        seq, prev = self.head()
        sealed = 0
        for row in sorted(self.rows, key=lambda r: r["id"]):
            if row["sequence"] is None:
                seq += 1
                prev = chain.link_v2(
                    key_for(row["key_id"]), prev, seq, row["digest"], row["key_id"]
                )
                row.update(sequence=seq, chain_hash=prev, chain_version=2)
                sealed += 1
        if sealed:
            self.checkpoints = [c for c in self.checkpoints if c["kind"] != "head"]
            self.checkpoints.append(self._checkpoint("head", seq, prev))
            record = witness.make_record(
                witness.HEAD,
                key=KR_KEY,
                key_id=KR_ID,
                db="db1",
                uuid=DB_UUID,
                sequence=seq,
                chain_hash=prev,
                sealed_at=str(self._stamp()),
            )
            record["_line"] = len(self.witness) + 1
            self.witness.append(record)

    def purge(self, upto):
        """Retention: delete positions <= ``upto``, keep a signed anchor."""
        target = next(r for r in self.rows if r["sequence"] == upto)
        self.rows = [r for r in self.rows if r["sequence"] > upto]
        self.checkpoints.append(
            self._checkpoint("anchor", upto, target["chain_hash"], purged_count=upto)
        )

    def erase(self, row, slots):
        legacy = (row.get("chain_version") or 1) < 2
        check = chain.EventCheck(key_for, lambda k: k == KR_ID)
        values, salts, record = chain.erase_slots(
            row,
            slots,
            reason=REASON,
            key=KR_KEY,
            key_id=KR_ID,
            uid=2,
            at="2026-02-01 00:00:00",
            verified=check.problem(row) is None if legacy else True,
        )
        row.update(values, salts=salts)
        row["redactions"] = [*(row["redactions"] or []), record]

    def _legacy(self, n):
        """Events of the previous format (database key, unkeyed links),
        then the keyring adoption point that pins them."""
        prev = chain.GENESIS
        for seq in range(1, n + 1):
            values = {
                "id": self.next_id,
                "uuid": f"legacy{seq}",
                "timestamp": self._stamp(),
                "action": "login",
                "result": "success",
                "login": f"old{seq}@example.com",
                "key_id": DB_ID,
                "chain_version": None,
                "salts": None,
                "redactions": None,
            }
            values["digest"] = chain.digest(DB_KEY, values)
            prev = chain.link(prev, seq, values["digest"])
            values.update(sequence=seq, chain_hash=prev)
            self.rows.append(values)
            self.next_id += 1
        self.checkpoints.append(self._checkpoint("adopt", n, prev))

    # -- verifying ---------------------------------------------------------
    def verify(self):
        return chain.verify_log(
            Store(self.rows),
            key_for,
            keyring=True,
            checkpoints=self.checkpoints,
            witness={"path": "w.log", "records": self.witness, "uuid": DB_UUID},
        )


class Store:
    def __init__(self, rows):
        self.rows = [r for r in rows if r.get("sequence") is not None]

    def rows_after(self, seq, limit):
        after = [r for r in self.rows if r["sequence"] > seq]
        return sorted(after, key=lambda r: (r["sequence"], r["id"]))[:limit]

    def first_at_or_before(self, seq):
        before = [r for r in self.rows if r["sequence"] <= seq]
        return min(before, key=lambda r: r["sequence"]) if before else None

    def hashes_at(self, seqs):
        wanted = set(seqs)
        return {
            r["sequence"]: r["chain_hash"] for r in self.rows if r["sequence"] in wanted
        }


def build(n_events, legacy, purge, erase, batches):
    server = Server(legacy=legacy)
    per = max(1, n_events // batches)
    while len(server.rows) - legacy < n_events:
        server.log(per)
        server.seal()
    if purge:
        sealed = sorted(r["sequence"] for r in server.rows)
        server.purge(sealed[min(purge, len(sealed) - 2)])
        server.log(1)
        server.seal()
    for index, slots in erase:
        row = server.rows[index % len(server.rows)]
        personal = [s for s in chain.personal_values(row) if not s.startswith("x")]
        chosen = [personal[i % len(personal)] for i in slots] if personal else []
        done = set()
        for record in row["redactions"] or []:
            done.update(record.get("slots") or record.get("erased") or ())
        chosen = set(chosen) - done
        if chosen:
            server.erase(row, chosen)
    return server


scenarios = st.fixed_dictionaries(
    {
        "n_events": st.integers(3, 12),
        "legacy": st.sampled_from([0, 0, 3]),
        "purge": st.sampled_from([0, 0, 2]),
        "erase": st.lists(
            st.tuples(st.integers(0, 50), st.lists(st.integers(0, 9), max_size=3)),
            max_size=3,
        ),
        "batches": st.integers(1, 4),
    }
)


@settings(max_examples=60, deadline=None)
@given(scenarios)
def test_honest_server_always_verifies(scenario):
    """Sealing in batches, purging, erasing personal values (format 2 and
    legacy): verification passes and counts the erased events."""
    server = build(**scenario)
    report = server.verify()
    assert report["ok"], report["problem"]
    assert report["redacted"] == sum(1 for r in server.rows if r["redactions"])
    for row in server.rows:
        for record in row["redactions"] or []:
            for slot in record.get("slots") or record.get("erased") or ():
                assert slot not in (row.get("salts") or {})
                assert chain.personal_values(row)[slot] == chain.erased(REASON)


# -- the attacker: SQL access and the database key, not the keyring ---------


def _sealed(server):
    return sorted(
        (r for r in server.rows if r["sequence"] is not None),
        key=lambda r: r["sequence"],
    )


def _hash_before(server, seq):
    """The chain hash the event at ``seq`` links to (an event or the anchor)."""
    for row in server.rows:
        if row["sequence"] == seq - 1:
            return row["chain_hash"]
    anchors = [c for c in server.checkpoints if c["kind"] == "anchor"]
    if anchors:
        return max(anchors, key=lambda c: c["sequence"])["chain_hash"]
    return chain.GENESIS


def _relink(server, from_seq, rule):
    rows = _sealed(server)
    prev = _hash_before(server, from_seq)
    for row in rows:
        if row["sequence"] < from_seq:
            continue
        if rule == "legacy":
            prev = chain.link(prev, row["sequence"], row["digest"])
            row["chain_version"] = None
        else:
            prev = chain.link_v2(
                DB_KEY, prev, row["sequence"], row["digest"], row["key_id"]
            )
        row["chain_hash"] = prev


def _resign(row, key_id="db"):
    """Re-sign an event's digest with the database key."""
    row["key_id"] = key_id
    if (row.get("chain_version") or 1) >= 2:
        commitments = {
            slot: chain.commit(row["salts"][slot], slot, value)
            for slot, value in chain.personal_values(row).items()
            if slot in (row["salts"] or {})
        }
        row["digest"] = chain.sign(DB_KEY, chain.canonical_v2(row, commitments))
    else:
        row["digest"] = chain.digest(DB_KEY, row)


def _move_head(server, replay=None):
    seq, head_hash = server.head()
    for cp in server.checkpoints:
        if cp["kind"] == "head":
            if replay is not None:
                cp.update(replay)
            else:
                cp.update(sequence=seq, chain_hash=head_hash)


# Each attack edits the server's tables as someone with SQL access would and
# returns ``(start, relink)``: where the chain must be re-linked from and how
# ("none": left as the attack leaves it), or None when it cannot apply.


def _attack_update(server, rows, pick, data, relink):
    row = rows[pick]
    field = data.draw(
        st.sampled_from(["res_name", "login", "action", "res_id", "timestamp"]),
        label="field",
    )
    new = {"res_id": 10**6, "timestamp": dt.datetime(1999, 1, 1)}.get(field, "forged")
    if row.get(field) == new:
        return None
    row[field] = new
    if data.draw(st.booleans(), label="resign"):
        _resign(row, row["key_id"])
    return row["sequence"], relink


def _attack_delete(server, rows, pick, data, relink):
    server.rows.remove(rows[pick])
    return rows[pick]["sequence"], relink


def _attack_insert(server, rows, pick, data, relink):
    forged = copy.deepcopy(rows[pick])
    forged.update(id=server.next_id + 1000, uuid="forged", res_name="forged")
    _resign(forged, data.draw(st.sampled_from(["db", KR_ID]), label="kid"))
    forged["sequence"] = data.draw(
        st.sampled_from([rows[pick]["sequence"], rows[-1]["sequence"] + 1]),
        label="at",
    )
    server.rows.append(forged)
    return forged["sequence"], relink


def _attack_reorder(server, rows, pick, data, relink):
    row, other = rows[pick], rows[(pick + 1) % len(rows)]
    row["sequence"], other["sequence"] = other["sequence"], row["sequence"]
    return min(row["sequence"], other["sequence"]), relink


def _attack_renumber(server, rows, pick, data, relink):
    row = rows[pick]
    server.rows.remove(row)
    for other in rows:
        if other["sequence"] > row["sequence"]:
            other["sequence"] -= 1
    return row["sequence"], "keyed-db" if relink == "none" else relink


def _attack_truncate_head(server, rows, pick, data, relink):
    row = rows[pick]
    if row is rows[-1]:
        return None
    heads = [c for c in server.checkpoints if c["kind"] == "head"]
    replay = dict(heads[0]) if heads else None
    cut = row["sequence"]
    server.rows = [r for r in server.rows if r["sequence"] <= cut]
    _move_head(server, None if data.draw(st.booleans(), label="rehead") else replay)
    return cut, "none"


def _attack_truncate_tail(server, rows, pick, data, relink):
    row = rows[pick]
    cut = row["sequence"]
    server.rows = [r for r in server.rows if r["sequence"] > cut]
    if data.draw(st.booleans(), label="with_anchor"):
        forged = {
            "kind": "anchor",
            "sequence": cut,
            "chain_hash": row["chain_hash"],
            "purged_count": cut,
            "cutoff": None,
            "sealed_at": None,
            "key_id": data.draw(st.sampled_from(["db", KR_ID]), label="akid"),
        }
        forged["mac"] = data.draw(
            st.sampled_from([None, chain.sign_checkpoint(DB_KEY, forged)]),
            label="amac",
        )
        server.checkpoints.append(forged)
    return cut, "none"


def _attack_swap_key(server, rows, pick, data, relink):
    row = rows[pick]
    row["res_name"] = "forged"
    _resign(row, "db")
    return row["sequence"], "keyed-db"


def _attack_forge_anchor(server, rows, pick, data, relink):
    row = rows[pick]
    forged = {
        "kind": data.draw(st.sampled_from(["anchor", "adopt"]), label="kind"),
        "sequence": row["sequence"],
        "chain_hash": row["chain_hash"],
        "purged_count": 0,
        "cutoff": None,
        "sealed_at": None,
        "key_id": "db",
    }
    forged["mac"] = chain.sign_checkpoint(DB_KEY, forged)
    server.checkpoints.append(forged)
    return row["sequence"], relink


def _attack_fake_erasure(server, rows, pick, data, relink):
    row = rows[pick]
    personal = [s for s in chain.personal_values(row) if s in (row.get("salts") or {})]
    if not personal:
        return None
    slot = personal[0]
    commitment = chain.commit(
        row["salts"][slot], slot, chain.personal_values(row)[slot]
    )
    record = {"reason": "cover-up", "uid": 1, "at": "x", "key_id": "db"}
    record["slots"] = {slot: commitment}
    record["mac"] = chain.sign_redaction(DB_KEY, row["uuid"], record)
    values = {k: row.get(k) for k in chain.EVENT_FIELDS_V2}
    chain.set_slot(values, slot, chain.erased("cover-up"))
    row.update(values)
    del row["salts"][slot]
    row["redactions"] = [*(row["redactions"] or []), record]
    return row["sequence"], relink


_ATTACKS = {
    "update": _attack_update,
    "delete": _attack_delete,
    "insert": _attack_insert,
    "reorder": _attack_reorder,
    "renumber": _attack_renumber,
    "truncate_head": _attack_truncate_head,
    "truncate_tail": _attack_truncate_tail,
    "swap_key": _attack_swap_key,
    "forge_anchor": _attack_forge_anchor,
    "fake_erasure": _attack_fake_erasure,
}


def attack(server, name, data):
    """Apply one SQL-level attack; returns False when it cannot apply."""
    rows = _sealed(server)
    if len(rows) < 2:
        return False
    pick = data.draw(st.integers(0, len(rows) - 1), label="row")
    relink = data.draw(st.sampled_from(["keyed-db", "legacy", "none"]), label="relink")
    applied = _ATTACKS[name](server, rows, pick, data, relink)
    if applied is None:
        return False
    start, relink = applied
    if relink != "none":
        _relink(server, start, relink)
        _move_head(server)
    return True


def _state(server):
    rows = sorted(server.rows, key=lambda r: r["id"])
    checkpoints = sorted(server.checkpoints, key=lambda c: (c["kind"], c["sequence"]))
    return json.dumps([rows, checkpoints], sort_keys=True, default=str)


ATTACKS = [
    "update",
    "delete",
    "insert",
    "reorder",
    "renumber",
    "truncate_head",
    "truncate_tail",
    "swap_key",
    "forge_anchor",
    "fake_erasure",
]


@settings(max_examples=250, deadline=None)
@given(scenarios, st.lists(st.sampled_from(ATTACKS), min_size=1, max_size=3), st.data())
def test_any_sql_level_change_is_detected(scenario, attacks, data):
    server = build(**scenario)
    assert server.verify()["ok"]
    before = _state(server)
    applied = [name for name in attacks if attack(server, name, data)]
    # Combinations that cancel out (swap twice) leave nothing to detect.
    assume(applied and _state(server) != before)
    report = server.verify()
    assert not report["ok"], applied
    assert report["problem"]["message"]


@settings(max_examples=40, deadline=None)
@given(scenarios, st.data())
def test_the_right_key_is_the_only_way_through(scenario, data):
    """Control: the same renumbering, re-linked and re-headed with the
    keyring key, passes; so the attacks above fail for lack of the key."""
    server = build(**scenario)
    rows = [r for r in _sealed(server) if (r.get("chain_version") or 1) >= 2]
    assume(len(rows) >= 3)
    row = rows[data.draw(st.integers(0, len(rows) - 2))]
    server.rows.remove(row)
    prev = _hash_before(server, row["sequence"])
    for other in _sealed(server):
        if other["sequence"] > row["sequence"]:
            other["sequence"] -= 1
            prev = chain.link_v2(
                KR_KEY, prev, other["sequence"], other["digest"], other["key_id"]
            )
            other["chain_hash"] = prev
    seq, head_hash = server.head()
    server.checkpoints = [c for c in server.checkpoints if c["kind"] != "head"]
    server.checkpoints.append(server._checkpoint("head", seq, head_hash))
    # Without the witness (kept outside the database) this passes ...
    server.witness = None
    assert server.verify()["ok"]


def test_witness_names_truncation_with_position_and_time():
    server = Server()
    server.log(3)
    server.seal()
    old_head = dict(next(c for c in server.checkpoints if c["kind"] == "head"))
    server.log(2)
    server.seal()
    sealed_at = server.witness[-1]["sealed_at"]
    server.rows = [r for r in server.rows if r["sequence"] <= 3]
    _move_head(server, old_head)
    report = server.verify()
    assert report["problem"]["kind"] == "truncated"
    assert report["problem"]["message"].startswith(
        f"events after position 3, sealed at {sealed_at} UTC, are missing"
    )


def test_witness_file_append_read_and_latest(tmp_path):
    directory = tmp_path / "audit_witness"
    path = witness.witness_path(directory, "db1")
    assert witness.latest_head(tmp_path, "db1") is None
    for seq in (1, 3, 2):
        witness.append(
            path,
            witness.make_record(
                witness.HEAD,
                key=KR_KEY,
                key_id=KR_ID,
                db="db1",
                uuid=DB_UUID,
                sequence=seq,
                chain_hash=f"{seq:064x}",
                sealed_at="2026-01-01 00:00:00",
            ),
        )
    assert oct(path_mode(path)) == oct(0o600)
    assert oct(path_mode(directory)) == oct(0o700)
    latest = witness.latest_head(tmp_path, "db1")
    assert latest["sequence"] == 3
    assert chain.sign(KR_KEY, witness.message(latest)) == latest["mac"]
    with open(path, "a") as handle:
        handle.write('{"torn')
    records = witness.read(path)
    assert records[-1] == {"_line": 4, "_malformed": True}
    with pytest.raises(ValueError):
        witness.witness_path(directory, "../etc")


def path_mode(path):
    return os.stat(path).st_mode & 0o777


def test_erased_event_keeps_its_digest_and_loses_its_values():
    server = Server()
    server.log(2)
    server.seal()
    row = server.rows[0]
    digest_before = row["digest"]
    server.erase(row, {"login", "user_name", "res_name", "fields.email"})
    assert row["digest"] == digest_before
    text = json.dumps(row, default=str)
    assert "user1@example.com" not in text and "p1@x.org" not in text
    assert "Partner 1" not in text
    assert server.verify()["ok"]
    # Changing the placeholder, or erasing without a signed record, is named.
    row["res_name"] = "Partner 1"
    assert "changed after the erasure" in server.verify()["problem"]["message"]


def test_known_answers_pin_format_2():
    """The byte layouts of docs/audit-chain.md, computed independently."""
    key = bytes(range(32))
    salt = "00112233445566778899aabbccddeeff"
    commitment = chain.commit(salt, "login", "jane@example.com")
    assert commitment == hashlib_hex(
        bytes.fromhex(salt)
        + b"odoo-suite/audit-commit/v2\x00login\x00"
        + b'"jane@example.com"'
    )
    assert commitment == (
        "b04006bd12ee234660a41e2a32771caf5587d60c91d80bca44598c97cc520bfa"
    )
    values = {
        "uuid": "0b5e3c1e-0000-4000-8000-000000000001",
        "timestamp": dt.datetime(2026, 1, 2, 3, 4, 5),
        "user_uid": 2,
        "action": "login",
        "result": "success",
        "res_model": "res.users",
        "res_id": 2,
    }
    canonical = chain.canonical_v2(values, {"login": commitment})
    assert canonical == (
        b'{"action":"login","c":{"login":"' + commitment.encode() + b'"},'
        b'"origin":null,"res_id":2,"res_model":"res.users","result":"success",'
        b'"timestamp":"2026-01-02 03:04:05","user_uid":2,'
        b'"uuid":"0b5e3c1e-0000-4000-8000-000000000001","v":2}'
    )
    event_digest = chain.sign(key, canonical)
    assert event_digest == hmac.new(key, canonical, "sha256").hexdigest()
    assert event_digest == (
        "75c13c9a0ae3a9c7f770bc44e02cc56f770d43c27858bae4bce6bacbc800e506"
    )
    link = chain.link_v2(key, chain.GENESIS, 1, event_digest, "kr:k1")
    assert (
        link
        == hmac.new(
            key,
            b"odoo-suite/audit-link/v2\x00"
            + f"{chain.GENESIS}|1|{event_digest}|kr:k1".encode(),
            "sha256",
        ).hexdigest()
    )
    assert link == "85061c65562545f12229956e6ae12af4d57776eefc6a9917e13faa18a39d01e1"
    checkpoint = {
        "kind": "anchor",
        "sequence": 1,
        "chain_hash": link,
        "purged_count": 1,
        "cutoff": dt.datetime(2026, 1, 1),
        "sealed_at": dt.datetime(2026, 1, 2, 3, 4, 6),
        "key_id": "kr:k1",
    }
    assert chain.sign_checkpoint(key, checkpoint) == (
        "5e2e575a30eddaec893e4a8bd22597ec5180f961dd8adb820ee80954b48f5151"
    )
    line = witness.make_record(
        "head",
        key=key,
        key_id="kr:k1",
        db="db1",
        uuid="u",
        sequence=1,
        chain_hash=link,
        sealed_at="2026-01-02 03:04:06",
    )
    assert line["mac"] == (
        "74b921e75ab60ff7754c13fbdb70a8a53615dd60f797cd663be93833c1a59679"
    )


def hashlib_hex(data):
    return hashlib.sha256(data).hexdigest()
