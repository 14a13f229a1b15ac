#!/usr/bin/env python3
"""Benchmark: Odoo's native partner export against data_export_suite's.

Creates a throwaway database (``h6_bench_<pid>``) with base + data_export_suite,
fills it with N partners through SQL (``INSERT ... SELECT generate_series``),
then exports the same columns of every partner to CSV and XLSX:

* ``native_export_data``: ``records.export_data(fields)`` in-process (the
  rows only, the way every native export starts), plus Odoo's CSV
  ``from_data``;
* ``native_http_csv`` / ``native_http_xlsx``: POST ``/web/export/csv`` and
  ``/web/export/xlsx`` to a real ``python3 -m odoo`` server on a loopback
  port (logged in as admin), the response read to the end;
* ``ours_csv`` / ``ours_xlsx``: a ``data.export.job`` run as admin (batches
  of 1,000, encrypted file on disk).

Each in-process method runs in a fresh child process; each HTTP method in a
freshly started server. Time is wall clock; peak memory is the process'
peak RSS (``ru_maxrss`` / ``VmHWM``), shown with the idle RSS of the same
process before the export. Run from the repository root::

    python3 benchmarks/bench_export.py --sizes 100000
    python3 benchmarks/bench_export.py --sizes 100000,1000000 --methods ours_csv
"""

import argparse
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIELDS = ["name", "email", "phone", "street", "city", "zip", "country_id"]
IN_PROCESS = ("native_export_data", "ours_csv", "ours_xlsx")
HTTP = ("native_http_csv", "native_http_xlsx")
ALL_METHODS = (
    "native_export_data",
    "native_http_csv",
    "native_http_xlsx",
    "ours_csv",
    "ours_xlsx",
)


def odoo_root():
    import odoo

    return Path(odoo.__file__).resolve().parent.parent


def addons_path():
    root = odoo_root()
    paths = [str(REPO)]
    if (root / "addons").is_dir():
        paths.insert(0, str(root / "addons"))
    return ",".join(paths)


def db_args(args):
    return [
        "--db_host",
        args.db_host,
        "--db_port",
        str(args.db_port),
        "--db_user",
        args.db_user,
    ]


def psql(args, sql):
    subprocess.run(
        [
            "psql",
            "-h",
            args.db_host,
            "-p",
            str(args.db_port),
            "-U",
            args.db_user,
            "-d",
            args.database,
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            sql,
        ],
        check=True,
    )


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------
# Set-up
# ----------------------------------------------------------------------
def install(args, data_dir):
    print(
        f"bench: installing base + data_export_suite into {args.database}", flush=True
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "odoo",
            "-d",
            args.database,
            *db_args(args),
            "--addons-path",
            addons_path(),
            "--data-dir",
            data_dir,
            "-i",
            "data_export_suite",
            "--without-demo",
            "all",
            "--stop-after-init",
            "--max-cron-threads",
            "0",
            "--log-level",
            "warn",
        ],
        check=True,
        cwd=REPO,
    )


def add_partners(args, count):
    """Insert ``count`` partners in one statement (no ORM)."""
    sql = f"""
        INSERT INTO res_partner (
            name, complete_name, email, phone, street, city, zip, country_id,
            active, type, lang, is_company, create_uid, write_uid, create_date,
            write_date
        )
        SELECT 'Bench Partner ' || g, 'Bench Partner ' || g,
               'partner' || g || '@bench.example', '+32 2 ' || lpad(g::text, 7, '0'),
               g || ' Bench Street', 'City ' || (g % 500),
               lpad((g % 9999)::text, 4, '0'),
               (SELECT id FROM res_country ORDER BY id OFFSET (g % 50) LIMIT 1),
               true, 'contact', 'en_US', false, 2, 2,
               now() at time zone 'utc', now() at time zone 'utc'
        FROM generate_series(1, {int(count)}) AS g
    """
    started = time.monotonic()
    psql(args, sql)
    psql(args, "ANALYZE res_partner")
    print(
        f"bench: inserted {count} partners in {time.monotonic() - started:.1f}s",
        flush=True,
    )


