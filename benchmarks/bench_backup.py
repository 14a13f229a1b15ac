#!/usr/bin/env python3
"""Backup/restore benchmark: the floor, Odoo's own zip backup and ours.

Run from the repository root::

    python3 benchmarks/bench_backup.py                  # 10k and 100k partners
    python3 benchmarks/bench_backup.py --sizes 2000:60,20000:600 --no-remote

For each size (``partners:attachments``) it builds an Odoo-shaped database:
with Odoo importable, a real Odoo 18 database (``-i base`` once, then cloned
and filled with partners and attachments by SQL); otherwise the schema of
``tests/fixtures/odoo_db.py``. Then it measures, each in its own process
(wall time of the operation, peak RSS of that process via ``wait4``):

- the floor: ``pg_dump -Fc -Z0 > /dev/null`` plus
  ``tar -cf - filestore | cat > /dev/null``;
- Odoo: ``odoo.service.db.dump_db`` (zip) and ``restore_db`` (Odoo only);
- ours: encrypted backup to a local directory, to S3 (SeaweedFS) and SFTP
  (OpenSSH sshd), both started on loopback by the test fixtures; verify;
  restore (sandbox: a new database and filestore);
- uploads of the same archive file: ours (sink ``open_write``) against
  the floors, OpenSSH ``sftp put`` and boto3 ``upload_fileobj``.

Targets, printed as ratios: our local backup <= 0.5x Odoo's zip and <= 1.3x
the floor; our restore <= 0.8x Odoo's restore_db; uploads <= 1.2x their
floor; peak memory of our process < 150 MB.

Every database created is named ``<prefix>...`` (``--prefix``, default
``bench_``) and dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import getpass
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

MB = 1024 * 1024
TARGETS = {
    "local_vs_odoo": 0.5,
    "local_vs_floor": 1.3,
    "restore_vs_odoo": 0.8,
    "upload_vs_floor": 1.2,
    "peak_rss_mb": 150,
}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pg_env():
    env = dict(os.environ)
    env.setdefault("PGHOST", "127.0.0.1")
    env.setdefault("PGPORT", "5432")
    return env


def psql(db, sql, env=None):
    out = subprocess.run(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", "-"],
        input=sql,
        env=env or pg_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def drop_db(name):
    psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def odoo_importable() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import odoo, odoo.service.db"],
        capture_output=True,
    )
    return probe.returncode == 0


def dir_size(path: Path) -> tuple[int, int]:
    files = total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            files += 1
            total += os.lstat(os.path.join(root, name)).st_size
    return files, total


def run_timed_shell(cmd: str) -> float:
    start = time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, env=pg_env())
    return time.monotonic() - start


def run_worker(spec: dict, logfile: Path) -> dict:
    """Run ``spec`` in a child process; its result plus ``peak_rss_mb``."""
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
    # the worker reports its own peak RSS (getrusage RUSAGE_SELF, read after
    # the operation): our process only, not pg_dump or other children
    stdout = proc.stdout.decode()
    if proc.returncode != 0:
        tail = logfile.read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(
            f"worker {spec['op']} failed (exit {proc.returncode}): " + " | ".join(tail)
        )
    return json.loads(stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# Building the databases
# ---------------------------------------------------------------------------
class Env:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-backup-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.work / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.logfile = self.work / "workers.log"
        self.conf = self.work / "odoo.conf"
        self.use_odoo = not args.no_odoo and odoo_importable()
        self.created_dbs: list[str] = []
        self.keyring_line = None
        self.s3 = self.sftp = None
        self.bench_sinks = None

    def write_conf(self):
        pg = pg_env()
        self.conf.write_text(
            "[options]\n"
            f"db_host = {pg['PGHOST']}\n"
            f"db_port = {pg['PGPORT']}\n"
            f"db_user = {pg.get('PGUSER') or getpass.getuser()}\n"
            + (f"db_password = {pg['PGPASSWORD']}\n" if pg.get("PGPASSWORD") else "")
            + f"data_dir = {self.data_dir}\n"
            "list_db = True\n"
        )

    def db(self, suffix) -> str:
        name = f"{self.args.prefix}{suffix}"
        self.created_dbs.append(name)
        return name

    def filestore(self, db) -> Path:
        return self.data_dir / "filestore" / db


def build_template(env: Env) -> str:
    tpl = env.db("tpl")
    drop_db(tpl)
    log(f"installing Odoo base into {tpl} (once)")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "odoo",
            "-c",
            str(env.conf),
            "-d",
            tpl,
            "-i",
            "base",
            "--without-demo=all",
            "--stop-after-init",
            "--log-level=warn",
        ],
        check=True,
        env=pg_env(),
        stdout=subprocess.DEVNULL,
        stderr=open(env.logfile, "ab"),  # noqa: SIM115 (closed with the process)
    )
    return tpl


def fill_odoo_db(env: Env, db: str, partners: int, attachments: int, att_size: int):
    from tests.fixtures.odoo_db import KINDS, write_filestore_file

    psql(
        db,
        f"""
        INSERT INTO res_partner (name, complete_name, email, phone, comment,
            active, type, is_company, company_id, lang, create_date, write_date)
        SELECT 'Partner ' || g, 'Partner ' || g, 'partner' || g || '@example.com',
               '+32 470 ' || lpad(g::text, 6, '0'),
               repeat('note ' || md5(g::text) || ' ', 1 + g % 5),
               g % 17 <> 0, 'contact', g % 10 = 0, 1, 'en_US',
               now() at time zone 'UTC', now() at time zone 'UTC'
          FROM generate_series(1, {int(partners)}) g;
        """,
    )
    filestore = env.filestore(db)
    filestore.mkdir(parents=True, exist_ok=True)
    rng = random.Random(partners)
    rows = []
    for i in range(attachments):
        mimetype, ext, make = KINDS[i % len(KINDS)]
        data = make(rng, max(16, int(att_size * rng.uniform(0.3, 1.7))))
        fname, sha = write_filestore_file(filestore, data)
        rows.append(
            f"('doc{i}{ext}', '{fname}', {len(data)}, '{sha}', '{mimetype}',"
            f" 'res.partner', {1 + i % max(partners, 1)}, 'binary')"
        )
    for start in range(0, len(rows), 1000):
        psql(
            db,
            "INSERT INTO ir_attachment (name, store_fname, file_size, checksum,"
            " mimetype, res_model, res_id, type) VALUES "
            + ",".join(rows[start : start + 1000]),
        )
    psql(db, "VACUUM ANALYZE")


def build_db(env: Env, tpl: str | None, partners: int, attachments: int) -> str:
    db = env.db(f"p{partners}")
    drop_db(db)
    shutil.rmtree(env.filestore(db), ignore_errors=True)
    att_size = env.args.attachment_size
    if tpl is not None:
        psql("postgres", f'CREATE DATABASE "{db}" TEMPLATE "{tpl}"')
        src_fs = env.filestore(tpl)
        if src_fs.exists():
            shutil.copytree(src_fs, env.filestore(db))
        fill_odoo_db(env, db, partners, attachments, att_size)
    else:
        from tests.fixtures.odoo_db import create_odoo_db

        create_odoo_db(
            db,
            env.data_dir,
            partners=partners,
            attachments=attachments,
            attachment_size=att_size,
        )
    return db


# ---------------------------------------------------------------------------
# Workers (run in a child process: python3 bench_backup.py --worker < spec)
# ---------------------------------------------------------------------------
def _peak_rss_mb() -> float:
    """Peak RSS of this process since it was exec'ed: ``VmHWM`` of
    /proc/self/status. Not ``ru_maxrss``: on Linux that keeps the high-water
    mark of the address space exec replaced, which for a child spawned with
    vfork (Python's subprocess) is the PARENT's, so every worker started
    after the parent grew (the boto3 upload floor runs in the parent)
    reported the parent's peak (152.8 MB three times in a row)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(spec: dict) -> dict:
    op = spec["op"]
    if op in ("odoo_dump", "odoo_restore"):
        import odoo
        import odoo.service.db as odoo_db

        odoo.tools.config.parse_config(["-c", spec["conf"]])
        start = time.monotonic()
        if op == "odoo_dump":
            with open(spec["out"], "wb") as fh:
                odoo_db.dump_db(spec["db"], fh, "zip")
        else:
            odoo_db.restore_db(spec["db"], spec["zip"])
        return {"seconds": time.monotonic() - start}

    from db_backup_suite.lib import backup, crypto, restore, verify
    from db_backup_suite.lib.sinks import make_sink

    keyring = crypto.Keyring.parse(spec["keyring"]) if spec.get("keyring") else None
    if op == "backup":
        req = backup.BackupRequest(
            database=spec["db"],
            sink=spec.get("sink"),
            sinks=spec.get("sinks"),
            data_dir=spec["data_dir"],
            keyring=keyring,
            label="manual",
            threads=spec.get("threads", 0),
        )
        start = time.monotonic()
        result = backup.run_backup(req)
        return {
            "seconds": time.monotonic() - start,
            "name": result.name,
            "size": result.size,
            "state": result.state,
        }
    if op in ("verify", "restore"):
        # the benchmark reads back the archive it just wrote: bound to the
        # tenant (database uuid) in its own header
        with open(spec["path"], "rb") as raw:
            tenant = crypto.describe_archive(raw).get("tenant", "")
    if op == "verify":
        start = time.monotonic()
        verify.run_verify(
            verify.VerifyRequest(path=spec["path"], keyring=keyring, tenant=tenant)
        )
        return {"seconds": time.monotonic() - start}
    if op == "restore":
        req = restore.RestoreRequest(
            target=spec["db"],
            mode="sandbox",
            path=spec["path"],
            keyring=keyring,
            expected_uuid=tenant,
            data_dir=spec["data_dir"],
        )
        start = time.monotonic()
        restore.run_restore(req)
        return {"seconds": time.monotonic() - start}
    if op == "put":
        sink = make_sink(spec["sink"])
        start = time.monotonic()
        size = os.path.getsize(spec["path"])
        with (
            open(spec["path"], "rb") as src,
            sink.open_write(spec["name"], size_hint=size) as writer,
        ):
            while chunk := src.read(MB):
                writer.write(chunk)
            writer.commit()
        seconds = time.monotonic() - start
        sink.close()
        return {"seconds": seconds}
    raise ValueError(f"unknown worker op {op!r}")


def worker_main():
    spec = json.loads(sys.stdin.read())
    try:
        result = worker(spec)
    except BaseException:
        traceback.print_exc()
        raise
    result["peak_rss_mb"] = _peak_rss_mb()
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU of the whole worker (imports included): less sensitive to the
    # machine's load than wall time
    result["cpu_s"] = own.ru_utime + own.ru_stime
    result["children_cpu_s"] = kids.ru_utime + kids.ru_stime
    print(json.dumps(result))


# ---------------------------------------------------------------------------
# Remote servers and upload floors
# ---------------------------------------------------------------------------
def start_servers(env: Env):
    if env.args.no_remote:
        return
    try:
        from tests.fixtures.s3_server import start_seaweedfs

        env.s3 = start_seaweedfs(workdir=env.work / "weed")
        log(f"SeaweedFS S3 on {env.s3.endpoint_url}")
    except Exception as exc:  # the table says "n/a" for S3
        log(f"no S3 server: {exc}")
    try:
        from tests.fixtures.sftp_server import start_sshd

        (env.work / "sshd").mkdir(exist_ok=True)
        env.sftp = start_sshd(workdir=env.work / "sshd")
        log(f"sshd on {env.sftp.host}:{env.sftp.port}")
    except Exception as exc:  # the table says "n/a" for SFTP
        log(f"no SFTP server: {exc}")


def stop_servers(env: Env):
    for server in (env.s3, env.sftp):
        if server is not None:
            try:
                server.cleanup()
            except Exception as exc:  # never hide the results for this
                log(f"stopping {server!r} failed: {exc}")


def s3_sink_config(env, bucket):
    return env.s3.sink_config(bucket)


def upload_floors():
    """H2's upload floors (benchmarks/bench_sinks.py): OpenSSH ``sftp put``
    and boto3 ``upload_fileobj``, timed in this process."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_sinks

    return bench_sinks


# ---------------------------------------------------------------------------
# One size
# ---------------------------------------------------------------------------
class _Steps:
    """The result row of one size, filled by the measured steps."""

    def __init__(self, row, repeat):
        self.row = row
        self.repeat = repeat

    def run(self, key, fn, repeat=1):
        """``row[key]`` = median of ``repeat`` runs of ``fn`` (all kept in
        ``row[key + '_runs']``); None when a run failed."""
        runs = []
        for i in range(repeat):
            log(f"{key} ({i + 1}/{repeat}) ..." if repeat > 1 else f"{key} ...")
            try:
                runs.append(fn())
            except Exception as exc:
                log(f"{key} failed: {exc}")
                self.row[key] = None
                return
        self.row[key] = statistics.median(runs)
        self.row[key + "_runs"] = runs

    def keep_cpu(self, key, res):
        self.row.setdefault(key + "_cpu_runs", []).append(res["cpu_s"])
        self.row[key + "_cpu"] = statistics.median(self.row[key + "_cpu_runs"])

    def keep_rss(self, key, res):
        self.row[key] = max(res["peak_rss_mb"], self.row.get(key) or 0)


def measure(env: Env, tpl, partners, attachments) -> dict:
    row: dict = {"partners": partners, "attachments": attachments}
    log(f"building the database: {partners} partners, {attachments} attachments")
    db = build_db(env, tpl, partners, attachments)
    row["db_mb"] = int(psql(db, "SELECT pg_database_size(current_database())")) / MB
    files, fs_bytes = dir_size(env.filestore(db))
    row["filestore_files"] = files
    row["filestore_mb"] = fs_bytes / MB
    steps = _Steps(row, max(1, env.args.repeat))
    common = {"keyring": env.keyring_line, "data_dir": str(env.data_dir), "db": db}
    local_dir = env.work / f"local-{partners}"
    shutil.rmtree(local_dir, ignore_errors=True)

    _measure_floor(env, db, steps)
    _measure_local(env, common, local_dir, steps)
    if env.use_odoo:
        _measure_odoo(env, db, partners, steps)
    archive = row.get("archive_path")
    if archive:
        _measure_reads(env, common, partners, archive, steps)
    if env.s3 is not None:
        _measure_s3(env, common, archive, steps)
    if env.sftp is not None:
        _measure_sftp(env, common, partners, archive, steps)

    shutil.rmtree(local_dir, ignore_errors=True)
    if not env.args.keep:
        drop_db(db)
        shutil.rmtree(env.filestore(db), ignore_errors=True)
    return row


def _measure_floor(env, db, steps):
    """The floor (also warms the page cache for everything after)."""
    fs = env.filestore(db)
    steps.run(
        "floor_dump",
        lambda: run_timed_shell(f"pg_dump -Fc -Z0 '{db}' > /dev/null"),
        steps.repeat,
    )
    steps.run(
        "floor_tar",
        lambda: run_timed_shell(f"tar -cf - -C '{fs}' . | cat > /dev/null"),
        steps.repeat,
    )
    row = steps.row
    if row["floor_dump"] is not None and row["floor_tar"] is not None:
        row["floor"] = row["floor_dump"] + row["floor_tar"]


def _measure_local(env, common, local_dir, steps):
    row = steps.row

    def ours_local():
        shutil.rmtree(local_dir, ignore_errors=True)  # one archive: the last
        res = run_worker(
            {
                **common,
                "op": "backup",
                "sink": {"type": "local", "path": str(local_dir)},
                "threads": env.args.threads,
            },
            env.logfile,
        )
        row["archive_mb"] = res["size"] / MB
        row["archive_path"] = str(local_dir / res["name"])
        steps.keep_rss("rss_backup_local", res)
        steps.keep_cpu("ours_local", res)
        return res["seconds"]

    steps.run("ours_local", ours_local, steps.repeat)


def _measure_odoo(env, db, partners, steps):
    zip_path = env.work / f"odoo-{partners}.zip"

    def odoo_dump():
        res = run_worker(
            {"op": "odoo_dump", "conf": str(env.conf), "db": db, "out": str(zip_path)},
            env.logfile,
        )
        steps.row["odoo_zip_mb"] = zip_path.stat().st_size / MB
        return res["seconds"]

    def odoo_restore():
        target = env.db(f"p{partners}_odoo_restored")
        drop_db(target)
        shutil.rmtree(env.filestore(target), ignore_errors=True)
        try:
            res = run_worker(
                {
                    "op": "odoo_restore",
                    "conf": str(env.conf),
                    "db": target,
                    "zip": str(zip_path),
                },
                env.logfile,
            )
        finally:
            drop_db(target)
            shutil.rmtree(env.filestore(target), ignore_errors=True)
        return res["seconds"]

    steps.run("odoo_dump", odoo_dump)
    if zip_path.exists():
        steps.run("odoo_restore", odoo_restore, steps.repeat)
    zip_path.unlink(missing_ok=True)


def _measure_reads(env, common, partners, archive, steps):
    def ours_verify():
        res = run_worker({**common, "op": "verify", "path": archive}, env.logfile)
        steps.row["rss_verify"] = res["peak_rss_mb"]
        return res["seconds"]

    def ours_restore():
        target = env.db(f"p{partners}_restored")
        drop_db(target)
        shutil.rmtree(env.filestore(target), ignore_errors=True)
        try:
            res = run_worker(
                {**common, "op": "restore", "db": target, "path": archive},
                env.logfile,
            )
        finally:
            drop_db(target)
            shutil.rmtree(env.filestore(target), ignore_errors=True)
        steps.keep_rss("rss_restore", res)
        steps.keep_cpu("ours_restore", res)
        return res["seconds"]

    steps.run("ours_verify", ours_verify)
    steps.run("ours_restore", ours_restore, steps.repeat)


def _backup_to(env, common, cfg, steps, rss_key):
    """A step: one backup of the database to the destination ``cfg``."""

    def backup():
        res = run_worker({**common, "op": "backup", "sink": cfg}, env.logfile)
        steps.row[rss_key] = res["peak_rss_mb"]
        return res["seconds"]

    return backup


def _put_to(env, cfg, archive, steps, rss_key):
    """A step: our sink's upload of the finished archive file."""

    def put():
        res = run_worker(
            {"op": "put", "sink": cfg, "path": archive, "name": "put/x.bin"},
            env.logfile,
        )
        steps.row[rss_key] = res["peak_rss_mb"]
        return res["seconds"]

    return put


def _measure_s3(env, common, archive, steps):
    bucket = env.s3.new_bucket()
    cfg = s3_sink_config(env, bucket)
    steps.run("ours_s3", _backup_to(env, common, cfg, steps, "rss_backup_s3"))
    if archive:

        def floor_s3():
            floors = upload_floors()
            return floors.timed(lambda: floors.boto3_put(env.s3, bucket, archive))

        steps.run("floor_s3", floor_s3)
        steps.run("put_s3", _put_to(env, cfg, archive, steps, "rss_put_s3"))


def _measure_sftp(env, common, partners, archive, steps):
    remote = env.sftp.new_dir()
    cfg = env.sftp.sink_config(remote)
    steps.run("ours_sftp", _backup_to(env, common, cfg, steps, "rss_backup_sftp"))
    if archive:

        def floor_sftp():
            floors = upload_floors()
            return floors.timed(lambda: floors.openssh_put(env.sftp, archive, remote))

        steps.run("floor_sftp", floor_sftp)
        steps.run("put_sftp", _put_to(env, cfg, archive, steps, "rss_put_sftp"))
    if env.s3 is not None:
        _measure_fanout(env, common, partners, steps)
    shutil.rmtree(remote, ignore_errors=True)


def _measure_fanout(env, common, partners, steps):
    row = steps.row
    fan_dir = env.work / f"fanout-{partners}"
    fan_bucket = env.s3.new_bucket()
    fan_remote = env.sftp.new_dir()

    def ours_fanout():
        # one stream to the three destinations at once (what every
        # scheduled backup does), against a local backup followed
        # by a copy to each remote (what the engine did before)
        shutil.rmtree(fan_dir, ignore_errors=True)
        sinks = [
            {"type": "local", "path": str(fan_dir)},
            s3_sink_config(env, fan_bucket),
            env.sftp.sink_config(fan_remote),
        ]
        res = run_worker({**common, "op": "backup", "sinks": sinks}, env.logfile)
        if res.get("state") != "done":
            raise RuntimeError(f"fan-out backup {res.get('state')}")
        row["rss_backup_fanout"] = res["peak_rss_mb"]
        return res["seconds"]

    steps.run("ours_fanout", ours_fanout)
    parts = [row.get(k) for k in ("ours_local", "put_s3", "put_sftp")]
    if None not in parts:
        row["backup_then_copies"] = sum(parts)
    shutil.rmtree(fan_dir, ignore_errors=True)
    shutil.rmtree(fan_remote, ignore_errors=True)


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
def _fmt(value, unit="s"):
    if value is None:
        return "n/a"
    return f"{value:.2f}{unit}" if unit == "s" else f"{value:.1f}"


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def report(rows: list[dict], env: Env) -> str:
    lines = []
    head = ["measure"] + [f"{r['partners']} partners" for r in rows]
    table = []

    def add(label, key, unit="s"):
        table.append([label] + [_fmt(r.get(key), unit) for r in rows])

    def add_ratio(label, num, den, target):
        cells = []
        for r in rows:
            ratio = _ratio(r.get(num), r.get(den))
            if ratio is None:
                cells.append("n/a")
            else:
                ok = "ok" if ratio <= target else "MISSED"
                cells.append(f"{ratio:.2f}x ({ok}, <= {target}x)")
        table.append([label] + cells)

    table.append(
        ["attachments / filestore MB"]
        + [f"{r['filestore_files']} / {r['filestore_mb']:.1f}" for r in rows]
    )
    add("database size (MB)", "db_mb", "mb")
    add("our archive (MB)", "archive_mb", "mb")
    add("Odoo zip (MB)", "odoo_zip_mb", "mb")
    add("floor: pg_dump -Fc -Z0 > /dev/null", "floor_dump")
    add("floor: tar filestore | cat > /dev/null", "floor_tar")
    add("floor: total", "floor")
    add("Odoo dump_db (zip)", "odoo_dump")
    add("Odoo restore_db", "odoo_restore")
    add("ours: backup -> local (encrypted)", "ours_local")
    add("ours: backup -> S3", "ours_s3")
    add("ours: backup -> SFTP", "ours_sftp")
    add("ours: verify", "ours_verify")
    add("ours: restore (sandbox)", "ours_restore")
    add("ours: backup, CPU of our process", "ours_local_cpu")
    add("ours: restore, CPU of our process", "ours_restore_cpu")
    add("floor: boto3 upload_fileobj (archive)", "floor_s3")
    add("ours: S3 sink put (archive)", "put_s3")
    add("floor: OpenSSH sftp put (archive)", "floor_sftp")
    add("ours: SFTP sink put (archive)", "put_sftp")
    add("ours: backup -> local+S3+SFTP at once", "ours_fanout")
    add("ours: local backup, then copy to S3, SFTP", "backup_then_copies")
    add_ratio("local backup / Odoo zip", "ours_local", "odoo_dump", 0.5)
    add_ratio("local backup / floor", "ours_local", "floor", 1.3)
    add_ratio("restore / Odoo restore_db", "ours_restore", "odoo_restore", 0.8)
    add_ratio("S3 upload / boto3 floor", "put_s3", "floor_s3", 1.2)
    add_ratio("SFTP upload / sftp floor", "put_sftp", "floor_sftp", 1.2)
    add_ratio("fan-out / backup then copies", "ours_fanout", "backup_then_copies", 1.0)
    rss_keys = (
        "rss_backup_local",
        "rss_backup_s3",
        "rss_backup_sftp",
        "rss_verify",
        "rss_restore",
        "rss_put_s3",
        "rss_put_sftp",
        "rss_backup_fanout",
    )
    cells = []
    for r in rows:
        values = [r[k] for k in rss_keys if r.get(k) is not None]
        if values:
            peak = max(values)
            ok = "ok" if peak < TARGETS["peak_rss_mb"] else "MISSED"
            cells.append(f"{peak:.0f} MB ({ok}, < 150)")
        else:
            cells.append("n/a")
    table.append(["peak RSS of our process"] + cells)

    widths = [max(len(str(row[i])) for row in [head, *table]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines.append(fmt.format(*head))
    lines.append("  ".join("-" * w for w in widths))
    for row in table:
        lines.append(fmt.format(*row))
    mode = (
        "Odoo 18 database (base + SQL rows)" if env.use_odoo else "Odoo-shaped schema"
    )
    lines.append("")
    lines.append(
        f"database: {mode}; cores: {os.cpu_count()}; zstd threads: "
        f"{env.args.threads}; times are wall-clock seconds, median of "
        f"{max(1, env.args.repeat)} run(s) for the floor, our local backup "
        "and restore and Odoo's restore_db; CPU = user + system of our worker "
        "process (imports included; pg_dump, pg_restore and the server not "
        "counted)"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        partners, _, attachments = item.partition(":")
        sizes.append((int(partners), int(attachments or max(int(partners) // 33, 1))))
    return sizes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="10000:300,100000:3000",
        help="partners:attachments pairs (default %(default)s)",
    )
    parser.add_argument(
        "--attachment-size",
        type=int,
        default=32 * 1024,
        help="average attachment size in bytes (%(default)s)",
    )
    parser.add_argument(
        "--prefix",
        default="bench_",
        help="prefix of every database created (%(default)s)",
    )
    parser.add_argument("--workdir", help="scratch directory (default: a temp dir)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="zstd worker threads of our backup (%(default)s)",
    )
    parser.add_argument(
        "--no-odoo", action="store_true", help="do not use Odoo even if importable"
    )
    parser.add_argument(
        "--no-remote", action="store_true", help="skip S3 and SFTP (no servers started)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of the floor, our local backup and restore and Odoo's "
        "restore_db; the median is printed (%(default)s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args(argv)

    from suite_core.keyring import generate_key_line

    env = Env(args)
    env.keyring_line = generate_key_line("bench")
    env.write_conf()
    log(f"work dir {env.work}; Odoo: {'yes' if env.use_odoo else 'no'}")
    rows = []
    tpl = None
    try:
        start_servers(env)
        if env.use_odoo:
            tpl = build_template(env)
        for partners, attachments in parse_sizes(args.sizes):
            try:
                rows.append(measure(env, tpl, partners, attachments))
            except Exception:  # the other sizes still get measured
                log(f"size {partners}:{attachments} failed:\n{traceback.format_exc()}")
    finally:
        stop_servers(env)
        if not args.keep:
            for name in env.created_dbs:
                try:
                    drop_db(name)
                except subprocess.CalledProcessError as exc:
                    log(f"could not drop {name}: {exc.stderr}")
            if not args.workdir:
                shutil.rmtree(env.work, ignore_errors=True)
    print(report(rows, env))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main()
    else:
        main()
