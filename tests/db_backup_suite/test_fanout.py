"""One backup stream to several destinations at once, against the real
PostgreSQL, SeaweedFS S3 and OpenSSH SFTP servers: every copy identical
and complete; a destination that fails (bad host key, server killed
mid-stream, stalled) is dropped with its reason while the others complete;
memory stays bounded; nothing is listed where nothing was stored."""

import hashlib
import io
import json
import os
import threading
import time
from pathlib import Path

import pytest

from db_backup_suite.lib import backup, cleanup, crypto, fanout, scan
from db_backup_suite.lib.errors import DestinationsFailedError, SinkError
from db_backup_suite.lib.sinks import make_sink
from db_backup_suite.lib.sinks.local import LocalSink, LocalWriter
from tests.db_backup_suite.cli_runner import keyring_environ, run_cli
from tests.fixtures import live_children, wait_until

PREFIX = "h12_fo_"
FAST_S3 = {
    "part_size": 5 * 1024 * 1024,
    "part_attempts": 2,
    "retry_backoff": 0.1,
    "connect_attempts": 1,
    "connect_timeout": 2,
    "read_timeout": 10,
}


@pytest.fixture
def keyring():
    return crypto.Keyring.parse(crypto.generate_key_line())


@pytest.fixture
def big_db(odoo_db_factory):
    """About 12 MB of attachments (half of them incompressible), so the
    archive spans several S3 parts and a kill lands mid-stream."""
    return odoo_db_factory(
        prefix=PREFIX, partners=3000, attachments=60, attachment_size=200_000
    )


def _request(db, keyring, sinks, **kw):
    return backup.BackupRequest(
        database=db.dbname, sinks=sinks, data_dir=db.data_dir, keyring=keyring, **kw
    )


def _archive_bytes(sink, name) -> bytes:
    out = io.BytesIO()
    sink.get(name, out)
    return out.getvalue()


def _check_complete(raw: bytes, db, keyring):
    """The archive decrypts to its end and matches its manifest (and its
    dump is read whole by pg_restore)."""
    deep = scan.DeepCheck()
    try:
        report = scan.scan_archive(
            io.BytesIO(raw), keyring=keyring, tenant=db.uuid, handler=deep
        )
    finally:
        deep.close()
    assert deep.problems() == []
    assert report.manifest["complete"] is True
    return report


def _part_files(root) -> list[str]:
    return sorted(str(p) for p in Path(root).rglob("*.part"))


def _uploads(server, bucket) -> list[str]:
    listed = server.client().list_multipart_uploads(Bucket=bucket)
    return [u["Key"] for u in listed.get("Uploads", [])]


# ---------------------------------------------------------------------------
# everything works: one stream, identical copies
# ---------------------------------------------------------------------------
def test_one_stream_to_local_s3_and_sftp_gives_identical_complete_copies(
    big_db, keyring, tmp_path, s3_config, sftp_config
):
    local = {"type": "local", "path": str(tmp_path / "dest")}
    result = backup.run_backup(
        _request(
            big_db,
            keyring,
            [("L", local), ("S3", s3_config), ("SFTP", sftp_config)],
        )
    )
    assert result.state == "done"
    assert [o.key for o in result.destinations] == ["L", "S3", "SFTP"]
    assert all(o.ok and o.name == result.name for o in result.destinations)
    assert all(o.size == result.size for o in result.destinations)
    copies = [
        _archive_bytes(make_sink(cfg), result.name)
        for cfg in (local, s3_config, sftp_config)
    ]
    for raw in copies:
        assert hashlib.sha256(raw).hexdigest() == result.sha256
    _check_complete(copies[0], big_db, keyring)
    assert result.as_dict()["state"] == "done"
    assert len(result.as_dict()["destinations"]) == 3


