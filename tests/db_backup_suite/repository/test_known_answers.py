"""Repository format v1 known answers (tests/data/kat/repo-v1, committed
once, never regenerated): every later version must open this repository
and read its snapshot back byte for byte. Sub-keys and blob ids are also
checked against an independent RFC 5869 / HMAC computation, and the chunk
boundaries against fixed offsets (a pyfastcdc upgrade that moved them would
silently stop deduplication against existing repositories)."""

from __future__ import annotations

import hashlib
import hmac
import random
import shutil
from pathlib import Path

import pytest

from db_backup_suite.lib import crypto
from db_backup_suite.lib import repository as repo_mod
from db_backup_suite.lib.errors import WrongKeyError
from db_backup_suite.lib.repository import format as fmt
from db_backup_suite.lib.sinks import make_sink

KAT = Path(__file__).resolve().parents[2] / "data" / "kat" / "repo-v1"
LINE = "kat-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # bytes 0..31
MASTER = bytes(range(32))
TENANT = "00000000-0000-4000-8000-00000000c0de"
ROOT = f"katdb/repo-{TENANT}"
SNAPSHOT = (
    "snapshots/20260101T000000Z_kat_"
    "359b43e7385e84355dc8dcecd5c96d061ae3401822b9b530ac7857fec014a993"
)
SALT = "6a465d4fa528f7cea9ffbf78c79b57930616c004462fd74514238bc8ad79d298"
PAYLOAD_SHA256 = "4be6a2453c5ae2b1edb5c2f770d5b8b7308c31764fe9e0342aefcdad80246395"
PAYLOAD_SIZE = 890880
DUMP_SHA256 = "ca72a455f5af6cfd2c4fdda67f3c290f176f441bfd8755fcaaa7b95422d7554a"
PACK_ENC_KEY = "d127869b3a3486349f7b16157562b4e9833e16ccf6e90e26a0c2034aee599a13"
PACK_COMMIT_KEY = "92b11f54c3b1f5bd27290febe0f69a163301ebc44706bf3858a396e2841a74cf"
CONFIG_ENC_KEY = "ed0b2758811b248c46789538c4d5e5e4d7bb4c92cc0248d64131af09be08e259"
BLOB_ID = "ee3008b0f0cab1a56ca90570fe8dea67b175826fa025f575be27a6955ad35399"
SEED = 5846448392113768980
CUTS = [290219, 592309, 1029786, 1493503, 2076965, 2566743, 2922186, 3145728]
CUTS_SEED_0 = [
    408904, 677884, 1221610, 1348489, 1588202, 2126750, 2502292, 2816906,
    2885611, 3145728,
]  # fmt: skip


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """RFC 5869, written out (one 32-byte block)."""
    prk = hmac.digest(salt or b"\0" * 32, ikm, "sha256")
    return _expand(prk, info)


def _expand(prk: bytes, info: bytes) -> bytes:
    return hmac.digest(prk, info + b"\x01", "sha256")


def _sub(purpose: str, salt: bytes) -> bytes:
    return _hkdf(MASTER, salt, f"odoo-suite/{purpose}/{TENANT}".encode())


@pytest.fixture
def repo(tmp_path):
    shutil.copytree(KAT, tmp_path / "kat")
    sink = make_sink({"type": "local", "path": str(tmp_path / "kat")})
    return repo_mod.Repository.open(sink, "katdb", TENANT, crypto.Keyring.parse(LINE))


def test_sub_keys_and_blob_ids_match_an_independent_computation(repo):
    salt = bytes.fromhex(SALT)
    assert repo.keys.salt == salt
    pack = _sub("repo-pack", salt)
    assert _expand(pack, b"odoo-suite/repo-v1/enc").hex() == PACK_ENC_KEY
    assert _expand(pack, b"odoo-suite/repo-v1/commit").hex() == PACK_COMMIT_KEY
    enc, commit = repo.keys.purpose_key("repo-pack", "kat-1")
    assert (enc.hex(), commit.hex()) == (PACK_ENC_KEY, PACK_COMMIT_KEY)
    config = _expand(_sub("repo-config", b""), b"odoo-suite/repo-v1/enc")
    assert config.hex() == CONFIG_ENC_KEY
    id_key = _sub("repo-id", salt)
    digest = hashlib.sha256(b"known answer").digest()
    assert hmac.digest(id_key, b"\x00" + digest, "sha256").hex() == BLOB_ID
    assert repo.keys.blob_id(fmt.BLOB_DATA, digest).hex() == BLOB_ID
    seed = int.from_bytes(_sub("repo-chunker", salt)[:8], "big") & (2**63 - 1)
    assert repo.keys.chunker_seed() == seed == SEED


def test_chunk_boundaries_are_pinned():
    data = random.Random(20260101).randbytes(3 * 1024 * 1024)
    assert [c.offset + c.length for c in fmt.make_chunker(SEED).cut_buf(data)] == CUTS
    cuts = [c.offset + c.length for c in fmt.make_chunker(0).cut_buf(data)]
    assert cuts == CUTS_SEED_0


def test_the_committed_repository_reads_back_byte_for_byte(repo):
    config = (KAT / ROOT / "config").read_bytes()
    # magic, type C, version 1, key id length 5, "kat-1", then the nonce
    assert config[:12] == b"\x89OSR" + b"C" + b"\x01\x05" + b"kat-1"
    repo.load_index()
    (ref,) = repo.list_snapshots()
    assert ref.rel == SNAPSHOT and ref.label == "kat"
    snap = repo.load_snapshot(ref)
    assert snap["dump"]["sha256"] == DUMP_SHA256
    tar = b"".join(bytes(p) for p in repo_mod.iter_payload(repo, snap))
    assert len(tar) == PAYLOAD_SIZE == snap["tar_size"]
    assert hashlib.sha256(tar).hexdigest() == PAYLOAD_SHA256
    # each pack's own header lists exactly what the index says
    for name, rec in repo.index.packs.items():
        key_id, entries = repo.read_pack_header(name, rec.size)
        assert key_id == "kat-1" and entries == rec.entries
    report = repo_mod.verify_repository(repo, deep=True)
    assert report.ok and report.packs_read == 3


def test_the_committed_repository_refuses_another_key_or_tenant(tmp_path):
    shutil.copytree(KAT, tmp_path / "kat")
    sink = make_sink({"type": "local", "path": str(tmp_path / "kat")})
    other = crypto.Keyring.parse("kat-1:" + "A" * 43 + "=")
    with pytest.raises(WrongKeyError):
        repo_mod.Repository.open(sink, "katdb", TENANT, other)
    # the same files presented as another database's
    moved = tmp_path / "kat" / "katdb" / "repo-00000000-0000-4000-8000-0000000000ff"
    shutil.copytree(tmp_path / "kat" / ROOT, moved)
    with pytest.raises(WrongKeyError):
        repo_mod.Repository.open(
            sink,
            "katdb",
            "00000000-0000-4000-8000-0000000000ff",
            crypto.Keyring.parse(LINE),
        )
