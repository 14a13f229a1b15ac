"""Read an archive once from end to end and check it (no database).

:func:`scan_archive` walks the payload once, authenticating every chunk
(the decrypting reader refuses a tampered, reordered or truncated stream),
hashing the dump and the filestore, and hands the data to an optional
:class:`ScanHandler`: :class:`DeepCheck` streams the dump through
``pg_restore --file=/dev/null`` and checks each filestore file's content
address (``verify``), the restore feeds ``pg_restore`` and writes the
filestore (``restore``). The checks against the manifest happen at the end;
a caller that writes data must treat it as unverified until
:func:`scan_archive` returned.

Both :mod:`.verify` and :mod:`.restore` build on this module; it imports
neither.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field

from . import crypto, pgtools
from . import manifest as mf
from .errors import FormatError, RestoreError, VerificationError
from .payload.reader import PayloadReader
from .payload.tar import PART_SUFFIX, part_base

_logger = logging.getLogger(__name__)

READ_SIZE = 1024 * 1024


class ScanHandler:
    """Receives the payload's data during :func:`scan_archive`."""

    def dump_chunk(self, data: bytes):
        """A piece of the pg_dump custom-format file, in order."""

    def dump_end(self):
        """The dump is complete (called once, even when it is empty)."""

    def file_begin(self, store_fname: str, size: int):
        """A filestore file starts; its data follows in ``file_chunk``."""

    def file_chunk(self, data: bytes):
        pass

    def file_end(self):
        pass


#: Odoo's filestore names: ``<first 2 hex of the sha1>/<sha1 of the content>``.
ODOO_FNAME = re.compile(r"(?P<head>[0-9a-f]{2})/(?P<sha1>[0-9a-f]{40})")
#: How long pg_restore may take to finish once the whole dump was sent.
DEEP_CHECK_TIMEOUT = 600


class DeepCheck(ScanHandler):
    """The deep check of :func:`run_verify`, fed by :func:`scan_archive`.

    The dump goes to ``pg_restore --file=/dev/null`` through its stdin as
    it is decrypted (no temp file, no database); each filestore file named
    ``xx/<sha1>`` is hashed with sha1 and compared with its name. Problems
    are collected, not raised, so the archive's authentication (checked by
    :func:`scan_archive` at the end) is reported first; :meth:`problems`
    lists them. Always :meth:`close` it (reaps pg_restore).
    """

    def __init__(self, pg=None):
        self._proc = pgtools.start_pg_restore_check(pg)
        self._dump_done = False
        self.dump_bytes = 0
        self.dump_error: str | None = None
        self.files = 0
        self.content_addressed = 0
        self.mismatched: list[str] = []
        self._fname = None
        self._sha1 = None

    def dump_chunk(self, data):
        if self._dump_done:
            return
        try:
            self._proc.stdin.write(data)
        except (BrokenPipeError, OSError):
            self._finish_dump()  # pg_restore stopped: its message says why
            return
        self.dump_bytes += len(data)

    def dump_end(self):
        self._finish_dump()

    def _finish_dump(self):
        if self._dump_done:
            return
        self._dump_done = True
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError) as exc:
            _logger.debug("closing pg_restore's stdin: %s", exc)
        try:
            self._proc.check(timeout=DEEP_CHECK_TIMEOUT)
        except RestoreError as exc:
            message = str(exc)
            if "unsupported version" in message:
                message += (
                    " (this pg_restore is older than the pg_dump that made the "
                    "archive: install a newer PostgreSQL client to check it)"
                )
            self.dump_error = message

    def file_begin(self, store_fname, size):
        self.files += 1
        match = ODOO_FNAME.fullmatch(store_fname)
        if match and match["head"] == match["sha1"][:2]:
            self._fname, self._sha1 = store_fname, hashlib.sha1()
        else:
            self._fname = self._sha1 = None

    def file_chunk(self, data):
        if self._sha1 is not None:
            self._sha1.update(data)

    def file_end(self):
        if self._sha1 is None:
            return
        self.content_addressed += 1
        if self._sha1.hexdigest() != self._fname[3:]:
            self.mismatched.append(self._fname)
        self._fname = self._sha1 = None

    def problems(self) -> list[str]:
        self._finish_dump()
        out = []
        if self.dump_error:
            out.append(
                f"the database dump cannot be read to its end ({self.dump_error})"
            )
        if self.mismatched:
            shown = ", ".join(self.mismatched[:5])
            extra = len(self.mismatched) - 5
            more = f" and {extra} more" if extra > 0 else ""
            out.append(
                f"{len(self.mismatched)} filestore file(s) do not hash to their "
                f"name (damaged in the archive, or already on the server): "
                f"{shown}{more}"
            )
        return out

    def summary(self) -> dict:
        return {
            "dump_read_by_pg_restore": self._dump_done and not self.dump_error,
            "dump_bytes": self.dump_bytes,
            "files": self.files,
            "files_content_checked": self.content_addressed,
            "problems": self.problems(),
        }

    def close(self):
        self._proc.reap()