# ---------------------------------------------------------------------------
# one destination fails: the others complete, the reason is reported
# ---------------------------------------------------------------------------
def test_bad_host_key_first_does_not_stop_the_local_copy(
    odoo_db_factory, keyring, tmp_path, sftp_server, sftp_config
):
    db = odoo_db_factory(prefix=PREFIX, partners=200, attachments=6)
    other_key = sftp_server.known_hosts.split()[:1] + [
        "ssh-ed25519",
        "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    ]
    bad = dict(sftp_config, known_hosts=" ".join(other_key))
    local = {"type": "local", "path": str(tmp_path / "dest")}
    result = backup.run_backup(_request(db, keyring, [("sftp", bad), ("local", local)]))
    assert result.state == "partial"
    sftp_out, local_out = result.destinations
    assert sftp_out.state == "failed" and "does NOT match known_hosts" in (
        sftp_out.error
    )
    assert sftp_out.error_type == "SinkUnreachableError"
    assert local_out.ok
    assert result.failed_destinations == [sftp_out]
    assert not any("SFTP" in w for w in result.warnings)  # outcomes say it
    assert [o.name for o in make_sink(local).list()] == [result.name]
    _check_complete(_archive_bytes(make_sink(local), result.name), db, keyring)
    # nothing at all on the refused server
    assert list(Path(sftp_config["path"]).rglob("*")) == []


def test_sshd_killed_mid_stream_gives_partial_and_complete_copies_elsewhere(
    big_db, keyring, tmp_path, s3_server, s3_config, sftp_server, sftp_config
):
    local = {"type": "local", "path": str(tmp_path / "dest")}
    killed = []

    def progress(done, total, message):
        if not killed and done > 4 * 1024 * 1024:
            killed.append(done)
            sftp_server.kill()

    s3 = dict(s3_config, **FAST_S3)
    result = backup.run_backup(
        _request(
            big_db,
            keyring,
            [("local", local), ("s3", s3), ("sftp", sftp_config)],
            progress=progress,
        )
    )
    assert killed and killed[0] < result.size  # killed mid-stream
    assert result.state == "partial"
    by_key = {o.key: o for o in result.destinations}
    assert by_key["local"].ok and by_key["s3"].ok
    assert by_key["sftp"].state == "failed"
    assert "SFTP" in by_key["sftp"].error or "sftp" in by_key["sftp"].error
    for cfg in (local, s3_config):
        raw = _archive_bytes(make_sink(cfg), result.name)
        assert hashlib.sha256(raw).hexdigest() == result.sha256
        _check_complete(raw, big_db, keyring)
    # the dead server kept the partial upload; the next run's cleanup
    # (here called directly) removes it, and nothing else
    assert len(_part_files(sftp_config["path"])) == 1
    sftp_server.start()
    cleaned = cleanup.clean_leftovers(
        [sftp_config], big_db.dbname, pg=backup.PgParams.from_env()
    )
    assert [(i.kind, i.action) for i in cleaned.leftovers] == [("part-file", "removed")]
    assert _part_files(sftp_config["path"]) == []
    assert make_sink(sftp_config).list() == []


def test_seaweedfs_killed_mid_stream_gives_partial(
    big_db, keyring, tmp_path, s3_server, s3_config, sftp_config
):
    local = {"type": "local", "path": str(tmp_path / "dest")}
    killed = []

    def progress(done, total, message):
        if not killed and done > 6 * 1024 * 1024:
            killed.append(done)
            s3_server.kill()

    started = time.monotonic()
    result = backup.run_backup(
        _request(
            big_db,
            keyring,
            [
                ("local", local),
                ("s3", dict(s3_config, **FAST_S3)),
                ("sftp", sftp_config),
            ],
            progress=progress,
        )
    )
    assert time.monotonic() - started < 120
    assert killed
    assert result.state == "partial"
    by_key = {o.key: o for o in result.destinations}
    assert by_key["s3"].state == "failed" and "S3" in by_key["s3"].error
    assert s3_server.secret_key not in by_key["s3"].error
    for cfg in (local, sftp_config):
        raw = _archive_bytes(make_sink(cfg), result.name)
        _check_complete(raw, big_db, keyring)
    s3_server.start()
    assert make_sink(s3_config).list() == []  # never listed as a backup
    if _uploads(s3_server, s3_config["bucket"]):  # the abort could not reach it
        cleaned = cleanup.clean_leftovers(
            [s3_config], big_db.dbname, pg=backup.PgParams.from_env()
        )
        assert {i.action for i in cleaned.leftovers} == {"removed"}
    assert _uploads(s3_server, s3_config["bucket"]) == []


def test_every_destination_failing_raises_with_each_reason(
    odoo_db_factory, keyring, tmp_path
):
    db = odoo_db_factory(prefix=PREFIX, partners=100, attachments=3)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    bad_local = {"type": "local", "path": str(blocker / "sub")}
    bad_type = {"type": "ftp", "host": "x"}
    with pytest.raises(DestinationsFailedError) as info:
        backup.run_backup(_request(db, keyring, [("a", bad_local), ("b", bad_type)]))
    outcomes = info.value.outcomes
    assert [o.key for o in outcomes] == ["a", "b"]
    assert all(o.state == "failed" and o.error for o in outcomes)
    assert "Unknown destination type 'ftp'" in outcomes[1].error
    assert "no destination stored the archive (2 failed)" in str(info.value)
    # pg_dump was stopped and reaped, the backup lock released
    assert live_children("pg_dump") == []
    backup.run_backup(
        _request(db, keyring, [{"type": "local", "path": str(tmp_path / "ok")}])
    )


def test_single_destination_failure_raises_its_own_error(
    odoo_db_factory, keyring, tmp_path
):
    db = odoo_db_factory(prefix=PREFIX, partners=100, attachments=3)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SinkError) as info:
        backup.run_backup(
            backup.BackupRequest(
                database=db.dbname,
                sink={"type": "local", "path": str(blocker / "sub")},
                data_dir=db.data_dir,
                keyring=keyring,
            )
        )
    assert not isinstance(info.value, DestinationsFailedError)
    assert "Local destination" in str(info.value)


