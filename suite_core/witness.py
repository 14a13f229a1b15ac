"""External witness of the audit chain head (pure Python, no Odoo).

The database can be rolled back by anyone with SQL access: delete the newest
events, put back an older copy of the head checkpoint, and the chain that is
left verifies. What they cannot roll back is a record kept elsewhere. After
every seal the server appends the signed head to a file outside the
database::

    <data_dir>/audit_witness/<dbname>.log     (directory 0700, file 0600)

one JSON object per line, appended with ``O_APPEND`` under ``flock`` and
``fsync``'d, never rewritten::

    {"chain_hash": ..., "db": ..., "key_id": "kr:k1", "kind": "head",
     "mac": HMAC(K, "audit-witness/v1" || 0 || JSON(line without mac)),
     "sealed_at": "2026-01-02 03:04:05", "sequence": 1234, "uuid": ..., "v": 1}

``K`` is the chain key (see :mod:`.chain`). A ``rebase`` line (written by
the server after a restore it performed, with the head it starts from)
closes the history before it. :func:`latest_head` gives the newest head to
put into a backup manifest; :func:`check` compares the database's chain with
every witnessed head and names truncation and rollback.
"""

import contextlib
import fcntl
import hmac
import json
import os
import re
import stat

from .keyring import SuiteError

WITNESS_DIRNAME = "audit_witness"
FORMAT_VERSION = 1
HEAD = "head"
REBASE = "rebase"
_LABEL = b"odoo-suite/audit-witness/v1\x00"
_DBNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}\Z")
HASHES_BATCH = 5000


class WitnessError(SuiteError):
    """The witness file cannot be used (not a regular file, unwritable)."""


def default_dir(data_dir):
    """The witness directory under Odoo's data directory."""
    return os.path.join(os.fspath(data_dir), WITNESS_DIRNAME)


def witness_path(directory, dbname):
    """``<directory>/<dbname>.log``; ``dbname`` must be a plain database name."""
    if not isinstance(dbname, str) or not _DBNAME_RE.match(dbname):
        raise ValueError(f"not a database name: {dbname!r}")
    return os.path.join(os.fspath(directory), f"{dbname}.log")


def _json(data):
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def message(record):
    """The signed bytes of a witness line (every field but ``mac``)."""
    data = {k: v for k, v in record.items() if k != "mac" and not k.startswith("_")}
    return _LABEL + _json(data).encode()


def make_record(
    kind, *, key, key_id, db, uuid, sequence, chain_hash, sealed_at, **extra
):
    """A signed witness line (dict) for the head ``(sequence, chain_hash)``."""
    record = {
        "v": FORMAT_VERSION,
        "kind": kind,
        "db": db,
        "uuid": uuid,
        "sequence": int(sequence),
        "chain_hash": chain_hash,
        "sealed_at": sealed_at,
        "key_id": key_id,
        **extra,
    }
    record["mac"] = hmac.digest(key, message(record), "sha256").hex()
    return record


def is_authentic(record, key):
    """True when ``record`` (a witness line, e.g. from a backup manifest)
    carries a valid signature under ``key``."""
    expected = hmac.digest(key, message(record), "sha256").hex()
    return hmac.compare_digest(expected, str(record.get("mac") or ""))


def append(path, record):
    """Append ``record`` as one line and fsync it (creates the file 0600)."""
    path = os.fspath(path)
    directory = os.path.dirname(path)
    created_dir = not os.path.isdir(directory)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    line = (_json(record) + "\n").encode("ascii")
    flags = (
        os.O_WRONLY
        | os.O_APPEND
        | os.O_CREAT
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_CLOEXEC", 0)
    )
    fd = os.open(path, flags, 0o600)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise WitnessError(f"{path} is not a regular file")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    if created_dir:
        _fsync_dir(os.path.dirname(directory) or ".")


