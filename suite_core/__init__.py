"""The shared core of the backup, export & compliance suite: plain Python,
no Odoo, imported by every addon (and the command line) under this one name.

- ``keyring``: the server keyring (master keys with ids, HKDF sub-keys) and
  the root of the suite's errors, ``SuiteError``;
- ``streamcrypt``: the chunked AES-256-GCM streaming format of archives,
  stored exports and DSR packages (``docs/archive-format.md``);
- ``writers``: streaming CSV / JSON / XLSX writers, formula-injection safe;
- ``passwords``: the one policy for file passwords;
- ``sensitive``: the one rule for fields that hold secrets;
- ``witness``: the external witness file of the audit chain's head.

``python -m suite_core keygen`` creates a keyring. The addons find this
package on the Python path of the Odoo server: install it with
``pip install .`` from the repository (it brings the runtime requirements),
or put the repository root on ``PYTHONPATH``.
"""
