"""The server keyring: parsing, sources, sub-key derivation, no key leaks."""

import base64
import hashlib
import hmac
import logging
import os
import pickle
import re

import pytest

from suite_core import keyring as kr
from suite_core.keyring import Keyring, KeyringError, UnknownKeyError

MATERIAL_A = bytes(range(32))
MATERIAL_B = bytes(range(100, 132))
B64_A = base64.b64encode(MATERIAL_A).decode()
B64_B = base64.urlsafe_b64encode(MATERIAL_B).decode().rstrip("=")


def _hkdf_reference(ikm, salt, info, length=32):
    """RFC 5869 written out with hmac, independent of the code under test."""
    prk = hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def _secret_fragments(*materials):
    """Every rendering of the key material that must never appear."""
    out = []
    for material in materials:
        for text in (
            base64.b64encode(material).decode(),
            base64.urlsafe_b64encode(material).decode(),
            material.hex(),
        ):
            out.append(text.rstrip("="))
            out.append(text[:12])  # even a prefix would be a leak
    return out


# Parsing ---------------------------------------------------------------------
def test_parse_lines_comments_commas_and_both_base64_alphabets():
    text = f"""
    # production keyring
    new:{B64_A}   # active

    old:{B64_B}
    """
    ring = Keyring.parse(text)
    assert ring.ids == ("new", "old")
    assert ring.active.key_id == "new"
    assert ring.get("old").key_id == "old"
    inline = Keyring.parse(f"new:{B64_A}, old:{B64_B}")
    assert inline.ids == ("new", "old")
    assert inline.derive("backup", "x") == ring.derive("backup", "x")
    assert "old" in ring and "nope" not in ring
    assert len(ring) == 2 and [k.key_id for k in ring] == ["new", "old"]


def test_windows_line_endings_and_bom_are_accepted(tmp_path):
    path = tmp_path / "win.keys"
    path.write_bytes(f"\ufeffnew:{B64_A}\r\nold:{B64_B}\r\n".encode())
    os.chmod(path, 0o600)
    assert Keyring.load(path).ids == ("new", "old")


def test_first_key_is_active_and_derives_by_default():
    ring = Keyring.parse(f"b:{B64_B}\na:{B64_A}")
    assert ring.active.key_id == "b"
    salt = os.urandom(32)
    assert ring.derive("backup", "db", salt) == ring.derive(
        "backup", "db", salt, key_id="b"
    )
    assert ring.derive("backup", "db", salt) != ring.derive(
        "backup", "db", salt, key_id="a"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("just-a-line-without-separator", r"line 1: expected 'key_id:base64_key'"),
        (f"\n\n:{B64_A}", r"line 3: expected"),
        ("k1:", r"line 1: expected"),
        ("k1:not base64 at all!", r"line 1: key 'k1' is not valid base64"),
        ("k1:" + base64.b64encode(b"x" * 16).decode(), r"key 'k1' is 16 bytes"),
        ("k1:" + base64.b64encode(b"x" * 33).decode(), r"key 'k1' is 33 bytes"),
        (f"k1:{B64_A}\nk1:{B64_B}", r"line 2: duplicate key id 'k1' .first on line 1"),
        (f"k1:{B64_A},k1:{B64_B}", r"line 1, entry 2: duplicate key id 'k1'"),
        (f"bad id!:{B64_A}", r"line 1: invalid key id"),
        ("# only a comment\n\n", r"holds no key"),
        ("", r"holds no key"),
    ],
)
def test_parse_errors_are_clear(text, expected):
    with pytest.raises(KeyringError, match=expected):
        Keyring.parse(text)


def test_no_error_message_contains_key_material():
    short = os.urandom(16)
    long_ = os.urandom(40)
    swapped = f"{B64_A}:k1"  # user swapped the fields: the key is in the id
    cases = [
        f"{B64_A}",  # key without id
        swapped,
        f"{B64_B}:k1",  # swapped, URL-safe without padding: id-like characters
        f"{B64_B}:{B64_A}",
        "k1:" + base64.b64encode(short).decode(),
        "k1:" + base64.b64encode(long_).decode(),
        f"k1:{B64_A}\nk1:{B64_B}",
        f"k1:{B64_A[:-3]}!!",
        f"{B64_A[:20]} {B64_A[20:]}",
    ]
    fragments = _secret_fragments(MATERIAL_A, MATERIAL_B, short, long_)
    fragments += [B64_A[:-3], B64_A[:20], B64_A[20:]]
    for text in cases:
        with pytest.raises(KeyringError) as info:
            Keyring.parse(text)
        message = str(info.value) + repr(info.value)
        for fragment in fragments:
            assert fragment not in message, (text, message)


