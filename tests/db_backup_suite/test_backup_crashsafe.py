"""kill -9 of the command line at random points, then a new run: nothing but
complete archives is left, in the local, S3 and SFTP destinations alike; a
restore killed half-way leaves nothing after the next backup.

Real processes and servers: ``python -m db_backup_suite.lib`` in a child
process, SIGKILLed when its local temp file reaches a byte offset chosen by
hypothesis; PostgreSQL, SeaweedFS (``weed server -s3``) and OpenSSH sshd on
loopback."""

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db_backup_suite.lib import crypto, lock, scan
from db_backup_suite.lib.pgtools import PgParams
from db_backup_suite.lib.sinks import make_sink
from tests.fixtures import wait_until
from tests.fixtures.odoo_db import (
    connect,
    data_checksum,
    filestore_listing,
    list_databases,
)

PREFIX = "h12_cs_"
ROOT = Path(__file__).resolve().parents[2]
#: Each example is bounded: a killed run and a complete one.
RUN_TIMEOUT = 120
#: A little more than the archive of ``crash_db`` (about 7.5 MB): offsets
#: past its end let the run finish before the kill, also a case to cover.
ARCHIVE_SIZE = 8_500_000


@pytest.fixture(scope="module")
def keyring_line():
    return crypto.generate_key_line()


@pytest.fixture
def env(tmp_path, keyring_line):
    path = tmp_path / "keyring"
    path.write_text(keyring_line + "\n")
    path.chmod(0o600)
    environ = os.environ.copy()
    environ["SUITE_KEYRING_FILE"] = str(path)
    environ.pop("SUITE_KEYRING", None)
    return environ


@pytest.fixture
def crash_db(odoo_db_factory):
    # about 6 MB of incompressible attachments: the archive spans two S3
    # parts of 5 MiB, so a kill can leave a multipart upload with parts
    return odoo_db_factory(
        prefix=PREFIX, partners=2000, attachments=48, attachment_size=200_000
    )


def _cli(args, environ, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "db_backup_suite.lib", *args],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _destinations(tmp, s3_server, sftp_server):
    """local, S3 and SFTP destinations (JSON files for the last two: small
    S3 parts, keys) for one example."""
    local_root = Path(tempfile.mkdtemp(dir=tmp, prefix="local-"))
    bucket = s3_server.new_bucket()
    s3 = s3_server.sink_config(bucket, part_size=5 * 1024 * 1024)
    sftp = sftp_server.sink_config(sftp_server.new_dir())
    specs = [f"local:{local_root}"]
    for name, config in (("s3", s3), ("sftp", sftp)):
        path = Path(tmp) / f"{name}-{bucket}.json"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        specs.append(str(path))
    return local_root, s3, sftp, specs


def _temp_size(local_root: Path) -> int:
    sizes = [p.stat().st_size for p in local_root.rglob(".dbbs-*.tmp")]
    return max(sizes, default=-1)


