"""An erasure that leaves nothing of the person behind, and proves it.

A subject spread over a partner, a delivery address, a contact of their own,
a portal user who logged in, messages on their record and on someone else's
(one by them, one by a colleague naming them), a follower subscription, an
attachment, a posted, a draft and a secured (hashed) invoice whose lines
name them, an older access request, an email queued to them, a bus
notification, a wizard holding their name, and audit events of their
records; and another person of the same name. After the erasure, run by an
officer without an email address, an SQL scan of this test (not the
addon's) over every text-like column of every table finds nothing but the
occurrences the certificate lists with their legal basis.
"""

import base64
import hashlib
import io
import json
import logging
import os

from odoo import Command
from odoo.exceptions import AccessError
from odoo.tests import Form, HttpCase, new_test_user, tagged
from odoo.tools.pdf import OdooPdfFileReader

from odoo.addons.audit_export.tests.common import RpcMixin
from odoo.addons.bus.models.bus import json_dump

from .common import (
    NO_MAIL,
    SUBJECT_EMAIL,
    DsrCase,
    make_verified_request,
    text_occurrences,
)

_logger = logging.getLogger(__name__)

NAME = "Jane Roe"
EMAIL = "Jane.Roe@Example.COM"
PHONE = "+32 471 98 76 54"
LOGIN = "jane.roe.portal"
PASSWORD = "jane.roe.portal-pw-2026"
IBAN = "BE62510007547061"
VAT = "BE0123321456"


