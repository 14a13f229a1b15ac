"""The standard payload a snapshot stands for, and its exact size.

A snapshot is read back as the same tar payload a full archive holds
(docs/payload-format.md), uncompressed, in a fixed order::

    backup.json, database.dump.part-000001 ..., filestore/<xx>/<sha1> ...
    (name order), manifest.json, end blocks, padding to a 10 KiB record

so the backup can compute its size (and the dump's part names, recorded in
the manifest) before anything is read back.
"""

from __future__ import annotations

from .. import manifest as mf
from ..payload import tar

#: Dump part size of the reassembled payload. Parts exist because a tar
#: header needs the size first; here the size is known, so the dump is one
#: part whatever its size (above 8 GiB its header carries a PAX size
#: record): a blob never straddles two members, which lets a stored zstd
#: frame pass through unchanged (archive.py).
DUMP_PART_SIZE = 1 << 62


def dump_parts(size: int) -> list[tuple[str, int]]:
    """(member name, size) of each dump part (at least one, maybe empty)."""
    parts, left, index = [], size, 1
    while True:
        take = min(left, DUMP_PART_SIZE)
        parts.append((f"{mf.DUMP_MEMBER}{tar.PART_SUFFIX}{index:06d}", take))
        left -= take
        index += 1
        if left <= 0:
            return parts


def member_size(name: str, size: int, mtime: int) -> int:
    """Bytes a regular-file member takes in the payload: header, data and
    padding (``payload/tar.py``, as the payload writer and
    ``archive.iter_payload`` write them)."""
    return len(tar.tar_header(name, size, mtime)) + size + len(tar.block_padding(size))


class SizeCounter:
    """Adds up the tar size while the backup walks the same members."""

    def __init__(self):
        self.total = 0

    def add(self, name: str, size: int, mtime: int):
        self.total += member_size(name, size, mtime)

    def finish(self) -> int:
        return self.total + len(tar.end_of_archive(self.total))
