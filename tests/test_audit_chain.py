"""Tier 1: canonical form of audit events (audit_export/lib/chain.py)."""

import datetime as dt
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from audit_export.lib import chain

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
        row = {"id": seq, "sequence": seq, "uuid": str(seq), "action": "login"}
        row["digest"] = chain.digest(key, row)
        prev = row["chain_hash"] = chain.link(prev, seq, row["digest"])
        rows.append(row)
    assert chain.check_chain(rows, 0, chain.GENESIS, lambda _k: key)[3] is None
    rows[1]["action"] = "logout"
    problem = chain.check_chain(rows, 0, chain.GENESIS, lambda _k: key)[3]
    assert problem["kind"] == "altered" and problem["event_id"] == 2