# ---------------------------------------------------------------------------
# a stalled destination: back-pressure up to a bound, then dropped
# ---------------------------------------------------------------------------
class _GatedWriter(LocalWriter):
    def _write(self, view):
        self.sink.gate.wait()
        if self.sink.fan is not None:
            lag = self.sink.fan.count - self.bytes_written
            self.sink.max_lag = max(self.sink.max_lag, lag)
        super()._write(view)


class GatedSink(LocalSink):
    """A real local sink whose writes wait for ``gate`` (a destination that
    stops answering); records how far the producer ran ahead of it."""

    def __init__(self, path):
        super().__init__(path)
        self.gate = threading.Event()
        self.fan = None
        self.max_lag = 0

    def open_write(self, name, size_hint=None):
        return _GatedWriter(self, name)


def test_stalled_destination_is_dropped_after_the_bound_and_others_complete(
    odoo_db_factory, keyring, tmp_path
):
    db = odoo_db_factory(
        prefix=PREFIX, partners=500, attachments=20, attachment_size=100_000
    )
    stalled = GatedSink(str(tmp_path / "stalled"))
    local = {"type": "local", "path": str(tmp_path / "dest")}
    started = time.monotonic()
    result = backup.run_backup(
        _request(
            db,
            keyring,
            [("stalled", stalled), ("local", local)],
            stall_timeout=2.0,
            chunk_size=64 * 1024,
        )
    )
    elapsed = time.monotonic() - started
    assert result.state == "partial"
    out = {o.key: o for o in result.destinations}
    assert out["local"].ok
    assert out["stalled"].state == "failed"
    assert "accepted no data for 2s" in out["stalled"].error
    assert elapsed < 30
    stalled.gate.set()  # the stuck write returns, sees the drop, aborts

    def stalled_files():
        return [p for p in (tmp_path / "stalled").rglob("*") if p.is_file()]

    wait_until(lambda: not stalled_files(), 10, what="the stalled upload removed")
    _check_complete(_archive_bytes(make_sink(local), result.name), db, keyring)