@tagged("post_install", "-at_install")
class TestErasureLeavesNothing(RpcMixin, DsrCase, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # an officer without an email address (discovery and erasure used to
        # fail for them: "Unable to send message")
        cls.officer_noemail = new_test_user(
            cls.env,
            login="dsr_officer_noemail",
            groups="base.group_user,gdpr_dsr.dsr_group_officer",
            email=False,
        )

    # -- the subject's footprint ----------------------------------------------------
    def _invoice(self, partner, label, journal=None, post=True):
        env = self.env(context=dict(self.env.context, **NO_MAIL))
        values = {
            "move_type": "out_invoice",
            "partner_id": partner.id,
            "invoice_line_ids": [
                Command.create({"name": label, "quantity": 1, "price_unit": 120.0})
            ],
        }
        if journal:
            values["journal_id"] = journal.id
        move = env["account.move"].create(values)
        if post:
            move.action_post()
        return move

    def _make_footprint(self):
        env = self.env(context=dict(self.env.context, **NO_MAIL))
        # the audit trail records the partner's values too (name, email, phone,
        # street): the erasure must redact them there
        self.env["audit.rule"].create(
            {"model_id": self.env.ref("base.model_res_partner").id}
        )
        partner = env["res.partner"].create(
            {
                "name": NAME,
                "email": EMAIL,
                "phone": PHONE,
                "street": "9 Erasure Road",
                "city": "Ghent",
                "vat": VAT,
            }
        )
        home = env["res.partner"].create(
            {
                "name": f"{NAME} (home)",
                "parent_id": partner.id,
                "type": "delivery",
                "street": "10 Home Lane",
            }
        )
        assistant = env["res.partner"].create(
            {
                "name": "Sam Assistant",
                "email": "sam.assistant@example.org",
                "parent_id": partner.id,
                "type": "contact",
            }
        )
        bob = env["res.partner"].create(
            {"name": "Bob Neighbour", "email": "bob.neighbour@example.org"}
        )
        # another person with the same name: not the subject
        homonym = env["res.partner"].create(
            {"name": NAME, "email": "jane.roe@another-company.example"}
        )
        user = env["res.users"].create(
            {
                "login": LOGIN,
                "password": PASSWORD,
                "partner_id": partner.id,
                "groups_id": [Command.set([self.env.ref("base.group_portal").id])],
            }
        )
        env["res.partner.bank"].create({"partner_id": partner.id, "acc_number": IBAN})
        own = partner.message_post(
            body=f"{NAME} asked for a quote",
            message_type="comment",
            subtype_xmlid="mail.mt_note",
        )
        written = bob.message_post(
            body="I will call Bob tomorrow",
            author_id=partner.id,
            message_type="comment",
            subtype_xmlid="mail.mt_note",
        )
        colleague = self.env.ref("base.partner_admin")
        mention = bob.message_post(
            body=f"Met {NAME} ({EMAIL.lower()}, {PHONE}) at Bob's, about the quote",
            author_id=colleague.id,
            message_type="comment",
            subtype_xmlid="mail.mt_note",
        )
        bob.message_subscribe(partner_ids=partner.ids)
        attachment = env["ir.attachment"].create(
            {
                "name": "contract.pdf",
                "raw": b"%PDF-1.4 contract " + os.urandom(24),
                "res_model": "res.partner",
                "res_id": partner.id,
            }
        )
        posted = self._invoice(partner, f"Consulting for {NAME}")
        draft = self._invoice(partner, f"Workshop for {NAME}", post=False)
        secured_journal = env["account.journal"].create(
            {
                "name": "Secured sales",
                "code": "SECS",
                "type": "sale",
                "restrict_mode_hash_table": True,
            }
        )
        secured = self._invoice(partner, f"Consulting for {NAME}", secured_journal)
        if not secured.inalterable_hash:
            secured._hash_moves(force_hash=True, raise_if_gap=False)
        # an email queued to them (the notification of a message addressed to
        # them, not sent yet)
        addressed = bob.with_context(mail_notify_force_send=False).message_post(
            body=f"Dear {NAME}, here is your quote.",
            partner_ids=partner.ids,
            message_type="comment",
            subtype_xmlid="mail.mt_comment",
        )
        queued = (
            self.env["mail.mail"]
            .sudo()
            .search([("mail_message_id", "=", addressed.id)])
        )
        self.assertEqual(queued.state, "outgoing")
        self.assertEqual(queued.recipient_ids, partner)
        bus = (
            self.env["bus.bus"]
            .sudo()
            .create(
                {
                    "channel": json_dump(
                        [self.env.cr.dbname, "res.partner", partner.id]
                    ),
                    "message": json_dump(
                        {"type": "mail.record/insert", "payload": {"name": NAME}}
                    ),
                }
            )
        )
        composer = env["mail.compose.message"].create(
            {
                "composition_mode": "comment",
                "model": "res.partner",
                "res_ids": str(bob.ids),
                "subject": "Draft",
                "body": f"<p>Hello {NAME}</p>",
            }
        )
        return {
            "partner": partner,
            "home": home,
            "assistant": assistant,
            "bob": bob,
            "homonym": homonym,
            "user": user,
            "own": own,
            "written": written,
            "mention": mention,
            "colleague": colleague,
            "attachment": attachment,
            "posted": posted,
            "draft": draft,
            "secured": secured,
            "queued": queued,
            "bus": bus,
            "composer": composer,
        }

    def _older_request(self):
        """An access request of the same person, answered with a package."""
        env = self.env(user=self.officer)
        older = env["dsr.request"].create(
            {
                "subject_email": EMAIL.lower(),
                "subject_name": NAME,
                "subject_phone": PHONE,
                "request_type": "access",
            }
        )
        evidence = env["ir.attachment"].create(
            {
                "name": "id.txt",
                "raw": b"ID card of the subject",
                "res_model": "dsr.request",
                "res_id": older.id,
            }
        )
        older.write(
            {
                "verification_method": "id_document",
                "verification_notes": f"ID card of {NAME} checked",
                "verification_attachment_ids": [Command.set(evidence.ids)],
            }
        )
        older.action_verify()
        older._generate_package()
        self.assertEqual(older.state, "done")
        return older, evidence

    # -- an independent scan ---------------------------------------------------------
    def _independent_scan(self):
        """Where the subject's email, name, login, IBAN, VAT (any case) or
        phone number's digits are in the database (see common.py)."""
        self.env.flush_all()
        self.env["audit.event"]._flush_capture_buffer()
        return text_occurrences(
            self.env.cr,
            (EMAIL, NAME, LOGIN, IBAN, VAT, "jane&nbsp;roe"),
            "".join(ch for ch in PHONE if ch.isdigit())[-9:],
        )

    # -- the test -----------------------------------------------------------------
    def test_erasure_leaves_nothing_and_proves_it(self):
        if "account.move" not in self.env:
            self.skipTest("accounting (account) is not installed")
        s = self._make_footprint()
        self.assertFalse(s["posted"].inalterable_hash)
        self.assertTrue(s["secured"].inalterable_hash)
        # the subject logs in (login events, device logs)
        self.authenticate(LOGIN, PASSWORD)
        self.assertEqual(self.session.uid, s["user"].id)
        self.logout()
        older, older_evidence = self._older_request()
        file_path = s["attachment"]._full_path(s["attachment"].store_fname)
        self.assertTrue(os.path.isfile(file_path))
        before = self._independent_scan()
        self.assertTrue(
            {"res_partner", "audit_event", "account_move_line", "mail_message"}
            <= {table for table, _id, _column in before},
            before,
        )

        officer = self.officer_noemail
        # the draft invoice is deleted: the officer must be able to read it
        officer.groups_id = [
            Command.link(self.env.ref("account.group_account_invoice").id)
        ]
        env = self.env(user=officer)
        request = env["dsr.request"].create(
            {
                "subject_email": f"  {EMAIL.upper()} ",
                "subject_name": NAME,
                "subject_phone": PHONE,
                "request_type": "erasure",
            }
        )
        evidence = env["ir.attachment"].create(
            {
                "name": "id-check.txt",
                "raw": b"ID card checked",
                "res_model": "dsr.request",
                "res_id": request.id,
            }
        )
        request.write(
            {
                "verification_method": "id_document",
                "verification_attachment_ids": [Command.set(evidence.ids)],
            }
        )
        request.action_verify()
        request.action_discover()
        self.assertIn(
            "Discovery found",
            " ".join(request.message_ids.mapped("body")),
        )
        wizard = Form(
            env["dsr.erasure.wizard"].with_context(default_request_id=request.id)
        )
        dialog = {
            "delete": wizard.delete_count,
            "anonymize": wizard.anonymize_count,
            "retain": wizard.retain_count,
        }
        wizard.typed_email = EMAIL.lower()
        wizard = wizard.save()
        wizard.action_confirm()
        self.assertEqual(request.state, "done")
        self.assertFalse(wizard.exists())
        # the files the erasure released go as soon as it commits
        self.env.cr.postcommit.run()

        document = request._certificate_document()
        scan = document["leftover_scan"]
        _logger.info(
            "Leftover scan of the test subject (%s):\n%s",
            request.name,
            json.dumps(scan, indent=2, sort_keys=True),
        )

        # 1. nothing of the person outside the listed legal retentions
        after = self._independent_scan()
        listed = {
            (entry["table"], entry["record_id"], entry["column"])
            for entry in scan["remaining"]
            if entry["basis"]
        }
        self.assertEqual(after - listed, set(), after)
        secured_line = s["secured"].invoice_line_ids
        homonym = s["homonym"]
        remaining = {
            (entry["table"], entry["record_id"], entry["column"]): entry["basis"]
            for entry in scan["remaining"]
        }
        self.assertEqual(
            set(remaining),
            {
                ("account_move_line", secured_line.id, "name"),
                ("res_partner", homonym.id, "name"),
                ("res_partner", homonym.id, "complete_name"),
            },
        )
        secured_basis = remaining[("account_move_line", secured_line.id, "name")]
        self.assertIn("inalterability", secured_basis)
        self.assertIn("Art. 17(3)(b)", secured_basis)
        self.assertIn(
            "not the data subject", remaining[("res_partner", homonym.id, "name")]
        )
        self.assertEqual(after, listed)
        self.assertTrue(scan["clean"])
        self.assertEqual(
            scan["result"],
            "3 occurrence(s) kept, each with the legal basis for keeping it",
        )
        self.assertGreaterEqual(scan["audit_events_redacted"], 3)
        self.assertEqual(scan["identifiers_searched"]["email"], 1)
        self.assertEqual(scan["identifiers_searched"]["phone"], 1)
        self.assertEqual(scan["identifiers_searched"]["iban"], 1)
        self.assertEqual(scan["identifiers_searched"]["vat"], 1)
        self.assertEqual(scan["identifiers_searched"]["login"], 1)
        treated = {(e["table"], e["record_id"], e["column"]) for e in scan["treated"]}
        self.assertIn(
            ("account_move_line", s["posted"].invoice_line_ids.id, "name"), treated
        )
        self.assertIn(("mail_message", s["mention"].id, "body"), treated)

        # 2. what must stay, anonymised in place where the law allows
        posted_line = s["posted"].invoice_line_ids
        self.assertEqual(posted_line.name, "Consulting for [erased]")
        self.assertEqual(s["posted"].state, "posted")
        self.assertEqual(secured_line.name, f"Consulting for {NAME}")
        self.assertFalse(s["draft"].exists())
        mention = s["mention"]
        self.assertTrue(mention.exists())
        self.assertEqual(mention.author_id, s["colleague"])
        self.assertNotIn(NAME, str(mention.body))
        self.assertIn("[erased]", str(mention.body))
        self.assertFalse(s["own"].exists())
        self.assertFalse(s["written"].exists())
        self.assertFalse(
            self.env["mail.followers"].search([("partner_id", "=", s["partner"].id)])
        )
        self.assertFalse(s["home"].exists())
        # the other person of the same name keeps their name and address
        self.assertEqual(
            (homonym.name, homonym.email, homonym.active),
            (NAME, "jane.roe@another-company.example", True),
        )
        # a contact of their own stays, without its link to them
        self.assertTrue(s["assistant"].exists())
        self.assertFalse(s["assistant"].parent_id)
        # (it had their VAT number, copied from them as its company)
        self.assertFalse(s["assistant"].vat)
        user = s["user"].with_context(active_test=False)
        self.assertEqual(user.login, f"erased-{user.id}@erased.invalid")
        self.assertFalse(
            self.env["res.users.log"].search([("create_uid", "=", user.id)])
        )
        self.assertFalse(
            self.env["res.device.log"].sudo().search([("user_id", "=", user.id)])
        )

        # 3. nothing re-contacts them: no email queued, no notification, no
        # "Security Update" about the login the erasure changed
        self.assertFalse(s["queued"].exists())
        self.assertFalse(
            self.env["mail.mail"]
            .sudo()
            .search(
                [
                    "|",
                    "|",
                    ("email_to", "ilike", EMAIL),
                    ("recipient_ids", "in", s["partner"].ids),
                    ("subject", "ilike", "Security Update"),
                ]
            )
        )
        self.assertFalse(s["bus"].exists())
        self.assertFalse(s["composer"].exists())
        mail_line = request.line_ids.filtered(
            lambda ln: (ln.res_model, ln.res_id) == ("mail.mail", s["queued"].id)
        )
        self.assertEqual(mail_line.result, "deleted")
        self.assertGreaterEqual(document["cleanup"]["bus_notifications"], 1)

        # 4. the earlier request keeps its place in the register, not the person
        older.invalidate_recordset()
        self.assertEqual(older.state, "done")
        self.assertEqual(older.request_type, "access")
        self.assertTrue(older.received_date and older.verified_on)
        self.assertFalse(
            older.subject_email
            or older.subject_name
            or older.subject_phone
            or older.verification_notes
        )
        self.assertEqual(older.subject_erased_by, request.name)
        self.assertFalse(older.sudo().package_file)
        self.assertFalse(older_evidence.exists())
        self.assertFalse(any(older.line_ids.mapped("res_name")))
        self.assertEqual(document["cleanup"]["earlier_requests"], [older.name])

        # 5. the subject's file is gone from the disk at once
        self.assertFalse(os.path.exists(file_path))
        self.assertEqual(document["cleanup"]["files"]["shared"], 0)
        self.assertGreaterEqual(document["cleanup"]["files"]["scheduled"], 1)
        removed = (
            self.env["audit.event"]
            .sudo()
            .search([("res_name", "=", request.name)])
            .filtered(lambda e: (e.details or {}).get("step") == "files_removed")
        )
        self.assertEqual(len(removed), 1)
        self.assertGreaterEqual(removed.details["removed"], 1)
        self.assertEqual(removed.details["left_to_gc"], 0)

        # 6. the audit trail is redacted and still verifies
        report = self.env["audit.event"]._verify_chain()
        self.assertTrue(report["ok"], report.get("problem"))

        # 7. the dialog's figures are the certificate's, and what was done
        self.assertEqual(
            {key: value for key, value in dialog.items() if value},
            document["planned_counts"],
        )
        done = {"deleted": "delete", "anonymized": "anonymize", "retained": "retain"}
        self.assertEqual(
            {done[key]: value for key, value in document["counts"].items()},
            document["planned_counts"],
        )
        self.assertTrue(request._verify_certificate())

        # 8. the PDF: rendered by the report engine from the signed JSON, which
        # it embeds, with the scan result
        pdf, mimetype, filename = request.with_user(officer)._read_certificate("pdf")
        self.assertTrue(pdf.startswith(b"%PDF"), pdf[:20])
        self.assertEqual(mimetype, "application/pdf")
        self.assertTrue(filename.endswith("-erasure-certificate.pdf"))
        reader = OdooPdfFileReader(io.BytesIO(pdf), strict=False)
        embedded = dict(reader.getAttachments())
        self.assertEqual(
            json.loads(embedded[request.certificate_json_filename]), document
        )
        html, _kind = (
            self.env["ir.actions.report"]
            .sudo()
            ._render_qweb_html("gdpr_dsr.dsr_certificate_report", request.ids)
        )
        html = html.decode()
        self.assertIn(scan["result"], html)
        self.assertIn("account_move_line", html)
        self.assertIn(str(secured_line.id), html)
        for text in (json.dumps(document), html, pdf.decode("latin-1")):
            self.assertNotIn("jane", text.lower())
        stored_html = base64.b64decode(
            request.sudo().with_context(bin_size=False).certificate_html
        ).decode()
        self.assertIn(scan["result"], stored_html)

    # -- the certificate files ------------------------------------------------
    def _downloads(self, request):
        return (
            self.env["audit.event"]
            .sudo()
            .search(
                [("res_model", "=", "dsr.request"), ("res_id", "=", request.id)],
                order="id",
            )
            .filtered(
                lambda e: (e.details or {}).get("step") == "certificate_downloaded"
            )
        )

    def test_certificate_is_immutable_and_every_download_is_audited(self):
        request = make_verified_request(self.officer_env(), "erasure")
        request.action_discover()
        request._erase(SUBJECT_EMAIL)
        fields = ("certificate_json", "certificate_html", "certificate_pdf")
        stored = request.sudo().with_context(bin_size=False)
        original = {fname: base64.b64decode(stored[fname]) for fname in fields}
        self.assertTrue(original["certificate_pdf"].startswith(b"%PDF"))
        attachments = (
            self.env["ir.attachment"]
            .sudo()
            .search(
                [
                    ("res_model", "=", "dsr.request"),
                    ("res_id", "=", request.id),
                    ("res_field", "in", list(fields)),
                ]
            )
        )
        self.assertEqual(len(attachments), 3)
        admin = self.env.ref("base.user_admin")
        admin.password = "dsr-admin-pw-2026"
        logins = (("dsr_officer", "dsr_officer"), ("admin", "dsr-admin-pw-2026"))
        for login, password in logins:
            with self.subTest(login=login):
                self.authenticate(login, password)
                # the form's trash + save, and the attachments themselves
                self.assertRpcError(
                    self.rpc(
                        "dsr.request", "write", request.ids, {"certificate_json": False}
                    ),
                    "AccessError",
                )
                self.assertRpcError(
                    self.rpc("ir.attachment", "unlink", attachments.ids), "AccessError"
                )
                self.assertRpcError(
                    self.rpc(
                        "ir.attachment",
                        "write",
                        attachments.ids,
                        {"raw": base64.b64encode(b"forged").decode()},
                    ),
                    "AccessError",
                )
                # their content is not read outside the audited route...
                self.assertRpcError(
                    self.rpc("dsr.request", "read", request.ids, ["certificate_pdf"]),
                    "AccessError",
                )
                self.assertRpcError(
                    self.rpc("ir.attachment", "read", attachments.ids, ["datas"]),
                    "AccessError",
                )
                self.assertRpcError(
                    self.rpc(
                        "dsr.request", "export_data", request.ids, ["certificate_json"]
                    ),
                    "AccessError",
                )
                for url in (
                    f"/web/content/{attachments[0].id}",
                    f"/web/content/dsr.request/{request.id}/certificate_json",
                    f"/report/pdf/gdpr_dsr.dsr_certificate_report_document/{request.id}",
                ):
                    response = self.url_open(url)
                    self.assertNotEqual(response.status_code, 200, url)
                    for content in original.values():
                        self.assertNotIn(content[:64], response.content)
                # ...while the form still reads sizes (bin_size)
                sizes = self.rpc(
                    "dsr.request",
                    "read",
                    request.ids,
                    ["certificate_pdf"],
                    context={"bin_size": True},
                )
                self.assertIn("result", sizes, sizes)
                self.assertNotIn("%PDF", str(sizes["result"]))
        # nor by the superuser: only the issuing step of the erasure writes them
        with self.assertRaises(AccessError):
            request.sudo().write({"certificate_json": False})
        with self.assertRaises(AccessError):
            attachments.sudo().unlink()
        with self.assertRaises(AccessError):
            attachments[0].sudo().write({"raw": b"forged"})
        with self.assertRaises(AccessError):
            self.env["ir.attachment"].sudo().create(
                {
                    "name": "certificate_pdf",
                    "res_model": "dsr.request",
                    "res_id": request.id,
                    "res_field": "certificate_pdf",
                    "raw": b"%PDF-1.4 forged",
                }
            )
        stored.invalidate_recordset()
        self.assertEqual(
            {fname: base64.b64decode(stored[fname]) for fname in fields}, original
        )
        self.assertTrue(request._verify_certificate())
        self.assertFalse(self._downloads(request))

        # every download through the request's route is an audit event
        self.authenticate("dsr_officer", "dsr_officer")
        for kind, fname in (
            ("pdf", "certificate_pdf"),
            ("json", "certificate_json"),
            ("html", "certificate_html"),
        ):
            response = self.url_open(f"/gdpr_dsr/certificate/{request.id}/{kind}")
            self.assertEqual(response.status_code, 200, response.text[:200])
            self.assertEqual(response.content, original[fname])
            self.assertEqual(response.headers["Cache-Control"], "no-store")
        events = self._downloads(request)
        self.assertEqual(
            [(e.details["format"], e.details["sha256"], e.user_id) for e in events],
            [
                (kind, hashlib.sha256(original[fname]).hexdigest(), self.officer)
                for kind, fname in (
                    ("pdf", "certificate_pdf"),
                    ("json", "certificate_json"),
                    ("html", "certificate_html"),
                )
            ],
        )
        # auditors may download it too (recorded); other users may not
        self.authenticate("dsr_auditor", "dsr_auditor")
        response = self.url_open(f"/gdpr_dsr/certificate/{request.id}/pdf")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(self._downloads(request)), 4)
        self.authenticate("dsr_outsider", "dsr_outsider")
        response = self.url_open(f"/gdpr_dsr/certificate/{request.id}/pdf")
        self.assertEqual(response.status_code, 403)
        self.assertNotIn(b"%PDF", response.content)
        self.assertEqual(len(self._downloads(request)), 4)
        # the form's buttons lead there
        action = request.with_user(self.officer).action_download_certificate_pdf()
        self.assertEqual(action["url"], f"/gdpr_dsr/certificate/{request.id}/pdf")
