import hashlib
import os
from unittest.mock import patch

from odoo.tests import TransactionCase, tagged
from odoo.tools import SQL

from odoo.addons.audit_export.lib import chain

from suite_core import keyring


def commitments(row):
    """The commitments an attacker recomputes from the stored salts."""
    return {
        slot: chain.commit(row["salts"][slot], slot, value)
        for slot, value in chain.personal_values(row).items()
    }


@tagged("post_install", "-at_install")
class TestAuditKeyedChain(TransactionCase):
    def setUp(self):
        super().setUp()
        line = keyring.generate_key_line("audit1")
        patcher = patch.dict(os.environ, {keyring.ENV_KEYRING: line})
        patcher.start()
        self.addCleanup(patcher.stop)
        self.Event = self.env["audit.event"]

    def _row(self, event):
        self.env.cr.execute(
            SQL(
                "SELECT %s FROM audit_event WHERE id = %s",
                SQL(", ").join(
                    SQL.identifier(n)
                    for n in ("salts", "sequence", "key_id", *chain.EVENT_FIELDS_V2)
                ),
                event.id,
            )
        )
        return self.env.cr.dictfetchone()

    def _forge(self, event, sign, link):
        """What an attacker with SQL access does: change the event, recompute
        its digest with ``sign(canonical)`` (the commitment of the changed
        value from its stored salt) and re-link the chain after it with
        ``link(prev, seq, digest, key_id)``."""
        cr = self.env.cr
        cr.execute(
            SQL("UPDATE audit_event SET res_name = 'forged' WHERE id = %s", event.id)
        )
        row = self._row(event)
        cr.execute(
            SQL(
                "UPDATE audit_event SET digest = %s WHERE id = %s",
                sign(chain.canonical_v2(row, commitments(row))),
                event.id,
            )
        )
        cr.execute(
            SQL(
                "SELECT id, sequence, digest, key_id FROM audit_event "
                "WHERE sequence >= %s ORDER BY sequence",
                row["sequence"],
            )
        )
        rows = cr.fetchall()
        cr.execute(
            SQL(
                "SELECT chain_hash FROM audit_event WHERE sequence = %s",
                row["sequence"] - 1,
            )
        )
        prev = (cr.fetchone() or [chain.GENESIS])[0]
        for event_id, seq, digest, key_id in rows:
            prev = link(prev, seq, digest, key_id)
            cr.execute(
                SQL(
                    "UPDATE audit_event SET chain_hash = %s WHERE id = %s",
                    prev,
                    event_id,
                )
            )
        self.Event.invalidate_model()
        return prev

    def _events(self):
        events = self.Event
        for i in range(3):
            events |= self.Event.log_event(
                "backup", res_model="db.backup.run", res_id=i + 1, res_name=f"b{i}"
            )
        self.assertTrue(self.Event._verify_chain()["ok"])
        return events

    def test_events_signed_with_the_keyring(self):
        events = self._events()
        self.assertEqual(set(events.mapped("key_id")), {"kr:audit1"})
        self.assertEqual(set(events.mapped("chain_version")), {2})
        key = self.Event._key_for("kr:audit1")
        db_key = self.Event._database_key()
        for event in events:
            row = self._row(event)
            canonical = chain.canonical_v2(row, commitments(row))
            # The keyring sub-key signs it; the database key does not.
            self.assertEqual(event.digest, chain.sign(key, canonical))
            self.assertNotEqual(event.digest, chain.sign(db_key, canonical))
        # The link is keyed too: plain SHA-256 of the link is not it.
        event = events[-1]
        prev = events[-2].chain_hash
        self.assertEqual(
            event.chain_hash,
            chain.link_v2(key, prev, event.sequence, event.digest, "kr:audit1"),
        )
        self.assertNotEqual(
            event.chain_hash, chain.link(prev, event.sequence, event.digest)
        )

    def test_plain_sha256_rehash_detected(self):
        events = self._events()
        target = events[1]
        self._forge(
            target,
            lambda data: hashlib.sha256(data).hexdigest(),
            lambda prev, seq, digest, _kid: chain.link(prev, seq, digest),
        )
        report = self.Event._verify_chain()
        self.assertFalse(report["ok"])
        self.assertEqual(report["problem"]["kind"], "altered")
        self.assertEqual(report["problem"]["event_id"], target.id)
        self.assertIn("does not match its digest", report["problem"]["message"])

    def test_rehash_with_the_database_secret_detected(self):
        # Even an attacker who read database.secret cannot forge a keyed event.
        events = self._events()
        target = events[2]
        db_key = self.Event._database_key()

        def link(prev, seq, digest, key_id):
            return chain.link_v2(db_key, prev, seq, digest, key_id)

        self._forge(target, lambda data: chain.sign(db_key, data), link)
        report = self.Event._verify_chain()
        self.assertFalse(report["ok"])
        self.assertEqual(report["problem"]["event_id"], target.id)
        self.assertIn("does not match its digest", report["problem"]["message"])

    def test_forgery_with_the_right_key_would_pass(self):
        # Control: the forging code above is right; only the key is missing.
        events = self._events()
        key = self.Event._key_for("kr:audit1")
        head = self._forge(
            events[0],
            lambda data: chain.sign(key, data),
            lambda prev, seq, digest, kid: chain.link_v2(key, prev, seq, digest, kid),
        )
        # The head checkpoint too (the server's own signing).
        self.env["audit.checkpoint"]._set_head(events[-1].sequence, head)
        self.assertTrue(self.Event._verify_chain()["ok"])
