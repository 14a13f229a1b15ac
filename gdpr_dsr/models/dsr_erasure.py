import logging

import psycopg2
from markupsafe import Markup

from odoo import api, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL, html2plaintext

from ..lib.masking import mask_account_number

_logger = logging.getLogger(__name__)

LEGAL_BASIS_ACCOUNTING = (
    "Legal obligation to keep accounting records (GDPR Art. 17(3)(b) and "
    "Art. 6(1)(c); statutory bookkeeping and tax retention periods)"
)
# Models an erasure never deletes or changes, whatever a line says: the
# configuration and security of the database, the suite's own records.
PROTECTED_MODEL_PREFIXES = (
    "ir.",
    "base.",
    "res.groups",
    "res.users.",
    "audit.",
    "dsr.",
)
PROTECTED_MODELS = frozenset(
    {
        "res.company",
        "res.currency",
        "res.country",
        "res.country.state",
        "res.lang",
        "res.partner.category",
        "res.partner.industry",
        "res.partner.title",
    }
)
# ...except the attachments the discovery lists (files of the subject's data)
ERASABLE_EXCEPTIONS = frozenset({"ir.attachment"})
# Administrator accounts are never anonymised by an erasure.
ADMIN_GROUPS = ("base.group_system", "base.group_erp_manager")
# Execution order: dependent records first, the subject's partners last.
CATEGORY_ORDER = [
    "attachment",
    "message",
    "mail",
    "follower",
    "record",
    "payment",
    "invoice",
    "user",
    "related_partner",
    "profile",
]


