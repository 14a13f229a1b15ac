#!/usr/bin/env python3
"""Incremental backups against the suite's full archive and restic.

Run from the repository root::

    python3 benchmarks/bench_incremental.py              # 1M partners, ~1.9 GB
    python3 benchmarks/bench_incremental.py --scale 0.02 # a quick small run

It builds, by SQL and plain file writes, an Odoo-shaped database
(tests/fixtures/odoo_db.py's schema) with ``1,000,000 x scale`` partners
and ``15,000 x scale`` attachments of 128 KiB on average (``--attachment-
size``), half of them incompressible (random bytes behind a PNG or JPEG
magic) and half text. Then, side by side, each of our operations in its
own Python process (wall time of the operation; peak RSS = that process's
``VmHWM``, pg_dump / pg_restore not counted):

day 1   full archive (``run_backup``, local), incremental snapshot (local),
        restic (``restic backup`` of the filestore, then ``pg_dump -Fc -Z0 |
        restic backup --stdin``; restic 0.14 from Debian, compression auto);
        the incremental snapshot to SeaweedFS S3 too;
change  1 % new attachments (half incompressible) and 1 % of the partners
        edited (``UPDATE ... WHERE random() < 0.01``, a fixed seed);
day 2   the same four backups: wall time and what each stored in addition;
restore the newest full archive and the newest snapshot (sandbox, a new
        database and filestore, through the same restore.run_restore);
gc      forget the day-1 snapshot, collect the garbage (grace 0).

Targets, printed as ratios: day-2 stored growth <= 1.2x restic's and wall
<= 1.0x restic's; day-1 wall <= 1.1x our full archive; restore <= 1.1x the
full archive's; peak RSS < 200 MB for backup, restore and GC; bytes sent to
S3 on day 2 <= 1.2x the stored growth there.

Databases are named ``<prefix>...`` (``--prefix``, default ``benchinc_``)
and dropped at the end with the scratch directory unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MB = 1000 * 1000
TARGETS = {
    "day2_stored_vs_restic": 1.2,
    "day2_wall_vs_restic": 1.0,
    "day1_wall_vs_full": 1.1,
    "restore_vs_full": 1.1,
    "peak_rss_mb": 200,
    "s3_sent_vs_growth": 1.2,
}
RESTIC_PASSWORD = "bench-incremental-not-a-secret"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pg_env():
    env = dict(os.environ)
    env.setdefault("PGHOST", "127.0.0.1")
    env.setdefault("PGPORT", "5432")
    return env


def psql(db, sql):
    out = subprocess.run(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", "-"],
        input=sql,
        env=pg_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def drop_db(name):
    psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


# ---------------------------------------------------------------------------
# The database
# ---------------------------------------------------------------------------
def _file_bytes(rng: random.Random, index: int, size: int) -> tuple[bytes, str]:
    if index % 2:  # incompressible, as real images are
        magic = b"\x89PNG\r\n\x1a\n" if index % 4 == 1 else b"\xff\xd8\xff\xe0"
        return magic + rng.randbytes(size - len(magic)), "image/png"
    words = b"invoice partner quotation delivery payment order stock tax vendor "
    line = b" ".join(rng.choice(words.split()) for _ in range(24))
    body = bytearray()
    while len(body) < size:
        body += line + b" %d\n" % rng.randrange(10**9)
        if rng.random() < 0.05:
            line = b" ".join(rng.choice(words.split()) for _ in range(24))
    return bytes(body[:size]), "text/plain"


def add_files(db: str, filestore: Path, count: int, avg: int, seed: int):
    """``count`` attachments, written as Odoo does and inserted by SQL."""
    from tests.fixtures.odoo_db import write_filestore_file

    rng = random.Random(seed)
    rows = []
    for i in range(count):
        size = max(1024, int(avg * rng.uniform(0.3, 1.7)))
        data, mimetype = _file_bytes(rng, i, size)
        fname, sha = write_filestore_file(filestore, data)
        rows.append(
            f"('f{seed}_{i}', '{fname}', {len(data)}, '{sha}', '{mimetype}',"
            f" 'res.partner', {1 + i}, 'binary')"
        )
        if len(rows) == 1000 or i == count - 1:
            psql(
                db,
                "INSERT INTO ir_attachment (name, store_fname, file_size, checksum,"
                " mimetype, res_model, res_id, type) VALUES " + ",".join(rows),
            )
            rows = []


def build_db(db: str, data_dir: Path, partners: int, attachments: int, avg: int):
    from tests.fixtures.odoo_db import create_odoo_db

    create_odoo_db(db, data_dir, partners=partners, attachments=0, messages=10)
    add_files(db, data_dir / "filestore" / db, attachments, avg, seed=1)
    psql(db, "VACUUM ANALYZE")


def change_db(db: str, data_dir: Path, attachments: int, avg: int):
    """1 % new attachments and 1 % of the partners edited."""
    add_files(db, data_dir / "filestore" / db, max(1, attachments // 100), avg, 2)
    psql(
        db,
        "SELECT setseed(0.15);"
        " UPDATE res_partner SET comment = comment || ' edited',"
        " write_date = now() at time zone 'UTC' WHERE random() < 0.01",
    )


# ---------------------------------------------------------------------------
# Workers: python3 bench_incremental.py --worker < spec
# ---------------------------------------------------------------------------
def _peak_rss_mb() -> float:
    """``VmHWM`` of this process (see bench_backup.py for why not ru_maxrss)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def worker(spec: dict) -> dict:
    from db_backup_suite.lib import backup, crypto, repository, restore
    from db_backup_suite.lib.sinks import make_sink

    keyring = crypto.Keyring.parse(spec["keyring"])
    op = spec["op"]
    start = time.monotonic()
    if op == "full_backup":
        result = backup.run_backup(
            backup.BackupRequest(
                database=spec["db"],
                sink=spec["sink"],
                data_dir=spec["data_dir"],
                keyring=keyring,
                label=spec["label"],
            )
        )
        return {
            "seconds": time.monotonic() - start,
            "name": result.name,
            "size": result.size,
        }
    if op == "incr_backup":
        result = repository.run_incremental_backup(
            backup.BackupRequest(
                database=spec["db"],
                sink=spec["sink"],
                data_dir=spec["data_dir"],
                keyring=keyring,
                label=spec["label"],
            )
        )
        return {
            "seconds": time.monotonic() - start,
            "name": result.name,
            "size": result.size,
            "sent": result.stats["bytes_sent"],
            "stats": result.stats,
        }
    if op in ("full_restore", "incr_restore"):
        kwargs = {"path": spec["path"]}
        if op == "incr_restore":
            sink = repository.SnapshotArchiveSink(make_sink(spec["sink"]), keyring)
            kwargs = {"sink": sink, "name": spec["name"]}
        start = time.monotonic()
        restore.run_restore(
            restore.RestoreRequest(
                target=spec["target"],
                mode="sandbox",
                keyring=keyring,
                data_dir=spec["data_dir"],
                expected_uuid=spec["uuid"],
                **kwargs,
            )
        )
        return {"seconds": time.monotonic() - start}
    if op == "gc":
        sink = make_sink(spec["sink"])
        archives = repository.SnapshotArchiveSink(sink, keyring)
        archives.delete(spec["name"])
        (root,) = archives.roots(spec["db"] + "/")
        result = repository.collect_garbage(archives.repository(root), grace=0)
        return {
            "seconds": time.monotonic() - start,
            "freed": result.freed_bytes,
            "deleted": len(result.deleted_packs),
            "repacked": len(result.repacked_packs),
        }
    raise ValueError(f"unknown worker op {op!r}")


