import hashlib
import os
from unittest.mock import patch

from odoo.tests import TransactionCase, tagged
from odoo.tools import SQL

from odoo.addons.audit_export.lib import chain, keyring


@tagged("post_install", "-at_install")
class TestAuditKeyedChain(TransactionCase):
    def setUp(self):
        super().setUp()
        line = keyring.generate_key_line("audit1")
        patcher = patch.dict(os.environ, {keyring.ENV_KEYRING: line})
        patcher.start()
        self.addCleanup(patcher.stop)
        self.Event = self.env["audit.event"]

    def _forge(self, event, sign):
        """What an attacker with SQL access does: change the event, recompute
        its digest with ``sign(canonical)`` and re-link the chain after it."""
        cr = self.env.cr
        cr.execute(
            SQL("UPDATE audit_event SET res_name = 'forged' WHERE id = %s", event.id)
        )
        cr.execute(
            SQL(
                "SELECT %s FROM audit_event WHERE id = %s",
                SQL(", ").join(SQL.identifier(n) for n in chain.CANONICAL_FIELDS),
                event.id,
            )
        )
        row = cr.dictfetchone()
        cr.execute(
            SQL(
                "UPDATE audit_event SET digest = %s WHERE id = %s",
                sign(chain.canonical(row)),
                event.id,
            )
        )
        cr.execute(
            SQL(
                "SELECT id, sequence, digest FROM audit_event WHERE sequence >= %s "
                "ORDER BY sequence",
                event.sequence,
            )
        )
        rows = cr.fetchall()
        cr.execute(
            SQL(
                "SELECT chain_hash FROM audit_event WHERE sequence = %s",
                event.sequence - 1,
            )
        )
        prev = cr.fetchone()[0] if event.sequence > 1 else chain.GENESIS
        for event_id, seq, digest in rows:
            prev = chain.link(prev, seq, digest)
            cr.execute(
                SQL(
                    "UPDATE audit_event SET chain_hash = %s WHERE id = %s",
                    prev,
                    event_id,
                )
            )
        # The recorded head too, so only the digests can give it away.
        self.env["audit.checkpoint"]._set_head(*self.Event._chain_head())
        self.Event.invalidate_model()

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
        # Not the database key: the digest needs the keyring.
        db_key = self.Event._database_key()
        for event in events:
            self.assertNotEqual(event.digest, chain.digest(db_key, event.read()[0]))

    def test_plain_sha256_rehash_detected(self):
        events = self._events()
        target = events[1]
        self._forge(target, lambda data: hashlib.sha256(data).hexdigest())
        report = self.Event._verify_chain()
        self.assertFalse(report["ok"])
        self.assertEqual(report["problem"]["kind"], "altered")
        self.assertEqual(report["problem"]["event_id"], target.id)

    def test_rehash_with_the_database_secret_detected(self):
        # Even an attacker who read database.secret cannot forge a keyed event.
        events = self._events()
        target = events[2]
        db_key = self.Event._database_key()
        self._forge(target, lambda data: chain.sign(db_key, data))
        report = self.Event._verify_chain()
        self.assertFalse(report["ok"])
        self.assertEqual(report["problem"]["event_id"], target.id)

    def test_forgery_with_the_right_key_would_pass(self):
        # Control: the forging code above is right; only the key is missing.
        events = self._events()
        key = self.Event._key_for("kr:audit1")
        self._forge(events[0], lambda data: chain.sign(key, data))
        self.assertTrue(self.Event._verify_chain()["ok"])
