"""The emergency command line (``python -m db_backup_suite.lib``) as the
plain tests run it: from the repository root, output captured as text."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(args, environ=None, *, check=False, umask=None, timeout=300):
    """The command line with ``args`` (in ``environ``, by default this
    process's; under ``umask`` if given): the completed process. With
    ``check``, it must have exited 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "db_backup_suite.lib", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def keyring_environ(keyring_file):
    """This process's environment with the keyring file ``keyring_file``
    (and no keyring given in ``SUITE_KEYRING``)."""
    environ = os.environ.copy()
    environ["SUITE_KEYRING_FILE"] = str(keyring_file)
    environ.pop("SUITE_KEYRING", None)
    return environ
