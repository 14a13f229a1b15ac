"""Property tests: damaged archives never yield wrong plaintext.

Whatever is done to an archive (bytes flipped, cut, inserted, deleted, chunks
dropped, duplicated, swapped, cut at a chunk boundary or relabelled as final),
reading it either returns exactly the original plaintext or raises a
``StreamCryptError``; every byte handed out before the error is a true prefix
of the original; and in fact any alteration at all raises.
"""

import io
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suite_core import streamcrypt as sc
from suite_core.keyring import Keyring, KeyringError, generate_key_line

CS = sc.MIN_CHUNK_SIZE
FRAME = sc.CHUNK_PREFIX_SIZE + CS + sc.TAG_SIZE
RING = Keyring.parse(generate_key_line("k-fuzz") + "\n" + generate_key_line("k-old"))
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _archive(size, seed):
    data = random.Random(seed).randbytes(size)
    out = io.BytesIO()
    with sc.EncryptingWriter(out, keyring=RING, tenant="fuzz", chunk_size=CS) as w:
        w.write(data)
    return data, out.getvalue()


def _read_all_checked(blob, original):
    """Read in uneven pieces; every piece must match the original so far."""
    reader = sc.DecryptingReader(
        io.BytesIO(blob), keyring=RING, tenant="fuzz", purpose="backup"
    )
    got = bytearray()
    step = 1
    while True:
        piece = reader.read(step)
        if not piece:
            return bytes(got)
        assert original[len(got) : len(got) + len(piece)] == piece
        got += piece
        step = step * 7 % 100_003 + 1


def _chunks(blob):
    head = sc.read_header(io.BytesIO(blob)).size
    body = blob[head:]
    return blob[:head], [body[i : i + FRAME] for i in range(0, len(body), FRAME)]


_INDEX = st.integers(0, 10**9)
CHUNK_OPS = [
    st.tuples(st.just("swap"), _INDEX, _INDEX),
    st.tuples(st.just("drop"), _INDEX),
    st.tuples(st.just("dup"), _INDEX),
    st.tuples(st.just("cut_chunks"), _INDEX),
    st.tuples(st.just("flag_last"), _INDEX),
    st.tuples(st.just("seal_early"), _INDEX),
]
chunk_op = st.one_of(*CHUNK_OPS)
byte_op = st.one_of(
    st.tuples(st.just("flip"), _INDEX, st.integers(1, 255)),
    st.tuples(st.just("truncate"), _INDEX),
    st.tuples(st.just("insert"), _INDEX, st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("delete"), _INDEX, st.integers(1, 300)),
    *CHUNK_OPS,
)


def _apply(blob, op):
    kind = op[0]
    if kind in ("swap", "drop", "dup", "cut_chunks", "flag_last", "seal_early"):
        head, chunks = _chunks(blob)
        if not chunks:
            return blob
        i = op[1] % len(chunks)
        if kind == "swap":
            j = op[2] % len(chunks)
            chunks[i], chunks[j] = chunks[j], chunks[i]
        elif kind == "drop":
            del chunks[i]
        elif kind == "cut_chunks":  # clean cut at a chunk boundary
            del chunks[i:]
        elif kind == "dup":
            chunks.insert(i, chunks[i])
        else:  # relabel a chunk as the final one, dropping what follows
            if kind == "seal_early":
                del chunks[i + 1 :]
            chunk = bytearray(chunks[i])
            chunk[0] |= 0x80
            chunks[i] = bytes(chunk)
        return head + b"".join(chunks)
    pos = op[1] % (len(blob) + 1)
    if kind == "flip":
        if pos == len(blob):
            return blob
        damaged = bytearray(blob)
        damaged[pos] ^= op[2]
        return bytes(damaged)
    if kind == "truncate":
        return blob[:pos]
    if kind == "insert":
        return blob[:pos] + op[2] + blob[pos:]
    return blob[:pos] + blob[pos + op[2] :]


SIZES = st.builds(
    lambda chunks, extra: chunks * CS + extra,
    st.integers(0, 3),
    st.one_of(st.integers(0, 300), st.integers(0, CS - 1)),
)


@FUZZ
@given(size=SIZES, seed=st.integers(0, 2**32), ops=st.lists(byte_op, max_size=3))
def test_random_corruption_never_yields_wrong_plaintext(size, seed, ops):
    _check_corruption(size, seed, ops)


@FUZZ
@given(
    size=st.builds(lambda c, e: c * CS + e, st.integers(1, 3), st.integers(0, 300)),
    seed=st.integers(0, 2**32),
    ops=st.lists(chunk_op, min_size=1, max_size=2),
)
def test_chunk_level_attacks_never_yield_wrong_plaintext(size, seed, ops):
    """Whole-chunk edits (the ones a careful attacker would try)."""
    _check_corruption(size, seed, ops)


def _check_corruption(size, seed, ops):
    original, blob = _archive(size, seed)
    damaged = blob
    for op in ops:
        try:
            damaged = _apply(damaged, op)
        except sc.StreamCryptError:
            break  # header too damaged to find chunks: keep what we have
    try:
        result = _read_all_checked(damaged, original)
    except sc.StreamCryptError:
        assert damaged != blob, "an intact archive must read back"
        return
    assert result == original
    # Stronger: the encoding is canonical, so no alteration at all goes
    # unnoticed (not even one that would leave the plaintext unchanged).
    assert damaged == blob


@FUZZ
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_only_raise_format_errors(data):
    for candidate in (data, sc.MAGIC + b"\x01" + data):
        try:
            sc.read_header(io.BytesIO(candidate))
        except sc.StreamCryptError:
            continue
        try:
            # any tenant and the purpose in the header, so random bytes reach
            # the key lookup and the chunks instead of stopping at the labels
            head = sc.read_header(io.BytesIO(candidate))
            reader = sc.DecryptingReader(
                io.BytesIO(candidate),
                keyring=RING,
                tenant=sc.ANY_TENANT,
                purpose=head.purpose,
            )
            reader.read()
        except sc.StreamCryptError:
            continue
        raise AssertionError("random bytes decrypted")  # pragma: no cover


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_keyring_text_only_raises_keyring_errors(text):
    try:
        ring = Keyring.parse(text)
    except KeyringError:
        return
    assert len(ring) >= 1 and ring.active.key_id in text
