"""Tier-1 tests of gdpr_dsr/lib (masking, erasure register, certificates)."""

import json
import os
import stat
from datetime import UTC, datetime, timedelta

import pytest

from gdpr_dsr.lib import certificate, masking
from gdpr_dsr.lib.erasure_register import (
    ErasureRegister,
    ErasureRegisterError,
    digest,
    normalize_email,
)


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
