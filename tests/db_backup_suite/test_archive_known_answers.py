"""Archive format v1 known answers: committed archives decrypt forever.

The archives under ``tests/data/kat`` were written once by the format-v1
writer; the vectors below were computed independently (RFC 5869 HKDF and
HMAC from the standard library), so a change of the byte layout or of a
derivation label, made consistently in writer and reader, fails here.
"""

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from suite_core import keyring as keyring_lib
from suite_core import streamcrypt

KAT = Path(__file__).resolve().parents[1] / "data" / "kat"
MATERIAL = bytes(range(32))
KEY_LINE = "kat-1:" + base64.b64encode(MATERIAL).decode()
TENANT = "00000000-0000-4000-8000-00000000c0de"
PASSWORD = "correct horse battery staple"
PLAINTEXT_SHA256 = "f6efbf5a5badf35a44d235e89210f29028f69ca6ec645c3cafd14a5c8775d3cf"


def _plaintext():
    return b"".join(b"known answer %06d\n" % i for i in range(5000))


def _rfc5869(ikm, salt, info, length=32):
    prk = hmac.new(salt or bytes(32), ikm, "sha256").digest()
    out, block = b"", b""
    counter = 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), "sha256").digest()
        out += block
        counter += 1
    return out[:length]


def _expand(prk, info):
    return hmac.new(prk, info + b"\x01", "sha256").digest()


def test_plaintext_formula_is_the_published_one():
    assert hashlib.sha256(_plaintext()).hexdigest() == PLAINTEXT_SHA256


def test_subkey_derivation_vector():
    salt = bytes(range(100, 132))
    info = b"odoo-suite/backup/" + TENANT.encode()
    assert keyring_lib.derivation_info("backup", TENANT) == info
    expected = "91041d02332b677f7a7df385b16c144bc5ba28e321f3f2d5303cc374de30af05"
    assert _rfc5869(MATERIAL, salt, info).hex() == expected
    ring = keyring_lib.Keyring.parse(KEY_LINE)
    assert ring.derive("backup", TENANT, salt).hex() == expected


def test_data_and_commitment_key_vector():
    secret = bytes.fromhex(
        "91041d02332b677f7a7df385b16c144bc5ba28e321f3f2d5303cc374de30af05"
    )
    data_key = _expand(secret, b"odoo-suite/archive-v1/data-key")
    commit_key = _expand(secret, b"odoo-suite/archive-v1/commitment-key")
    assert data_key.hex() == (
        "103945a45f6f75829cc6e85c114167924eea9d884a85e8fea2487c164159be61"
    )
    assert commit_key.hex() == (
        "3e2392ba9ffef9306f792daafcd1db32b6e9d8e28375e6bf6f28c57b64fee9ca"
    )
    assert streamcrypt._subkeys(secret) == (data_key, commit_key)


@pytest.mark.parametrize(
    ("name", "hex_header", "fields"),
    [
        (
            "v1-keyring.osc",
            "894f53430d0a1a0a010087010100000100000dbfadf7b6c9841b26464c7ca60f8f7a"
            "254784f6dbae533d2d926caf3007d747056b61742d312430303030303030302d30"
            "3030302d343030302d383030302d303030303030303063306465066261636b7570"
            "0a746578742f706c61696e63f27fff91583e333373da85fad1f629abc9a17a34a6f203",
            {"mode": "keyring", "kdf": "hkdf-sha256", "key_id": "kat-1"},
        ),
        (
            "v1-password.osc",
            "894f53430d0a1a0a01008a020208000200000008000100010000a730ab5f4a11f7"
            "2a15bff594454ff66db13dadf328147668989a4307164da7c40024303030303030"
            "30302d303030302d343030302d383030302d303030303030303063306465066261"
            "636b75700a746578742f706c61696e5c983d4abb89322dbe4bbf114a535a7b1b7d"
            "1710e0cffc29",
            {"mode": "password", "kdf": "scrypt", "key_id": ""},
        ),
    ],
)
def test_committed_header_bytes_and_fields(name, hex_header, fields):
    data = (KAT / name).read_bytes()
    header = bytes.fromhex(hex_header)
    assert data.startswith(header)
    parsed = streamcrypt.read_header(open(KAT / name, "rb"))  # noqa: SIM115
    assert parsed.raw == header
    for key, value in fields.items():
        assert getattr(parsed, key) == value
    assert parsed.tenant == TENANT
    assert parsed.purpose == "backup"
    assert parsed.chunk_size == 64 * 1024
    assert parsed.content_type == "text/plain"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("v1-keyring.osc", {"keyring": keyring_lib.Keyring.parse(KEY_LINE)}),
        ("v1-password.osc", {"password": PASSWORD}),
    ],
)
def test_committed_archive_decrypts_to_the_known_plaintext(name, secret):
    with open(KAT / name, "rb") as raw:
        reader = streamcrypt.DecryptingReader(
            raw, tenant=TENANT, purpose="backup", **secret
        )
        plaintext = reader.read()
    assert hashlib.sha256(plaintext).hexdigest() == PLAINTEXT_SHA256
    assert reader.chunks == 2


def test_committed_archive_refuses_another_key_or_password():
    other = keyring_lib.Keyring.parse("kat-1:" + base64.b64encode(bytes(32)).decode())
    with (
        open(KAT / "v1-keyring.osc", "rb") as raw,
        pytest.raises(streamcrypt.WrongKeyError),
    ):
        streamcrypt.DecryptingReader(
            raw, keyring=other, tenant=TENANT, purpose="backup"
        )
    with (
        open(KAT / "v1-password.osc", "rb") as raw,
        pytest.raises(streamcrypt.WrongPasswordError),
    ):
        streamcrypt.DecryptingReader(
            raw, password=PASSWORD + "!", tenant=TENANT, purpose="backup"
        )
