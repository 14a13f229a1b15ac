"""Signed chain checkpoints (head, retention anchors, keyring adoption) and
the external witness of the chain head (see lib/chain.py, lib/witness.py)."""

import functools
import logging

from odoo import api, fields, models, tools
from odoo.exceptions import UserError
from odoo.tools import SQL

from suite_core import witness

from ..lib import chain

_logger = logging.getLogger(__name__)

#: Odoo option: where the witness files go (default <data_dir>/audit_witness).
WITNESS_DIR_OPTION = "audit_witness_dir"
CHECKPOINT_COLUMNS = (*chain.CHECKPOINT_FIELDS, "mac")


def in_test_mode(env):
    """True while Odoo tests run: each test's transaction is rolled back."""
    from odoo.modules import module as odoo_module

    return bool(
        env.registry.in_test_mode() or getattr(odoo_module, "current_test", None)
    )


class AuditCheckpoint(models.Model):
    _name = "audit.checkpoint"
    _description = "Audit Chain Checkpoint"
    _order = "sequence desc, id desc"
    _rec_name = "sequence"

    kind = fields.Selection(
        [
            ("anchor", "Retention anchor"),
            ("head", "Chain head"),
            ("adopt", "Keyring adoption"),
        ],
        required=True,
        readonly=True,
        index=True,
    )
    sequence = fields.Integer(string="Chain Position", readonly=True)
    chain_hash = fields.Char(readonly=True)
    purged_count = fields.Integer(string="Events Purged", readonly=True)
    cutoff = fields.Datetime(string="Purged Before", readonly=True)
    sealed_at = fields.Datetime(string="Signed At", readonly=True)
    key_id = fields.Char(readonly=True)
    mac = fields.Char(string="Signature", readonly=True)

    # Signed anchors of the chain: immutable through the ORM, deliberately
    # without super(). pylint: disable=method-required-super,no-raise-unlink
    def write(self, vals):
        raise UserError(self.env._("Audit checkpoints cannot be modified."))

    def unlink(self):
        raise UserError(self.env._("Audit checkpoints cannot be deleted."))

    # pylint: enable=method-required-super,no-raise-unlink

    # -- Reading ------------------------------------------------------------

    @api.model
    def _anchor(self):
        """``(sequence, chain_hash)`` the chain continues from."""
        self.env.cr.execute(
            SQL(
                "SELECT sequence, chain_hash FROM audit_checkpoint "
                "WHERE kind = 'anchor' ORDER BY sequence DESC LIMIT 1"
            )
        )
        row = self.env.cr.fetchone()
        return (row[0], row[1]) if row else (0, chain.GENESIS)

    @api.model
    def _head(self):
        self.env.cr.execute(
            SQL(
                "SELECT sequence, chain_hash FROM audit_checkpoint WHERE kind = 'head' "
                "ORDER BY id DESC LIMIT 1"
            )
        )
        row = self.env.cr.fetchone()
        return (row[0], row[1]) if row else (0, None)

    @api.model
    def _signed_rows(self):
        """Every checkpoint as a dict, as lib/chain.verify_log reads them."""
        self.flush_model()
        self.env.cr.execute(
            SQL(
                "SELECT %s FROM audit_checkpoint ORDER BY sequence, id",
                SQL(", ").join(SQL.identifier(name) for name in CHECKPOINT_COLUMNS),
            )
        )
        return self.env.cr.dictfetchall()

    # -- Writing (signed) ---------------------------------------------------

    @api.model
    def _signed(self, vals, signer=None):
        """``vals`` completed with ``sealed_at``, ``key_id`` and ``mac``."""
        key_id, key = signer or self.env["audit.event"]._audit_key()
        vals = {
            "purged_count": 0,
            "cutoff": None,
            "chain_hash": None,
            **vals,
            "sealed_at": vals.get("sealed_at") or fields.Datetime.now(),
            "key_id": key_id,
        }
        vals["mac"] = chain.sign_checkpoint(key, vals)
        return vals

    @api.model
    def _set_head(self, sequence, chain_hash):
        """Record the signed chain head (called under the chain lock)."""
        vals = self._signed(
            {"kind": "head", "sequence": sequence, "chain_hash": chain_hash}
        )
        self.flush_model()
        self.env.cr.execute(
            SQL(
                "UPDATE audit_checkpoint SET sequence = %s, chain_hash = %s, "
                "sealed_at = %s, key_id = %s, mac = %s, purged_count = 0, "
                "cutoff = NULL, write_date = now() AT TIME ZONE 'UTC' "
                "WHERE kind = 'head'",
                sequence,
                chain_hash,
                vals["sealed_at"],
                vals["key_id"],
                vals["mac"],
            )
        )
        if not self.env.cr.rowcount:
            self.sudo().create([vals])
            self.flush_model()
        self.invalidate_model()
        return vals

    @api.model
    def _add_anchor(self, sequence, chain_hash, purged_count, cutoff):
        return self.sudo().create(
            [
                self._signed(
                    {
                        "kind": "anchor",
                        "sequence": sequence,
                        "chain_hash": chain_hash,
                        "purged_count": purged_count,
                        "cutoff": cutoff,
                    }
                )
            ]
        )

    @api.model
    def _adopt_if_needed(self, head_sequence, head_hash):
        """Move the chain under the current key class, once.

        With a server keyring, the first seal that finds no keyring-signed
        checkpoint and no keyring-signed keyed event re-signs the existing
        checkpoints with the keyring and records an ``adopt`` checkpoint at
        the current head: what was recorded before (legacy links, database
        key) stays verifiable and is pinned from now on; anything signed
        with the database key after it is untrusted. Without a keyring, the
        unsigned checkpoints of the legacy format get the database key.
        Called under the chain lock. Returns True when it adopted.
        """
        events = self.env["audit.event"]
        signer = events._audit_key()
        key_id = signer[0]
        cr = self.env.cr
        self.flush_model()
        if not chain.is_keyring_key(key_id):
            cr.execute(SQL("SELECT 1 FROM audit_checkpoint WHERE mac IS NOT NULL"))
            if cr.fetchone():
                return False
            self._resign_all(signer)
            return False
        cr.execute(
            SQL("SELECT 1 FROM audit_checkpoint WHERE key_id LIKE %s LIMIT 1", "kr:%")
        )
        if cr.fetchone():
            return False
        cr.execute(
            SQL(
                "SELECT 1 FROM audit_event WHERE chain_version >= %s "
                "AND key_id LIKE %s AND sequence IS NOT NULL LIMIT 1",
                chain.KEYED_VERSION,
                "kr:%",
            )
        )
        if cr.fetchone():
            # Keyed events but no keyring checkpoint: they were deleted.
            # Adopting now would bless whatever replaced them.
            _logger.error(
                "Audit chain: keyring-signed events exist but no keyring-signed "
                "checkpoint; not adopting (run Verify integrity)"
            )
            return False
        if self._witness_has_keyring_lines():
            _logger.error(
                "Audit chain: the external witness holds keyring-signed heads but "
                "the database has none; not adopting (run Verify integrity)"
            )
            return False
        self._resign_all(signer)
        if head_sequence:
            self.sudo().create(
                [
                    self._signed(
                        {
                            "kind": "adopt",
                            "sequence": head_sequence,
                            "chain_hash": head_hash,
                        },
                        signer,
                    )
                ]
            )
            self.flush_model()
            _logger.info(
                "Audit chain: server keyring %s adopted at chain position %s",
                key_id,
                head_sequence,
            )
            events.log_event(
                "settings",
                res_model="audit.checkpoint",
                res_name="Audit chain",
                details={
                    "operation": "keyring_adopted",
                    "up_to_position": head_sequence,
                    "key_id": key_id,
                },
            )
        return True

    @api.model
    def _resign_all(self, signer):
        cr = self.env.cr
        cr.execute(
            SQL(
                "SELECT id, %s FROM audit_checkpoint",
                SQL(", ").join(
                    SQL.identifier(name) for name in chain.CHECKPOINT_FIELDS
                ),
            )
        )
        for row in cr.dictfetchall():
            vals = self._signed(
                {k: row[k] for k in chain.CHECKPOINT_FIELDS if k != "key_id"},
                signer,
            )
            cr.execute(
                SQL(
                    "UPDATE audit_checkpoint SET sealed_at = %s, key_id = %s, "
                    "mac = %s WHERE id = %s",
                    vals["sealed_at"],
                    vals["key_id"],
                    vals["mac"],
                    row["id"],
                )
            )
        self.invalidate_model()

    # -- External witness ---------------------------------------------------

    @api.model
    def _witness_path(self):
        """The witness file of this database, or None when disabled.

        Under tests the default file is off: every test's transaction is
        rolled back, so heads witnessed by one test would not exist in the
        next. A test that exercises the witness sets ``audit_witness_dir``.
        """
        directory = tools.config.get(WITNESS_DIR_OPTION)
        if not directory:
            if in_test_mode(self.env):
                return None
            directory = witness.default_dir(tools.config["data_dir"])
        return witness.witness_path(directory, self.env.cr.dbname)

    @api.model
    def _witness_record(self, kind, sequence, chain_hash, **extra):
        key_id, key = self.env["audit.event"]._audit_key()
        return witness.make_record(
            kind,
            key=key,
            key_id=key_id,
            db=self.env.cr.dbname,
            uuid=self.env["audit.event"]._database_uuid(),
            sequence=sequence,
            chain_hash=chain_hash,
            sealed_at=fields.Datetime.to_string(fields.Datetime.now()),
            **extra,
        )

    @api.model
    def _witness_write(self, record, after_commit=True):
        """Append ``record`` to the witness file after this transaction
        commits (a witnessed head must exist); at once under tests."""
        path = self._witness_path()
        if not path:
            return
        if after_commit and not in_test_mode(self.env):
            self.env.cr.postcommit.add(functools.partial(_append_safely, path, record))
        else:
            _append_safely(path, record)

    @api.model
    def _witness_snapshot(self):
        """``{"path", "records", "uuid"}`` for verification, or None (off).

        Read under the chain lock: every head in the file was then sealed by
        a transaction that committed before this moment, so whatever this
        transaction reads afterwards (READ COMMITTED) includes it.
        """
        path = self._witness_path()
        if not path:
            return None
        cr = self.env.cr
        cr.execute(SQL("SELECT pg_advisory_lock(%s)", CHAIN_LOCK_KEY))
        try:
            records = witness.read(path)
        finally:
            cr.execute(SQL("SELECT pg_advisory_unlock(%s)", CHAIN_LOCK_KEY))
        return {
            "path": path,
            "records": records,
            "uuid": self.env["audit.event"]._database_uuid(),
        }

    @api.model
    def _witness_has_keyring_lines(self):
        path = self._witness_path()
        records = witness.read(path) if path else None
        dbuuid = self.env["audit.event"]._database_uuid()
        return any(
            chain.is_keyring_key(r.get("key_id")) and r.get("uuid") == dbuuid
            for r in records or ()
        )

    @api.model
    def _check_archived_head(self, head):
        """None when the witnessed head ``head`` (from a backup manifest) is
        authentic and this chain holds it, else a message."""
        events = self.env["audit.event"]
        try:
            key = events._key_for(head.get("key_id"), context=head.get("uuid"))
        except Exception as exc:
            return f"the archive's audit head names an unavailable key ({exc})"
        if not witness.is_authentic(head, key):
            return "the archive's audit head does not match its signature"
        seq = int(head.get("sequence") or 0)
        anchor_seq, anchor_hash = self._anchor()
        if seq < anchor_seq:
            return None
        if seq == anchor_seq:
            stored = anchor_hash
        else:
            self.env.cr.execute(
                SQL("SELECT chain_hash FROM audit_event WHERE sequence = %s", seq)
            )
            row = self.env.cr.fetchone()
            stored = row and row[0]
        if stored != head.get("chain_hash"):
            return (
                f"the restored audit chain does not hold the head recorded in the "
                f"archive's manifest (position {seq}, sealed at "
                f"{head.get('sealed_at')} UTC)"
            )
        return None

    @api.model
    def _witness_rebase(self, reason):
        """Start a new witnessed history at the current head (private).

        For the server itself after it replaced the database (a restore):
        the heads witnessed before no longer describe this chain. Writes a
        signed ``rebase`` line with the previous witnessed head and the
        reason, and logs it. Returns the line.
        """
        events = self.env["audit.event"]
        events._seal_in_new_cursor()
        seq, head_hash = events._chain_head()
        path = self._witness_path()
        previous = None
        if path:
            records = witness.read(path) or []
            current = [r for r in witness._current(records) if not r.get("_malformed")]
            if current:
                previous = max(current, key=lambda r: int(r.get("sequence") or 0))
        record = self._witness_record(
            witness.REBASE,
            seq,
            head_hash,
            reason=str(reason)[:200],
            from_sequence=previous and previous.get("sequence"),
            from_hash=previous and previous.get("chain_hash"),
        )
        self._witness_write(record)
        events.log_event(
            "settings",
            res_model="audit.checkpoint",
            res_name="Audit chain witness",
            details={
                "operation": "witness_rebased",
                "reason": record["reason"],
                "position": seq,
                "previous_position": record["from_sequence"],
            },
        )
        return record


# Kept here too: the witness is read under the same lock as sealing.
CHAIN_LOCK_KEY = 0x6175646974  # "audit" (audit_event.CHAIN_LOCK_KEY)


def _append_safely(path, record):
    """Append a witness line; never fail the caller's (committed) work."""
    try:
        witness.append(path, record)
    except (OSError, witness.WitnessError):
        _logger.exception("Audit chain: could not write the witness %s", path)
