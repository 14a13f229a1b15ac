"""Sink faults with real servers: killed mid-upload (server or client),
part retry across a server restart, unreachable endpoints, host keys,
wrong credentials."""

import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from db_backup_suite.lib.errors import SinkError, SinkUnreachableError
from db_backup_suite.lib.sinks import make_sink
from db_backup_suite.lib.sinks.s3 import MiB
from db_backup_suite.lib.sinks.sftp import fetch_host_key, known_hosts_fingerprint
from tests.fixtures import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]


def s3_leftovers(server, bucket):
    client = server.client()
    objects = [
        o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])
    ]
    uploads = [
        u["Key"]
        for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    ]
    return sorted(objects) + [f"upload:{key}" for key in uploads]


def dir_leftovers(path):
    root = Path(path)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def openssh_fingerprint(pub_path):
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(pub_path)], check=True, capture_output=True, text=True
    ).stdout
    return out.split()[1]


# servers killed mid-upload ---------------------------------------------------
def test_s3_server_killed_mid_upload(s3_server, s3_config):
    sink = make_sink(
        dict(
            s3_config,
            part_size=5 * MiB,
            part_attempts=2,
            retry_backoff=0.1,
            connect_attempts=1,
            connect_timeout=2,
            read_timeout=10,
        )
    )
    writer = sink.open_write("db/killed.dbbs")
    writer.write(os.urandom(6 * MiB))  # part 1 goes out
    wait_until(lambda: writer._parts, 30, what="first part uploaded")
    s3_server.kill()
    started = time.monotonic()
    with pytest.raises(SinkError) as info:
        for _ in range(5):
            writer.write(os.urandom(2 * MiB))
        writer.commit()
    assert time.monotonic() - started < 30
    assert s3_server.endpoint_url.split("//")[1] in str(info.value)
    assert s3_server.secret_key not in str(info.value)
    assert writer.closed

    s3_server.start()
    sink = make_sink(s3_config)
    assert sink.list() == []
    # The abort could not reach the dead server: the upload is still there
    # until cleanup_incomplete() removes it.
    assert s3_leftovers(s3_server, s3_config["bucket"]) == ["upload:db/killed.dbbs"]
    assert sink.cleanup_incomplete() == 1
    assert s3_leftovers(s3_server, s3_config["bucket"]) == []
    assert sink.list() == []


def test_s3_part_retried_across_server_restart(s3_server, s3_config, caplog):
    sink = make_sink(
        dict(
            s3_config,
            part_size=5 * MiB,
            max_in_flight=1,
            part_attempts=8,
            retry_backoff=0.5,
            connect_attempts=1,
            connect_timeout=2,
        )
    )
    data = os.urandom(12 * MiB)
    caplog.set_level(logging.WARNING, logger="db_backup_suite.lib.sinks.s3")
    with sink.open_write("db/retried.dbbs") as writer:
        writer.write(data[: 5 * MiB])
        wait_until(lambda: writer._parts, 30, what="first part uploaded")
        s3_server.kill()
        writer.write(data[5 * MiB : 10 * MiB])  # part 2 fails and retries
        wait_until(lambda: "retrying" in caplog.text, 30, what="a failed part retried")
        s3_server.start()
        writer.write(data[10 * MiB :])
        stored = writer.commit()
    assert stored.size == len(data)
    assert "part 2" in caplog.text
    with sink.open_read("db/retried.dbbs") as reader:
        assert reader.read() == data
    assert s3_leftovers(s3_server, s3_config["bucket"]) == ["db/retried.dbbs"]


def test_sftp_server_killed_mid_upload(sftp_server, sftp_dir):
    config = sftp_server.sink_config(sftp_dir, timeout=5)
    sink = make_sink(config)
    writer = sink.open_write("db/killed.dbbs")
    writer.write(os.urandom(4 * MiB))
    sftp_server.kill()
    started = time.monotonic()
    with pytest.raises(SinkError) as info:
        for _ in range(10):
            writer.write(os.urandom(2 * MiB))
        writer.commit()
    assert time.monotonic() - started < 30
    assert f"{sftp_server.host}:{sftp_server.port}" in str(info.value)
    assert writer.closed

    sftp_server.start()
    sink = make_sink(config)
    assert sink.list() == []
    assert dir_leftovers(sftp_dir) == ["db/killed.dbbs.part"]
    assert sink.cleanup_incomplete() == 1
    assert dir_leftovers(sftp_dir) == []
    assert sink.list() == []


