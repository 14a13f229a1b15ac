"""Attacks on the audit log with real SQL, each named by Verify.

The attacker has SQL access to the database (so they can read
``database.secret`` and compute the database key) but not the server
keyring, nor write access to the witness file under the data directory.
"""

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from unittest.mock import patch

from freezegun import freeze_time

from odoo.exceptions import UserError
from odoo.tests import HttpCase, TransactionCase, new_test_user, tagged
from odoo.tools import SQL, config, mute_logger

from odoo.addons.audit_export.lib import chain

from suite_core import keyring, witness

SUBJECT_EMAIL = "jane.roe@example.com"
SUBJECT_NAME = "Jane Roe"
REASON = "DSR/2026/0003"


class ChainCase(TransactionCase):
    """A keyring in the environment and a witness directory of our own."""

    with_keyring = True

    def setUp(self):
        super().setUp()
        environ = {keyring.ENV_KEYRING: keyring.generate_key_line("k1")}
        if not self.with_keyring:
            environ = {keyring.ENV_KEYRING: "", keyring.ENV_KEYRING_FILE: ""}
        patcher = patch.dict(os.environ, environ)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.witness_dir = tempfile.mkdtemp(prefix="audit_witness_")
        self.addCleanup(shutil.rmtree, self.witness_dir, True)
        patcher = patch.dict(config.options, {"audit_witness_dir": self.witness_dir})
        patcher.start()
        self.addCleanup(patcher.stop)
        self.Event = self.env["audit.event"]
        self.Checkpoint = self.env["audit.checkpoint"]
        self.cr = self.env.cr

    # -- the server's side ----------------------------------------------

    def _log(self, n=3, **kwargs):
        events = self.Event
        for i in range(n):
            events |= self.Event.log_event(
                "backup",
                res_model="db.backup.run",
                res_id=i + 1,
                res_name=f"backup {i}",
                details={"size": i},
                **kwargs,
            )
        self._verify_ok()
        return events

    def _verify_ok(self):
        report = self.Event._verify_chain()
        self.assertTrue(report["ok"], report["problem"])
        return report

    def _assert_tampered(self, kind, text, event=None):
        self.Event.invalidate_model()
        report = self.Event._verify_chain()
        self.assertFalse(report["ok"], "the attack went unnoticed")
        problem = report["problem"]
        self.assertEqual(problem["kind"], kind, problem["message"])
        self.assertIn(text, problem["message"])
        if event is not None:
            self.assertEqual(problem["event_id"], event.id)
        # The auditor's screen says the same.
        action = self.Event.action_verify_integrity()
        result = self.env["audit.verify.wizard"].browse(action["res_id"])
        self.assertEqual(result.state, "tampered")
        self.assertIn(text, result.message)
        return problem

    def _witness_file(self):
        return witness.witness_path(self.witness_dir, self.cr.dbname)

    # -- the attacker's side (SQL only) ---------------------------------

    def _db_key(self):
        """The database key, computed from what SQL can read."""
        self.cr.execute(
            SQL("SELECT value FROM ir_config_parameter WHERE key = 'database.secret'")
        )
        secret = self.cr.fetchone()[0]
        return hashlib.sha256(f"audit_export|{secret}".encode()).digest()

    def _row(self, event_id):
        self.cr.execute(
            SQL(
                "SELECT * FROM audit_event WHERE id = %s",
                event_id,
            )
        )
        return self.cr.dictfetchone()

    def _chain_rows(self, from_seq):
        self.cr.execute(
            SQL(
                "SELECT id, sequence, digest, key_id FROM audit_event "
                "WHERE sequence >= %s ORDER BY sequence",
                from_seq,
            )
        )
        return self.cr.fetchall()

    def _hash_at(self, seq):
        self.cr.execute(
            SQL("SELECT chain_hash FROM audit_event WHERE sequence = %s", seq)
        )
        row = self.cr.fetchone()
        return row[0] if row else chain.GENESIS

    def _relink(self, from_seq, key, legacy=False):
        """Recompute every chain hash from ``from_seq`` with the attacker's key
        (or the legacy unkeyed rule, marking the rows legacy)."""
        prev = self._hash_at(from_seq - 1)
        for event_id, seq, digest, key_id in self._chain_rows(from_seq):
            if legacy:
                prev = chain.link(prev, seq, digest)
            else:
                prev = chain.link_v2(key, prev, seq, digest, key_id)
            self.cr.execute(
                SQL(
                    "UPDATE audit_event SET chain_hash = %s, chain_version = %s "
                    "WHERE id = %s",
                    prev,
                    None if legacy else chain.KEYED_VERSION,
                    event_id,
                )
            )
        return prev

    def _resign(self, event_id, key, key_id):
        """Re-sign an event's digest (format 2, salts as stored)."""
        row = self._row(event_id)
        commitments = {
            slot: chain.commit(row["salts"][slot], slot, value)
            for slot, value in chain.personal_values(row).items()
        }
        self.cr.execute(
            SQL(
                "UPDATE audit_event SET digest = %s, key_id = %s WHERE id = %s",
                chain.sign(key, chain.canonical_v2(row, commitments)),
                key_id,
                event_id,
            )
        )

    def _move_head(self, seq, chain_hash):
        self.cr.execute(
            SQL(
                "UPDATE audit_checkpoint SET sequence = %s, chain_hash = %s "
                "WHERE kind = 'head'",
                seq,
                chain_hash,
            )
        )


