"""Pure-Python parts of gdpr_dsr (no Odoo import): masking of payment data,
the append-only erasure register kept outside the database, and the signing
of erasure certificates."""
