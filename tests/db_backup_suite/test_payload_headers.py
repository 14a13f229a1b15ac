"""The payload writer's fast paths give exactly what the slow ones give."""

import tarfile

from hypothesis import given
from hypothesis import strategies as st

from db_backup_suite.lib.errors import StreamCryptError
from db_backup_suite.lib.payload.extract import _clean_parts, check_member_name
from db_backup_suite.lib.payload.tar import (
    _FAST_HEADER_OK,
    _tarfile_header,
    block_padding,
    end_of_archive,
    tar_header,
)

NAME_CHARS = st.characters(min_codepoint=32, max_codepoint=0x2FF)


def test_fast_header_is_enabled_on_this_python():
    assert _FAST_HEADER_OK


@given(
    name=st.text(NAME_CHARS, min_size=1, max_size=130),
    size=st.integers(0, 8**12),
    mtime=st.integers(-5, 8**12),
    mode=st.sampled_from([0o644, 0o600, 0o755]),
)
def test_tar_header_matches_tarfile(name, size, mtime, mode):
    expected = _tarfile_header(name, size, mtime, mode)
    assert tar_header(name, size, mtime, mode) == expected


def test_tar_header_reads_back_with_tarfile():
    import io

    name = "filestore/ab/" + "c" * 40
    data = b"x" * 1000
    raw = tar_header(name, len(data), 1700000000.7) + data
    raw += block_padding(len(data)) + b"\0" * 1024
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        (info,) = tar.getmembers()
        assert (info.name, info.size, info.mtime, info.mode) == (
            name,
            1000,
            1700000000,
            0o644,
        )
        assert tar.extractfile(info).read() == data


@given(sizes=st.lists(st.integers(0, 30_000), max_size=6))
def test_members_padding_and_end_are_what_tarfile_writes(sizes):
    """Headers, block padding and the end of the archive, put together,
    give the bytes tarfile writes for the same members."""
    import io

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i, size in enumerate(sizes):
            info = tarfile.TarInfo(f"m{i}")
            info.size, info.mtime, info.mode = size, 1700000000, 0o644
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(b"%d" % i * size))
    ours = b"".join(
        tar_header(f"m{i}", size, 1700000000) + b"%d" % i * size + block_padding(size)
        for i, size in enumerate(sizes)
    )
    assert ours + end_of_archive(len(ours)) == out.getvalue()


@given(st.text(st.sampled_from("ab./_-\\:\0"), min_size=1, max_size=12))
def test_member_name_fast_path_refuses_what_the_full_check_refuses(name):
    try:
        _clean_parts(name)
        full_ok = True
    except StreamCryptError:
        full_ok = False
    try:
        check_member_name(name)
        fast_ok = True
    except StreamCryptError:
        fast_ok = False
    assert fast_ok == full_ok