@tagged("post_install", "-at_install")
class TestChainAttacks(ChainCase):
    def test_update_named(self):
        events = self._log(4)
        target = events[2]
        self.cr.execute(
            SQL("UPDATE audit_event SET res_name = 'forged' WHERE id = %s", target.id)
        )
        self._assert_tampered(
            "altered",
            f"event {target.id} (position {target.sequence}) does not match its digest",
            target,
        )

    def test_delete_named(self):
        events = self._log(4)
        seq = events[1].sequence
        self.cr.execute(SQL("DELETE FROM audit_event WHERE id = %s", events[1].id))
        self._assert_tampered(
            "removed", f"events at chain position {seq} were removed", events[2]
        )

    def test_insert_named(self):
        events = self._log(3)
        self.cr.execute(
            SQL(
                "INSERT INTO audit_event (uuid, timestamp, action, result, res_name, "
                "digest, key_id, sequence, chain_hash, chain_version, salts) "
                "SELECT 'forged-uuid', timestamp, action, result, res_name, digest, "
                "key_id, (SELECT max(sequence) + 1 FROM audit_event), chain_hash, 2, "
                "salts FROM audit_event WHERE id = %s RETURNING id",
                events[1].id,
            )
        )
        forged = self.Event.browse(self.cr.fetchone()[0])
        self._assert_tampered("altered", f"event {forged.id} ", forged)

    def test_delete_renumber_relink_and_move_head(self):
        events = self._log(5)
        gone, follower = events[1], events[2]
        seq = gone.sequence
        self.cr.execute(SQL("DELETE FROM audit_event WHERE id = %s", gone.id))
        self.cr.execute(
            SQL(
                "UPDATE audit_event SET sequence = sequence - 1 WHERE sequence > %s",
                seq,
            )
        )
        head = self._relink(seq, self._db_key())
        self._move_head(self.Event._chain_head()[0], head)
        self._assert_tampered(
            "altered",
            f"event {follower.id} (position {seq}) breaks the chain",
            follower,
        )

    def test_delete_renumber_and_relink_with_the_legacy_rule(self):
        events = self._log(5)
        gone, follower = events[1], events[2]
        seq = gone.sequence
        self.cr.execute(SQL("DELETE FROM audit_event WHERE id = %s", gone.id))
        self.cr.execute(
            SQL(
                "UPDATE audit_event SET sequence = sequence - 1 WHERE sequence > %s",
                seq,
            )
        )
        head = self._relink(seq, None, legacy=True)
        self._move_head(self.Event._chain_head()[0], head)
        self._assert_tampered(
            "untrusted",
            f"event {follower.id} (position {seq}) uses the legacy unkeyed chain link",
            follower,
        )

    @mute_logger("odoo.addons.audit_export.models.audit_checkpoint")
    def test_head_checkpoint_resigned_with_the_database_key(self):
        self._log(3)
        self.cr.execute(SQL("SELECT * FROM audit_checkpoint WHERE kind = 'head'"))
        head = self.cr.dictfetchone()
        head["key_id"] = "db"
        self.cr.execute(
            SQL(
                "UPDATE audit_checkpoint SET key_id = 'db', mac = %s WHERE id = %s",
                chain.sign_checkpoint(self._db_key(), head),
                head["id"],
            )
        )
        self._assert_tampered(
            "untrusted",
            f"the chain head checkpoint at position {head['sequence']} is signed "
            "with the database key ('db')",
        )

    def test_rewrite_with_the_database_key_is_untrusted(self):
        events = self._log(3)
        # The newest event: nothing after it to re-link with the keyring.
        self.Event._seal_pending()
        self.cr.execute(SQL("SELECT max(id) FROM audit_event"))
        target = self.Event.browse(self.cr.fetchone()[0])
        self.assertGreaterEqual(target.id, events[-1].id)
        db_key = self._db_key()
        self.cr.execute(
            SQL("UPDATE audit_event SET res_name = 'forged' WHERE id = %s", target.id)
        )
        self._resign(target.id, db_key, "db")
        head = self._relink(target.sequence, db_key)
        self._move_head(target.sequence, head)
        self._assert_tampered(
            "untrusted",
            f"event {target.id} (position {target.sequence}) is signed with the "
            "database key ('db')",
            target,
        )

    def test_forged_retention_anchor_and_deleted_prefix(self):
        events = self._log(4)
        seq, anchor_hash = events[1].sequence, events[1].chain_hash
        for variant in ("unsigned", "database key", "keyring id, database key"):
            with self.subTest(variant=variant), self.cr.savepoint() as savepoint:
                anchor = {
                    "kind": "anchor",
                    "sequence": seq,
                    "chain_hash": anchor_hash,
                    "purged_count": seq,
                    "cutoff": None,
                    "sealed_at": dt.datetime(2026, 1, 1),
                    "key_id": None if variant == "unsigned" else "db",
                }
                if variant.startswith("keyring"):
                    anchor["key_id"] = "kr:k1"
                mac = (
                    None
                    if variant == "unsigned"
                    else chain.sign_checkpoint(self._db_key(), anchor)
                )
                self.cr.execute(
                    SQL(
                        "INSERT INTO audit_checkpoint (kind, sequence, chain_hash, "
                        "purged_count, sealed_at, key_id, mac) "
                        "VALUES ('anchor', %s, %s, %s, %s, %s, %s)",
                        seq,
                        anchor["chain_hash"],
                        seq,
                        anchor["sealed_at"],
                        anchor["key_id"],
                        mac,
                    )
                )
                self.cr.execute(
                    SQL("DELETE FROM audit_event WHERE sequence <= %s", seq)
                )
                expected = {
                    "unsigned": ("forged", "is not signed"),
                    "database key": ("untrusted", "is signed with the database key"),
                    "keyring id, database key": (
                        "forged",
                        "does not match its signature",
                    ),
                }[variant]
                self._assert_tampered(
                    expected[0],
                    f"the retention anchor at position {seq} {expected[1]}",
                )
                savepoint.rollback()
                self.env.invalidate_all()

    def test_forged_adoption_checkpoint(self):
        self._log(2)
        self.cr.execute(
            SQL(
                "INSERT INTO audit_checkpoint (kind, sequence, chain_hash, key_id, "
                "mac) VALUES ('adopt', 999, %s, 'kr:k1', %s)",
                "0" * 64,
                "f" * 64,
            )
        )
        self._assert_tampered(
            "forged",
            "the keyring adoption checkpoint at position 999 does not match its "
            "signature",
        )

    def test_delete_newest_and_move_head_back_named_by_witness(self):
        self._log(3)
        self.cr.execute(SQL("SELECT * FROM audit_checkpoint WHERE kind = 'head'"))
        old_head = self.cr.dictfetchone()
        newer = self._log(2)
        newest = witness.latest_head(None, self.cr.dbname, directory=self.witness_dir)
        self.assertGreater(newest["sequence"], old_head["sequence"])
        # Truncate the newest events and put back the old (validly signed)
        # head row: the database is now exactly as it was.
        self.cr.execute(
            SQL("DELETE FROM audit_event WHERE sequence > %s", old_head["sequence"])
        )
        self.cr.execute(
            SQL(
                "UPDATE audit_checkpoint SET sequence = %s, chain_hash = %s, "
                "sealed_at = %s, key_id = %s, mac = %s WHERE id = %s",
                old_head["sequence"],
                old_head["chain_hash"],
                old_head["sealed_at"],
                old_head["key_id"],
                old_head["mac"],
                old_head["id"],
            )
        )
        self.assertFalse(self.Event.search([("id", "in", newer.ids)]))
        self._assert_tampered(
            "truncated",
            f"events after position {old_head['sequence']}, sealed at "
            f"{newest['sealed_at']} UTC, are missing",
        )

    def test_without_witness_the_truncation_is_only_warned_about(self):
        # The limit the witness exists for: the same attack, no witness file.
        patcher = patch.dict(config.options, {"audit_witness_dir": ""})
        patcher.start()
        self.addCleanup(patcher.stop)
        self._log(3)
        self.cr.execute(SQL("SELECT * FROM audit_checkpoint WHERE kind = 'head'"))
        old_head = self.cr.dictfetchone()
        self._log(2)
        self.cr.execute(
            SQL("DELETE FROM audit_event WHERE sequence > %s", old_head["sequence"])
        )
        self.cr.execute(
            SQL(
                "UPDATE audit_checkpoint SET sequence = %s, chain_hash = %s, "
                "sealed_at = %s, mac = %s WHERE id = %s",
                old_head["sequence"],
                old_head["chain_hash"],
                old_head["sealed_at"],
                old_head["mac"],
                old_head["id"],
            )
        )
        report = self._verify_ok()
        self.assertIsNone(report["witness"])

    @mute_logger("odoo.addons.audit_export.models.audit_checkpoint")
    def test_rollback_and_regrow_named_by_witness(self):
        self._log(3)
        cut = self.Event._chain_head()[0]
        self._log(2)
        witnessed = witness.latest_head(
            None, self.cr.dbname, directory=self.witness_dir
        )
        self.cr.execute(SQL("DELETE FROM audit_event WHERE sequence > %s", cut))
        self.cr.execute(SQL("DELETE FROM audit_checkpoint WHERE kind = 'head'"))
        # The server goes on: new events are sealed after the cut, past the
        # witnessed position, and the newest witness line matches them.
        for i in range(4):
            self.Event.log_event("login", res_name=f"after {i}")
        self.Event._seal_pending()
        self.assertGreater(self.Event._chain_head()[0], witnessed["sequence"])
        self._assert_tampered(
            "rolled_back",
            f"events after position {cut}, sealed at {witnessed['sealed_at']} UTC, "
            "are missing or were replaced",
        )

    def test_forged_witness_line(self):
        self._log(2)
        path = self._witness_file()
        line = witness.latest_head(None, self.cr.dbname, directory=self.witness_dir)
        forged = dict(line, sequence=line["sequence"] + 50)
        witness.append(path, forged)
        self._assert_tampered("forged", "of the external witness")

    def test_witness_file_is_private_and_one_line_per_seal(self):
        self._log(1)
        self._log(1)
        path = self._witness_file()
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        records = witness.read(path)
        self.assertGreaterEqual(len(records), 2)
        key = self.Event._key_for("kr:k1")
        for record in records:
            self.assertEqual(record["kind"], "head")
            self.assertEqual(record["key_id"], "kr:k1")
            expected = chain.sign(key, witness.message(record))
            self.assertEqual(record["mac"], expected)
        self.assertEqual(records[-1]["sequence"], self.Event._chain_head()[0])