@dataclass
class ArchiveReport:
    """What :func:`scan_archive` found (it raises when anything is wrong)."""

    manifest: dict
    encrypted: bool
    legacy: bool
    header: dict | None
    plaintext_bytes: int
    members: int
    dump_size: int
    dump_sha256: str
    filestore: dict
    warnings: list[str] = field(default_factory=list)
    duration: float = 0.0
    deep: dict | None = None  # what the deep check read (None: not run)

    def as_dict(self) -> dict:
        return {
            "deep": self.deep,
            "encrypted": self.encrypted,
            "legacy": self.legacy,
            "header": self.header,
            "plaintext_bytes": self.plaintext_bytes,
            "members": self.members,
            "dump": {"size": self.dump_size, "sha256": self.dump_sha256},
            "filestore": self.filestore,
            "warnings": self.warnings,
            "duration": round(self.duration, 3),
            "manifest": self.manifest,
        }


def _read_small(member, what: str) -> bytes:
    if member.size > mf.MAX_MANIFEST_BYTES:
        raise FormatError(f"{what} is too large ({member.size} bytes)")
    return member.read()


def _drain(reader):
    """Read the decrypted stream to its end, so the last chunk (and with it
    truncation) is authenticated even when the tar ended earlier."""
    while True:
        data = reader.read(READ_SIZE)
        if not data:
            return


def _pump(member, hasher, sink):
    """Read ``member`` to its end into ``hasher`` and ``sink``; its size."""
    size = 0
    while True:
        data = member.read(READ_SIZE)
        if not data:
            return size
        hasher.update(data)
        size += len(data)
        sink(data)


def _check_dump_part(name, dump_parts, dump_done):
    """The dump's parts come together and numbered in order."""
    if dump_done:
        raise FormatError(f"dump part {name!r} out of order")
    expected = f"{mf.DUMP_MEMBER}{PART_SUFFIX}{len(dump_parts) + 1:06d}"
    if name != expected:
        raise FormatError(f"dump part {name!r} found where {expected!r} was expected")


def _open_payload(raw, *, keyring, password, tenant):
    """The decrypting reader of the archive ``raw``; for a snapshot of an
    incremental repository (``open_authenticated_payload``: see
    repository/archive.py) its payload straight from the repository,
    authenticated blob by blob, after the same tenant and key checks on
    the archive header (no encryption and decryption in between)."""
    fast = getattr(raw, "open_authenticated_payload", None)
    if fast is not None:
        reader = fast(keyring=keyring, password=password, tenant=tenant)
        if reader is not None:
            return reader
    return crypto.open_archive(raw, keyring=keyring, password=password, tenant=tenant)


