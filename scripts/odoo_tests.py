#!/usr/bin/env python3
"""Run the suite's Odoo test tier against a fresh database.

Installs every addon of the repository (or the ones named) into a new
database, runs their tests (``--test-enable --test-tags /<addon>``, which
includes the ``HttpCase`` tours in Chromium), prints the counts, drops the
database and exits non-zero on any failure, error, or error-level log line.

Odoo must be importable (``import odoo``); this script never installs it.
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULT_RE = re.compile(
    r"(\d+) failed, (\d+) error\(s\) of (\d+) tests when loading database "
    r"'([^']*)'"
)
SKIP_RE = re.compile(r" INFO \S+ \S+: skipped ")
BAD_LEVEL_RE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ \d+ (ERROR|CRITICAL) ")


def suite_addons():
    return sorted(
        p.parent.name
        for p in REPO.glob("*/__manifest__.py")
        if (p.parent / "__init__.py").exists()
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def odoo_root():
    import odoo

    return Path(odoo.__file__).resolve().parent.parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addons", nargs="*", help="addons to test (default: all)")
    parser.add_argument("--db-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    parser.add_argument("--db-port", default=os.environ.get("PGPORT", "5432"))
    parser.add_argument("--db-user", default=os.environ.get("PGUSER", "root"))
    parser.add_argument("--database", help="database name (default: a new one)")
    parser.add_argument(
        "--with",
        dest="extra",
        default=os.environ.get("SUITE_TEST_WITH", ""),
        help="other Odoo apps to install beside the suite, comma separated "
        "(e.g. account), so the tests that need them run instead of skipping",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument(
        "--log", default=None, help="write the full Odoo log to this file"
    )
    args = parser.parse_args(argv)

    addons = args.addons or suite_addons()
    if not addons:
        print("odoo tier: no addon in the repository", file=sys.stderr)
        return 1
    extra = [name.strip() for name in args.extra.split(",") if name.strip()]
    root = odoo_root()
    addons_path = [str(REPO)]
    if (root / "addons").is_dir():
        addons_path.insert(0, str(root / "addons"))
    db = args.database or f"suite_test_{os.getpid()}_{int(time.time())}"
    data_dir = tempfile.mkdtemp(prefix="suite-odoo-data-")
    log_path = Path(args.log) if args.log else Path(data_dir) / "odoo.log"
    cmd = [
        sys.executable,
        "-m",
        "odoo",
        "--database",
        db,
        "--db_host",
        args.db_host,
        "--db_port",
        str(args.db_port),
        "--db_user",
        args.db_user,
        "--addons-path",
        ",".join(addons_path),
        "--data-dir",
        data_dir,
        "--init",
        ",".join(addons + extra),
        "--test-enable",
        "--test-tags",
        ",".join(f"/{a}" for a in addons),
        "--without-demo",
        "all",
        "--stop-after-init",
        "--http-port",
        str(free_port()),
        "--max-cron-threads",
        "0",
        "--log-level",
        "test",
        "--logfile",
        str(log_path),
    ]
    print(
        f"odoo tier: installing {', '.join(addons + extra)} in {db!r}, "
        f"testing {', '.join(addons)}"
    )
    print(f"odoo tier: Odoo from {root}, log in {log_path}", flush=True)
    started = time.monotonic()
    # the addons import the shared core by its one name, ``suite_core``: the
    # repository root goes first on Odoo's Python path (as ``pip install .``
    # would put it in site-packages)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), env.get("PYTHONPATH")) if p
    )
    proc = subprocess.run(cmd, cwd=REPO, check=False, env=env)
    elapsed = time.monotonic() - started
    failed = errors = ran = skipped = 0
    bad_lines = []
    with open(log_path, encoding="utf-8", errors="replace") as log:
        for line in log:
            match = RESULT_RE.search(line)
            # Registries the tests open for other databases (sandboxes,
            # restored copies) report their own, empty, results: only the
            # test database's line counts.
            if match and match.group(4) == db:
                failed, errors, ran = map(int, match.groups()[:3])
            if SKIP_RE.search(line):
                skipped += 1
            if BAD_LEVEL_RE.match(line):
                bad_lines.append(line.rstrip())
    if bad_lines:
        print("odoo tier: error-level log lines:")
        for line in bad_lines[:60]:
            print("  " + line)
        with open(log_path, encoding="utf-8", errors="replace") as log:
            text = log.read()
        # The tracebacks follow the error lines: show the tail for diagnosis.
        print("odoo tier: last lines of the log:\n" + text[-6000:])
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
                db,
            ],
            check=False,
        )
        shutil.rmtree(data_dir, ignore_errors=True) if not args.log else None
    bad = failed + errors
    if not bad and bad_lines:
        bad = len(bad_lines)
    passed = max(ran - failed - errors - skipped, 0)
    print(f"odoo tier: {ran} tests ran in {elapsed:.0f}s, exit code {proc.returncode}")
    print(f"odoo: {passed} passed, {bad} failed, {skipped} skipped")
    if proc.returncode or bad or ran == 0:
        if ran == 0:
            print("odoo tier: no Odoo test ran: treated as a failure")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
