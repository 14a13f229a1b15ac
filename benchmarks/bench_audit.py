#!/usr/bin/env python3
"""Audit capture overhead: 10,000 partner updates, three ways, one run.

Modes (each timed on the same workload, ratios against "off"):

- ``off``: plain Odoo 18 (database with ``base`` only);
- ``audit_export``: our rule on ``res.partner`` (create/update/delete);
- ``oca_auditlog``: OCA ``auditlog`` 18.0, rule on ``res.partner`` in
  ``full`` mode (the ``odoo-addon-auditlog`` wheel from PyPI, installed with
  ``--no-deps`` into a throwaway directory, never into the repository).

Workloads, each followed by the commit (our events are inserted in bulk at
commit time, so the commit is part of the cost):

- ``loop``: 10,000 single-record ``write`` calls (2 fields each) spread
  over 2,000 partners, one transaction;
- ``batch``: one ``write`` of 2 fields on 10,000 partners.

Runs Odoo via subprocesses (``python3 -m odoo shell``) against throwaway
databases ``h10_bench_*`` that are dropped at the end.

Usage: ``python3 benchmarks/bench_audit.py [--updates 10000] [--keep]``
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DB_ARGS = ["--db_host", "127.0.0.1", "--db_user", "root"]

WORKER = r"""
import json, os, time
from odoo.tools import SQL


def cpu_seconds():
    # This process plus every PostgreSQL backend of the database (the chain
    # is sealed on a second connection): CPU time does not depend on what
    # else the machine is running, wall-clock time does.
    env.cr.execute(SQL(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    ))
    ticks = 0
    for (pid,) in env.cr.fetchall():
        try:
            with open(f"/proc/{{pid}}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except OSError:
            pass  # a backend that just ended: its CPU is no longer counted
    return time.process_time() + ticks / os.sysconf("SC_CLK_TCK")

MODE = {mode!r}
UPDATES = {updates}
POOL = 2000
Partner = env["res.partner"]
if MODE == "audit_export":
    env["audit.rule"].create({{"model_id": env.ref("base.model_res_partner").id}})
elif MODE == "oca_auditlog":
    rule = env["auditlog.rule"].create({{
        "name": "partners", "model_id": env.ref("base.model_res_partner").id,
        "log_type": "full", "log_read": False, "log_write": True,
        "log_create": True, "log_unlink": True,
    }})
    rule.subscribe()
partners = Partner.create([{{"name": f"Bench {{i}}"}} for i in range(UPDATES)])
env.cr.commit()
results = {{}}
for workload in ("loop", "batch"):
    env.invalidate_all()
    cpu_started = cpu_seconds()
    started = time.perf_counter()
    if workload == "loop":
        for i in range(UPDATES):
            partners[i % POOL].write({{"name": f"L {{i}}", "phone": str(i)}})
    else:
        partners.write({{"name": "Batch", "phone": "42"}})
    env.cr.commit()
    results[workload] = time.perf_counter() - started
    results[workload + "_cpu"] = cpu_seconds() - cpu_started
if MODE == "audit_export":
    results["events"] = env["audit.event"].search_count(
        [("res_model", "=", "res.partner")])
    started = time.perf_counter()
    results["verify_ok"] = env["audit.event"]._verify_chain()["ok"]
    results["verify_seconds"] = time.perf_counter() - started
elif MODE == "oca_auditlog":
    results["events"] = env["auditlog.log"].search_count(
        [("model_model", "=", "res.partner")])
print("BENCH_RESULT " + json.dumps(results))
"""


def run(cmd, **kwargs):
    return subprocess.run(cmd, cwd=REPO, check=True, text=True, **kwargs)


def install_auditlog(workdir):
    """Download the 18.0 wheel and unpack it (--no-deps) into ``workdir``."""
    wheels = Path(workdir) / "wheels"
    target = Path(workdir) / "target"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "odoo-addon-auditlog>=18.0,<18.1",
            "-d",
            str(wheels),
        ]
    )
    wheel = sorted(glob.glob(str(wheels / "odoo_addon_auditlog-18.0.*.whl")))[-1]
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            wheel,
        ]
    )
    addons = target / "odoo" / "addons"
    assert (addons / "auditlog" / "__manifest__.py").exists(), addons
    return Path(wheel).name, addons


def create_db(name, modules, addons_path):
    subprocess.run(
        ["dropdb", "--if-exists", "-h", "127.0.0.1", "-U", "root", name], check=False
    )
    run(
        [
            sys.executable,
            "-m",
            "odoo",
            "-d",
            name,
            *DB_ARGS,
            "--addons-path",
            addons_path,
            "-i",
            modules,
            "--without-demo",
            "all",
            "--stop-after-init",
            "--log-level",
            "warn",
            "--max-cron-threads",
            "0",
        ],
        stdout=subprocess.DEVNULL,
    )


def measure(db, mode, updates, addons_path):
    code = WORKER.format(mode=mode, updates=updates)
    proc = run(
        [
            sys.executable,
            "-m",
            "odoo",
            "shell",
            "-d",
            db,
            *DB_ARGS,
            "--addons-path",
            addons_path,
            "--log-level",
            "warn",
            "--no-http",
        ],
        input=code,
        capture_output=True,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    raise RuntimeError(
        f"{mode}: no result\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args(argv)
    import odoo

    odoo_addons = str(Path(odoo.__file__).resolve().parent.parent / "addons")
    workdir = tempfile.mkdtemp(prefix="h10-bench-")
    dbs = {
        "off": "h10_bench_off",
        "audit_export": "h10_bench_suite",
        "oca_auditlog": "h10_bench_oca",
    }
    try:
        wheel, oca_addons = install_auditlog(workdir)
        print(f"OCA auditlog wheel: {wheel}")
        path_suite = f"{odoo_addons},{REPO}"
        path_oca = f"{odoo_addons},{oca_addons}"
        paths = {
            "off": path_suite,
            "audit_export": path_suite,
            "oca_auditlog": path_oca,
        }
        create_db(dbs["off"], "base", path_suite)
        create_db(dbs["audit_export"], "audit_export", path_suite)
        create_db(dbs["oca_auditlog"], "auditlog", path_oca)
        results = {}
        for mode in ("off", "audit_export", "oca_auditlog"):
            results[mode] = measure(dbs[mode], mode, args.updates, paths[mode])
            print(f"{mode}: {results[mode]}", flush=True)
        print()
        print(f"{args.updates} partner updates, seconds (ratio to auditing off)")
        print(f"{'mode':<14}{'loop of single writes':>28}{'one batch write':>24}")
        for suffix, title in (("", "wall-clock"), ("_cpu", "CPU (Odoo + PostgreSQL)")):
            print(title)
            for mode, res in results.items():
                cells = []
                for workload in ("loop", "batch"):
                    key = workload + suffix
                    ratio = res[key] / results["off"][key]
                    cells.append(f"{res[key]:8.2f}s ({ratio:4.2f}x)")
                print(f"{mode:<14}{cells[0]:>28}{cells[1]:>24}")
        ours, oca = results["audit_export"], results["oca_auditlog"]
        print(
            f"audit events written: ours {ours['events']}, OCA {oca['events']}; "
            f"our chain verified: {ours['verify_ok']} "
            f"in {ours['verify_seconds']:.2f}s"
        )
    finally:
        if not args.keep:
            for db in dbs.values():
                subprocess.run(
                    ["dropdb", "--if-exists", "-h", "127.0.0.1", "-U", "root", db],
                    check=False,
                )
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PGHOST", "127.0.0.1")
    sys.exit(main())
