import io
import json
import os
import stat
import zipfile

from odoo.exceptions import AccessError, UserError
from odoo.tests import Form, new_test_user, tagged

from ..lib.erasure_register import digest
from .common import (
    BANK_ACCOUNT,
    NO_MAIL,
    SUBJECT_EMAIL,
    DsrCase,
    make_verified_request,
)


@tagged("post_install", "-at_install")
class TestDsrErasure(DsrCase):
    def _erasure_request(self):
        request = make_verified_request(self.officer_env(), "erasure")
        request.action_discover()
        return request

    def _audit_refusals_in_test_transaction(self):
        """A refusal is logged on a cursor of its own: in test mode that
        cursor shares the test transaction, so the event can be checked."""
        self.registry.enter_test_mode(self.cr)
        self.addCleanup(self.registry.leave_test_mode)

    def _refused(self, request, typed_email=SUBJECT_EMAIL):
        """Run the erasure, expect its refusal; return the message. (Not
        assertRaises: its savepoint would also roll back the refusal's audit
        event, written on the test transaction in test mode.)"""
        try:
            request._erase(typed_email)
        except UserError as exc:
            return str(exc)
        self.fail("the erasure was not refused")

    def _package_document(self, request):
        request._generate_package()
        with zipfile.ZipFile(io.BytesIO(request._read_package())) as archive:
            return json.loads(archive.read("data.json"))

    def test_gate_wrong_email_refused_nothing_erased(self):
        # the refusal is logged on a cursor of its own: in test mode that cursor
        # shares the test transaction, so the event can be checked here
        self.registry.enter_test_mode(self.cr)
        self.addCleanup(self.registry.leave_test_mode)
        request = self._erasure_request()
        wizard = self.officer_env()["dsr.erasure.wizard"].create(
            {
                "request_id": request.id,
                "typed_email": "jane.subject@example.org",
            }
        )
        with self.assertRaises(UserError):
            wizard.action_confirm()
        # another address (one letter differs) is refused by the request too
        try:
            request._erase(SUBJECT_EMAIL.replace("Subject", "Subjekt"))
        except UserError as exc:
            self.assertIn("does not match", str(exc))
        else:
            self.fail("the erasure gate accepted a different email")
        # the refusal is in the audit trail even though the transaction of
        # the refused call is rolled back (it is logged on its own cursor)
        self.assertEqual(self.failure_steps(request), ["erasure_refused"])
        self.assertTrue(self.subject["partner"].exists())
        self.assertEqual(self.subject["partner"].name, "Jane Subject")
        self.assertEqual(request.state, "in_progress")
        self.assertNotIn(
            request.name,
            [e["request_ref"] for e in request._erasure_register().entries()],
        )

    def test_gate_compares_normalised_emails(self):
        """The gate compares emails as the discovery does: trimmed, any case
        (the request was typed "Jane.Subject@Example.com")."""
        request = self._erasure_request()
        wizard = self.officer_env()["dsr.erasure.wizard"].create(
            {"request_id": request.id, "typed_email": f"  {SUBJECT_EMAIL.upper()} "}
        )
        self.assertEqual(
            wizard.typed_sha256,
            self.officer_env()["dsr.erasure.wizard"]
            .create({"request_id": request.id, "typed_email": SUBJECT_EMAIL.lower()})
            .typed_sha256,
        )
        wizard.action_confirm()
        self.assertEqual(request.state, "done")
        self.assertFalse(self.subject["invoice_address"].exists())
        # the wizards (what was typed in them) went with the subject
        self.assertFalse(
            self.env["dsr.erasure.wizard"].search([("request_id", "=", request.id)])
        )

    def test_erasure_requires_verification(self):
        request = self.officer_env()["dsr.request"].create(
            {
                "subject_email": SUBJECT_EMAIL,
                "request_type": "erasure",
            }
        )
        with self.assertRaises(UserError):
            request._erase(SUBJECT_EMAIL)
        self.assertTrue(self.subject["partner"].exists())

    def test_erasure_plan_and_result(self):
        s = self.subject
        request = self._erasure_request()
        plan = {(ln.res_model, ln.res_id): ln.planned_action for ln in request.line_ids}
        # the contact of the subject's user stays (the archived account keeps
        # it): the plan says so, as Odoo archives bank accounts
        self.assertEqual(plan[("res.partner", s["partner"].id)], "anonymize")
        self.assertEqual(plan[("res.partner", s["invoice_address"].id)], "delete")
        self.assertEqual(plan[("res.users", s["user"].id)], "anonymize")
        self.assertEqual(plan[("mail.message", s["addressed"].id)], "anonymize")
        self.assertEqual(plan[("mail.message", s["written"].id)], "delete")
        self.assertEqual(plan[("res.partner.bank", s["bank"].id)], "anonymize")
        evidence = request.verification_attachment_ids
        self.assertTrue(evidence)
        line_keys = set(plan)

        wizard = Form(
            self.officer_env()["dsr.erasure.wizard"].with_context(
                default_request_id=request.id
            )
        )
        self.assertEqual(
            wizard.delete_count + wizard.anonymize_count + wizard.retain_count,
            len(request.line_ids),
        )
        dialog = {
            "delete": wizard.delete_count,
            "anonymize": wizard.anonymize_count,
            "retain": wizard.retain_count,
        }
        wizard.typed_email = f" {SUBJECT_EMAIL} "
        wizard.save().action_confirm()

        notes = {
            (ln.res_model, ln.res_id): (ln.result, ln.result_note)
            for ln in request.line_ids
        }
        # deleted
        for key in (
            "invoice_address",
            "delivery_address",
            "passport",
            "photo",
            "own_note",
            "written",
        ):
            self.assertFalse(
                s[key].exists(), (key, notes.get((s[key]._name, s[key].id)))
            )
        self.assertFalse(evidence.exists())
        # Odoo archives bank accounts instead of deleting them: masked instead
        bank = s["bank"].with_context(active_test=False)
        self.assertEqual(bank.acc_number, "************6755")
        self.assertFalse(bank.active)
        self.assertEqual(notes[("res.partner.bank", bank.id)][0], "anonymized")
        self.assertFalse(
            self.env["mail.message"].search(
                [
                    ("model", "=", "res.partner"),
                    ("res_id", "=", s["partner"].id),
                ]
            )
        )
        self.assertFalse(
            self.env["mail.followers"].search([("partner_id", "=", s["partner"].id)])
        )
        # anonymised: the partner is still the (archived) user's partner
        partner = s["partner"].with_context(active_test=False)
        self.assertTrue(partner.exists())
        self.assertEqual(partner.name, f"Anonymized ({request.name})")
        self.assertFalse(
            partner.email or partner.phone or partner.street or partner.city
        )
        self.assertFalse(partner.active)
        user = s["user"].with_context(active_test=False)
        self.assertFalse(user.active)
        self.assertEqual(user.login, f"erased-{user.id}@erased.invalid")
        addressed = s["addressed"]
        self.assertTrue(addressed.exists())
        self.assertNotIn(partner, addressed.partner_ids)
        self.assertIn(s["other"], addressed.partner_ids)
        # the bystander is untouched
        self.assertEqual(s["other"].name, "Bob Bystander")
        self.assertEqual(s["other"].email, "bob@example.org")
        self.assertFalse(
            self.env["res.partner"]
            .with_context(active_test=False)
            .search([("email", "=ilike", SUBJECT_EMAIL)])
        )

        # the request keeps no personal data, only the digest
        self.assertEqual(request.state, "done")
        self.assertFalse(request.subject_email or request.subject_name)
        self.assertEqual(request.subject_email_sha256, digest(SUBJECT_EMAIL))
        self.assertFalse(any(request.line_ids.mapped("res_name")))
        results = {(ln.res_model, ln.res_id): ln.result for ln in request.line_ids}
        self.assertEqual(results[("res.partner", partner.id)], "anonymized")
        self.assertEqual(results[("res.partner", s["invoice_address"].id)], "deleted")
        self.assertEqual(results[("mail.message", s["addressed"].id)], "anonymized")
        self.assertEqual(results[("res.users", user.id)], "anonymized")
        self.assertNotIn("pending", results.values())

        # certificate: every record, signed, without the email; its figures
        # are the dialog's, and what was done is what was planned
        document = request._certificate_document()
        self.assertEqual(
            {key: value for key, value in dialog.items() if value},
            document["planned_counts"],
        )
        done = {"deleted": "delete", "anonymized": "anonymize", "retained": "retain"}
        self.assertEqual(
            {done[key]: value for key, value in document["counts"].items()},
            document["planned_counts"],
        )
        self.assertEqual(document["leftover_scan"]["result"], "no identifier left")
        self.assertEqual(
            {(r["model"], r["id"]) for r in document["records"]}, line_keys
        )
        self.assertTrue(all(r["reason"] for r in document["records"]))
        self.assertEqual(document["subject_email_sha256"], digest(SUBJECT_EMAIL))
        self.assertTrue(request._verify_certificate())
        html = self.b64(request.with_context(bin_size=False).certificate_html).decode()
        for model, res_id in line_keys:
            self.assertIn(f"<td>{model}</td>", html)
            self.assertIn(f"<td>{res_id}</td>", html)
        for text in (json.dumps(document), html):
            self.assertNotIn("jane", text.lower())

        # the register outside the database
        register = request._erasure_register()
        self.assertEqual(stat.S_IMODE(os.stat(register.path).st_mode), 0o600)
        entries = [e for e in register.entries() if e["request_ref"] == request.name]
        self.assertEqual(len(entries), 1)
        self.assertEqual(entries[0]["erasure_id"], request.erasure_id)
        self.assertEqual(entries[0]["request_ref"], request.name)
        self.assertEqual(entries[0]["email_sha256"], digest(SUBJECT_EMAIL))
        self.assertEqual(
            {p["id"] for p in entries[0]["partners"]},
            {partner.id, s["invoice_address"].id, s["delivery_address"].id},
        )
        with open(register.path, encoding="utf-8") as handle:
            self.assertNotIn("jane", handle.read().lower())

        steps = [
            (e.details or {}).get("step")
            for e in self.env["audit.event"]
            .sudo()
            .search(
                [
                    ("res_model", "=", "dsr.request"),
                    ("res_id", "=", request.id),
                ]
            )
        ]
        self.assertIn("erased", steps)

    def test_posted_invoice_is_retained_and_anonymised(self):
        if "account.move" not in self.env:
            self.skipTest("accounting (account) is not installed")
        env = self.env(context=dict(self.env.context, **NO_MAIL))
        partner = self.subject["partner"]
        invoice = env["account.move"].create(
            {
                "move_type": "out_invoice",
                "partner_id": partner.id,
                "invoice_line_ids": [
                    (
                        0,
                        0,
                        {
                            "name": "Repair",
                            "quantity": 1,
                            "price_unit": 100.0,
                        },
                    )
                ],
            }
        )
        invoice.action_post()
        draft = env["account.move"].create(
            {
                "move_type": "out_invoice",
                "partner_id": partner.id,
                "invoice_line_ids": [
                    (
                        0,
                        0,
                        {
                            "name": "Quote",
                            "quantity": 1,
                            "price_unit": 10.0,
                        },
                    )
                ],
            }
        )
        request = self._erasure_request()
        lines = {(ln.res_model, ln.res_id): ln for ln in request.line_ids}
        self.assertEqual(lines[("account.move", invoice.id)].planned_action, "retain")
        self.assertIn("Art. 17(3)(b)", lines[("account.move", invoice.id)].reason)
        self.assertEqual(lines[("account.move", draft.id)].planned_action, "delete")
        # the export respects what the officer may read: without accounting
        # rights the invoice is listed as withheld, with them it is exported
        document = self._package_document(request)
        self.assertIn(
            {"model": "account.move", "id": invoice.id},
            [{"model": w["model"], "id": w["id"]} for w in document["withheld"]],
        )
        self.officer.groups_id = [(4, self.env.ref("account.group_account_invoice").id)]
        document = self._package_document(request)
        self.assertEqual(
            {m["id"] for m in document["invoices"]["account.move"]},
            {invoice.id, draft.id},
        )
        self.assertEqual(document["withheld"], [])

        request._erase(SUBJECT_EMAIL)
        self.assertTrue(invoice.exists())
        self.assertEqual(invoice.state, "posted")
        self.assertEqual(invoice.partner_id, partner)
        self.assertEqual(
            partner.with_context(active_test=False).name, f"Anonymized ({request.name})"
        )
        self.assertNotIn("Jane", invoice.invoice_partner_display_name)
        self.assertFalse(draft.exists())
        document = request._certificate_document()
        retained = [
            r
            for r in document["records"]
            if (r["model"], r["id"]) == ("account.move", invoice.id)
        ]
        self.assertEqual(retained[0]["result"], "retained")
        self.assertIn("Art. 17(3)(b)", retained[0]["reason"])

    def test_officer_keeps_a_record_untouched(self):
        s = self.subject
        request = self._erasure_request()
        line = request.line_ids.filtered(
            lambda ln: (ln.res_model, ln.res_id) == ("ir.attachment", s["passport"].id)
        )
        self.assertEqual(line.planned_action, "delete")
        # auditors read the plan, they do not change it
        with self.assertRaises(AccessError):
            line.with_user(self.auditor).action_keep()
        with self.assertRaises(AccessError):
            line.write({"planned_action": "retain"})
        line.action_keep()
        self.assertEqual(line.planned_action, "retain")
        self.assertIn(self.officer.name, line.reason)
        self.assertTrue(line._seal_valid())
        request._erase(SUBJECT_EMAIL)
        self.assertEqual(line.result, "retained")
        self.assertTrue(s["passport"].exists())
        self.assertEqual(s["passport"].raw, b"%PDF-1.4 Jane's passport scan")
        self.assertFalse(s["invoice_address"].exists())
        document = request._certificate_document()
        kept = [
            r
            for r in document["records"]
            if (r["model"], r["id"]) == ("ir.attachment", s["passport"].id)
        ]
        self.assertEqual(kept[0]["result"], "retained")
        # closed: the plan cannot change any more
        with self.assertRaises(UserError):
            request.line_ids[:1].action_keep()

    def test_records_found_after_discovery_refuse_the_erasure(self):
        self._audit_refusals_in_test_transaction()
        request = self._erasure_request()
        env = self.env(context=dict(self.env.context, **NO_MAIL))
        late = env["mail.message"].create(
            {
                "model": "res.partner",
                "res_id": self.subject["other"].id,
                "body": "Jane wrote again",
                "author_id": self.subject["partner"].id,
                "message_type": "comment",
            }
        )
        message = self._refused(request)
        self.assertIn("not listed", message)
        self.assertIn(f"mail.message #{late.id}", message)
        self.assertIn("nothing was erased", message)
        self.assertEqual(self.subject["partner"].name, "Jane Subject")
        self.assertTrue(self.subject["invoice_address"].exists())
        self.assertEqual(request.state, "in_progress")
        self.assertEqual(self.failure_steps(request), ["erasure_refused"])
        # after a new discovery the officer reviewed them: the erasure runs
        request.action_discover()
        request._erase(SUBJECT_EMAIL)
        self.assertFalse(late.exists())
        self.assertEqual(request.state, "done")

    def test_changed_plan_refuses_the_erasure(self):
        self._audit_refusals_in_test_transaction()
        request = self._erasure_request()
        passport = self.subject["passport"]
        line = request.line_ids.filtered(
            lambda ln: (ln.res_model, ln.res_id) == ("ir.attachment", passport.id)
        )
        self.assertEqual(line.planned_action, "delete")
        # sealed by the server but for another plan than the discovery's now
        line.sudo().write(
            {
                "planned_action": "anonymize",
                "seal": line._seal_value(
                    request.id, line.res_model, line.res_id, line.category, "anonymize"
                ),
            }
        )
        message = self._refused(request)
        self.assertIn(f"ir.attachment #{passport.id}", message)
        self.assertIn("plan changed", message)
        self.assertEqual(self.failure_steps(request), ["erasure_refused"])
        self.assertEqual(self.subject["bank"].acc_number, BANK_ACCOUNT)
        self.assertEqual(passport.raw, b"%PDF-1.4 Jane's passport scan")
        self.assertEqual(self.subject["partner"].name, "Jane Subject")

    def test_an_administrator_is_never_the_erased_subject(self):
        self._audit_refusals_in_test_transaction()
        env = self.env(context=dict(self.env.context, **NO_MAIL))
        admin = new_test_user(
            env,
            login="dsr_admin_subject",
            groups="base.group_system",
            email="admin.subject@example.com",
        )
        admin.partner_id.email = SUBJECT_EMAIL
        note = admin.partner_id.message_post(
            body="about the admin",
            message_type="comment",
            subtype_xmlid="mail.mt_note",
        )
        request = self._erasure_request()
        lines = {(ln.res_model, ln.res_id): ln for ln in request.line_ids}
        self.assertEqual(lines[("res.users", admin.id)].planned_action, "retain")
        self.assertEqual(
            lines[("res.partner", admin.partner_id.id)].planned_action, "retain"
        )
        message = self._refused(request)
        self.assertIn(f"res.partner #{admin.partner_id.id}", message)
        self.assertIn("dsr_admin_subject", message)
        self.assertIn("nothing was erased", message)
        self.assertTrue(admin.active)
        self.assertEqual(admin.login, "dsr_admin_subject")
        self.assertEqual(admin.partner_id.email, SUBJECT_EMAIL)
        self.assertTrue(note.exists())
        self.assertEqual(self.subject["partner"].name, "Jane Subject")

    def test_configuration_records_are_never_erased(self):
        env = self.env(context=dict(self.env.context, **NO_MAIL))
        partner = self.subject["partner"]
        action = env["ir.actions.server"].create(
            {
                "name": "Add Jane as follower",
                "model_id": env.ref("base.model_res_partner").id,
                "state": "followers",
                "partner_ids": [(6, 0, partner.ids)],
            }
        )
        request = self._erasure_request()
        lines = {(ln.res_model, ln.res_id): ln for ln in request.line_ids}
        action_line = lines[("ir.actions.server", action.id)]
        self.assertEqual(action_line.planned_action, "retain")
        self.assertIn("configuration", action_line.reason)
        request._erase(SUBJECT_EMAIL)
        self.assertEqual(request.state, "done")
        self.assertTrue(action.exists())
        self.assertEqual(action.with_context(active_test=False).partner_ids, partner)
        self.assertEqual(action_line.result, "retained")
        self.assertFalse(self.subject["invoice_address"].exists())

    def test_erasure_sends_no_security_update(self):
        """Changing the login of the erased user sends no "Security Update"
        email to them; only a mark the erasure sets on the cursor does that,
        for the users it names (a context key a client could send does not)."""
        user = self.subject["user"].sudo()
        other = self.outsider.sudo()
        mails = self.env["mail.mail"].sudo()
        before = mails.search([]).ids
        with self.env["dsr.erasure"]._running([user.id]):
            user.write({"login": f"erased-{user.id}@erased.invalid"})
            other.write({"login": "dsr_outsider_renamed"})
        sent = mails.search([("id", "not in", before)])
        self.assertEqual(len(sent), 1)
        self.assertEqual(sent.subject, "Security Update: Login Changed")
        self.assertIn(other.email, sent.email_to)
        # outside an erasure, or with a context key, the user is told
        user.with_context(gdpr_dsr_erasure=True, running_erasure=True).write(
            {"login": "jane.portal.again"}
        )
        told = mails.search([("id", "not in", before + sent.ids)])
        self.assertEqual(len(told), 1)
        self.assertIn(SUBJECT_EMAIL.strip().lower(), told.email_to.lower())

    def test_scan_exclusions_are_not_read_and_are_listed(self):
        """A column excluded from the leftover scan (scope "scan") is not
        read nor changed, and the certificate says so; an exclusion of the
        discovery only changes nothing for the scan."""
        other = self.subject["other"].with_context(**NO_MAIL)
        other.write(
            {"comment": "<p>Referred by Jane Subject</p>", "function": "jane subject"}
        )
        exclusions = self.env["dsr.discovery.exclusion"]
        exclusions.create(
            {
                "model_name": "res.partner",
                "field_name": "comment",
                "scope": "scan",
                "reason": "Notes reviewed by hand",
            }
        )
        exclusions.create(
            {
                "model_name": "res.partner",
                "field_name": "function",
                "scope": "discovery",
                "reason": "Not a reference",
            }
        )
        request = self._erasure_request()
        request._erase(SUBJECT_EMAIL)
        scan = request._certificate_document()["leftover_scan"]
        self.assertIn(
            {
                "table": "res_partner",
                "column": "comment",
                "reason": "Notes reviewed by hand",
            },
            scan["excluded"],
        )
        self.assertNotIn("function", [e["column"] for e in scan["excluded"]])
        self.assertEqual(str(other.comment), "<p>Referred by Jane Subject</p>")
        self.assertFalse(other.function)  # the whole value was the name: emptied
        self.assertNotIn(
            "comment", [(e["table"], e["column"]) for e in scan["remaining"]]
        )
        self.assertEqual(scan["result"], "no identifier left")

    def test_files_shared_with_kept_documents_stay(self):
        """A file of the subject whose content another document also uses
        (Odoo stores it once) is not deleted from the filestore; the
        subject's own files are, once the erasure is committed."""
        self.registry.enter_test_mode(self.cr)
        self.addCleanup(self.registry.leave_test_mode)
        env = self.env(context=dict(self.env.context, **NO_MAIL))
        passport = self.subject["passport"]
        unique = env["ir.attachment"].create(
            {
                "name": "letter.txt",
                "raw": b"a letter only the subject has",
                "res_model": "res.partner",
                "res_id": self.subject["partner"].id,
            }
        )
        kept = env["ir.attachment"].create(
            {
                "name": "copy-of-passport.pdf",
                "raw": passport.raw,
                "res_model": "res.company",
                "res_id": self.env.company.id,
            }
        )
        self.assertEqual(kept.store_fname, passport.store_fname)
        shared_path = passport._full_path(passport.store_fname)
        unique_path = unique._full_path(unique.store_fname)
        request = self._erasure_request()
        request._erase(SUBJECT_EMAIL)
        self.assertFalse(passport.exists() or unique.exists())
        # nothing is deleted before the commit (a rolled back erasure keeps
        # its files)
        self.assertTrue(os.path.isfile(unique_path))
        self.env.cr.postcommit.run()
        self.assertFalse(os.path.exists(unique_path))
        self.assertTrue(os.path.isfile(shared_path))
        self.assertEqual(kept.raw, b"%PDF-1.4 Jane's passport scan")
        files = request._certificate_document()["cleanup"]["files"]
        self.assertGreaterEqual(files["shared"], 1)
        self.assertGreaterEqual(files["scheduled"], 1)
