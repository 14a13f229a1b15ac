import logging
from collections import defaultdict

from odoo import api, models
from odoo.tools import SQL

from ..lib.erasure_register import normalize_email

_logger = logging.getLogger(__name__)

# Models handled by dedicated steps of the discovery (never by the generic scan).
HANDLED_MODELS = {
    "res.partner",
    "res.users",
    "mail.message",
    "mail.mail",
    "mail.followers",
    "ir.attachment",
}


class DsrDiscovery(models.AbstractModel):
    """Find every record tied to a data subject.

    The scan reads the database with SQL (fast on large tables) and returns
    references only (model, id, how it was found); what the officer may see
    of each record is decided when the lines are displayed or exported.
    Override the ``_discover_*`` hooks to add app-specific sources.
    """

    _name = "dsr.discovery"
    _description = "Data Subject Request: discovery"

    # -- public entry points -------------------------------------------------
    @api.model
    def _discover(self, email, extra_partner_ids=()):
        """Return ``(subject_partner_ids, hits)`` for a subject email.

        ``hits`` is a list of dicts ``{res_model, res_id, category, source,
        ref_fields}`` without duplicates (the first way a record was found
        wins, its reference fields are merged).
        """
        self.env.flush_all()
        email = normalize_email(email)
        seed_ids = set(self._find_partners_by_email(email)) if email else set()
        seed_ids |= {int(pid) for pid in extra_partner_ids}
        subject_ids, related_ids = self._expand_partners(seed_ids, email)
        hits = _Hits()
        for pid in sorted(subject_ids):
            hits.add(
                "res.partner",
                pid,
                "profile",
                "email match" if pid in seed_ids else "child contact",
            )
        for pid in sorted(related_ids):
            hits.add("res.partner", pid, "related_partner", "related contact")
        if subject_ids:
            self._discover_users(subject_ids, hits)
            self._discover_references(subject_ids, hits)
            self._discover_messages(subject_ids, email, hits)
            self._discover_attachments(hits)
        return sorted(subject_ids), hits.as_list()

    @api.model
    def _scanned_models(self):
        """Names of every model the discovery may list records of."""
        return set(HANDLED_MODELS) | {
            model._name for model, _field in self._partner_reference_fields()
        }

    # -- steps -----------------------------------------------------------------
    @api.model
    def _find_partners_by_email(self, email):
        self.env.cr.execute(
            SQL(
                """SELECT id FROM res_partner
                WHERE email_normalized = %(email)s
                   OR lower(btrim(email)) = %(email)s""",
                email=email,
            )
        )
        return [row[0] for row in self.env.cr.fetchall()]

    @api.model
    def _expand_partners(self, seed_ids, email):
        """Subject partners = the matches and their descendants that are the
        same person (addresses, or contacts without another email); other
        descendants and the commercial entity are related, not the subject."""
        if not seed_ids:
            return set(), set()
        self.env.cr.execute(
            SQL(
                """WITH RECURSIVE tree(id) AS (
                    SELECT id FROM res_partner WHERE id = ANY(%(seeds)s)
                    UNION
                    SELECT p.id FROM res_partner p JOIN tree t ON p.parent_id = t.id
               )
               SELECT p.id, p.type, p.email_normalized, p.email
                 FROM res_partner p JOIN tree t ON t.id = p.id""",
                seeds=list(seed_ids),
            )
        )
        subject, related = set(seed_ids), set()
        for pid, ptype, normalized, raw in self.env.cr.fetchall():
            if pid in seed_ids:
                continue
            own = normalized or normalize_email(raw)
            if not own or own == email or ptype != "contact":
                subject.add(pid)
            else:
                related.add(pid)
        self.env.cr.execute(
            SQL(
                """SELECT DISTINCT commercial_partner_id FROM res_partner
                WHERE id = ANY(%(ids)s) AND commercial_partner_id IS NOT NULL""",
                ids=list(subject),
            )
        )
        related |= {row[0] for row in self.env.cr.fetchall()} - subject
        return subject, related

    @api.model
    def _discover_users(self, partner_ids, hits):
        self.env.cr.execute(
            SQL(
                "SELECT id FROM res_users WHERE partner_id = ANY(%(ids)s) ORDER BY id",
                ids=list(partner_ids),
            )
        )
        for (uid,) in self.env.cr.fetchall():
            hits.add("res.users", uid, "user", "user of the subject")

    @api.model
    def _partner_reference_fields(self):
        """Yield ``(model, field)`` for every stored many2one/many2many to
        res.partner the generic scan reads (exclusions applied)."""
        excluded_models, excluded_fields = self.env[
            "dsr.discovery.exclusion"
        ]._get_exclusions()
        for model_name in sorted(self.env.registry):
            model = self.env[model_name]
            if (
                model._transient
                or model._abstract
                or not model._auto
                or model._table_query
                or model_name in HANDLED_MODELS
                or model_name in excluded_models
            ):
                continue
            for field in model._fields.values():
                if (
                    field.comodel_name != "res.partner"
                    or field.type not in ("many2one", "many2many")
                    or not field.store
                    or field.inherited
                    or getattr(field, "company_dependent", False)
                    or (model_name, field.name) in excluded_fields
                ):
                    continue
                yield model, field

    @api.model
    def _discover_references(self, partner_ids, hits):
        ids = list(partner_ids)
        for model, field in self._partner_reference_fields():
            if field.type == "many2one":
                query = SQL(
                    "SELECT id FROM %s WHERE %s = ANY(%s) ORDER BY id",
                    SQL.identifier(model._table),
                    SQL.identifier(field.name),
                    ids,
                )
            else:
                query = SQL(
                    "SELECT DISTINCT %s FROM %s WHERE %s = ANY(%s) ORDER BY 1",
                    SQL.identifier(field.column1),
                    SQL.identifier(field.relation),
                    SQL.identifier(field.column2),
                    ids,
                )
            self.env.cr.execute(query)
            for (res_id,) in self.env.cr.fetchall():
                hits.add(
                    model._name,
                    res_id,
                    self._category_for(model._name),
                    f"refers to the subject ({field.name})",
                    ref_field=field.name,
                )

    @api.model
    def _category_for(self, model_name):
        if model_name in ("account.move", "account.move.line"):
            return "invoice"
        if model_name in (
            "account.payment",
            "res.partner.bank",
            "account.bank.statement.line",
        ):
            return "payment"
        return "record"

    @api.model
    def _discover_messages(self, partner_ids, email, hits):
        ids = list(partner_ids)
        message_model = self.env["mail.message"]
        recipients = message_model._fields["partner_ids"]
        email_conditions = SQL("FALSE")
        if email:
            email_conditions = SQL(
                "lower(btrim(email_from)) = %s OR email_from ILIKE %s",
                email,
                f"%<{email}>%",
            )
        self.env.cr.execute(
            SQL(
                """SELECT id, (author_id = ANY(%(ids)s)) FROM mail_message
                WHERE author_id = ANY(%(ids)s)
                   OR (model = 'res.partner' AND res_id = ANY(%(ids)s))
                   OR id IN (SELECT %(col1)s FROM %(rel)s WHERE %(col2)s = ANY(%(ids)s))
                   OR %(email_cond)s
                ORDER BY id""",
                ids=ids,
                col1=SQL.identifier(recipients.column1),
                rel=SQL.identifier(recipients.relation),
                col2=SQL.identifier(recipients.column2),
                email_cond=email_conditions,
            )
        )
        message_ids = []
        for message_id, authored in self.env.cr.fetchall():
            message_ids.append(message_id)
            hits.add(
                "mail.message",
                message_id,
                "message",
                "written by the subject" if authored else "about or to the subject",
            )
        mail_recipients = self.env["mail.mail"]._fields["recipient_ids"]
        self.env.cr.execute(
            SQL(
                """SELECT id FROM mail_mail
                WHERE mail_message_id = ANY(%(msgs)s)
                   OR id IN (SELECT %(col1)s FROM %(rel)s WHERE %(col2)s = ANY(%(ids)s))
                   OR (%(email)s IS NOT NULL AND email_to ILIKE %(pattern)s)
                ORDER BY id""",
                msgs=message_ids,
                ids=ids,
                col1=SQL.identifier(mail_recipients.column1),
                rel=SQL.identifier(mail_recipients.relation),
                col2=SQL.identifier(mail_recipients.column2),
                email=email,
                pattern=f"%{email}%" if email else None,
            )
        )
        for (mail_id,) in self.env.cr.fetchall():
            hits.add("mail.mail", mail_id, "mail", "outgoing email")
        self.env.cr.execute(
            SQL(
                "SELECT id FROM mail_followers WHERE partner_id = ANY(%(ids)s) "
                "ORDER BY id",
                ids=ids,
            )
        )
        for (follower_id,) in self.env.cr.fetchall():
            hits.add("mail.followers", follower_id, "follower", "follows a document")

    @api.model
    def _discover_attachments(self, hits):
        by_model = defaultdict(list)
        for hit in hits.as_list():
            if hit["category"] in ("related_partner", "attachment"):
                continue
            by_model[hit["res_model"]].append(hit["res_id"])
        message_ids = by_model.get("mail.message", [])
        if message_ids:
            attachments = self.env["mail.message"]._fields["attachment_ids"]
            self.env.cr.execute(
                SQL(
                    "SELECT DISTINCT %s FROM %s WHERE %s = ANY(%s) ORDER BY 1",
                    SQL.identifier(attachments.column2),
                    SQL.identifier(attachments.relation),
                    SQL.identifier(attachments.column1),
                    message_ids,
                )
            )
            for (attachment_id,) in self.env.cr.fetchall():
                hits.add(
                    "ir.attachment",
                    attachment_id,
                    "attachment",
                    "attached to a message",
                )
        for model_name, res_ids in sorted(by_model.items()):
            self.env.cr.execute(
                SQL(
                    """SELECT id FROM ir_attachment
                    WHERE res_model = %s AND res_id = ANY(%s) AND res_field IS NULL
                    ORDER BY id""",
                    model_name,
                    res_ids,
                )
            )
            for (attachment_id,) in self.env.cr.fetchall():
                hits.add(
                    "ir.attachment",
                    attachment_id,
                    "attachment",
                    f"attached to {model_name}",
                )


class _Hits:
    """Ordered, de-duplicated collection of discovery hits."""

    def __init__(self):
        self._hits = {}

    def add(self, res_model, res_id, category, source, ref_field=None):
        key = (res_model, res_id)
        hit = self._hits.get(key)
        if hit is None:
            hit = self._hits[key] = {
                "res_model": res_model,
                "res_id": res_id,
                "category": category,
                "source": source,
                "ref_fields": [],
            }
        if ref_field and ref_field not in hit["ref_fields"]:
            hit["ref_fields"].append(ref_field)

    def as_list(self):
        return list(self._hits.values())
