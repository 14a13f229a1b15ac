"""Pure-Python layer of audit_export: never imports ``odoo``.

- ``writers``: streaming CSV / JSON / XLSX writers, formula-injection safe.
- ``keyring`` and ``streamcrypt``: the server keyring and the chunked
  AES-256-GCM streaming format (shared by the whole suite).
- ``chain``: the canonical serialisation, keyed hash chain, erasable
  commitments and verification of audit events (docs/audit-chain.md).
- ``witness``: the external witness file of the chain head.
"""