def worker_main():
    spec = json.loads(sys.stdin.read())
    try:
        result = worker(spec)
    except BaseException:
        traceback.print_exc()
        raise
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


def run_worker(spec: dict, logfile: Path) -> dict:
    # start every measured operation with no dirty page of the previous one
    # left to write back (a restore after another paid the first one's
    # writeback: measured 0.3-2 s at scale 0.3 for whichever ran second)
    os.sync()
    with open(logfile, "ab") as err:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            input=json.dumps(spec).encode(),
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=str(REPO),
            env={**pg_env(), "PYTHONPATH": str(REPO)},
            check=False,
        )
    if proc.returncode != 0:
        tail = logfile.read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"worker {spec['op']} failed: " + " | ".join(tail))
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# restic
# ---------------------------------------------------------------------------
def restic(repo: Path, *args, stdin=None):
    env = {
        **pg_env(),
        "RESTIC_PASSWORD": RESTIC_PASSWORD,
        "RESTIC_REPOSITORY": str(repo),
    }
    subprocess.run(
        ["restic", "--no-cache", "-q", *args],
        env=env,
        check=True,
        stdin=stdin,
        stdout=subprocess.DEVNULL,
    )


def restic_backup(repo: Path, db: str, filestore: Path) -> float:
    """restic's backup of the same data: the filestore, then the dump
    streamed into --stdin (two snapshots, as a user would script it)."""
    os.sync()
    start = time.monotonic()
    restic(repo, "backup", "--host", "bench", str(filestore))
    dump = subprocess.Popen(
        ["pg_dump", "-Fc", "-Z0", db], stdout=subprocess.PIPE, env=pg_env()
    )
    restic(
        repo,
        "backup",
        "--host",
        "bench",
        "--stdin",
        "--stdin-filename",
        f"{db}.dump",
        stdin=dump.stdout,
    )
    dump.stdout.close()
    if dump.wait() != 0:
        raise RuntimeError("pg_dump failed")
    return time.monotonic() - start


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------
def _start_s3(args, work: Path):
    """A SeaweedFS S3 server and the sink config of a new bucket on it, or
    (None, None) with ``--no-s3`` or when none starts (the S3 row says
    n/a)."""
    if args.no_s3:
        return None, None
    try:
        from tests.fixtures.s3_server import start_seaweedfs

        s3 = start_seaweedfs(workdir=work / "weed")
        return s3, s3.sink_config(s3.new_bucket())
    except Exception as exc:  # the S3 row says n/a
        log(f"no S3 server: {exc}")
        return None, None


