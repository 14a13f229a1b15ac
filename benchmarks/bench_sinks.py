"""Upload floors vs our sinks, side by side, on loopback servers.

    python3 benchmarks/bench_sinks.py --sizes 64 256

For each size: a random file is uploaded by
  * OpenSSH ``sftp -b`` (``put``)           vs our SFTP sink (paramiko, pipelined)
  * boto3 ``upload_fileobj`` (its defaults) vs our S3 sink (own multipart)
against an ``sshd`` and a SeaweedFS S3 server started here (the same helpers
as the test fixtures). Prints seconds, MB/s and the ratio ours/floor (time;
target <= 1.2). ``--unpipelined-mb`` also times paramiko without pipelining
(what pysftp-based tools such as OCA ``auto_backup`` do) on a smaller file.
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from db_backup_suite.lib.sinks import make_sink  # noqa: E402
from tests.fixtures.s3_server import start_seaweedfs, stop_seaweedfs  # noqa: E402
from tests.fixtures.sftp_server import start_sshd, stop_sshd  # noqa: E402

MiB = 1024 * 1024


def make_random_file(path, size_mb):
    with open(path, "wb") as fh:
        for _ in range(size_mb):
            fh.write(os.urandom(MiB))
    return path


def timed(func):
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def openssh_put(server, local, remote_dir):
    batch = Path(local).with_suffix(".batch")
    batch.write_text(f"put {local} {remote_dir}/openssh.bin\n")
    cmd = [
        "sftp",
        "-q",
        "-b",
        str(batch),
        *server.openssh_options(),
        f"{server.username}@{server.host}",
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def sink_put(config, local, name):
    with make_sink(config) as sink, open(local, "rb") as fh:
        stored = sink.put(name, fh, size_hint=os.path.getsize(local))
    assert stored.size == os.path.getsize(local)


def paramiko_unpipelined_put(server, local, remote_dir):
    sink = make_sink(server.sink_config(remote_dir))
    sftp = sink._sftp()
    with open(local, "rb") as src, sftp.open(f"{remote_dir}/plain.bin", "wb") as dst:
        shutil.copyfileobj(src, dst, 32768)
    sink.close()


def boto3_put(server, bucket, local):
    client = server.client()
    with open(local, "rb") as fh:
        client.upload_fileobj(fh, bucket, "boto3.bin")


def row(label, size_mb, floor_s, ours_s):
    return (
        f"{label:<28} {size_mb:>6} MB  floor {floor_s:7.2f}s "
        f"{size_mb / floor_s:7.1f} MB/s | ours {ours_s:7.2f}s "
        f"{size_mb / ours_s:7.1f} MB/s | ratio {ours_s / floor_s:5.2f}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[64, 256],
        help="file sizes in MB (default: 64 256)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per measure; the best time is kept"
    )
    parser.add_argument(
        "--unpipelined-mb",
        type=int,
        default=0,
        help="also time non-pipelined paramiko on a file of "
        "this many MB (slow: ~1 MB/s)",
    )
    parser.add_argument("--workdir", help="temp directory (default: system)")
    args = parser.parse_args(argv)

    if not shutil.which("sftp"):
        parser.error(
            "the OpenSSH client `sftp` is missing (apt-get install openssh-client)"
        )
    work = Path(tempfile.mkdtemp(prefix="bench-sinks-", dir=args.workdir))
    sshd = s3 = None
    try:
        print("starting sshd and SeaweedFS ...", flush=True)
        sshd = start_sshd()
        s3 = start_seaweedfs()
        lines = []
        for size_mb in args.sizes:
            local = make_random_file(work / f"random-{size_mb}.bin", size_mb)

            def best(func):
                return min(timed(func) for _ in range(args.repeat))

            remote = sshd.new_dir()
            floor = best(
                lambda remote=remote, local=local: openssh_put(sshd, local, remote)
            )
            ours = best(
                lambda remote=remote, local=local: sink_put(
                    sshd.sink_config(remote), local, "ours.bin"
                )
            )
            lines.append(row("SFTP: OpenSSH vs sink", size_mb, floor, ours))
            print(lines[-1], flush=True)

            bucket = s3.new_bucket()
            floor = best(
                lambda bucket=bucket, local=local: boto3_put(s3, bucket, local)
            )
            ours = best(
                lambda bucket=bucket, local=local: sink_put(
                    s3.sink_config(bucket), local, "ours.bin"
                )
            )
            lines.append(row("S3: upload_fileobj vs sink", size_mb, floor, ours))
            print(lines[-1], flush=True)
            local.unlink()
        if args.unpipelined_mb:
            size_mb = args.unpipelined_mb
            local = make_random_file(work / "small.bin", size_mb)
            remote = sshd.new_dir()
            floor = timed(lambda: sink_put(sshd.sink_config(remote), local, "ours.bin"))
            plain = timed(lambda: paramiko_unpipelined_put(sshd, local, remote))
            lines.append(
                f"{'paramiko not pipelined':<28} {size_mb:>6} MB  "
                f"{plain:7.2f}s {size_mb / plain:7.1f} MB/s | pipelined sink "
                f"{floor:7.2f}s {size_mb / floor:7.1f} MB/s | "
                f"{plain / floor:5.1f}x slower"
            )
            print(lines[-1], flush=True)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\npeak RSS of this process: {peak:.0f} MB")
        print("ratio = our time / floor time (target <= 1.20)")
    finally:
        if s3 is not None:
            stop_seaweedfs(s3)
        if sshd is not None:
            stop_sshd(sshd)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