@tagged("post_install", "-at_install")
class TestChainRetention(ChainCase):
    def _purge_scenario(self):
        self.env["ir.config_parameter"].sudo().set_param(
            "audit_export.retention_days", "30"
        )
        start = dt.datetime.now() + dt.timedelta(days=400)
        with freeze_time(start):
            old = self._log(3)
        with freeze_time(start + dt.timedelta(days=60)):
            recent = self._log(2)
            purged = self.Event._cron_purge()
        return old, recent, purged

    def test_purge_leaves_a_signed_anchor_and_a_verifying_chain(self):
        old, recent, purged = self._purge_scenario()
        self.assertGreaterEqual(purged, 3)
        self.assertFalse(self.Event.search([("id", "in", old.ids)]))
        anchor = self.Checkpoint.search([("kind", "=", "anchor")], limit=1)
        self.assertEqual(anchor.key_id, "kr:k1")
        self.assertEqual(len(anchor.mac), 64)
        report = self._verify_ok()
        self.assertEqual(report["anchor_sequence"], anchor.sequence)
        self.assertEqual(report["witness"]["sequence"], report["head_sequence"])
        # A forged, later anchor that hides more events is still named.
        seq = recent[0].sequence
        self.cr.execute(
            SQL(
                "INSERT INTO audit_checkpoint (kind, sequence, chain_hash, key_id, "
                "mac) VALUES ('anchor', %s, %s, %s, %s)",
                seq,
                recent[0].chain_hash,
                anchor.key_id,
                anchor.mac,
            )
        )
        self.cr.execute(SQL("DELETE FROM audit_event WHERE sequence <= %s", seq))
        self._assert_tampered(
            "forged",
            f"the retention anchor at position {seq} does not match its signature",
        )

    @mute_logger("odoo.addons.audit_export.models.audit_event")
    def test_purge_refuses_to_delete_tampered_evidence(self):
        self.env["ir.config_parameter"].sudo().set_param(
            "audit_export.retention_days", "30"
        )
        start = dt.datetime.now() + dt.timedelta(days=400)
        with freeze_time(start):
            old = self._log(3)
        self.cr.execute(
            SQL("UPDATE audit_event SET res_name = 'x' WHERE id = %s", old[0].id)
        )
        with freeze_time(start + dt.timedelta(days=60)):
            self.assertEqual(self.Event._cron_purge(), 0)
        self.assertEqual(len(self.Event.search([("id", "in", old.ids)])), 3)
        self.assertFalse(self.Checkpoint.search([("kind", "=", "anchor")]))
        failure = self.Event.search(
            [("action", "=", "purge"), ("result", "=", "failure")], limit=1
        )
        self.assertIn(f"event {old[0].id} ", failure.message)