def test_repr_and_str_never_show_key_material():
    ring = Keyring.parse(f"a:{B64_A}\nb:{B64_B}")
    shown = " ".join(
        [repr(ring), str(ring), repr(ring.active), str(ring.get("b")), str(list(ring))]
    )
    for fragment in _secret_fragments(MATERIAL_A, MATERIAL_B):
        assert fragment not in shown
    assert "a" in repr(ring.active) and ring.active.fingerprint in repr(ring.active)
    assert ring.active.fingerprint != ring.get("b").fingerprint
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(ring)
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(ring.active)


def test_get_unknown_id_names_it_and_the_ids_held():
    ring = Keyring.parse(f"a:{B64_A}\nb:{B64_B}")
    with pytest.raises(UnknownKeyError, match=r"'zz'.*holds: a, b"):
        ring.get("zz")
    with pytest.raises(UnknownKeyError):
        ring.derive("backup", "db", key_id="zz")


# Derivation ------------------------------------------------------------------
def test_derive_is_rfc5869_hkdf_with_documented_info():
    ring = Keyring.parse(f"a:{B64_A}")
    salt = bytes(range(32))
    got = ring.derive("backup", "0f9a-uuid", salt)
    assert len(got) == 32
    assert got == _hkdf_reference(MATERIAL_A, salt, b"odoo-suite/backup/0f9a-uuid")
    # no salt = HKDF's default salt (zeros)
    assert ring.derive("export", "") == _hkdf_reference(
        MATERIAL_A, b"", b"odoo-suite/export/"
    )


def test_hkdf_matches_rfc5869_test_vector_1():
    okm = kr.hkdf_sha256(
        b"\x0b" * 22, bytes(range(13)), bytes(range(0xF0, 0xFA)), length=42
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        "34007208d5b887185865"
    )


def test_derived_keys_separate_purpose_context_salt_and_key():
    ring = Keyring.parse(f"a:{B64_A}\nb:{B64_B}")
    base = ring.derive("backup", "tenant-a", b"s" * 32)
    others = {
        ring.derive("export", "tenant-a", b"s" * 32),
        ring.derive("backup", "tenant-b", b"s" * 32),
        ring.derive("backup", "tenant-a", b"t" * 32),
        ring.derive("backup", "tenant-a", b"s" * 32, key_id="b"),
    }
    assert base not in others and len(others) == 4
    assert base == ring.derive("backup", "tenant-a", b"s" * 32)


@pytest.mark.parametrize("purpose", ["", "back/up", "Backup", "x" * 65, "é"])
def test_derive_rejects_ambiguous_purposes(purpose):
    ring = Keyring.parse(f"a:{B64_A}")
    with pytest.raises(ValueError, match="purpose"):
        ring.derive(purpose, "ctx")


# Key generation --------------------------------------------------------------
def test_generate_key_line_round_trips():
    line = kr.generate_key_line()
    key_id, _, material = line.partition(":")
    assert re.fullmatch(r"k\d{8}-[0-9a-f]{4}", key_id)
    assert len(base64.b64decode(material)) == 32
    ring = Keyring.parse(line + "\n" + kr.generate_key_line("second"))
    assert ring.ids == (key_id, "second")
    assert kr.generate_key_line("x") != kr.generate_key_line("x")
    with pytest.raises(KeyringError, match="invalid key id"):
        kr.generate_key_line("has space")


