"""Tier-1 tests of gdpr_dsr/lib (masking, erasure register, certificates,
the subject identifiers of the leftover scan)."""

import json
import os
import stat
from datetime import UTC, datetime, timedelta

import pytest

from gdpr_dsr.lib import certificate, leftovers, masking
from gdpr_dsr.lib.erasure_register import (
    ErasureRegister,
    ErasureRegisterError,
    digest,
    normalize_email,
)
from tests.fixtures.odoo_db import connect


def test_mask_account_number_keeps_last_four_and_separators():
    assert masking.mask_account_number("NL91 ABNA 0417 1643 00") == (
        "**** **** **** **43 00"
    )
    assert masking.mask_account_number("123456789") == "*****6789"
    assert masking.mask_account_number("123") == "123"
    assert masking.mask_account_number("") == ""


def test_mask_card_numbers_only_luhn_valid():
    text = "card 4111 1111 1111 1111, order 1234567890123, phone +32 470 12 34 56"
    masked = masking.mask_card_numbers(text)
    assert "**** **** **** 1111" in masked
    # not Luhn-valid: an order number stays readable
    assert "1234567890123" in masked
    assert "+32 470 12 34 56" in masked


def test_mask_document_masks_known_secrets_everywhere():
    iban = "BE71096123456769"
    doc = {
        "bank": [{"acc_number": iban, "display_name": iban}],
        "payments": [{"partner_bank_id": {"id": 3, "display_name": iban}}],
        "note": "paid with 5555555555554444",
        "amount": 12.5,
    }
    masked = masking.mask_document(doc, secrets=["BE71096123456769"])
    dumped = json.dumps(masked)
    assert "BE71096123456769" not in dumped
    assert masked["bank"][0]["acc_number"] == "************6769"
    assert masked["payments"][0]["partner_bank_id"]["display_name"] == (
        "************6769"
    )
    assert masked["note"] == "paid with ************4444"
    assert masked["amount"] == 12.5
    # the input is not modified
    assert doc["bank"][0]["acc_number"] == "BE71096123456769"


def test_normalize_and_digest():
    assert normalize_email("  Jane.Doe@Example.COM ") == "jane.doe@example.com"
    assert normalize_email("   ") is None
    assert digest(" Jane.Doe@Example.com") == digest("jane.doe@example.com")
    assert digest("") is None


def test_register_append_read_after_and_permissions(tmp_path):
    register = ErasureRegister(tmp_path / "gdpr_dsr", "uuid-1")
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    first = register.append(
        request_ref="DSR/0001",
        email_sha256=digest("a@example.com"),
        partners=[
            {"id": 7, "email_sha256": digest("a@example.com"), "name_sha256": None}
        ],
        records=[("res.partner", 7, "delete")],
        recorded_at=t0,
    )
    register.append(
        request_ref="DSR/0002",
        email_sha256=digest("b@example.com"),
        partners=[],
        records=[],
        recorded_at=t0 + timedelta(days=2),
    )
    mode = stat.S_IMODE(os.stat(register.path).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "gdpr_dsr").st_mode) == 0o700
    entries = register.entries()
    assert [e["request_ref"] for e in entries] == ["DSR/0001", "DSR/0002"]
    assert entries[0]["records"] == [["res.partner", 7, "delete"]]
    assert entries[0]["erasure_id"] == first["erasure_id"]
    after = register.entries_after(t0 + timedelta(days=1))
    assert [e["request_ref"] for e in after] == ["DSR/0002"]
    assert register.entries_after(t0 - timedelta(seconds=1))[0]["request_ref"] == (
        "DSR/0001"
    )
    assert register.verify_chain() == []
    # no email in clear
    with open(register.path, encoding="utf-8") as handle:
        assert "a@example.com" not in handle.read()


def test_register_detects_removed_line_and_skips_garbage(tmp_path, caplog):
    register = ErasureRegister(tmp_path, "uuid-2")
    for n in range(3):
        register.append(
            request_ref=f"DSR/{n}", email_sha256=None, partners=[], records=[]
        )
    with open(register.path, encoding="utf-8") as handle:
        lines = handle.readlines()
    with open(register.path, "w", encoding="utf-8") as handle:
        handle.writelines([lines[0], lines[2], "not json\n"])
    assert register.verify_chain() == [2, 3]
    assert [e["request_ref"] for e in register.entries()] == ["DSR/0", "DSR/2"]
    assert "line 3 is unreadable" in caplog.text


