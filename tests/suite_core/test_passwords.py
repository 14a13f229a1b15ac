"""suite_core.passwords: the suite's one policy for file passwords."""

import pytest

from suite_core import passwords
from suite_core.passwords import (
    MIN_LENGTH,
    PasswordPolicyError,
    check_new_password,
    check_password,
    require_strong,
)


@pytest.mark.parametrize(
    "password",
    [
        "abcdefghijkl",  # 12 characters, a sequence
        "qwertyuiop123",  # keyboard walk
        "Password1234!",  # a common password, dressed up
        "aaaaaaaaaaaaaaaa",  # repeats
        "hunter2hunter2",  # a repeated common password
        "1234567890ab",
        "administrator1",
    ],
)
def test_long_but_guessable_passwords_are_refused(password):
    assert len(password) >= MIN_LENGTH
    verdict = check_password(password)
    assert not verdict.ok
    assert verdict.code == "weak"
    assert verdict.score < passwords.MIN_SCORE
    assert verdict.message.startswith("This password is too easy to guess")
    assert verdict.params["hint"]


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",
        "purple-monkey-dishwasher",
        "J'aime les frites 42",
        "kX9#mP2$vL7q",  # 12 random characters
        "B4ckup-Vault-Key",
    ],
)
def test_strong_passwords_are_accepted(password):
    verdict = check_password(password)
    assert verdict.ok, verdict.message
    assert verdict.code == "ok"
    assert verdict.score == 4
    assert verdict.message == "Strong password."


def test_length_is_checked_before_strength():
    verdict = check_password("kX9#mP2$vL7")  # strong but 11 characters
    assert not verdict.ok
    assert verdict.code == "too_short"
    assert verdict.params == {"min_length": 12, "length": 11}
    assert verdict.message == (
        "The password must have at least 12 characters (it has 11)."
    )
    # the meter still gets the estimate
    assert verdict.score >= 3


@pytest.mark.parametrize("value", ["", None, 12345678901234])
def test_empty_or_not_text_is_refused(value):
    verdict = check_password(value)
    assert (verdict.ok, verdict.code, verdict.score) == (False, "empty", 0)


def test_too_long_is_refused_without_estimate():
    verdict = check_password("x" * (passwords.MAX_LENGTH + 1))
    assert (verdict.ok, verdict.code) == (False, "too_long")
    assert "at most 1024 characters" in verdict.message


def test_long_passphrases_are_judged_by_their_prefix():
    # zxcvbn refuses more than 72 characters itself; the policy does not.
    phrase = "correct horse battery staple " * 10
    assert len(phrase) > passwords.ESTIMATE_LENGTH
    assert check_password(phrase).ok


def test_user_inputs_weaken_passwords_built_from_them():
    password = "h6_exporter2026!"
    assert (
        check_password(password).score
        > check_password(
            password, user_inputs=["h6_exporter", "jane.doe@example.com"]
        ).score
    )
    verdict = check_password(
        "janedoe-example", user_inputs=["Jane Doe", "jane.doe@example.com"]
    )
    assert not verdict.ok and verdict.code == "weak"
    # junk in user_inputs is ignored
    assert check_password("correct horse battery staple", [None, 3, " "]).ok


def test_confirmation_must_match():
    assert check_new_password("correct horse battery staple", None).ok
    assert check_new_password(
        "correct horse battery staple", "correct horse battery staple"
    ).ok
    verdict = check_new_password(
        "correct horse battery staple", "correct horse battery stapel"
    )
    assert (verdict.ok, verdict.code) == (False, "mismatch")
    assert verdict.message == "The passwords do not match."
    # a weak password reports its weakness first, not the mismatch
    assert check_new_password("abcdefghijkl", "other").code == "weak"


def test_require_strong_raises_with_the_verdict():
    with pytest.raises(PasswordPolicyError) as info:
        require_strong("abcdefghijkl")
    assert info.value.verdict.code == "weak"
    assert str(info.value) == info.value.verdict.message
    assert isinstance(info.value, ValueError)
    assert require_strong("correct horse battery staple").ok


def test_meter_summary_never_contains_the_password():
    secret = "Tr0ub4dor&3-extra"
    summary = check_password(secret).as_dict()
    assert set(summary) == {
        "ok",
        "code",
        "score",
        "max_score",
        "label",
        "message",
        "params",
        "warning",
        "suggestions",
        "min_length",
    }
    assert summary["max_score"] == 4 and summary["min_length"] == 12
    assert secret not in repr(summary)
    weak = check_password("abcdefghijkl").as_dict()
    assert weak["label"] in ("very weak", "weak")
    assert "abcdefghijkl" not in repr(weak)


def test_every_code_has_a_message():
    for code in ("ok", "empty", "too_short", "too_long", "weak", "mismatch"):
        assert code in passwords.MESSAGES