@tagged("post_install", "-at_install")
class TestChainRedaction(ChainCase):
    def setUp(self):
        super().setUp()
        self.env["audit.rule"].create(
            {"model_id": self.env.ref("base.model_res_partner").id}
        )
        self.admin = new_test_user(
            self.env,
            login="h_chain_admin",
            groups="base.group_user,base.group_system,base.group_partner_manager",
        )
        self.auditor = new_test_user(
            self.env,
            login="h_chain_auditor",
            groups="base.group_user,audit_export.audit_group_auditor",
        )

    def _subject_events(self):
        """Real captured events about the subject, and one that is not."""
        Partner = self.env["res.partner"].with_user(self.admin)
        partner = Partner.create(
            {"name": SUBJECT_NAME, "email": SUBJECT_EMAIL, "street": "1 Elm St"}
        )
        partner.write({"phone": "+1 555 0100", "street": "2 Oak Ave"})
        user = new_test_user(self.env, login=SUBJECT_EMAIL, name=SUBJECT_NAME)
        self.Event.with_user(user).log_event(
            "download", res_model="ir.attachment", res_name="report.pdf"
        )
        other = self.Event.log_event(
            "export",
            res_model="res.partner",
            res_name="Customers",
            details={"recipient": SUBJECT_EMAIL, "rows": 12},
        )
        bystander = self.Event.log_event(
            "backup", res_model="db.backup.run", res_name="nightly"
        )
        self.Event._seal_pending()
        return partner, user, other, bystander

    def _rows_mentioning(self, *needles):
        self.cr.execute(
            SQL(
                "SELECT id, row_to_json(e)::text FROM audit_event e WHERE %s",
                SQL(" OR ").join(
                    SQL("row_to_json(e)::text ILIKE %s", f"%{needle}%")
                    for needle in needles
                ),
            )
        )
        return dict(self.cr.fetchall())

    def test_erasure_removes_values_and_the_chain_still_verifies(self):
        partner, user, other, bystander = self._subject_events()
        self._verify_ok()
        before = self._rows_mentioning("jane", "555 0100", "Oak Ave")
        self.assertGreaterEqual(len(before), 4)
        count = self.Event._redact_subject(
            {
                "emails": [SUBJECT_EMAIL],
                "logins": [SUBJECT_EMAIL],
                "names": [SUBJECT_NAME],
                "partner_ids": [partner.id, user.partner_id.id],
                "user_ids": [user.id],
            },
            REASON,
        )
        self.assertGreaterEqual(count, len(before))
        # Gone from every column of every row, salts included.
        self.assertEqual(self._rows_mentioning("jane", "555 0100", "Oak Ave"), {})
        report = self._verify_ok()
        self.assertGreaterEqual(report["redacted"], count)
        erased = chain.erased(REASON)
        self.env.invalidate_all()
        actor_event = self.Event.search(
            [("user_uid", "=", user.id), ("action", "=", "download")]
        )
        self.assertEqual(actor_event.login, erased)
        self.assertEqual(actor_event.user_name, erased)
        self.assertEqual(actor_event.res_name, "report.pdf")
        # Only the value that named the subject, in an unrelated event.
        self.assertEqual(other.details, {"recipient": erased, "rows": 12})
        self.assertEqual(other.res_name, "Customers")
        update = self.Event.search(
            [
                ("res_model", "=", "res.partner"),
                ("res_id", "=", partner.id),
                ("action", "=", "update"),
            ]
        ).filtered(lambda e: "street" in e.details["fields"])
        self.assertEqual(update.res_name, erased)
        self.assertEqual(update.details["fields"]["street"], erased)
        self.assertEqual(update.login, "h_chain_admin")
        self.assertEqual(bystander.read(["res_name"])[0]["res_name"], "nightly")
        self.assertFalse(bystander.redactions)
        # Who, when, which request: signed, and shown to the auditor.
        record = update.redactions[0]
        self.assertEqual(
            (record["reason"], record["uid"], record["key_id"]),
            (REASON, self.env.uid, "kr:k1"),
        )
        note = update.with_user(self.auditor).redaction_note
        self.assertIn(f"erased under {REASON}", note)
        self.assertTrue(
            self.Event.search(
                [("action", "=", "dsr"), ("res_name", "=", "Audit log erasure")]
            )
        )
        # Nothing left to erase the second time.
        self.assertEqual(
            self.Event._redact_subject({"emails": [SUBJECT_EMAIL]}, REASON), 0
        )

    def test_erasure_outside_the_api_is_named(self):
        _partner, user, _other, _bystander = self._subject_events()
        event = self.Event.search(
            [("user_uid", "=", user.id), ("action", "=", "download")]
        )
        row = self._row(event.id)
        salts = dict(row["salts"])
        commitment = chain.commit(salts.pop("login"), "login", row["login"])
        record = {
            "reason": "cover-up",
            "uid": 1,
            "at": "2026-01-01 00:00:00",
            "key_id": "db",
            "slots": {"login": commitment},
        }
        record["mac"] = chain.sign_redaction(self._db_key(), row["uuid"], record)
        self.cr.execute(
            SQL(
                "UPDATE audit_event SET login = %s, salts = %s, redactions = %s "
                "WHERE id = %s",
                chain.erased("cover-up"),
                json.dumps(salts),
                json.dumps([record]),
                event.id,
            )
        )
        self._assert_tampered(
            "altered", "has an erasure record signed with the key 'db'", event
        )

    def test_changing_an_erased_value_is_named(self):
        _partner, user, _other, _bystander = self._subject_events()
        self.Event._redact_subject({"user_ids": [user.id]}, REASON)
        event = self.Event.search(
            [("user_uid", "=", user.id), ("action", "=", "download")]
        )
        self.cr.execute(
            SQL("UPDATE audit_event SET login = 'someone.else' WHERE id = %s", event.id)
        )
        self._assert_tampered(
            "altered", "its erased value 'login' was changed after the erasure", event
        )

    def test_reason_is_required(self):
        with self.assertRaises(UserError):
            self.Event._redact_subject({"emails": [SUBJECT_EMAIL]}, " ")