def _kill_at(proc, local_root: Path, offset: int):
    """SIGKILL ``proc`` once its local temp file holds ``offset`` bytes;
    returns the size seen, or None when the run ended first."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            size = _temp_size(local_root)
        except FileNotFoundError:  # renamed meanwhile
            continue
        if size >= offset:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return size
        time.sleep(0.002)
    proc.communicate(timeout=RUN_TIMEOUT)
    return None


def _wait_lock_free(dbname):
    """The killed run's PostgreSQL sessions end (and release the backup
    lock) as soon as the server sees the dead socket."""

    def free():
        conn = connect(dbname)
        try:
            with conn.cursor() as cr:
                return lock.lock_holder(cr) is None
        finally:
            conn.close()

    wait_until(free, 30, interval=0.05, what="the backup lock released")


def _leftovers(local_root, s3_server, s3, sftp):
    hidden = sorted(str(p) for p in local_root.rglob(".*"))
    uploads = s3_server.client().list_multipart_uploads(Bucket=s3["bucket"])
    parts = sorted(str(p) for p in Path(sftp["path"]).rglob("*.part"))
    return hidden, [u["Key"] for u in uploads.get("Uploads", [])], parts


def _assert_only_complete_archives(config, db, keyring):
    sink = make_sink(config)
    names = [o.name for o in sink.list()]
    assert names, f"no archive at {sink.describe()}"
    for name in names:
        assert name.startswith(f"{db.dbname}/{db.dbname}_manual_"), name
        assert name.endswith(".tar.zst.enc"), name
        out = io.BytesIO()
        sink.get(name, out)
        deep = scan.DeepCheck()
        try:
            report = scan.scan_archive(
                io.BytesIO(out.getvalue()),
                keyring=keyring,
                tenant=db.uuid,
                handler=deep,
            )
        finally:
            deep.close()
        assert report.manifest["complete"] and deep.problems() == []
    return names


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(offset=st.integers(min_value=0, max_value=ARCHIVE_SIZE))
def test_sigkill_at_any_byte_then_next_run_leaves_only_complete_archives(
    offset, crash_db, env, tmp_path, keyring_line, s3_server, sftp_server
):
    s3_server.ensure_running()
    sftp_server.ensure_running()
    keyring = crypto.Keyring.parse(keyring_line)
    local_root, s3, sftp, specs = _destinations(tmp_path, s3_server, sftp_server)
    args = ["backup", crash_db.dbname, "--data-dir", str(crash_db.data_dir)]
    for spec in specs:
        args += ["--to", spec]
    killed = _kill_at(_cli(args, env), local_root, offset)
    if killed is not None:
        _wait_lock_free(crash_db.dbname)
    seen = _leftovers(local_root, s3_server, s3, sftp)

    done = _cli([*args, "--json"], env)
    stdout, stderr = done.communicate(timeout=RUN_TIMEOUT)
    assert done.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["state"] == "done"
    # what the killed run left is gone, and it was this run that removed it
    # (at least what was seen: a request sent just before the kill may
    # still have created an upload after the look)
    assert _leftovers(local_root, s3_server, s3, sftp) == ([], [], [])
    removed = result["cleanup"]["removed"]
    assert removed >= len(seen[0]) + len(seen[1]) + len(seen[2])
    for config in ({"type": "local", "path": str(local_root)}, s3, sftp):
        names = _assert_only_complete_archives(config, crash_db, keyring)
        assert result["name"] in names


def test_killed_restore_leaves_nothing_after_the_next_backup(
    odoo_db_factory, env, tmp_path
):
    db = odoo_db_factory(
        prefix=PREFIX, partners=20_000, attachments=30, attachment_size=100_000
    )
    dest = f"local:{tmp_path / 'dest'}"
    data_dir = ["--data-dir", str(db.data_dir)]
    proc = _cli(["backup", db.dbname, "--to", dest, "--json", *data_dir], env)
    stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, stderr
    name = json.loads(stdout)["name"]
    before = (data_checksum(db.dbname), filestore_listing(db.filestore))

    restore = _cli(
        [
            "restore",
            name,
            "--from",
            dest,
            "--target",
            db.dbname,
            "--confirm",
            db.dbname,
            "--jobs",
            "2",
            *data_dir,
        ],
        env,
    )
    staging_prefix = f"{db.dbname}_restoring_"
    wait_until(
        lambda: list_databases(staging_prefix) or restore.poll() is not None,
        RUN_TIMEOUT,
        interval=0.01,
        what="the staging database",
    )
    restore.send_signal(signal.SIGKILL)
    restore.wait()
    # what the killed restore left: staging database, staging filestore, and
    # the temp dir holding the plaintext dump
    staging = list_databases(staging_prefix)
    assert len(staging) == 1, "the restore ended before it could be killed"
    fs_root = Path(db.data_dir) / "filestore"
    assert (fs_root / staging[0]).is_dir()
    work = list(Path(tempfile.gettempdir()).glob(f"dbbs-restore+{db.dbname}+*"))
    assert len(work) == 1 and (work[0] / "database.dump").exists()

    def work_lock_free():
        with lock.work_lock(PgParams.from_env(), db.dbname, exclusive=True) as ok:
            return ok

    wait_until(work_lock_free, 30, interval=0.05, what="the work lock released")

    proc = _cli(["backup", db.dbname, "--to", dest, "--json", *data_dir], env)
    stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, stderr
    cleaned = json.loads(stdout)["cleanup"]
    assert sorted((i["kind"], i["action"]) for i in cleaned["leftovers"]) == [
        ("staging-database", "removed"),
        ("staging-filestore", "removed"),
        ("work-dir", "removed"),
    ]
    assert list_databases(staging_prefix) == []
    assert not (fs_root / staging[0]).exists()
    assert not work[0].exists()
    # the live database and filestore were never touched
    assert (data_checksum(db.dbname), filestore_listing(db.filestore)) == before
