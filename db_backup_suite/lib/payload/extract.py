"""Member names and extraction: the one place that decides which names are
safe (for the writer, the reader and every extraction), and writes members
to disk without following or creating a symlink or overwriting a file.
"""

from __future__ import annotations

import os
import re
import stat as stat_mod
import tarfile
from pathlib import Path, PurePosixPath

from ..errors import StreamCryptError
from .tar import BLOCK

#: Names made of plain components (no ``..``, no leading dot or dash):
#: certainly safe, so the full check (PurePosixPath) is skipped for them.
_PLAIN_PART = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_PLAIN_NAME = re.compile(rf"{_PLAIN_PART}(?:/{_PLAIN_PART})*")


def check_member_name(name: str) -> str:
    """``name`` if a member may be written under it; StreamCryptError for an
    empty or unsafe name (what :func:`clean_member_name` refuses)."""
    if not isinstance(name, str) or not name:
        raise StreamCryptError("a payload member needs a non-empty name")
    if _PLAIN_NAME.fullmatch(name):
        return name
    try:
        _clean_parts(name)
    except StreamCryptError as exc:
        raise StreamCryptError(f"refusing to write member {name!r}: {exc}") from None
    return name


def check_member_type(info: tarfile.TarInfo):
    """Raise StreamCryptError unless ``info`` is a regular file or a directory."""
    if info.issym() or info.islnk():
        raise StreamCryptError(
            f"refusing link member {info.name!r} -> {info.linkname!r}: "
            "archives of this suite never contain links"
        )
    if info.ischr() or info.isblk() or info.isfifo():
        raise StreamCryptError(f"refusing device or FIFO member {info.name!r}")
    if info.issparse():
        raise StreamCryptError(f"refusing sparse member {info.name!r}")
    if not (info.isreg() or info.isdir()):
        raise StreamCryptError(f"refusing member {info.name!r} of type {info.type!r}")


def _clean_parts(name: str, what="name") -> list[str]:
    if not name:
        raise StreamCryptError(f"empty {what} name")
    if "\0" in name:
        raise StreamCryptError(f"{what} name {name!r} contains a NUL byte")
    if "\\" in name:
        raise StreamCryptError(f"{what} name {name!r} contains a backslash")
    if name.startswith("/"):
        raise StreamCryptError(f"{what} name {name!r} is an absolute path")
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        raise StreamCryptError(f"{what} name {name!r} starts with a drive letter")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if any(p == ".." for p in name.split("/")):
        raise StreamCryptError(f"{what} name {name!r} contains '..'")
    if not parts:
        raise StreamCryptError(f"{what} name {name!r} names no file")
    return parts


def clean_member_name(name: str) -> list[str]:
    """The components of the relative member name ``name``; StreamCryptError for
    an absolute path, ``..``, a backslash, a NUL byte or a drive letter."""
    return _clean_parts(name, what="member")


def safe_member_path(root, name: str) -> Path:
    """The path under ``root`` where member ``name`` goes.

    Raises StreamCryptError for absolute paths, ``..``, backslashes, NUL bytes,
    drive letters, and when an existing component under ``root`` is a
    symlink (the file would land outside ``root``).
    """
    parts = _clean_parts(name, what="member")
    root = Path(root)
    path = root.joinpath(*parts)
    current = root
    for part in parts:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            break
        if stat_mod.S_ISLNK(st.st_mode):
            raise StreamCryptError(
                f"member {name!r}: {current} is a symlink; refusing to follow it"
            )
    return path


def _make_dirs(root: Path, parts: list[str], mode: int = 0o755):
    current = root
    for part in parts:
        current = current / part
        try:
            os.mkdir(current, mode)
        except FileExistsError:
            st = os.lstat(current)
            if not stat_mod.S_ISDIR(st.st_mode):
                raise StreamCryptError(
                    f"{current} exists and is not a directory"
                ) from None


def extract_member(root, member, mode: int = 0o644, dir_mode: int = 0o755) -> Path:
    """Write ``member`` (a :class:`.reader.PayloadMember`: its ``type``,
    ``name`` and ``stream``) under ``root`` (path-checked, no symlink
    followed or created, existing files never overwritten), files created
    with ``mode`` and folders with ``dir_mode`` (0o600 / 0o700 for decrypted
    plaintext). Returns the path."""
    if member.type == "dir":
        root = Path(root)
        path = safe_member_path(root, member.name)
        _make_dirs(root, _clean_parts(member.name), dir_mode)
        return path
    return extract_stream(root, member.name, member.stream, mode, dir_mode)


def extract_stream(
    root, name: str, stream, mode: int = 0o644, dir_mode: int = 0o755
) -> Path:
    """Copy the readable ``stream`` to the file ``name`` under ``root``,
    creating parent folders; path-checked like :func:`safe_member_path`,
    never following or creating a symlink, never overwriting a file. The
    file is created with ``mode``, folders with ``dir_mode``.
    Returns the path written."""
    root = Path(root)
    path = safe_member_path(root, name)
    parts = _clean_parts(name)
    _make_dirs(root, parts[:-1], dir_mode)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise StreamCryptError(
            f"{path} already exists; refusing to overwrite it"
        ) from None
    with os.fdopen(fd, "wb") as fh:
        while True:
            chunk = stream.read(BLOCK)
            if not chunk:
                break
            fh.write(chunk)
    return path
