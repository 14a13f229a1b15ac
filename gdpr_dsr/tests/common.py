import base64
import os
import shutil
import tempfile
from unittest.mock import patch

from odoo.tests import TransactionCase, new_test_user
from odoo.tools import SQL, config

from suite_core import keyring as suite_keyring

SUBJECT_EMAIL = "Jane.Subject@Example.com"
BANK_ACCOUNT = "BE31001723456755"
NO_MAIL = {
    "mail_create_nolog": True,
    "mail_create_nosubscribe": True,
    "mail_notrack": True,
    "tracking_disable": True,
    "no_reset_password": True,
}


TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb")


def text_occurrences(cr, texts, digits=None):
    """An SQL scan independent of the addon's: every ``(table, row id,
    column)`` of every text-like column of every table of the schema whose
    value holds one of ``texts`` (any case) or, once its non-digits are
    removed, the string of ``digits`` (a phone number)."""
    cr.execute(
        SQL(
            """SELECT c.table_name, c.column_name,
                      EXISTS (SELECT 1 FROM information_schema.columns i
                               WHERE i.table_schema = c.table_schema
                                 AND i.table_name = c.table_name
                                 AND i.column_name = 'id')
                 FROM information_schema.columns c
                 JOIN information_schema.tables t
                   ON t.table_schema = c.table_schema
                  AND t.table_name = c.table_name
                WHERE c.table_schema = current_schema()
                  AND t.table_type = 'BASE TABLE'
                  AND c.data_type = ANY(%s)
                ORDER BY 1, 2""",
            list(TEXT_TYPES),
        )
    )
    needles = [f"%{text.lower()}%" for text in texts]
    digits_pattern = f"%{digits}%" if digits else None
    found = set()
    for table, column, has_id in cr.fetchall():
        text = SQL("%s::text", SQL.identifier(column))
        digits_match = (
            SQL(
                "OR regexp_replace(%s, '[^0-9]', '', 'g') LIKE %s",
                text,
                digits_pattern,
            )
            if digits_pattern
            else SQL("")
        )
        cr.execute(
            SQL(
                "SELECT %s FROM %s WHERE lower(%s) LIKE ANY(%s) %s",
                SQL.identifier("id") if has_id else SQL("ctid::text"),
                SQL.identifier(table),
                text,
                needles,
                digits_match,
            )
        )
        found.update((table, row[0], column) for row in cr.fetchall())
    return found


def make_subject(env):
    """Create the data subject's footprint; return a dict of records.

    The subject is a partner with two child contacts (invoice and delivery
    addresses), a portal user, a bank account, three messages (one on their
    own record, one they wrote on another contact's record, one addressed
    to them), two attachments, and an unrelated partner that must never be
    touched.
    """
    env = env(context=dict(env.context, **NO_MAIL))
    partner = env["res.partner"].create(
        {
            "name": "Jane Subject",
            "email": f"  {SUBJECT_EMAIL} ",
            "phone": "+32 470 12 34 56",
            "street": "1 Privacy Street",
            "city": "Brussels",
        }
    )
    invoice_address = env["res.partner"].create(
        {
            "name": "Jane Subject (billing)",
            "parent_id": partner.id,
            "type": "invoice",
            "street": "2 Billing Lane",
        }
    )
    delivery_address = env["res.partner"].create(
        {
            "name": "Jane Subject (home)",
            "parent_id": partner.id,
            "type": "delivery",
            "street": "3 Home Road",
        }
    )
    other = env["res.partner"].create(
        {
            "name": "Bob Bystander",
            "email": "bob@example.org",
        }
    )
    user = env["res.users"].create(
        {
            "login": "jane.portal",
            "partner_id": partner.id,
            "groups_id": [(6, 0, [env.ref("base.group_portal").id])],
        }
    )
    bank = env["res.partner.bank"].create(
        {
            "partner_id": partner.id,
            "acc_number": BANK_ACCOUNT,
        }
    )
    passport = env["ir.attachment"].create(
        {
            "name": "passport.pdf",
            "raw": b"%PDF-1.4 Jane's passport scan",
            "res_model": "res.partner",
            "res_id": partner.id,
        }
    )
    photo = env["ir.attachment"].create(
        {
            "name": "photo.png",
            "raw": b"\x89PNG Jane's photo",
            "res_model": "res.partner",
            "res_id": other.id,
        }
    )
    own_note = partner.message_post(
        body="Jane asked for a callback",
        author_id=partner.id,
        message_type="comment",
        subtype_xmlid="mail.mt_note",
    )
    written = other.message_post(
        body="Jane writes on Bob's record",
        author_id=partner.id,
        message_type="comment",
        subtype_xmlid="mail.mt_note",
        attachment_ids=[photo.id],
    )
    addressed = other.message_post(
        body="A note for Jane and others",
        author_id=env.user.partner_id.id,
        message_type="comment",
        subtype_xmlid="mail.mt_note",
        partner_ids=[partner.id, other.id],
    )
    return {
        "partner": partner,
        "invoice_address": invoice_address,
        "delivery_address": delivery_address,
        "other": other,
        "user": user,
        "bank": bank,
        "passport": passport,
        "photo": photo,
        "own_note": own_note,
        "written": written,
        "addressed": addressed,
    }


