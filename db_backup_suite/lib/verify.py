"""Verify an archive: decrypt all of it, check every member against the
manifest, read the whole dump with pg_restore and check every filestore
file's content; optionally restore it into a scratch database and compare.

Three depths, each catching what the previous one cannot:

1. **authenticated and consistent** (always): every chunk authenticated,
   every member hashed and compared with the manifest (dump size and
   sha256, filestore digest over each file's name, size and sha256);
2. **deep** (``VerifyRequest.deep``, the default): the dump streams through
   ``pg_restore --file=/dev/null`` (no database; it reads and writes out
   every data block, see :func:`.pgtools.pg_restore_check_argv`) and every
   filestore file named by Odoo's content address (``xx/<sha1>``) must
   hash to its name. This catches an archive that is authentic and
   matches its own manifest but whose content was wrong when it was
   written: a dump cut short (pg_dump killed, a full pipe) that the
   manifest faithfully describes, a file damaged on the server;
3. **test restore** (``test_restore``): restore into a scratch database,
   compare every table's row count, drop it.

:mod:`.scan` reads the archive (depths 1 and 2); this module adds the test
restore through :mod:`.restore` and is the front end of all three.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from . import lock, pgtools, provenance, safety
from .cleanup import work_dir_name
from .errors import VerificationError, naming_missing_key
from .pgtools import PgParams
from .restore import RestoreRequest, _stamp, open_source, run_restore
from .scan import ArchiveReport, DeepCheck, scan_archive


# ---------------------------------------------------------------------------
# Front ends
# ---------------------------------------------------------------------------
@dataclass
class VerifyRequest:
    """Verify ``name`` at ``sink`` (a Sink or config dict) or a local ``path``.

    ``tenant``: the uuid of the database the archive must belong to, or
    ``crypto.ANY_TENANT`` to accept any (the operator's command line);
    required. ``deep`` (default True): also read the whole dump with
    ``pg_restore`` and check each filestore file's content address
    (:class:`DeepCheck`; needs ``pg_restore`` on PATH, no database).
    ``test_restore``: also restore into a scratch database (and filestore
    under ``data_dir`` or a temp dir), compare with the manifest, drop it.
    """

    name: str | None = None
    sink: object = None
    path: str | os.PathLike | None = None
    keyring: object = None
    password: str | None = None
    tenant: object = None
    test_restore: bool = False
    pg: object = None
    data_dir: str | os.PathLike | None = None
    progress: object = None
    deep: bool = True


@dataclass
class VerifyResult:
    report: ArchiveReport
    test_restore: dict | None = None

    def as_dict(self) -> dict:
        out = self.report.as_dict()
        out["test_restore"] = self.test_restore
        return out


def run_verify(req: VerifyRequest) -> VerifyResult:
    if req.tenant is None:
        raise TypeError(
            "VerifyRequest needs tenant: the database uuid the archive must "
            "belong to, or crypto.ANY_TENANT"
        )
    shown = req.name or (os.fspath(req.path) if req.path is not None else None)
    deep = DeepCheck(req.pg) if req.deep else None
    try:
        with (
            naming_missing_key("archive", shown, keyring=req.keyring),
            open_source(req.sink, req.name, req.path) as source,
            source.open() as raw,
        ):
            report = scan_archive(
                raw,
                keyring=req.keyring,
                password=req.password,
                tenant=req.tenant,
                handler=deep,
            )
    finally:
        if deep is not None:
            deep.close()
    if deep is not None:
        report.deep = deep.summary()
        problems = report.deep["problems"]
        if problems:
            raise VerificationError(
                "the archive is authentic and matches its manifest, but its "
                "content does not hold up: " + "; ".join(problems)
            )
    test = None
    if req.test_restore:
        pg = req.pg or PgParams.from_env()
        base = report.manifest.get("database") or "verify"
        try:
            safety.check_database_name(base)
        except safety.InvalidDatabaseNameError:
            base = "verify"
        scratch = safety.derived_name(base, f"verify_{_stamp()}")
        # the scratch copy is bound to the archive just authenticated
        source_uuid = (
            report.header["tenant"]
            if report.header
            else report.manifest.get("uuid") or ""
        )
        with (
            # "a verify of base is alive": a cleanup leaves the scratch alone
            lock.work_lock(pg, base),
            tempfile.TemporaryDirectory(prefix=work_dir_name("verify", base)) as tmp,
        ):
            data_dir = req.data_dir or tmp
            if pgtools.database_exists(pg, scratch):
                raise VerificationError(
                    f"{scratch} already exists (a verify started this second?); "
                    "try again"
                )
            # registered before it exists (a killed verify leaves a provable
            # leftover); a temp data dir holds no registry worth keeping
            provenance.register(req.data_dir, scratch, "drill", base)
            made = False
            try:
                result = run_restore(
                    RestoreRequest(
                        target=scratch,
                        mode="sandbox",
                        sink=req.sink,
                        name=req.name,
                        path=req.path,
                        keyring=req.keyring,
                        password=req.password,
                        expected_uuid=source_uuid,
                        pg=pg,
                        data_dir=data_dir,
                        progress=req.progress,
                        skip_verify=True,  # just verified above
                    )
                )
                made = True
                test = {
                    "database": scratch,
                    "row_counts_checked": len(result.row_counts),
                    "filestore": result.filestore,
                    "duration": round(result.duration, 3),
                    "ok": True,
                }
            finally:
                if made:  # never a database of that name someone else made
                    safety.drop_database_if_suite_owned(
                        pg, scratch, kinds=("scratch",), data_dir=data_dir
                    )
                provenance.unregister(req.data_dir, scratch)
    return VerifyResult(report=report, test_restore=test)
