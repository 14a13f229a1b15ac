"""Whose archive is this? The facts a restore dialog shows before anything
is restored: the cleartext header of an encrypted archive (tenant, key id),
and its head manifest ``backup.json`` (database, date, label, Odoo version)
when a key or password opens it; an Odoo backup zip's own manifest.

Above :mod:`.crypto` and :mod:`.payload` (it reads a payload's first
member), so neither of them imports this module.
"""

import json
import os
import zipfile

from . import manifest as mf
from .crypto import (
    _SNIFF_SIZE,
    ANY_TENANT,
    PURPOSE,
    DecryptingReader,
    FormatError,
    PrefixedReader,
    compression_of,
    read_exact,
    read_header,
    sniff,
)
from .errors import KeyringError, WrongKeyError
from .payload.reader import PayloadReader

#: Keys of :func:`describe_archive_owner`'s answer.
OWNER_FIELDS = (
    "kind",
    "encrypted",
    "legacy",
    "tenant",
    "database",
    "uuid",
    "created_at",
    "label",
    "odoo_version",
    "manifest_read",
    "error",
)


def describe_archive_owner(raw_or_path, keyring=None, password=None) -> dict:
    """Which database an archive is a backup of, WITHOUT restoring it.

    ``raw_or_path``: a path, or a binary readable at the archive's start
    (it is read, not closed). Answers a dict with :data:`OWNER_FIELDS`:

    - ``kind``: ``"suite"`` (this suite's archive) or ``"odoo-zip"``;
    - ``tenant``: the uuid the archive is bound to (cleartext header of an
      encrypted archive, readable without any key; it is authenticated as
      soon as a key opens the archive);
    - ``database``, ``created_at`` (ISO 8601 UTC string), ``label``,
      ``odoo_version``: from the head manifest ``backup.json`` (first
      member), which needs the key or password of an encrypted archive;
    - ``uuid``: the source database's uuid (the header's tenant for an
      encrypted archive, the head manifest's for a legacy one, None for an
      Odoo zip, whose uuid only shows once it is restored);
    - ``manifest_read``: whether the head manifest was read; ``error`` says
      why not (no key, wrong key, ...).

    Only the head member is decrypted, and with ``ANY_TENANT``: this is the
    one place that reads another database's archive before the user
    confirmed, to show it to them; nothing of it is written anywhere.
    """
    if isinstance(raw_or_path, str | bytes | os.PathLike):
        with open(raw_or_path, "rb") as raw:
            return describe_archive_owner(raw, keyring=keyring, password=password)
    raw = raw_or_path
    out = dict.fromkeys(OWNER_FIELDS)
    out.update(kind="suite", encrypted=False, legacy=False, manifest_read=False)
    prefix = read_exact(raw, _SNIFF_SIZE)
    kind = sniff(prefix)
    if kind == "zip":
        return _describe_zip_owner(prefix, raw, out)
    if kind == "encrypted":
        stream = PrefixedReader(prefix, raw)
        header = read_header(stream)
        out.update(encrypted=True, tenant=header.tenant, uuid=header.tenant)
        if keyring is None and password is None:
            out["error"] = "no key given: the head manifest was not read"
            return out
        try:
            reader = DecryptingReader(
                stream,
                keyring=keyring,
                password=password,
                tenant=ANY_TENANT,
                purpose=PURPOSE,
                header=header,
            )
        except (KeyringError, WrongKeyError, FormatError) as exc:
            out["error"] = str(exc)
            return out
        compression = compression_of(header.content_type)
    elif kind in ("zstd", "gzip", "none"):
        out.update(legacy=True)
        reader = PrefixedReader(prefix, raw, compression=kind)
        compression = kind
    else:
        raise FormatError("not an archive of this suite (unknown file signature)")
    head = _head_manifest(reader, compression)
    if head is None:
        out["error"] = "the archive has no head manifest (backup.json)"
        return out
    out.update(
        manifest_read=True,
        database=head.get("database"),
        created_at=head.get("created_at"),
        label=head.get("label"),
        odoo_version=head.get("odoo_version"),
    )
    if not out["encrypted"]:
        out["uuid"] = head.get("uuid") or ""
        out["tenant"] = out["uuid"]
    return out


def _head_manifest(reader, compression) -> dict | None:
    """The first member ``backup.json`` of a plaintext payload reader."""
    for member in PayloadReader(reader, compression):
        if member.name == mf.HEAD_MEMBER and member.size <= mf.MAX_MANIFEST_BYTES:
            return mf.loads(member.read(), member.name)
        return None
    return None


def _describe_zip_owner(prefix, raw, out) -> dict:
    out.update(kind="odoo-zip", legacy=True)
    seekable = getattr(raw, "seekable", None)
    if seekable is None or not seekable():
        out["error"] = "an Odoo zip is only read from a local file"
        return out
    try:
        raw.seek(0)
        with zipfile.ZipFile(raw) as zf:
            manifest = json.loads(zf.read("manifest.json").decode("utf-8"))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        out["error"] = f"no readable manifest.json in the zip: {exc}"
        return out
    if isinstance(manifest, dict):
        out.update(
            manifest_read=True,
            database=manifest.get("db_name"),
            odoo_version=manifest.get("version"),
        )
    return out