def _fsync_dir(directory):
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read(path):
    """Every line of the witness as dicts (``_line``: its number), or None
    when the file does not exist. A line that is not a JSON object (a torn
    write) reads ``{"_line": n, "_malformed": True}``."""
    try:
        handle = open(os.fspath(path), "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    records = []
    with handle:
        for number, raw in enumerate(handle, 1):
            try:
                record = json.loads(raw)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                records.append({"_line": number, "_malformed": True})
                continue
            record["_line"] = number
            records.append(record)
    return records


def _current(records):
    """The lines since the last rebase (inclusive), malformed ones left out."""
    usable = [r for r in records if not r.get("_malformed")]
    for index in range(len(usable) - 1, -1, -1):
        if usable[index].get("kind") == REBASE:
            return usable[index:]
    return usable


def latest_head(data_dir, dbname, *, directory=None):
    """The newest signed head of ``dbname`` (a dict, as written) or None.

    For backup manifests: ``manifest["audit_head"] = latest_head(data_dir,
    dbname)`` records, outside the database, how far its audit chain went
    when the backup was taken. ``directory`` overrides ``<data_dir>/
    audit_witness`` (the Odoo option ``audit_witness_dir``).
    """
    if directory is None and data_dir is None:
        return None
    path = witness_path(directory or default_dir(data_dir), dbname)
    records = read(path)
    if not records:
        return None
    heads = _current(records)
    if not heads:
        return None
    best = max(heads, key=lambda r: int(r.get("sequence") or 0))
    return {k: v for k, v in best.items() if not k.startswith("_")}


def check(records, *, key_for, trusted, hashes_at, anchor, last, uuid, path=None):
    """Compare the chain with every witnessed head.

    ``anchor`` and ``last``: ``(sequence, chain_hash)`` of the retention
    anchor and of the last verified event; ``hashes_at(sequences)`` returns
    the stored chain hashes. Returns ``(problem or None, summary)``.
    """
    summary = {
        "path": path,
        "lines": 0,
        "sequence": None,
        "sealed_at": None,
        "warning": None,
    }
    if records is None:
        summary["warning"] = (
            f"No external witness of the chain head was found ({path}): "
            "removal of the newest events together with the head cannot be "
            "detected."
        )
        return None, summary
    heads, skipped = [], 0
    for record in records:
        if record.get("_malformed"):
            skipped += 1
            continue
        if record.get("uuid") != uuid or not trusted(record.get("key_id")):
            # Another database once had this name, or a line written before
            # the server keyring signed the chain.
            skipped += 1
            continue
        try:
            key = key_for(record.get("key_id"))
        except Exception:
            skipped += 1
            continue
        if not is_authentic(record, key):
            return _problem(
                "forged",
                record.get("sequence"),
                f"line {record['_line']} of the external witness ({path}) does not "
                "match its signature: it was forged",
            ), summary
        heads.append(record)
    heads = _current(heads)
    summary["lines"] = len(heads)
    if skipped:
        summary["warning"] = (
            f"{skipped} lines of the external witness ({path}) were not "
            "checked (torn, of another database, or signed before the server "
            "keyring)."
        )
    heads = [h for h in heads if int(h.get("sequence") or 0) > 0]
    if not heads:
        return None, summary
    top = max(heads, key=lambda r: int(r["sequence"]))
    summary.update(sequence=int(top["sequence"]), sealed_at=top.get("sealed_at"))
    last_seq, last_hash = last
    anchor_seq, anchor_hash = anchor
    if int(top["sequence"]) > last_seq:
        return _problem(
            "truncated",
            last_seq + 1,
            f"events after position {last_seq}, sealed at {top.get('sealed_at')} "
            f"UTC, are missing: the external witness ({path}) recorded the chain "
            f"head at position {top['sequence']}; the log was truncated or rolled "
            "back",
        ), summary
    heads.sort(key=lambda r: int(r["sequence"]))
    wanted = sorted(
        {int(h["sequence"]) for h in heads if int(h["sequence"]) > anchor_seq}
    )
    stored = {}
    for start in range(0, len(wanted), HASHES_BATCH):
        stored.update(hashes_at(wanted[start : start + HASHES_BATCH]))
    stored[last_seq] = last_hash
    if anchor_seq:
        stored[anchor_seq] = anchor_hash
    matched = anchor_seq
    for head in heads:
        seq = int(head["sequence"])
        if seq < anchor_seq:
            continue
        if stored.get(seq) != head.get("chain_hash"):
            return _problem(
                "rolled_back",
                seq,
                f"events after position {matched}, sealed at {head.get('sealed_at')} "
                f"UTC, are missing or were replaced: chain position {seq} no "
                f"longer holds the head the external witness ({path}) recorded; "
                "the log was rolled back",
            ), summary
        matched = seq
    return None, summary


def _problem(kind, sequence, message_text):
    return {
        "kind": kind,
        "event_id": False,
        "sequence": sequence,
        "message": message_text,
    }