# ----------------------------------------------------------------------
# In-process measurements (child process)
# ----------------------------------------------------------------------
def child(args):
    import odoo
    from odoo.tools import config

    config.parse_config(
        [
            "-d",
            args.database,
            *db_args(args),
            "--addons-path",
            addons_path(),
            "--data-dir",
            args.data_dir,
            "--log-level",
            "warn",
        ]
    )
    registry = odoo.modules.registry.Registry(args.database)
    result = {}
    with registry.cursor() as cr:
        env = odoo.api.Environment(cr, 2, {"lang": "en_US", "tz": "UTC"})
        count = env["res.partner"].search_count([])
        result["rows"] = count
        result["idle_rss_mb"] = rss_mb()
        started = time.monotonic()
        if args.child == "native_export_data":
            from odoo.addons.web.controllers.export import (
                CSVExport,
            )

            records = env["res.partner"].search([])
            rows = records.export_data(FIELDS).get("datas", [])
            payload = CSVExport().from_data([{"name": f} for f in FIELDS], FIELDS, rows)
            result["bytes"] = len(payload.encode())
        else:
            fmt = args.child.split("_", 1)[1]
            job = env["data.export.job"].create(
                {
                    "model_name": "res.partner",
                    "domain": "[]",
                    "field_paths": "\n".join(FIELDS),
                    "export_format": fmt,
                }
            )
            job._execute(background=False)
            result["bytes"] = job.file_size
            assert job.records_done == count, (job.records_done, count)
            job._delete_file()
        result["seconds"] = time.monotonic() - started
        cr.rollback()
    result["peak_rss_mb"] = rss_mb()
    print("RESULT " + json.dumps(result))


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(args, method):
    cmd = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--database",
        args.database,
        "--data-dir",
        args.data_dir,
        "--db-host",
        args.db_host,
        "--db-port",
        str(args.db_port),
        "--db-user",
        args.db_user,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{method} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")