def _first_backup_rounds(args, work: Path, common: dict, logfile: Path) -> dict:
    """A first backup is measured ``--repeat`` times: ``repeat - 1`` extra
    rounds into scratch destinations (an empty repository each time), the
    order of full / incremental swapped every round, then the real day-1
    runs; the medians are printed. Returns kind -> the extra rounds'
    seconds."""
    first: dict[str, list] = {"full": [], "incr": []}
    for round_no in range(max(1, args.repeat) - 1):
        order = ("incr", "full") if round_no % 2 == 0 else ("full", "incr")
        for kind in order:
            scratch = work / f"scratch_{kind}"
            log(f"day 1 extra round {round_no + 1}: {kind}")
            res = run_worker(
                {
                    **common,
                    "op": f"{kind}_backup",
                    "sink": {"type": "local", "path": str(scratch)},
                    "label": "daily",
                },
                logfile,
            )
            shutil.rmtree(scratch, ignore_errors=True)
            first[kind].append(res["seconds"])
    return first


def _restore_rounds(
    args, common: dict, local: dict, data_dir: Path, uuid: str, row: dict, logfile
):
    """The newest full archive and snapshot restored into sandboxes,
    alternating full / incremental (the order swapped every round),
    ``--repeat`` times (medians)."""
    runs: dict[str, list] = {"full": [], "incr": []}
    for round_no in range(max(1, args.repeat)):
        order = ("full", "incr") if round_no % 2 == 0 else ("incr", "full")
        for kind in order:
            log(f"restore ({kind}, {round_no + 1}/{max(1, args.repeat)})")
            target = f"{args.prefix}{kind}_restored"
            drop_db(target)
            shutil.rmtree(data_dir / "filestore" / target, ignore_errors=True)
            spec = {
                **common,
                "op": f"{kind}_restore",
                "target": target,
                "uuid": uuid,
                "path": row["full2_path"],
                "sink": local,
                "name": row["incr2_name"],
            }
            try:
                res = run_worker(spec, logfile)
            finally:
                drop_db(target)
                shutil.rmtree(data_dir / "filestore" / target, ignore_errors=True)
            runs[kind].append(res["seconds"])
            row[f"restore_{kind}_rss"] = max(
                res["peak_rss_mb"], row.get(f"restore_{kind}_rss") or 0
            )
    for kind, values in runs.items():
        row[f"restore_{kind}_s"] = statistics.median(values)
        row[f"restore_{kind}_runs"] = values