class DsrErasure(models.AbstractModel):
    """Plan and apply an erasure (used by requests and by the replay after a
    database restore). Everything here runs as superuser: callers check that
    the current user is a Privacy Officer and passed the erasure gate."""

    _name = "dsr.erasure"
    _description = "Data Subject Request: erasure engine"

    # -- retention -----------------------------------------------------------
    @api.model
    def _retention_reason(self, record):
        """Legal basis for keeping ``record`` (a singleton), or ``False``.

        Hook: extend for other records the law makes the company keep.
        """
        name = record._name
        if name == "account.move":
            if record.state in ("posted", "cancel") and record.name not in (False, "/"):
                return LEGAL_BASIS_ACCOUNTING
        elif name == "account.move.line":
            if record.move_id.state in ("posted", "cancel"):
                return LEGAL_BASIS_ACCOUNTING
        elif name == "account.payment":
            if record.state != "draft":
                return LEGAL_BASIS_ACCOUNTING
        elif name in ("account.bank.statement.line", "account.partial.reconcile"):
            return LEGAL_BASIS_ACCOUNTING
        return False

    @api.model
    def _is_protected_model(self, model_name):
        """True for models an erasure never deletes or changes. Hook."""
        if model_name in ERASABLE_EXCEPTIONS:
            return False
        return model_name in PROTECTED_MODELS or model_name.startswith(
            PROTECTED_MODEL_PREFIXES
        )

    @api.model
    def _acts_on(self, record, hit):
        """Whether executing ``hit`` may change or delete ``record``."""
        if self._is_protected_model(record._name):
            return False
        action = hit["planned_action"]
        if action in ("delete", "anonymize"):
            return True
        return (
            action == "retain"
            and hit["category"] in ("invoice", "payment", "record")
            and not hit.get("kept")
            and not self._retention_reason(record)
        )

    # -- planning ------------------------------------------------------------
    @api.model
    def _plan(self, hits, subject_ids):
        """Add ``planned_action`` and ``reason`` to every hit (in place)."""
        subject_ids = set(subject_ids)
        retained = set()
        for hit in hits:
            record = self._record(hit)
            reason = record and self._retention_reason(record)
            if reason:
                retained.add((hit["res_model"], hit["res_id"]))
        for hit in hits:
            hit["planned_action"], hit["reason"] = self._plan_hit(
                hit, subject_ids, retained
            )
        return hits

    @api.model
    def _record(self, hit):
        if hit["res_model"] not in self.env:
            return None
        record = (
            self.env[hit["res_model"]]
            .sudo()
            .with_context(active_test=False)
            .browse(hit["res_id"])
            .exists()
        )
        return record or None

    @api.model
    def _plan_hit(self, hit, subject_ids, retained):
        key = (hit["res_model"], hit["res_id"])
        category = hit["category"]
        record = self._record(hit)
        if record is None:
            return "retain", "no longer exists"
        if self._is_protected_model(record._name):
            return "retain", (
                "configuration or security record: never changed by an erasure "
                "(review by hand)"
            )
        if key in retained:
            return "retain", self._retention_reason(record)
        if record._name == "res.partner" and record.id in self._protected_partner_ids():
            return "retain", "contact of a system or administrator account"
        if category == "profile":
            return "delete", "personal data of the subject (right to erasure)"
        if category == "related_partner":
            return "retain", (
                "not the data subject (company or contact with its own email); "
                "only its link to the subject is removed"
            )
        if category == "user":
            if record.id in self._protected_user_ids():
                return "retain", "system user: cannot be erased"
            return "anonymize", (
                "user account archived, login and name anonymised (the account "
                "stays as author of past documents)"
            )
        if category == "message":
            on_retained = (record.model, record.res_id) in retained
            if record.author_id.id in subject_ids or (
                record.model == "res.partner" and record.res_id in subject_ids
            ):
                if on_retained:
                    return "anonymize", (
                        "message on a retained document: body, author and "
                        "attachments removed"
                    )
                return "delete", "communication with or by the subject"
            return "anonymize", "the subject is removed from the recipients"
        if category == "attachment":
            if (record.res_model, record.res_id) in retained:
                return "retain", self._retention_reason(
                    self.env[record.res_model].sudo().browse(record.res_id)
                )
            return "delete", "document attached to the subject's data"
        if category in ("mail", "follower"):
            return "delete", "communication data of the subject"
        if record._name in ("account.move", "account.payment") and (
            record.state == "draft"
        ):
            return "delete", "draft document of the subject (never posted)"
        required = [
            fname
            for fname in hit.get("ref_fields", [])
            if fname in record._fields and record._fields[fname].required
        ]
        if required:
            return "delete", "record exists only for the subject"
        return "anonymize", "link to the subject removed"

    @api.model
    def _protected_user_ids(self):
        """Users an erasure never anonymises: the system users, the one
        running it, and every administrator (an administrator removes an
        administrator account by hand)."""
        ids = {
            self.env.ref("base.user_root").id,
            self.env.ref("base.user_admin", raise_if_not_found=False).id,
            self.env.ref("base.public_user", raise_if_not_found=False).id,
            self.env.uid,
        } - {False, None}
        for xmlid in ADMIN_GROUPS:
            group = self.env.ref(xmlid, raise_if_not_found=False)
            if group:
                ids |= set(group.sudo().with_context(active_test=False).users.ids)
        return ids

    @api.model
    def _protected_partner_ids(self):
        """Contacts of the users an erasure never anonymises."""
        users = (
            self.env["res.users"]
            .sudo()
            .with_context(active_test=False)
            .browse(list(self._protected_user_ids()))
            .exists()
        )
        return set(users.partner_id.ids)

    # -- execution -------------------------------------------------------------
    @api.model
    def _execute(self, hits, subject_ids, label):
        """Apply the planned actions; return hits with ``result`` and
        ``result_note`` set. ``label`` names the replacement for anonymised
        names (e.g. the request reference)."""
        subject_ids = set(subject_ids)
        order = {category: index for index, category in enumerate(CATEGORY_ORDER)}
        for hit in sorted(
            hits,
            key=lambda h: (order.get(h["category"], 0), -h["res_id"]),
        ):
            record = self._record(hit)
            if record is None:
                hit["result"], hit["result_note"] = "missing", "already gone"
                continue
            if self._is_protected_model(record._name):
                hit["result"] = "retained"
                hit["result_note"] = "configuration or security record: not changed"
                continue
            reason = self._retention_reason(record)
            action = "retain" if reason else hit["planned_action"]
            if action == "retain":
                hit["result"] = "retained"
                hit["result_note"] = reason or hit.get("reason") or ""
                if hit["category"] in ("invoice", "payment", "record") and not (
                    hit.get("kept")
                ):
                    self._unlink_optional_references(record, hit, subject_ids)
                continue
            if action == "delete":
                error = self._try_unlink(record)
                if not error and not record.exists():
                    hit["result"], hit["result_note"] = "deleted", hit.get("reason")
                    continue
                # e.g. bank accounts: their unlink() archives instead of deleting
                error = error or "the application archives instead of deleting"
                hit["result_note"] = f"could not be deleted ({error}); anonymised"
            else:
                hit["result_note"] = hit.get("reason")
            done = self._anonymize(record, hit, subject_ids, label)
            hit["result"] = "anonymized" if done else "retained"
            if not done:
                hit["result_note"] = (
                    f"{hit['result_note']}; kept: no personal field to clear"
                )
        self._sweep_subject_chatter(subject_ids)
        self.env.flush_all()
        return hits

    @api.model
    def _sweep_subject_chatter(self, subject_ids):
        """Delete what the erasure itself logged on the subject's contacts
        (e.g. accounting logs the number of a removed bank account)."""
        existing = (
            self.env["res.partner"]
            .with_context(active_test=False)
            .browse(list(set(subject_ids) - self._protected_partner_ids()))
            .exists()
        )
        if existing:
            self.env["mail.message"].search(
                [
                    ("model", "=", "res.partner"),
                    ("res_id", "in", existing.ids),
                ]
            ).unlink()

    @api.model
    def _blocking_reference(self, record):
        """Name a row that forbids deleting ``record`` at the database level
        (a foreign key with ON DELETE RESTRICT / NO ACTION), or ''.

        Checked before deleting so that PostgreSQL never has to refuse the
        DELETE (which Odoo would log as a bad query).
        """
        self.env.flush_all()
        self.env.cr.execute(
            SQL(
                """SELECT c.conrelid::regclass::text, a.attname
                 FROM pg_constraint c
                 JOIN pg_attribute a
                   ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                WHERE c.contype = 'f' AND c.confrelid = %s::regclass
                  AND c.confdeltype IN ('r', 'a')
                  AND array_length(c.conkey, 1) = 1""",
                record._table,
            )
        )
        for table, column in self.env.cr.fetchall():
            self.env.cr.execute(
                SQL(
                    "SELECT 1 FROM %s WHERE %s = %s LIMIT 1",
                    SQL.identifier(table.strip('"')),
                    SQL.identifier(column),
                    record.id,
                )
            )
            if self.env.cr.fetchone():
                return f"referenced by {table}.{column}"
        return ""

    @api.model
    def _try_unlink(self, record):
        """Delete ``record`` inside a savepoint; return an error text or ''."""
        blocking = self._blocking_reference(record)
        if blocking:
            return blocking
        try:
            with self.env.cr.savepoint():
                record.with_context(active_test=False).unlink()
                self.env.flush_all()
        except (UserError, ValidationError, psycopg2.Error) as exc:
            self.env.invalidate_all()
            message = getattr(exc, "pgerror", None) or str(exc)
            _logger.info(
                "DSR erasure: %s#%s not deletable, anonymising instead: %s",
                record._name,
                record.id,
                message.strip().splitlines()[0],
            )
            return message.strip().splitlines()[0][:200]
        return ""

    @api.model
    def _anonymize(self, record, hit, subject_ids, label):
        """Anonymise one record; return True when something was changed."""
        method = getattr(self, "_anonymize_" + record._name.replace(".", "_"), None)
        if method:
            return method(record, subject_ids, label)
        return self._unlink_optional_references(record, hit, subject_ids)

    @api.model
    def _unlink_optional_references(self, record, hit, subject_ids):
        values = {}
        for fname in hit.get("ref_fields", []):
            field = record._fields.get(fname)
            if not field:
                continue
            if field.type == "many2one":
                if record[fname].id in subject_ids and not field.required:
                    values[fname] = False
            elif field.type == "many2many":
                linked = record[fname].ids
                removed = [pid for pid in linked if pid in subject_ids]
                if removed:
                    values[fname] = [(3, pid) for pid in removed]
        if values and not self._retention_reason(record):
            record.with_context(tracking_disable=True).write(values)
            return True
        return False

    @api.model
    def _write_changes(self, record, values):
        """Write only the values that differ; return True if any did (so that
        re-applying an erasure reports nothing new)."""
        changes = {}
        for fname, value in values.items():
            current = record[fname]
            field = record._fields[fname]
            if field.type == "many2one":
                current = current.id
            elif field.type in ("many2many", "one2many"):
                current = current.ids
            elif field.type == "html":
                current = " ".join(html2plaintext(current or "").split())
                value_cmp = " ".join(html2plaintext(value or "").split())
                if current != value_cmp:
                    changes[fname] = value
                continue
            if (current or False) != (value or False):
                changes[fname] = value
        if changes:
            _logger.info(
                "DSR erasure: %s#%s fields changed: %s",
                record._name,
                record.id,
                ", ".join(sorted(changes)),
            )
            # active_test: Odoo refuses to archive a partner of an active user
            # and must not count the (just archived) subject's user as active.
            record.with_context(tracking_disable=True, active_test=True).write(changes)
        return bool(changes)

    # -- per-model anonymisation (hooks, named after the model) -----------------
    @api.model
    def _anonymize_res_partner(self, partner, subject_ids, label):
        values = {
            "name": self.env._("Anonymized (%(label)s)", label=label),
            "email": False,
            "active": False,
        }
        for fname in (
            "phone",
            "mobile",
            "street",
            "street2",
            "zip",
            "city",
            "state_id",
            "vat",
            "website",
            "function",
            "comment",
            "ref",
            "image_1920",
            "title",
            "company_registry",
        ):
            if fname in partner._fields:
                values[fname] = False
        return self._write_changes(partner, values)

    @api.model
    def _anonymize_res_users(self, user, subject_ids, label):
        values = {"active": False, "login": f"erased-{user.id}@erased.invalid"}
        if "signature" in user._fields:
            # what Odoo would generate for the anonymised name
            values["signature"] = Markup("<p>--<br>%s</p>") % self.env._(
                "Anonymized (%(label)s)", label=label
            )
        changed = self._write_changes(user, values)
        if "res.users.apikeys" in self.env:
            keys = (
                self.env["res.users.apikeys"].sudo().search([("user_id", "=", user.id)])
            )
            changed = changed or bool(keys)
            keys.unlink()
        # The user's contact is one of the subject's partners: it has its own
        # line (anonymised after the user is archived).
        return changed

    @api.model
    def _anonymize_mail_message(self, message, subject_ids, label):
        values = {}
        recipients = [pid for pid in message.partner_ids.ids if pid in subject_ids]
        if recipients:
            values["partner_ids"] = [(3, pid) for pid in recipients]
        if message.author_id.id in subject_ids or (
            message.model == "res.partner" and message.res_id in subject_ids
        ):
            values.update(body="", subject=False, email_from=False, author_id=False)
            if message.attachment_ids:
                message.attachment_ids.unlink()
        if not values:
            return False
        message.write(values)
        return True

    @api.model
    def _anonymize_res_partner_bank(self, bank, subject_ids, label):
        values = {"acc_number": mask_account_number(bank.acc_number), "active": False}
        if "acc_holder_name" in bank._fields:
            values["acc_holder_name"] = False
        return self._write_changes(bank, values)