def make_verified_request(env, request_type, email=SUBJECT_EMAIL):
    """Create a request as the env's user and verify it with evidence."""
    request = env["dsr.request"].create(
        {
            "subject_email": email,
            "subject_name": "Jane Subject",
            "request_type": request_type,
            "regime": "gdpr",
        }
    )
    evidence = env["ir.attachment"].create(
        {
            "name": "id-check.txt",
            "raw": b"ID card checked at the counter",
            "res_model": "dsr.request",
            "res_id": request.id,
        }
    )
    request.write(
        {
            "verification_method": "id_document",
            "verification_attachment_ids": [(6, 0, evidence.ids)],
        }
    )
    request.action_verify()
    return request


def run_package_jobs(env):
    """Run the queued package jobs the way the cron does (as superuser; each
    job runs as its officer); return the jobs that ran."""
    Job = env["dsr.package.job"].sudo()
    queued = Job.search([("state", "=", "queued")])
    for _job in queued:
        Job._cron_run_queued_jobs()
    queued.invalidate_recordset()
    return queued


class DsrCase(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.register_dir = tempfile.mkdtemp(prefix="h8_dsr_register_")
        cls.addClassCleanup(shutil.rmtree, cls.register_dir, True)
        cls.startClassPatcher(
            patch.dict(
                os.environ,
                {
                    suite_keyring.ENV_KEYRING: suite_keyring.generate_key_line(),
                },
            )
        )
        cls.startClassPatcher(
            patch.dict(
                config.options,
                {
                    "dsr_erasure_register_dir": cls.register_dir,
                    "suite_keyring_file": False,
                },
            )
        )
        os.environ.pop(suite_keyring.ENV_KEYRING_FILE, None)
        cls.officer = new_test_user(
            cls.env,
            login="dsr_officer",
            groups="base.group_user,gdpr_dsr.dsr_group_officer",
        )
        cls.outsider = new_test_user(
            cls.env,
            login="dsr_outsider",
            groups="base.group_user",
        )
        cls.auditor = new_test_user(
            cls.env,
            login="dsr_auditor",
            groups="base.group_user,audit_export.audit_group_auditor",
        )
        cls.subject = make_subject(cls.env)

    def officer_env(self):
        return self.env(user=self.officer)

    def failure_steps(self, request):
        """The steps of the failures the audit log holds for ``request``."""
        events = (
            self.env["audit.event"]
            .sudo()
            .search(
                [
                    ("res_model", "=", "dsr.request"),
                    ("res_id", "=", request.id),
                    ("result", "=", "failure"),
                ]
            )
        )
        return [(e.details or {}).get("step") for e in events]

    @staticmethod
    def b64(value):
        return base64.b64decode(value)