@tagged("post_install", "-at_install")
class TestLegacyChain(ChainCase):
    """Events of the previous format (unkeyed links, database key)."""

    def _legacy_events(self, n=3):
        db_key = self._db_key()
        prev = self.Event._chain_head()[1]
        seq = self.Event._chain_head()[0]
        ids = []
        for i in range(n):
            seq += 1
            values = {
                "uuid": f"legacy-{i}",
                "timestamp": dt.datetime(2026, 1, 1, 0, 0, i),
                "action": "login",
                "result": "success",
                "login": f"legacy{i}@example.com",
                "user_name": f"Legacy {i}",
            }
            event_digest = chain.digest(db_key, values)
            prev = chain.link(prev, seq, event_digest)
            self.cr.execute(
                SQL(
                    "INSERT INTO audit_event (uuid, timestamp, action, result, login, "
                    "user_name, key_id, digest, sequence, chain_hash) VALUES "
                    "(%s, %s, %s, %s, %s, %s, 'db', %s, %s, %s) RETURNING id",
                    values["uuid"],
                    values["timestamp"],
                    values["action"],
                    values["result"],
                    values["login"],
                    values["user_name"],
                    event_digest,
                    seq,
                    prev,
                )
            )
            ids.append(self.cr.fetchone()[0])
        # The head of the previous version: an unsigned row.
        self.cr.execute(SQL("DELETE FROM audit_checkpoint"))
        self.cr.execute(
            SQL(
                "INSERT INTO audit_checkpoint (kind, sequence, chain_hash) "
                "VALUES ('head', %s, %s)",
                seq,
                prev,
            )
        )
        return self.Event.browse(ids)

    def test_legacy_events_verify_and_are_pinned_by_the_keyring(self):
        legacy = self._legacy_events()
        report = self._verify_ok()
        adopt = self.Checkpoint.search([("kind", "=", "adopt")])
        self.assertEqual(adopt.sequence, legacy[-1].sequence)
        self.assertEqual(adopt.key_id, "kr:k1")
        self.assertEqual(report["before_keyring"], 3)
        self.assertEqual(report["legacy"], 3)
        self.assertTrue(
            any("3 events use the legacy format" in w for w in report["warnings"])
        )
        self.assertTrue(
            any("before the server keyring" in w for w in report["warnings"])
        )
        new = self._log(2)
        self.assertEqual(set(new.mapped("chain_version")), {2})
        # Rewriting the legacy prefix with the database key is now named.
        db_key = self._db_key()
        target = legacy[1]
        self.cr.execute(
            SQL("UPDATE audit_event SET login = 'forged' WHERE id = %s", target.id)
        )
        row = self._row(target.id)
        self.cr.execute(
            SQL(
                "UPDATE audit_event SET digest = %s WHERE id = %s",
                chain.digest(db_key, row),
                target.id,
            )
        )
        prev = self._hash_at(target.sequence - 1)
        for event_id, seq, digest, _key_id in self._chain_rows(target.sequence):
            if seq > adopt.sequence:
                break
            prev = chain.link(prev, seq, digest)
            self.cr.execute(
                SQL(
                    "UPDATE audit_event SET chain_hash = %s WHERE id = %s",
                    prev,
                    event_id,
                )
            )
        self._assert_tampered(
            "altered",
            "the events recorded before the server keyring was adopted were changed",
            legacy[-1],
        )

    def test_legacy_events_can_be_erased(self):
        legacy = self._legacy_events()
        self._verify_ok()
        count = self.Event._redact_subject({"logins": ["legacy1@example.com"]}, REASON)
        self.assertEqual(count, 1)
        self.assertEqual(self._rows_mentioning_legacy(), 2)
        self._verify_ok()
        self.assertEqual(self._row(legacy[1].id)["login"], chain.erased(REASON))

    def _rows_mentioning_legacy(self):
        self.cr.execute(
            SQL(
                "SELECT count(*) FROM audit_event e "
                "WHERE row_to_json(e)::text ILIKE %s",
                "%legacy_@example.com%",
            )
        )
        return self.cr.fetchone()[0]