# Sources ---------------------------------------------------------------------
def _write(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_load_order_path_config_env_file_env_inline(tmp_path):
    explicit = _write(tmp_path / "explicit", f"explicit:{B64_A}")
    config = _write(tmp_path / "config", f"config:{B64_A}")
    env_file = _write(tmp_path / "env", f"envfile:{B64_A}")
    environ = {
        kr.ENV_KEYRING_FILE: str(env_file),
        kr.ENV_KEYRING: f"inline:{B64_A},second:{B64_B}",
    }
    assert Keyring.load(explicit, environ, config_path=config).ids == ("explicit",)
    assert Keyring.load(None, environ, config_path=config).ids == ("config",)
    assert Keyring.load(None, environ).ids == ("envfile",)
    del environ[kr.ENV_KEYRING_FILE]
    assert Keyring.load(None, environ).ids == ("inline", "second")
    assert "environment variable" in Keyring.load(None, environ).source


def test_earlier_names_are_read_after_the_new_ones(tmp_path):
    new_file = _write(tmp_path / "new", f"new:{B64_A}")
    old_file = _write(tmp_path / "old", f"old:{B64_A}")
    assert kr.ENV_KEYRING_FILE == "SUITE_KEYRING_FILE"
    assert kr.CONFIG_OPTION == "suite_keyring_file"
    legacy = {
        "DB_BACKUP_SUITE_KEYRING_FILE": str(old_file),
        "DB_BACKUP_SUITE_KEYRING": f"oldinline:{B64_A}",
    }
    assert Keyring.load(None, legacy).ids == ("old",)
    assert Keyring.load(None, {**legacy, "SUITE_KEYRING_FILE": str(new_file)}).ids == (
        "new",
    )
    del legacy["DB_BACKUP_SUITE_KEYRING_FILE"]
    assert Keyring.load(None, legacy).ids == ("oldinline",)
    assert Keyring.load(
        None, {**legacy, "SUITE_KEYRING": f"newinline:{B64_A}"}
    ).ids == ("newinline",)
    # the Odoo option: the new name first, the old one as a fallback
    old_config = {"backup_keyring_file": str(old_file)}
    assert kr.config_keyring_path(old_config) == str(old_file)
    assert Keyring.from_config(old_config, environ={}).ids == ("old",)
    both = {**old_config, "suite_keyring_file": str(new_file)}
    assert Keyring.from_config(both, environ={}).ids == ("new",)
    assert kr.keyring_file_path({}, {"DB_BACKUP_SUITE_KEYRING_FILE": "/k"}) == "/k"
    assert not kr.is_configured({}, {"SUITE_KEYRING": "  "})
    assert kr.is_configured({}, {"DB_BACKUP_SUITE_KEYRING": f"a:{B64_A}"})
    assert kr.is_configured(old_config, {})


def test_keygen_command_writes_a_private_keyring_once(tmp_path, capsys):
    from suite_core.__main__ import main

    path = tmp_path / "server.keys"
    assert main(["keygen", "--key-id", "first", "-o", str(path)]) == 0
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert Keyring.from_file(path).ids == ("first",)
    before = path.read_bytes()
    assert main(["keygen", "-o", str(path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert main(["keygen", "--key-id", "bad id"]) == 1
    assert "invalid key id" in capsys.readouterr().err
    assert main(["keygen"]) == 0
    assert Keyring.parse(capsys.readouterr().out).active


def test_load_with_nothing_configured_says_what_to_set():
    with pytest.raises(KeyringError) as info:
        Keyring.load(environ={kr.ENV_KEYRING: "  "})
    message = str(info.value)
    for name in ("suite_keyring_file", kr.ENV_KEYRING_FILE, kr.ENV_KEYRING, "keygen"):
        assert name in message


def test_configured_but_broken_source_does_not_fall_through(tmp_path):
    environ = {kr.ENV_KEYRING: f"inline:{B64_A}"}
    missing = tmp_path / "missing.keys"
    with pytest.raises(KeyringError, match=r"missing\.keys does not exist"):
        Keyring.load(missing, environ)
    with pytest.raises(KeyringError, match="is not a regular file"):
        Keyring.load(None, environ, config_path=tmp_path)
    bad = _write(tmp_path / "bad.keys", f"ok:{B64_A}\nbroken")
    with pytest.raises(KeyringError, match=r"bad\.keys: line 2"):
        Keyring.load(None, {**environ, kr.ENV_KEYRING_FILE: str(bad)})


def test_warns_when_keyring_file_is_readable_by_others(tmp_path, caplog):
    path = _write(tmp_path / "open.keys", f"a:{B64_A}", mode=0o644)
    with caplog.at_level(logging.WARNING, logger=kr.__name__):
        Keyring.load(path)
    assert "chmod 600" in caplog.text and "644" in caplog.text
    assert B64_A not in caplog.text
    caplog.clear()
    private = _write(tmp_path / "private.keys", f"a:{B64_A}", mode=0o600)
    with caplog.at_level(logging.WARNING, logger=kr.__name__):
        Keyring.load(private)
    assert caplog.text == ""