# ----------------------------------------------------------------------
# HTTP measurements (real server)
# ----------------------------------------------------------------------
def proc_status_mb(pid, key):
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def server_error(log_path):
    """The last error line of the server log (why a native export failed)."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            lines = [line.strip() for line in fh if line.strip()]
    except OSError:
        return "no server log"
    errors = [line for line in lines if "Error" in line or "ERROR" in line]
    return (errors or lines or ["empty server log"])[-1][-300:]


def run_http(args, method):
    import requests

    port = free_port()
    log_path = os.path.join(args.data_dir, f"server-{method}.log")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "odoo",
            "-d",
            args.database,
            *db_args(args),
            "--addons-path",
            addons_path(),
            "--data-dir",
            args.data_dir,
            "--db-filter",
            f"^{args.database}$",
            "--http-interface",
            "127.0.0.1",
            "--http-port",
            str(port),
            "--max-cron-threads",
            "0",
            "--workers",
            "0",
            "--log-level",
            "warn",
            "--limit-time-real",
            "0",
            "--logfile",
            log_path,
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        session = requests.Session()
        deadline = time.monotonic() + 120
        while True:
            try:
                if session.get(f"{base}/web/login", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the Odoo server did not start")
            time.sleep(0.5)
        login = session.post(
            f"{base}/web/session/authenticate",
            json={
                "jsonrpc": "2.0",
                "params": {"db": args.database, "login": "admin", "password": "admin"},
            },
            timeout=60,
        ).json()
        if "error" in login:
            raise RuntimeError(f"login failed: {login['error']}")
        page = session.get(f"{base}/odoo", timeout=120).text
        token = re.search(r'csrf_token: "([^"]+)"', page).group(1)
        idle = proc_status_mb(server.pid, "VmRSS")
        fmt = method.rsplit("_", 1)[1]
        data = json.dumps(
            {
                "model": "res.partner",
                "fields": [{"name": f, "label": f} for f in FIELDS],
                "ids": False,
                "domain": [],
                "import_compat": False,
                "context": {"lang": "en_US"},
            }
        )
        started = time.monotonic()
        response = session.post(
            f"{base}/web/export/{fmt}",
            data={"data": data, "csrf_token": token},
            stream=True,
            timeout=3600,
        )
        size = sum(len(chunk) for chunk in response.iter_content(1 << 20))
        seconds = time.monotonic() - started
        if response.status_code != 200:
            return {
                "seconds": seconds,
                "bytes": size,
                "idle_rss_mb": idle,
                "peak_rss_mb": proc_status_mb(server.pid, "VmHWM"),
                "error": f"HTTP {response.status_code}: {server_error(log_path)}",
            }
        return {
            "seconds": seconds,
            "bytes": size,
            "idle_rss_mb": idle,
            "peak_rss_mb": proc_status_mb(server.pid, "VmHWM"),
        }
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ----------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="100000",
        help="comma separated partner counts (e.g. 100000,1000000)",
    )
    parser.add_argument("--methods", default=",".join(ALL_METHODS))
    parser.add_argument("--database", default=f"h6_bench_{os.getpid()}")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--db-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    parser.add_argument("--db-port", default=os.environ.get("PGPORT", "5432"))
    parser.add_argument("--db-user", default=os.environ.get("PGUSER", "root"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0

    if not os.environ.get("SUITE_KEYRING") and not os.environ.get("SUITE_KEYRING_FILE"):
        sys.path.insert(0, str(REPO))
        from suite_core.keyring import generate_key_line

        os.environ["SUITE_KEYRING"] = generate_key_line("bench")
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(ALL_METHODS)
    if unknown:
        parser.error(f"unknown methods: {', '.join(sorted(unknown))}")
    own_data_dir = args.data_dir is None
    args.data_dir = args.data_dir or tempfile.mkdtemp(prefix="h6-bench-")
    print(f"bench: sizes {sizes}, methods {methods}, database {args.database}")
    results = []
    try:
        install(args, args.data_dir)
        inserted = 0
        for size in sizes:
            add_partners(args, size - inserted)
            inserted = size
            for method in methods:
                print(f"bench: {size} partners, {method} ...", flush=True)
                res = (
                    run_http(args, method)
                    if method in HTTP
                    else run_child(args, method)
                )
                res.update(size=size, method=method)
                results.append(res)
                if res.get("error"):
                    print(
                        f"bench:   FAILED after {res['seconds']:.1f}s "
                        f"(peak {res['peak_rss_mb']:.0f} MB): {res['error']}",
                        flush=True,
                    )
                    continue
                print(
                    f"bench:   {res['seconds']:.1f}s, "
                    f"peak {res['peak_rss_mb']:.0f} MB"
                    f" (idle {res['idle_rss_mb']:.0f} MB), {res['bytes']} bytes",
                    flush=True,
                )
    finally:
        if not args.keep:
            subprocess.run(
                [
                    "dropdb",
                    "--if-exists",
                    "-h",
                    args.db_host,
                    "-p",
                    str(args.db_port),
                    "-U",
                    args.db_user,
                    args.database,
                ],
                check=False,
            )
            if own_data_dir:
                shutil.rmtree(args.data_dir, ignore_errors=True)
    print_table(results)
    return 0


def print_table(results):
    print("\n| partners | method | seconds | peak RSS MB | idle RSS MB | file bytes |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in results:
        if r.get("error"):
            print(
                f"| {r['size']:,} | {r['method']} | failed after "
                f"{r['seconds']:.1f} s: {r['error'][:80]} | "
                f"{r['peak_rss_mb']:.0f} | {r['idle_rss_mb']:.0f} | - |"
            )
            continue
        print(
            f"| {r['size']:,} | {r['method']} | {r['seconds']:.1f} | "
            f"{r['peak_rss_mb']:.0f} | {r['idle_rss_mb']:.0f} | {r['bytes']:,} |"
        )
    by = {(r["size"], r["method"]): r for r in results}
    for size in sorted({r["size"] for r in results}):
        for fmt in ("csv", "xlsx"):
            ours = by.get((size, f"ours_{fmt}"))
            native = by.get((size, f"native_http_{fmt}"))
            rows = by.get((size, "native_export_data"))
            if fmt == "csv" and ours and rows:
                print(
                    f"{size:,} csv: ours is "
                    f"{rows['seconds'] / ours['seconds']:.1f}x faster than "
                    "export_data + CSV from_data in-process"
                )
            if ours and native and not native.get("error"):
                ratio = native["seconds"] / ours["seconds"]
                print(
                    f"{size:,} {fmt}: ours is {ratio:.1f}x faster than "
                    f"/web/export/{fmt}"
                )
    sizes = sorted({r["size"] for r in results})
    if len(sizes) > 1:
        for method in ("ours_csv", "ours_xlsx"):
            small, large = by.get((sizes[0], method)), by.get((sizes[-1], method))
            if small and large:
                print(
                    f"{method}: peak at {sizes[-1]:,} / peak at {sizes[0]:,} = "
                    f"{large['peak_rss_mb'] / small['peak_rss_mb']:.2f}"
                )


if __name__ == "__main__":
    sys.exit(main())