@tagged("post_install", "-at_install")
class TestWithoutKeyring(ChainCase):
    with_keyring = False

    def test_verification_says_it_is_only_evident_without_sql_access(self):
        events = self._log(2)
        self.assertEqual(set(events.mapped("key_id")), {"db"})
        report = self._verify_ok()
        self.assertFalse(report["keyring"])
        self.assertIn(chain.NO_KEYRING_WARNING, report["warnings"])
        action = self.Event.action_verify_integrity()
        result = self.env["audit.verify.wizard"].browse(action["res_id"])
        self.assertEqual(result.state, "intact")
        self.assertFalse(result.keyring)
        self.assertIn(
            "only tamper-evident against people without SQL access", result.warnings
        )
        self.assertFalse(events[0].signed_with_keyring)


@tagged("post_install", "-at_install")
class TestCarryOver(ChainCase):
    def test_events_since_the_archive_survive_the_restore(self):
        self._log(2)
        archive_time = dt.datetime.now().replace(microsecond=0)

        class Restored(Exception):
            pass

        # The "archive": this savepoint. The live database goes on...
        with self.assertRaises(Restored), self.cr.savepoint():
            later = self._log(3)
            uuids = later.mapped("uuid")
            exported = self.Event._export_since(archive_time)
            raise Restored
        # ... and the restore brings the archive's state back.
        self.env.invalidate_all()
        self.assertFalse(self.Event.search([("uuid", "in", uuids)]))
        summary = self.Event._carry_over(exported)
        self.assertEqual(summary["carried"], 3)
        self.assertEqual(summary["rejected"], 0)
        self.env["audit.checkpoint"]._witness_rebase("restore of the archive")
        carried = self.Event.search([("uuid", "in", uuids)])
        self.assertEqual(len(carried), 3)
        self.assertTrue(all(e.origin.startswith("carried over from") for e in carried))
        self.assertEqual(
            sorted(carried.mapped("res_name")), ["backup 0", "backup 1", "backup 2"]
        )
        self._verify_ok()
        # Carrying the same export twice adds nothing.
        self.assertEqual(self.Event._carry_over(exported)["carried"], 0)

    def test_tampered_export_refused(self):
        self._log(1)
        exported = self.Event._export_since(dt.datetime(2000, 1, 1))
        bundle = json.loads(exported)
        bundle["events"][0]["res_name"] = "forged"
        with self.assertRaises(UserError):
            self.Event._carry_over(json.dumps(bundle).encode())

    def test_restore_hook_checks_the_archived_head_and_rebases_the_witness(self):
        self._log(2)
        head = witness.latest_head(None, self.cr.dbname, directory=self.witness_dir)
        self._log(2)
        info = {
            "target": "production",
            "archive_name": "db1_manual_20260101T000000Z.tar.zst.enc",
            "archive_created_at": None,
            "audit_head": head,
        }
        self.Event._on_database_restored(info)
        self.assertFalse(
            self.Event.search([("res_name", "=", "Audit chain of the archive")])
        )
        records = witness.read(self._witness_file())
        rebase = [r for r in records if r["kind"] == witness.REBASE]
        self.assertEqual(len(rebase), 1)
        self.assertIn("db1_manual_20260101T000000Z", rebase[0]["reason"])
        self._verify_ok()
        # A head that this chain does not hold (or a forged one) is reported.
        for forged, text in (
            (dict(head, sequence=head["sequence"] + 1), "does not match its signature"),
            (dict(head, key_id="kr:nope"), "names an unavailable key"),
        ):
            self.Event._on_database_restored(dict(info, audit_head=forged))
            failure = self.Event.search(
                [("res_name", "=", "Audit chain of the archive")], limit=1
            )
            self.assertIn(text, failure.message)


@tagged("post_install", "-at_install")
class TestChainScreens(HttpCase):
    def test_auditor_verifies_and_sees_the_erasure(self):
        new_test_user(
            self.env,
            login="h_chain_tour_auditor",
            password="h_chain_tour_auditor",
            groups="base.group_user,audit_export.audit_group_auditor",
        )
        Event = self.env["audit.event"]
        Event.log_event("export", res_model="res.partner", res_name="Jane Tour")
        self.assertEqual(
            Event._redact_subject({"names": ["Jane Tour"]}, "DSR/2026/0009"), 1
        )
        self.start_tour(
            "/odoo/action-audit_export.audit_event_action",
            "audit_export_verify_tour",
            login="h_chain_tour_auditor",
        )