def test_fan_out_memory_is_bounded_by_depth_per_destination(tmp_path):
    slow = GatedSink(str(tmp_path / "slow"))
    fast = make_sink({"type": "local", "path": str(tmp_path / "fast")})
    fan = fanout.FanOut(
        [("slow", slow), ("fast", fast)],
        "db/db_manual_20260101T000000Z.tar.zst.enc",
        depth=4,
    )
    slow.fan = fan
    block = os.urandom(64 * 1024)

    def release():
        while not done.is_set():
            slow.gate.set()
            time.sleep(0.002)
            slow.gate.clear()
            time.sleep(0.01)
        slow.gate.set()

    done = threading.Event()
    threading.Thread(target=release, daemon=True).start()
    with fan:
        for _ in range(200):
            fan.write(block)
        outcomes = fan.commit()
    done.set()
    assert [o.state for o in outcomes] == ["done", "done"]
    # the producer never ran more than depth blocks (+ the one being
    # written) ahead of the slow destination
    assert 0 < slow.max_lag <= (4 + 1) * len(block)
    assert fast.stat(fan.name).size == slow.stat(fan.name).size == 200 * len(block)


def test_overall_state():
    done = fanout.DestinationOutcome("a", state="done")
    failed = fanout.DestinationOutcome("b", state="failed", error="x")
    assert fanout.overall_state([done, done]) == "done"
    assert fanout.overall_state([done, failed]) == "partial"
    assert fanout.overall_state([failed, failed]) == "failed"
    assert fanout.overall_state([]) == "failed"


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------
@pytest.fixture
def cli_env(tmp_path):
    keyring = tmp_path / "keyring"
    keyring.write_text(crypto.generate_key_line() + "\n")
    keyring.chmod(0o600)
    return keyring_environ(keyring)


def test_cli_backup_to_two_destinations_prints_each_and_exits_3_when_partial(
    odoo_db_factory, cli_env, tmp_path, sftp_server, sftp_config
):
    db = odoo_db_factory(prefix=PREFIX, partners=100, attachments=3)
    good = f"local:{tmp_path / 'a'}"
    wrong_known = tmp_path / "known_hosts"
    wrong_known.write_text(
        f"[{sftp_server.host}]:{sftp_server.port} ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
    )
    key = tmp_path / "id"
    key.write_text(sftp_server.private_key)
    bad = (
        f"sftp://{sftp_server.username}@{sftp_server.host}:{sftp_server.port}"
        f"{sftp_config['path']}?known_hosts={wrong_known}&private_key_file={key}"
    )
    data_dir = ["--data-dir", str(db.data_dir)]
    out = run_cli(["backup", db.dbname, "--to", good, "--to", bad, *data_dir], cli_env)
    assert out.returncode == 3, out.stderr
    assert "backup partial:" in out.stdout
    assert f"  {good}: stored" in out.stdout
    assert f"  {bad}: FAILED: SFTP host" in out.stdout
    assert "NOT match known_hosts" in out.stdout

    out = run_cli(
        [
            "backup",
            db.dbname,
            "--to",
            good,
            "--to",
            f"local:{tmp_path / 'b'}",
            "--json",
            *data_dir,
        ],
        cli_env,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["state"] == "done"
    assert [d["state"] for d in data["destinations"]] == ["done", "done"]

    out = run_cli(["backup", db.dbname, "--to", bad, "--json", *data_dir], cli_env)
    assert out.returncode == 8  # destination unreachable
    assert "NOT match known_hosts" in out.stderr
