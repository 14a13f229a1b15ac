#!/usr/bin/env python3
"""Peak memory of a password download and of a chunked upload, 1-2 GB.

Run from the repository root::

    python3 benchmarks/bench_download.py               # 1.5 GiB
    python3 benchmarks/bench_download.py --size-mb 256 # a quick small run

1. An archive of ``--size-mb`` (random bytes behind the suite's encryption,
   server keyring, as a backup stores it) is written to a local destination.
2. The download is prepared exactly as the download wizard does it: a
   separate process ``python -m db_backup_suite.lib.downloads --job-file F``
   decrypts it and re-encrypts it with a password (scrypt) into a private
   file. Its wall time and peak RSS (``ru_maxrss`` of the child).
3. The prepared file is sent by the same response the download route
   builds (werkzeug ``send_file`` of the path wrapped in the route's
   counting body; Odoo's ``http.Stream`` uses the same), consumed to the
   end in a child process: wall time and peak RSS.
4. The upload: the file goes through ``lib/uploads.write_chunk`` in 8 MiB
   chunks (a child process reading from a file as the route reads the
   request body): wall time and peak RSS.

Target: every peak RSS flat (independent of the size; well under 200 MB)
and the prepared file opens with the password only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT]
PASSWORD = "Correct-Horse-42-battery!"
TENANT = "bench-tenant-uuid"

SERVE = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from werkzeug.test import EnvironBuilder
from werkzeug.utils import send_file
from odoo_free_body import counting_body
path = sys.argv[2]
environ = EnvironBuilder().get_environ()
response = send_file(path, environ, mimetype="application/octet-stream",
                     as_attachment=True, download_name="x.enc", conditional=False)
size = os.path.getsize(path)
done = []
response.response = counting_body(response.response, size, lambda: done.append(1))
total = 0
start = time.monotonic()
for block in response(environ, lambda status, headers: None):
    total += len(block)
response.close()
assert total == size and done, (total, size, done)
print(time.monotonic() - start)
"""

UPLOAD = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from db_backup_suite.lib import uploads
path, base = sys.argv[2], sys.argv[3]
size = os.path.getsize(path)
owner = {"database": "bench", "uid": 2}
meta = uploads.open_upload(base, size=size, **owner)
chunk = 8 * 1024 * 1024
start = time.monotonic()
with open(path, "rb") as handle:
    offset = 0
    while offset < size:
        length = min(chunk, size - offset)
        offset = uploads.write_chunk(base, meta["id"], offset=offset,
                                     stream=handle, length=length, **owner)
uploads.finish(base, meta["id"], **owner)
print(time.monotonic() - start)
uploads.remove(base, meta["id"])
"""

# the download route's counting body, without importing Odoo
COUNTING = """
class _CountingBody:
    def __init__(self, body, size, on_sent):
        self.body, self.size, self.on_sent, self.sent = body, size, on_sent, 0
    def __iter__(self):
        for block in self.body:
            self.sent += len(block)
            yield block
        if self.sent >= self.size:
            self.on_sent()
    def close(self):
        close = getattr(self.body, "close", None)
        if close:
            close()
def counting_body(body, size, on_sent):
    return _CountingBody(body, size, on_sent)
"""


# Peak RSS of a child as the kernel counts it for the new program (VmHWM of
# /proc/self/status, printed by the child at its end; ``ru_maxrss`` of
# wait4 would also count the parent's pages at fork time).
HWM = (
    "import re\n"
    "print(int(re.search(r'VmHWM:\\s+(\\d+)', "
    "open('/proc/self/status').read()).group(1)) // 1024)\n"
)
PREPARE = (
    "import runpy, sys\n"
    "sys.argv = ['downloads', '--job-file', sys.argv[1]]\n"
    "try:\n"
    "    runpy.run_module('db_backup_suite.lib.downloads', run_name='__main__')\n"
    "except SystemExit as exc:\n"
    "    assert not exc.code, exc.code\n"
)


def child(argv, env=None):
    """Run a child (``python -c CODE args``, its code ends printing its peak
    RSS); (wall seconds, peak RSS in MB)."""
    argv = [argv[0], argv[1], argv[2] + "\n" + HWM, *argv[3:]]
    start = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    if proc.returncode:
        raise SystemExit("child failed:\n%s\n%s" % (proc.stdout, proc.stderr))
    return wall, int(proc.stdout.split()[-1])


def make_archive(path, size, keyring):
    from db_backup_suite.lib import crypto

    block = os.urandom(1 << 20)
    with open(path, "wb") as raw:
        writer = crypto.encrypting_writer(raw, keyring=keyring, tenant=TENANT)
        left = size
        while left:
            n = min(len(block), left)
            writer.write(block[:n])
            left -= n
        writer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1536)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    from db_backup_suite.lib import crypto, downloads
    from suite_core.keyring import generate_key_line

    scratch = tempfile.mkdtemp(prefix="bench_download_")
    try:
        keyring_file = os.path.join(scratch, "keyring")
        with open(keyring_file, "w") as handle:
            handle.write(generate_key_line("bench") + "\n")
        os.chmod(keyring_file, 0o600)
        keyring = crypto.load_keyring(keyring_file)
        dest = os.path.join(scratch, "dest")
        os.makedirs(os.path.join(dest, "bench"))
        name = "bench/bench_manual_20250101T000000Z.tar.zst.enc"
        size = args.size_mb * 1024 * 1024
        start = time.monotonic()
        make_archive(os.path.join(dest, name), size, keyring)
        print(
            "archive: %d MiB written in %.1f s"
            % (args.size_mb, time.monotonic() - start)
        )
        base = os.path.join(scratch, "private")
        os.makedirs(base, mode=0o700)
        env = dict(os.environ, PYTHONPATH=ROOT, SUITE_KEYRING_FILE=keyring_file)
        rows = []

        # 2. prepare (the detached process of the download wizard)
        download_id = "0" * 32
        job_file = os.path.join(base, "download-bench.json")
        with open(job_file, "w") as handle:
            json.dump(
                {
                    "id": download_id,
                    "base": base,
                    "sink": {"type": "local", "path": dest},
                    "name": name,
                    "tenant": TENANT,
                    "password": PASSWORD,
                    "total": size,
                },
                handle,
            )
        wall, rss = child([sys.executable, "-c", PREPARE, job_file], env)
        prepared = downloads.file_path(base, download_id)
        rows.append(("prepare (decrypt + re-encrypt, child)", wall, rss))
        with open(prepared, "rb") as raw:
            crypto.verify_archive(raw, password=PASSWORD, tenant=TENANT)

        # 3. serve the prepared file as the route does
        helper_dir = os.path.join(scratch, "helper")
        os.makedirs(helper_dir)
        with open(os.path.join(helper_dir, "odoo_free_body.py"), "w") as handle:
            handle.write(COUNTING)
        serve_env = dict(env, PYTHONPATH=os.pathsep.join([ROOT, helper_dir]))
        wall, rss = child([sys.executable, "-c", SERVE, ROOT, prepared], serve_env)
        rows.append(("send the prepared file (response body)", wall, rss))

        # 4. chunked upload of the same size
        wall, rss = child([sys.executable, "-c", UPLOAD, ROOT, prepared, base], env)
        rows.append(("chunked upload, 8 MiB chunks", wall, rss))

        print("\n%-42s %9s %10s %12s" % ("step", "wall s", "MB/s", "peak RSS MB"))
        for label, wall, rss in rows:
            print(
                "%-42s %9.1f %10.0f %12.0f"
                % (label, wall, args.size_mb * 1.048576 / wall, rss)
            )
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