def measure(args, work: Path) -> dict:
    from suite_core.keyring import generate_key_line

    keyring = generate_key_line("bench")
    row: dict = {"scale": args.scale}
    data_dir = work / "data"
    db = f"{args.prefix}db"
    partners = int(1_000_000 * args.scale)
    attachments = max(4, int(15_000 * args.scale))
    logfile = work / "workers.log"
    log(f"building {db}: {partners} partners, {attachments} attachments")
    started = time.monotonic()
    drop_db(db)
    build_db(db, data_dir, partners, attachments, args.attachment_size)
    row["build_s"] = time.monotonic() - started
    row["db_mb"] = int(psql(db, "SELECT pg_database_size(current_database())")) / MB
    filestore = data_dir / "filestore" / db
    row["filestore_mb"] = dir_bytes(filestore) / MB
    row["files"] = sum(len(f) for _r, _d, f in os.walk(filestore))
    uuid = psql(db, "SELECT value FROM ir_config_parameter WHERE key='database.uuid'")
    local = {"type": "local", "path": str(work / "incr")}
    full = {"type": "local", "path": str(work / "full")}
    restic_repo = work / "restic"
    common = {"keyring": keyring, "db": db, "data_dir": str(data_dir)}
    s3, s3_cfg = _start_s3(args, work)
    restic(restic_repo, "init")
    # warm the page cache once for everyone
    subprocess.run(
        [
            "bash",
            "-c",
            f"pg_dump -Fc -Z0 {db} > /dev/null; "
            f"tar -cf - -C {filestore} . | cat > /dev/null",
        ],
        check=True,
        env=pg_env(),
    )

    def s3_bytes():
        client = s3.client()
        total = 0
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=s3_cfg["bucket"]
        ):
            total += sum(o["Size"] for o in page.get("Contents", ()))
        return total

    try:
        first = _first_backup_rounds(args, work, common, logfile)
        for day in (1, 2):
            if day == 2:
                log("changing 1 % of the data")
                change_db(db, data_dir, attachments, args.attachment_size)
            label = "daily"
            log(f"day {day}: full archive")
            before = dir_bytes(work / "full")
            res = run_worker(
                {**common, "op": "full_backup", "sink": full, "label": label}, logfile
            )
            row[f"full{day}_s"] = res["seconds"]
            if day == 1:
                first["full"].append(res["seconds"])
                row["full1_runs"] = first["full"]
                row["full1_s"] = statistics.median(first["full"])
            row[f"full{day}_stored"] = dir_bytes(work / "full") - before
            row[f"full{day}_rss"] = res["peak_rss_mb"]
            row[f"full{day}_path"] = str(work / "full" / res["name"])
            log(f"day {day}: incremental (local)")
            before = dir_bytes(work / "incr")
            res = run_worker(
                {**common, "op": "incr_backup", "sink": local, "label": label}, logfile
            )
            row[f"incr{day}_s"] = res["seconds"]
            if day == 1:
                first["incr"].append(res["seconds"])
                row["incr1_runs"] = first["incr"]
                row["incr1_s"] = statistics.median(first["incr"])
            row[f"incr{day}_stored"] = dir_bytes(work / "incr") - before
            row[f"incr{day}_reported"] = res["size"]
            row[f"incr{day}_rss"] = res["peak_rss_mb"]
            row[f"incr{day}_name"] = res["name"]
            row[f"incr{day}_stats"] = res["stats"]
            log(f"day {day}: restic")
            before = dir_bytes(restic_repo)
            row[f"restic{day}_s"] = restic_backup(restic_repo, db, filestore)
            row[f"restic{day}_stored"] = dir_bytes(restic_repo) - before
            if s3 is not None:
                log(f"day {day}: incremental (S3)")
                before = s3_bytes()
                res = run_worker(
                    {**common, "op": "incr_backup", "sink": s3_cfg, "label": label},
                    logfile,
                )
                row[f"s3{day}_s"] = res["seconds"]
                row[f"s3{day}_sent"] = res["sent"]
                row[f"s3{day}_growth"] = s3_bytes() - before
                row[f"s3{day}_rss"] = res["peak_rss_mb"]
        _restore_rounds(args, common, local, data_dir, uuid, row, logfile)
        log("gc (day-1 snapshot forgotten)")
        res = run_worker(
            {**common, "op": "gc", "sink": local, "name": row["incr1_name"]}, logfile
        )
        row["gc_s"] = res["seconds"]
        row["gc_rss"] = res["peak_rss_mb"]
        row["gc_freed"] = res["freed"]
    finally:
        if s3 is not None:
            s3.cleanup()
        if not args.keep:
            drop_db(db)
    return row