# client killed mid-upload -----------------------------------------------------
CLIENT = """
import json, os, sys
from db_backup_suite.lib.sinks import make_sink
sink = make_sink(json.loads(sys.stdin.readline()))
writer = sink.open_write("db/client-killed.dbbs")
writer.write(os.urandom(6 * 1024 * 1024))
print("written", flush=True)
sys.stdin.read()  # wait to be killed
"""


@pytest.fixture(params=["local", "s3", "sftp"])
def fault_config(request, tmp_path):
    if request.param == "local":
        return {"type": "local", "path": str(tmp_path / "backups")}
    if request.param == "s3":
        return dict(request.getfixturevalue("s3_config"), part_size=5 * MiB)
    return request.getfixturevalue("sftp_config")


def test_client_killed_mid_upload_leaves_only_cleanable_leftovers(
    fault_config, request
):
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        proc.stdin.write(json.dumps(fault_config) + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.kill()
        proc.wait()
    sink = make_sink(fault_config)
    assert sink.list() == []

    def leftovers():
        if fault_config["type"] == "s3":
            return s3_leftovers(
                request.getfixturevalue("s3_server"), fault_config["bucket"]
            )
        return dir_leftovers(fault_config["path"])

    if fault_config["type"] == "s3":
        # The multipart upload is created before the first part is sent.
        wait_until(leftovers, 10, what="the upload to show up")
    assert len(leftovers()) == 1
    # A recent leftover may belong to a running backup: spared.
    assert sink.cleanup_incomplete(older_than=3600) == 0
    assert len(leftovers()) == 1
    assert sink.cleanup_incomplete() == 1
    assert leftovers() == []
    # Committed objects are never touched by the cleanup.
    sink.put("db/kept.dbbs", io.BytesIO(b"kept"))
    assert sink.cleanup_incomplete() == 0
    assert [o.name for o in sink.list()] == ["db/kept.dbbs"]


# unreachable ------------------------------------------------------------------
def test_s3_unreachable_endpoint_fails_fast(s3_server):
    port = free_port()
    sink = make_sink(
        s3_server.sink_config(
            "bucket", endpoint_url=f"http://127.0.0.1:{port}", connect_timeout=2
        )
    )
    for action in (
        sink.test_connection,
        sink.list,
        lambda: sink.put("x", io.BytesIO(b"x")),
    ):
        started = time.monotonic()
        with pytest.raises(SinkUnreachableError) as info:
            action()
        assert time.monotonic() - started < 10
        assert f"127.0.0.1:{port}" in str(info.value)
        assert s3_server.secret_key not in str(info.value)


def test_s3_blackholed_endpoint_times_out_fast(s3_server):
    # TEST-NET-1 (RFC 5737): never routed, so the connection hangs or is
    # refused by the network stack; either way it must end within seconds.
    sink = make_sink(
        s3_server.sink_config(
            "bucket",
            endpoint_url="http://192.0.2.1:9000",
            connect_timeout=1,
            connect_attempts=2,
        )
    )
    started = time.monotonic()
    with pytest.raises(SinkUnreachableError, match="192.0.2.1"):
        sink.test_connection()
    assert time.monotonic() - started < 10


def test_s3_wrong_secret_is_refused(s3_server, s3_bucket):
    sink = make_sink(s3_server.sink_config(s3_bucket, secret_key="wrong-secret"))
    with pytest.raises(SinkUnreachableError, match="refused") as info:
        sink.test_connection()
    assert "wrong-secret" not in str(info.value)
    with pytest.raises(SinkUnreachableError):
        sink.put("x", io.BytesIO(b"x"))


def test_sftp_unreachable_host_fails_fast(sftp_server):
    port = free_port()
    sink = make_sink(sftp_server.sink_config("/tmp", port=port, timeout=3))
    started = time.monotonic()
    with pytest.raises(SinkUnreachableError, match=f"127.0.0.1:{port}"):
        sink.test_connection()
    assert time.monotonic() - started < 10


# host keys --------------------------------------------------------------------
def test_sftp_unknown_host_key_is_refused_with_fingerprint(sftp_server, sftp_dir):
    host_key_line = sftp_server.known_hosts.split(" ", 1)[1]
    other_host = f"[127.0.0.1]:{free_port()} {host_key_line}"
    sink = make_sink(sftp_server.sink_config(sftp_dir, known_hosts=other_host))
    with pytest.raises(SinkUnreachableError, match="unknown host key") as info:
        sink.test_connection()
    expected = openssh_fingerprint(f"{sftp_server.host_key_path}.pub")
    assert expected in str(info.value)
    assert "ssh-ed25519" in str(info.value)
    assert dir_leftovers(sftp_dir) == []


def test_sftp_changed_host_key_is_refused(sftp_server, sftp_dir):
    # The right host name with another key (the client's public key).
    other_key = (Path(sftp_server.workdir) / "client_ed25519.pub").read_text()
    line = f"[{sftp_server.host}]:{sftp_server.port} " + " ".join(other_key.split()[:2])
    sink = make_sink(sftp_server.sink_config(sftp_dir, known_hosts=line))
    with pytest.raises(SinkUnreachableError, match="NOT match") as info:
        sink.list()
    assert openssh_fingerprint(f"{sftp_server.host_key_path}.pub") in str(info.value)


def test_fetch_host_key(sftp_server, sftp_dir):
    line = fetch_host_key(sftp_server.host, sftp_server.port, timeout=5)
    assert line == sftp_server.known_hosts
    key_type, fingerprint = known_hosts_fingerprint(line)
    assert key_type == "ssh-ed25519"
    assert fingerprint == openssh_fingerprint(f"{sftp_server.host_key_path}.pub")
    sink = make_sink(sftp_server.sink_config(sftp_dir, known_hosts=line))
    assert "logged in" in sink.test_connection()
    with pytest.raises(SinkUnreachableError):
        fetch_host_key("127.0.0.1", free_port(), timeout=2)


# logins -----------------------------------------------------------------------
def test_sftp_password_login(sftp_server, sftp_dir):
    user, password = sftp_server.password_user()
    config = sftp_server.sink_config(
        sftp_dir, username=user, password=password, private_key=None
    )
    sink = make_sink(config)
    sink.put("db/by-password.dbbs", io.BytesIO(b"data"))
    assert [o.name for o in sink.list()] == ["db/by-password.dbbs"]

    wrong = make_sink(dict(config, password="not-the-password"))
    with pytest.raises(SinkUnreachableError, match="refused the login") as info:
        wrong.test_connection()
    assert "not-the-password" not in str(info.value)
    assert password not in str(info.value)


def test_sftp_wrong_key_is_refused(sftp_server, sftp_dir, tmp_path):
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")],
        check=True,
    )
    sink = make_sink(
        sftp_server.sink_config(sftp_dir, private_key=(tmp_path / "other").read_text())
    )
    with pytest.raises(SinkUnreachableError, match="refused the login"):
        sink.test_connection()


def test_sftp_encrypted_key_needs_its_passphrase(sftp_server, sftp_dir, tmp_path):
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ecdsa",
            "-N",
            "open sesame",
            "-m",
            "PEM",
            "-f",
            str(tmp_path / "enc"),
        ],
        check=True,
    )
    with open(sftp_server.authorized_keys, "a") as fh:
        fh.write((tmp_path / "enc.pub").read_text())
    pem = (tmp_path / "enc").read_text()
    with pytest.raises(SinkError, match="passphrase"):
        make_sink(sftp_server.sink_config(sftp_dir, private_key=pem))
    with pytest.raises(SinkError, match="cannot be read"):
        make_sink(
            sftp_server.sink_config(
                sftp_dir, private_key=pem, private_key_passphrase="wrong"
            )
        )
    sink = make_sink(
        sftp_server.sink_config(
            sftp_dir, private_key=pem, private_key_passphrase="open sesame"
        )
    )
    assert sink.put("k.dbbs", io.BytesIO(b"k")).size == 1
