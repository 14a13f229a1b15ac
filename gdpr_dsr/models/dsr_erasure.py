import contextlib
import json
import logging
import os

import psycopg2
from markupsafe import Markup

from odoo import SUPERUSER_ID, api, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL, html2plaintext

from ..lib.masking import mask_account_number

_logger = logging.getLogger(__name__)

# Context of every change an erasure makes: no tracking message, no new
# follower, no notification, no invitation or password reset email.
ERASURE_CONTEXT = {
    "tracking_disable": True,
    "mail_notrack": True,
    "mail_create_nolog": True,
    "mail_create_nosubscribe": True,
    "mail_auto_subscribe_no_notify": True,
    "no_reset_password": True,
}
# Key of the running erasure in the cursor's cache: set by server code only
# (a context key could be sent by any RPC client). It names the users being
# erased (their security notifications are not sent) and collects the files
# the erasure's deletions leave in the filestore.
ERASURE_MARK = "gdpr_dsr.running_erasure"
# Waiting for the filestore lock (a running backup holds it): after that, the
# files are left to Odoo's garbage collector.
FILESTORE_LOCK_TIMEOUT = "10s"


def _escape_like(text):
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def running_erasure(cr):
    """The state of the erasure running on ``cr`` (``None`` when none is)."""
    cache = getattr(cr, "cache", None)
    return cache.get(ERASURE_MARK) if isinstance(cache, dict) else None


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

    # -- the running erasure ---------------------------------------------------
    @api.model
    @contextlib.contextmanager
    def _running(self, user_ids=()):
        """Mark the cursor while an erasure runs (see ``ERASURE_MARK``);
        yields the state: ``user_ids`` and the ``files`` deleted."""
        cache = self.env.cr.cache
        previous = cache.get(ERASURE_MARK)
        state = {"user_ids": {int(uid) for uid in user_ids}, "files": set()}
        cache[ERASURE_MARK] = state
        try:
            yield state
        finally:
            if previous is None:
                cache.pop(ERASURE_MARK, None)
            else:
                cache[ERASURE_MARK] = previous

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
        self._plan_blocked_deletions(hits)
        return hits

    @api.model
    def _plan_blocked_deletions(self, hits):
        """A record planned for deletion that a kept row references (a
        foreign key that forbids the deletion) will be anonymised instead:
        say so in the plan, so that the plan the officer confirms is what
        the erasure does."""
        changed = True
        while changed:
            changed = False
            deleted = self._rows_deleted_by(hits)
            for hit in hits:
                if hit["planned_action"] != "delete":
                    continue
                record = self._record(hit)
                if record is None or record._name == "ir.attachment":
                    continue
                blocking = self._blocking_reference(record, ignore=deleted)
                if blocking:
                    hit["planned_action"] = "anonymize"
                    hit["reason"] = (
                        f"kept because {blocking} (a record that stays): "
                        "personal fields cleared"
                    )
                    changed = True

    @api.model
    def _rows_deleted_by(self, hits):
        """``{table: {ids}}`` of the rows the planned deletions remove: the
        records themselves and the rows deleted with them (foreign keys ON
        DELETE CASCADE, a few levels deep)."""
        deleted = {}
        frontier = {}
        for hit in hits:
            if hit["planned_action"] != "delete" or hit["res_model"] not in self.env:
                continue
            table = self.env[hit["res_model"]]._table
            frontier.setdefault(table, set()).add(hit["res_id"])
        for _depth in range(4):
            if not frontier:
                break
            for table, ids in frontier.items():
                deleted.setdefault(table, set()).update(ids)
            following = {}
            for table, ids in frontier.items():
                for ref_table, column in self._foreign_keys_to(table, ("c",)):
                    self.env.cr.execute(
                        SQL(
                            "SELECT id FROM %s WHERE %s = ANY(%s)",
                            SQL.identifier(ref_table),
                            SQL.identifier(column),
                            sorted(ids),
                        )
                    )
                    found = {row[0] for row in self.env.cr.fetchall()}
                    found -= deleted.get(ref_table, set())
                    if found:
                        following.setdefault(ref_table, set()).update(found)
            frontier = following
        return deleted

    @api.model
    def _foreign_keys_to(self, table, delete_types):
        """``[(table, column)]`` of the single-column foreign keys to
        ``table`` whose ON DELETE is one of ``delete_types`` (``c``: cascade,
        ``r``/``a``: restrict / no action); tables with an ``id`` column."""
        self.env.cr.execute(
            SQL(
                """SELECT c.conrelid::regclass::text, a.attname
                 FROM pg_constraint c
                 JOIN pg_attribute a
                   ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                WHERE c.contype = 'f' AND c.confrelid = %s::regclass
                  AND c.confdeltype = ANY(%s)
                  AND array_length(c.conkey, 1) = 1
                  AND EXISTS (SELECT 1 FROM pg_attribute i
                               WHERE i.attrelid = c.conrelid AND i.attname = 'id'
                                 AND NOT i.attisdropped)
                ORDER BY 1, 2""",
                table,
                list(delete_types),
            )
        )
        return [(name.strip('"'), column) for name, column in self.env.cr.fetchall()]

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
        planned = self._plan_subject_hit(record, category, subject_ids, retained)
        if planned is not None:
            return planned
        return self._plan_record_hit(record, hit)

    @api.model
    def _plan_subject_hit(self, record, category, subject_ids, retained):
        """Plan a hit of one of the categories the discovery finds on the
        subject themself (contact, account, messages, files, mails,
        followers); None for another category (a record linked to them)."""
        if category == "profile":
            if record.with_context(active_test=False).user_ids:
                return "anonymize", (
                    "contact of the subject's user account (the account stays as "
                    "author of past documents): personal fields cleared"
                )
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
        return None

    @api.model
    def _plan_record_hit(self, record, hit):
        """Plan a hit on a record linked to the subject (any category but
        the subject's own ones)."""
        if self._archives_instead_of_deleting(record):
            return "anonymize", (
                "the application archives these records instead of deleting them: "
                "personal fields cleared and masked, record archived"
            )
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
    def _archives_instead_of_deleting(self, record):
        """Models whose ``unlink()`` archives (Odoo keeps bank accounts for
        the entries that use them). Hook."""
        return record._name == "res.partner.bank"

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
                elif hit["category"] == "related_partner" and not hit.get("kept"):
                    note = self._unlink_related_partner(record, subject_ids)
                    if note:
                        hit["result_note"] = f"{hit['result_note']}; {note}"
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
    def _unlink_related_partner(self, partner, subject_ids):
        """Remove the link of a kept contact to the subject (its parent);
        return what was done, for the certificate."""
        if partner._name != "res.partner" or partner.parent_id.id not in subject_ids:
            return ""
        basis = self._partner_link_retention(partner)
        if basis:
            return f"link to the subject kept: {basis}"
        partner.with_context(tracking_disable=True).write({"parent_id": False})
        return "link to the subject removed"

    @api.model
    def _partner_link_retention(self, partner):
        """Legal basis for keeping a contact's link to the subject: changing
        it would change the customer of posted journal entries. Hook."""
        if "account.move" not in self.env:
            return False
        posted = (
            self.env["account.move"]
            .sudo()
            .search_count(
                [
                    ("partner_id", "=", partner.id),
                    ("state", "in", ("posted", "cancel")),
                ],
                limit=1,
            )
        )
        return LEGAL_BASIS_ACCOUNTING if posted else False

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
    def _blocking_reference(self, record, ignore=None):
        """Name a row that forbids deleting ``record`` at the database level
        (a foreign key with ON DELETE RESTRICT / NO ACTION), or ''.
        ``ignore``: ``{table: {ids}}`` of rows deleted before it (planning).

        Checked before deleting so that PostgreSQL never has to refuse the
        DELETE (which Odoo would log as a bad query).
        """
        self.env.flush_all()
        ignore = ignore or {}
        for table, column in self._foreign_keys_to(record._table, ("r", "a")):
            self.env.cr.execute(
                SQL(
                    "SELECT 1 FROM %s WHERE %s = %s AND NOT id = ANY(%s) LIMIT 1",
                    SQL.identifier(table),
                    SQL.identifier(column),
                    record.id,
                    sorted(ignore.get(table, ())),
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
        # the traces of the subject's logins (devices, addresses, times)
        for model_name, fname in (
            ("res.device.log", "user_id"),
            ("res.users.log", "create_uid"),
        ):
            if model_name in self.env:
                logs = self.env[model_name].sudo().search([(fname, "=", user.id)])
                changed = changed or bool(logs)
                logs.unlink()
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

    # -- what the erasure must not leave behind -----------------------------------
    @api.model
    def _clear_side_effects(self, subject_ids, user_ids, identifiers):
        """Remove what would re-contact the subject: emails not sent yet to
        their contacts or addresses (e.g. created by a change the erasure
        made) and the notifications queued for their contacts and users
        (stored, or still buffered for the commit). Returns the counts."""
        emails = identifiers.values("email")
        subject_ids = sorted(set(subject_ids))
        counts = {"queued_emails": 0, "bus_notifications": 0}
        if not subject_ids and not emails:
            return counts
        self.env.flush_all()
        mail_model = self.env["mail.mail"].sudo()
        recipients = mail_model._fields["recipient_ids"]
        patterns = [f"%{_escape_like(email)}%" for email in emails]
        self.env.cr.execute(
            SQL(
                """SELECT id FROM mail_mail
                WHERE state = ANY(%(states)s)
                  AND (id IN (SELECT %(col1)s FROM %(rel)s
                               WHERE %(col2)s = ANY(%(ids)s))
                       OR email_to ILIKE ANY(%(patterns)s)
                       OR email_cc ILIKE ANY(%(patterns)s))""",
                states=["outgoing", "exception", "cancel"],
                col1=SQL.identifier(recipients.column1),
                rel=SQL.identifier(recipients.relation),
                col2=SQL.identifier(recipients.column2),
                ids=subject_ids,
                patterns=patterns or [""],
            )
        )
        mails = mail_model.browse([row[0] for row in self.env.cr.fetchall()])
        counts["queued_emails"] = len(mails)
        mails.unlink()
        # bus channels of a record are the JSON ["<db>","<model>",<id>]
        channels = [f'%"res.partner",{pid}]%' for pid in subject_ids] + [
            f'%"res.users",{uid}]%' for uid in sorted(set(user_ids))
        ]
        self.env.cr.execute(
            SQL(
                "DELETE FROM bus_bus WHERE replace(channel, ' ', '') LIKE ANY(%s)",
                channels,
            )
        )
        counts["bus_notifications"] = self.env.cr.rowcount
        counts["bus_notifications"] += self._drop_buffered_notifications(
            subject_ids, user_ids, identifiers
        )
        self.env.invalidate_all()
        return counts

    @api.model
    def _drop_buffered_notifications(self, subject_ids, user_ids, identifiers):
        """Bus notifications are inserted when the transaction commits (the
        bus buffers them): drop those for the subject's contacts and users or
        that mention the subject. Returns how many were dropped."""
        buffered = self.env.cr.precommit.data.get("bus.bus.values")
        if not buffered:
            return 0
        targets = {("res.partner", int(pid)) for pid in subject_ids} | {
            ("res.users", int(uid)) for uid in user_ids
        }
        kept = []
        for values in buffered:
            try:
                channel = json.loads(values.get("channel") or "null")
            except ValueError:
                channel = None
            target = (
                tuple(channel[1:3])
                if isinstance(channel, list) and len(channel) >= 3
                else None
            )
            if target in targets or identifiers.kinds_in(values.get("message") or ""):
                continue
            kept.append(values)
        dropped = len(buffered) - len(kept)
        buffered[:] = kept
        return dropped

    @api.model
    def _purge_files(self, fnames, label):
        """Delete from the filestore, as soon as the erasure is committed,
        the files of the attachments it deleted that no other attachment
        uses (Odoo's garbage collector would do it at its next run, and
        backups taken meanwhile would carry them). Returns what is scheduled.

        After the commit only, so that an erasure rolled back never leaves
        attachments without their file; then on a cursor of its own, the
        attachment table locked (SHARE, as the garbage collector does) while
        each file is checked unused again and deleted, paths strictly inside
        this database's filestore. The outcome is an audit event.
        """
        fnames = sorted(set(fnames or ()))
        result = {"scheduled": 0, "shared": 0}
        attachment = self.env["ir.attachment"].sudo()
        if not fnames or attachment._storage() != "file":
            return result
        used = self._files_in_use(fnames)
        unused = [fname for fname in fnames if fname not in used]
        result["shared"] = len(fnames) - len(unused)
        result["scheduled"] = len(unused)
        if unused:
            registry = self.env.registry

            @self.env.cr.postcommit.add
            def purge():
                with registry.cursor() as cr:
                    env = api.Environment(cr, SUPERUSER_ID, {})
                    env["dsr.erasure"]._delete_unused_files(unused, label)

        return result

    @api.model
    def _files_in_use(self, fnames):
        """The names of ``fnames`` an attachment uses (by name or content)."""
        self.env.flush_all()
        self.env.cr.execute(
            SQL(
                "SELECT store_fname, checksum FROM ir_attachment "
                "WHERE store_fname = ANY(%s) OR checksum = ANY(%s)",
                list(fnames),
                [os.path.basename(fname) for fname in fnames],
            )
        )
        names, sums = set(), set()
        for store_fname, checksum in self.env.cr.fetchall():
            names.add(store_fname)
            sums.add(checksum)
        return {
            fname
            for fname in fnames
            if fname in names or os.path.basename(fname) in sums
        }

    @api.model
    def _delete_unused_files(self, fnames, label):
        """Delete the files of ``fnames`` no attachment uses (see
        :meth:`_purge_files`); log the outcome. Returns the counts."""
        result = {"removed": 0, "shared": 0, "absent": 0, "left_to_gc": 0}
        cr = self.env.cr
        try:
            with cr.savepoint(flush=False):
                cr.execute(SQL("SET LOCAL lock_timeout TO %s", FILESTORE_LOCK_TIMEOUT))
                cr.execute(SQL("LOCK ir_attachment IN SHARE MODE"))
                cr.execute(SQL("SET LOCAL lock_timeout TO DEFAULT"))
        except psycopg2.errors.LockNotAvailable:
            _logger.warning(
                "DSR erasure %s: the attachment table is locked (a backup?): %s "
                "file(s) left to the filestore garbage collector",
                label,
                len(fnames),
            )
            result["left_to_gc"] = len(fnames)
        else:
            attachment = self.env["ir.attachment"].sudo()
            used = self._files_in_use(fnames)
            root = os.path.realpath(attachment._filestore())
            for fname in fnames:
                if fname in used:
                    result["shared"] += 1
                    continue
                path = attachment._full_path(fname)
                real = os.path.realpath(path)
                if os.path.islink(path) or not real.startswith(root + os.sep):
                    _logger.warning("DSR erasure: %s is outside the filestore", fname)
                    result["left_to_gc"] += 1
                    continue
                try:
                    os.unlink(real)
                except FileNotFoundError:
                    result["absent"] += 1
                except OSError as exc:
                    _logger.warning("DSR erasure: could not delete %s: %s", fname, exc)
                    result["left_to_gc"] += 1
                else:
                    result["removed"] += 1
        _logger.info("DSR erasure %s: filestore files %s", label, result)
        self.env["audit.event"].log_event(
            "dsr",
            res_model="dsr.request",
            res_name=label,
            result="success" if not result["left_to_gc"] else "failure",
            details={"step": "files_removed", **result},
            message=self.env._(
                "Erasure %(ref)s: %(count)s file(s) removed from the filestore",
                ref=label,
                count=result["removed"],
            ),
        )
        return result