def _r(a, b):
    return None if a is None or not b else a / b


def report(row: dict) -> str:
    def s(key):
        v = row.get(key)
        return "n/a" if v is None else f"{v:.1f} s"

    def m(key):
        v = row.get(key)
        return "n/a" if v is None else f"{v / MB:,.1f} MB"

    def ratio(value, target):
        if value is None:
            return "n/a"
        return f"{value:.2f}x ({'ok' if value <= target else 'MISSED'}, <= {target}x)"

    lines = [
        ["", "suite: full archive", "suite: incremental", "restic 0.14", "ratio"],
        [
            "day 1: backup wall",
            s("full1_s"),
            s("incr1_s"),
            s("restic1_s"),
            "incr/full " + ratio(_r(row.get("incr1_s"), row.get("full1_s")), 1.1),
        ],
        [
            "day 1: stored",
            m("full1_stored"),
            m("incr1_stored"),
            m("restic1_stored"),
            "",
        ],
        [
            "day 2 (1% change): backup wall",
            s("full2_s"),
            s("incr2_s"),
            s("restic2_s"),
            "incr/restic " + ratio(_r(row.get("incr2_s"), row.get("restic2_s")), 1.0),
        ],
        [
            "day 2: stored in addition",
            m("full2_stored"),
            m("incr2_stored"),
            m("restic2_stored"),
            "incr/restic "
            + ratio(_r(row.get("incr2_stored"), row.get("restic2_stored")), 1.2),
        ],
        [
            "restore newest (sandbox)",
            s("restore_full_s"),
            s("restore_incr_s"),
            "",
            "incr/full "
            + ratio(_r(row.get("restore_incr_s"), row.get("restore_full_s")), 1.1),
        ],
        [
            "gc after forgetting day 1",
            "",
            s("gc_s") + f", freed {m('gc_freed')}",
            "",
            "",
        ],
    ]
    rss = {
        "backup": max(
            row.get(k) or 0 for k in ("incr1_rss", "incr2_rss", "s31_rss", "s32_rss")
        ),
        "restore": row.get("restore_incr_rss") or 0,
        "gc": row.get("gc_rss") or 0,
    }
    lines.append(
        [
            "peak RSS backup / restore / GC",
            f"{row.get('full1_rss', 0):.0f} / {row.get('restore_full_rss', 0):.0f} MB",
            " / ".join(f"{v:.0f}" for v in rss.values()) + " MB",
            "",
            ratio(max(rss.values()) / 200, 1.0).replace("x (", " of 200 MB ("),
        ]
    )
    if row.get("s32_sent") is not None:
        lines.append(
            [
                "S3 day 2: sent / stored growth",
                "",
                f"{m('s32_sent')} / {m('s32_growth')} ({s('s32_s')})",
                "",
                ratio(_r(row["s32_sent"], row["s32_growth"]), 1.2),
            ]
        )
    widths = [max(len(str(r[i])) for r in lines) for i in range(5)]
    out = []
    for i, r in enumerate(lines):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    out.append("")
    out.append(
        f"data: {row['files']} files, {row['filestore_mb']:,.0f} MB filestore, "
        f"{row['db_mb']:,.0f} MB in PostgreSQL (scale {row['scale']}); "
        f"cores {os.cpu_count()}; load average {os.getloadavg()}; day-1 backups "
        f"and restores: medians of {len(row.get('incr1_runs') or [1])} and "
        f"{len(row.get('restore_incr_runs') or [1])} alternating run(s)"
    )
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="1.0: 1M partners, 15,000 attachments (%(default)s)",
    )
    parser.add_argument(
        "--attachment-size",
        type=int,
        default=128 * 1024,
        help="average attachment size in bytes (%(default)s)",
    )
    parser.add_argument("--prefix", default="benchinc_")
    parser.add_argument("--workdir", help="scratch directory (default: a temp dir)")
    parser.add_argument("--no-s3", action="store_true", help="skip SeaweedFS S3")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="first backups and restores of each kind, alternating; the medians "
        "are printed (%(default)s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep database and files")
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args(argv)
    if shutil.which("restic") is None:
        parser.error("restic is needed as the reference: apt-get install -y restic")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-incremental-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"work dir {work}")
    try:
        row = measure(args, work)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(report(row))
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=1, default=str))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main()
    else:
        main()
