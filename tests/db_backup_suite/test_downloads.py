"""Prepared password downloads (lib/downloads.py): the detached process
re-encrypts an archive from a real local destination into a private file,
reports where it stands, fails cleanly, and day-old files are removed."""

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from db_backup_suite.lib import crypto, downloads, errors
from suite_core.keyring import generate_key_line

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PASSWORD = "Correct-Horse-42-battery!"
TENANT = "tenant-uuid"
NAME = "prod/prod_manual_20250101T000000Z.tar.zst.enc"


@pytest.fixture
def setup(tmp_path):
    keyring_file = tmp_path / "keyring"
    keyring_file.write_text(generate_key_line("t1") + "\n")
    keyring_file.chmod(0o600)
    keyring = crypto.load_keyring(str(keyring_file))
    dest = tmp_path / "dest"
    (dest / "prod").mkdir(parents=True)
    payload = os.urandom(3 * 1024 * 1024 + 17)
    with open(dest / NAME, "wb") as raw:
        writer = crypto.encrypting_writer(raw, keyring=keyring, tenant=TENANT)
        writer.write(payload)
        writer.close()
    base = tmp_path / "private"
    base.mkdir(mode=0o700)
    return {
        "keyring_file": str(keyring_file),
        "dest": str(dest),
        "base": str(base),
        "payload": payload,
    }


def _job(setup, download_id, **extra):
    job = {
        "id": download_id,
        "base": setup["base"],
        "sink": {"type": "local", "path": setup["dest"]},
        "name": NAME,
        "tenant": TENANT,
        "password": PASSWORD,
        "total": os.path.getsize(os.path.join(setup["dest"], NAME)),
    }
    job.update(extra)
    path = os.path.join(setup["base"], "download-%s.json" % download_id[:4])
    with open(path, "w") as handle:
        json.dump(job, handle)
    return path


def _run(setup, job_file):
    env = dict(
        os.environ,
        PYTHONPATH=ROOT,
        SUITE_KEYRING_FILE=setup["keyring_file"],
    )
    return subprocess.run(
        [sys.executable, "-m", "db_backup_suite.lib.downloads", "--job-file", job_file],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_prepared_in_a_separate_process_with_the_password_only(setup):
    download_id = "1" * 32
    job_file = _job(setup, download_id)
    proc = _run(setup, job_file)
    assert proc.returncode == 0, proc.stderr
    assert not os.path.exists(job_file), "the job file (password inside) is removed"
    path = downloads.file_path(setup["base"], download_id)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    status = downloads.read_status(setup["base"], download_id)
    assert status["state"] == "done"
    assert status["size"] == os.path.getsize(path)
    assert status["pid"] != os.getpid()
    with open(path, "rb") as raw:
        reader = crypto.open_archive(raw, password=PASSWORD, tenant=TENANT)
        assert reader.read() == setup["payload"]
    with open(path, "rb") as raw, pytest.raises(errors.StreamCryptError):
        crypto.verify_archive(raw, password=PASSWORD + "x", tenant=TENANT)
    keyring = crypto.load_keyring(setup["keyring_file"])
    with open(path, "rb") as raw, pytest.raises(errors.StreamCryptError):
        crypto.verify_archive(raw, keyring=keyring, tenant=TENANT)
    downloads.remove(setup["base"], download_id)
    assert os.listdir(os.path.join(setup["base"], "downloads")) == []


def test_failure_is_reported_and_leaves_no_part_file(setup):
    download_id = "2" * 32
    proc = _run(setup, _job(setup, download_id, tenant="another-tenant"))
    assert proc.returncode == 1
    status = downloads.read_status(setup["base"], download_id)
    assert status["state"] == "failed"
    assert status["error"]
    left = os.listdir(os.path.join(setup["base"], "downloads"))
    assert left == [download_id + ".json"]


def test_ids_checked_and_stale_files_removed(setup):
    base = setup["base"]
    for bad in ("../x", "1" * 31, "Z" * 32, None):
        with pytest.raises(ValueError):
            downloads.file_path(base, bad)
    old, fresh = "a" * 32, "b" * 32
    for download_id in (old, fresh):
        with open(downloads.file_path(base, download_id), "wb") as handle:
            handle.write(b"x")
        downloads.write_status(base, download_id, state="done")
    day_ago = time.time() - 25 * 3600
    folder = os.path.join(base, "downloads")
    for name in os.listdir(folder):
        if name.startswith(old):
            os.utime(os.path.join(folder, name), (day_ago, day_ago))
    assert downloads.remove_stale(base) == [old]
    assert sorted(os.listdir(folder)) == [fresh + ".enc", fresh + ".json"]