def scan_archive(
    raw, *, keyring=None, password=None, tenant, handler=None
) -> ArchiveReport:
    """Read the archive ``raw`` (a binary readable positioned at its start)
    from end to end and check it; return an :class:`ArchiveReport`.

    ``tenant``: the uuid of the database the archive must belong to, or
    ``crypto.ANY_TENANT`` (explicitly any); an encrypted archive of another
    tenant raises ``WrongKeyError`` before any key is derived.

    Raises the crypto layer's errors (wrong key, tampered, truncated, ...),
    :class:`FormatError` (not a complete archive of this suite) or
    :class:`VerificationError` (a member does not match the manifest).
    """
    started = time.monotonic()
    handler = handler or ScanHandler()
    reader = _open_payload(raw, keyring=keyring, password=password, tenant=tenant)
    warnings = []
    if not reader.encrypted:
        warnings.append(
            "this is a legacy archive WITHOUT encryption: its content could not "
            "be authenticated"
        )
    compression = (
        crypto.compression_of(reader.content_type) if reader.content_type else None
    )
    preader = PayloadReader(reader, compression)
    head = final = None
    dump_hash = hashlib.sha256()
    dump_size = 0
    dump_parts: list[str] = []
    dump_done = False
    digest = mf.FilestoreDigest()
    members = 0
    for member in preader:
        members += 1
        name = member.name
        if final is not None:
            raise FormatError(
                f"member {name!r} follows the final manifest: not an archive "
                "written by this suite"
            )
        if member.type == "dir":
            continue
        if name == mf.HEAD_MEMBER:
            head = mf.loads(_read_small(member, name), name)
            continue
        if name == mf.MANIFEST_MEMBER:
            final = mf.loads(_read_small(member, name), name)
            continue
        base = part_base(name)
        if base == mf.DUMP_MEMBER:
            _check_dump_part(name, dump_parts, dump_done)
            dump_parts.append(name)
            dump_size += _pump(member, dump_hash, handler.dump_chunk)
            continue
        if dump_parts and not dump_done:
            dump_done = True
            handler.dump_end()
        if name.startswith(mf.FILESTORE_DIR):
            fname = name[len(mf.FILESTORE_DIR) :]
            file_hash = hashlib.sha256()
            handler.file_begin(fname, member.size)
            size = _pump(member, file_hash, handler.file_chunk)
            handler.file_end()
            digest.add(fname, size, file_hash.hexdigest())
            continue
        warnings.append(f"unexpected member {name!r} ignored")
    if not dump_done:
        dump_done = True
        handler.dump_end()
    _drain(reader)
    if final is None:
        raise FormatError(
            "the archive has no final manifest.json: it is incomplete or was not "
            "written by this suite"
        )
    if head is None:
        warnings.append("the archive has no backup.json head member")
    fs = {"files": digest.files, "bytes": digest.bytes, "digest": digest.hexdigest()}
    _check_against_manifest(final, dump_parts, dump_size, dump_hash.hexdigest(), fs)
    header = reader.header.as_dict() if getattr(reader, "header", None) else None
    return ArchiveReport(
        manifest=final,
        encrypted=reader.encrypted,
        legacy=bool(getattr(reader, "legacy", False)),
        header=header,
        plaintext_bytes=getattr(reader, "plaintext_bytes", 0),
        members=members,
        dump_size=dump_size,
        dump_sha256=dump_hash.hexdigest(),
        filestore=fs,
        warnings=warnings + list(final.get("warnings") or []),
        duration=time.monotonic() - started,
    )


def _check_against_manifest(final, parts, size, sha256, fs):
    problems = []
    dump = final.get("dump") or {}
    if not final.get("complete"):
        problems.append("the manifest is not marked complete")
    if dump.get("parts") is not None and dump["parts"] != parts:
        problems.append(f"dump parts {len(parts)}, {len(dump['parts'])} expected")
    if dump.get("size") != size:
        problems.append(f"dump size {size}, {dump.get('size')} expected")
    if dump.get("sha256") != sha256:
        problems.append("dump sha256 differs from the manifest")
    expected_fs = final.get("filestore") or {}
    for key in ("files", "bytes", "digest"):
        if key in expected_fs and expected_fs[key] != fs[key]:
            problems.append(
                f"filestore {key} {fs[key]!r}, {expected_fs[key]!r} expected"
            )
    if problems:
        raise VerificationError(
            "the archive does not match its manifest: " + "; ".join(problems)
        )