def test_register_rejects_bad_input(tmp_path):
    with pytest.raises(ErasureRegisterError):
        ErasureRegister(tmp_path, "../escape")
    register = ErasureRegister(tmp_path, "uuid-3")
    assert register.entries() == []
    with pytest.raises(ErasureRegisterError):
        register.entries_after(datetime(2026, 1, 1))
    with pytest.raises(ErasureRegisterError):
        register.append(
            request_ref="x",
            email_sha256=None,
            partners=[],
            records=[],
            recorded_at=datetime(2026, 1, 1),
        )


def test_register_folder_not_writable_is_a_register_error(tmp_path):
    """A register folder Odoo cannot create or write is the register's own
    error (the erasure is refused with a clear message), never a bare
    OSError; nothing is written."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    register = ErasureRegister(blocker / "gdpr_dsr", "uuid-5")
    with pytest.raises(ErasureRegisterError, match="cannot be written"):
        register.append(request_ref="DSR/1", email_sha256="e", partners=[], records=[])
    assert blocker.read_text() == ""
    assert register.entries() == []


def test_certificate_sign_and_verify():
    doc = {"request": "DSR/0001", "records": [{"model": "res.partner", "id": 1}]}
    signed = certificate.sign(doc, b"k" * 32, key_id="main")
    assert signed["signature"]["key_id"] == "main"
    assert certificate.verify(signed, b"k" * 32)
    assert not certificate.verify(signed, b"x" * 32)
    tampered = json.loads(json.dumps(signed))
    tampered["records"][0]["id"] = 2
    assert not certificate.verify(tampered, b"k" * 32)
    with pytest.raises(ValueError):
        certificate.sign(doc, b"")


def test_register_file_is_private_whatever_the_umask(tmp_path):
    """The register is written 0600 (directory 0700) even under a permissive
    umask, and a copy restored with looser permissions is tightened again."""
    previous = os.umask(0)
    try:
        register = ErasureRegister(tmp_path / "fresh", "uuid-4")
        register.append(request_ref="DSR/1", email_sha256=None, partners=[], records=[])
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(register.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "fresh").st_mode) == 0o700
    os.chmod(register.path, 0o644)
    register.append(request_ref="DSR/2", email_sha256=None, partners=[], records=[])
    assert stat.S_IMODE(os.stat(register.path).st_mode) == 0o600
    assert [e["request_ref"] for e in register.entries()] == ["DSR/1", "DSR/2"]
    assert register.verify_chain() == []


# -- leftover scan: the subject's identifiers ---------------------------------


def _subject():
    identifiers = leftovers.SubjectIdentifiers()
    for kind, value in (
        ("email", "  Jane.Roe@Example.COM "),
        ("email", "Jane Roe <jane.roe@example.com>"),  # the same address
        ("name", "Jane  Roe"),
        ("name", "Jane Roe (home)"),
        ("name", "O'Hara Smith"),
        ("phone", "+32 471 98 76 54"),
        ("login", "jane.roe.portal"),
        ("iban", "BE62 5100 0754 7061"),
        ("vat", "BE0123321456"),
    ):
        identifiers.add(kind, value)
    return identifiers


# (text, kinds found): what the scan must find, and must not
LEFTOVER_CASES = [
    ("Consulting for Jane Roe", ["name"]),
    ("Consulting for JANE\u00a0roe.", ["name"]),
    ("<p>Met Jane&nbsp;Roe today</p>", ["name"]),
    ("Jane Roes and Jane Roeland", []),
    ("MaryJane Roe", []),
    ("Dear O&#39;Hara Smith,", ["name"]),
    ("Dear O&#x27;Hara Smith,", ["name"]),
    ("mailto:JANE.ROE@example.com", ["email"]),
    ('{"en_US": "Jane Roe <jane.roe@example.com>"}', ["email", "name"]),
    ("call 0471/98.76.54 or +32471987654", ["phone"]),
    ("ref 4719876541", []),
    ("IBAN BE62 5100 0754 7061", ["iban"]),
    ("VAT BE 0123.321.456", ["vat"]),
    ("XBE0123321456", []),
    ("login jane.roe.portal", ["login"]),
    ("jane.roe.portals", []),
    ("nothing about anyone", []),
]


@pytest.mark.parametrize(("text", "kinds"), LEFTOVER_CASES)
def test_identifiers_found_in_text(text, kinds):
    assert _subject().kinds_in(text) == kinds


def test_identifiers_normalised_and_counted_without_values():
    identifiers = _subject()
    assert identifiers.counts() == {
        "email": 1,
        "name": 3,
        "login": 1,
        "phone": 1,
        "vat": 1,
        "iban": 1,
    }
    assert identifiers.values("email") == ["jane.roe@example.com"]
    assert identifiers.values("phone") == ["471987654"]
    assert identifiers.values("iban") == ["BE62510007547061"]
    # too short to be searched without erasing other people's data
    assert not identifiers.add("name", "Jo")
    assert not identifiers.add("name", "Jane")  # one word, under 8 characters
    assert not identifiers.add("login", "jr")
    assert not identifiers.add("phone", "12 34")
    assert not identifiers.add("email", "no address here")
    assert not identifiers.add("vat", "BE1")
    assert identifiers.skipped == {
        "name": 2,
        "login": 1,
        "phone": 1,
        "email": 1,
        "vat": 1,
    }
    assert not identifiers.add("name", None) and not identifiers.add("name", False)
    assert "jane" not in repr(list(identifiers)).lower()
    with pytest.raises(ValueError):
        identifiers.add("shoe size", "42")


def test_redaction_replaces_every_occurrence_and_keeps_the_rest():
    identifiers = _subject()
    text, count = identifiers.redact(
        "Met Jane Roe (home) and JANE ROE, jane.roe@example.com, "
        "+32 (0)471 98 76 54, IBAN BE62 5100 0754 7061."
    )
    assert text == ("Met [erased] and [erased], [erased], [erased], IBAN [erased].")
    assert count == 5
    assert identifiers.redact("Bob Smith") == ("Bob Smith", 0)
    value, count = identifiers.redact_json(
        {"en_US": "Jane Roe", "fr_FR": ["Mme Jane Roe", 3], "key": None}
    )
    assert value == {"en_US": "[erased]", "fr_FR": ["Mme [erased]", 3], "key": None}
    assert count == 2


def test_identifiers_for_the_audit_trail():
    audit = _subject().for_audit([7, 7, 3], [11])
    assert audit["emails"] == ["jane.roe@example.com"]
    assert audit["logins"] == ["jane.roe.portal"]
    assert {"jane roe", "jane roe (home)", "+32 471 98 76 54"} <= set(audit["names"])
    assert (audit["partner_ids"], audit["user_ids"]) == ([3, 7], [11])


def test_scan_result_text():
    assert leftovers.scan_result_text([]) == "no identifier left"
    assert leftovers.scan_result_text([{"basis": "Art. 17(3)(b)"}]) == (
        "1 occurrence(s) kept, each with the legal basis for keeping it"
    )
    assert leftovers.scan_result_text([{"basis": "x"}, {"basis": None}]) == (
        "2 occurrence(s) left, 1 without a legal basis: review them"
    )


def test_postgresql_finds_what_python_finds():
    """The scan selects rows with PostgreSQL (``~*``) and reads them with
    Python: both dialects of every pattern must agree, on a real server."""
    identifiers = _subject()
    pattern = identifiers.sql_pattern()
    conn = connect("postgres")
    try:
        with conn.cursor() as cr:
            for text, kinds in LEFTOVER_CASES:
                cr.execute("SELECT %s ~* %s", (text, pattern))
                assert cr.fetchone()[0] is bool(kinds), text
                # jsonb's text form (how JSON columns are read)
                cr.execute("SELECT to_jsonb(%s::text)::text ~* %s", (text, pattern))
                assert cr.fetchone()[0] is bool(kinds), text
    finally:
        conn.close()
