"""The audit trail: one row per event, append-only and hash-chained."""

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import uuid

from odoo import SUPERUSER_ID, api, fields, models, tools
from odoo.exceptions import AccessError, UserError
from odoo.http import request
from odoo.tools import SQL

from suite_core import witness

from ..lib import chain
from .audit_checkpoint import in_test_mode

_logger = logging.getLogger(__name__)

ACTIONS = [
    ("login", "Login"),
    ("login_failed", "Login failed"),
    ("logout", "Logout"),
    ("create", "Create"),
    ("update", "Update"),
    ("delete", "Delete"),
    ("export", "Export"),
    ("backup", "Backup"),
    ("restore", "Restore"),
    ("download", "Download"),
    ("upload", "Upload"),
    ("sandbox", "Sandbox"),
    ("dsr", "Data subject request"),
    ("settings", "Settings change"),
    ("purge", "Retention purge"),
]
# One advisory lock key (any constant bigint) serialises chain sealing.
CHAIN_LOCK_KEY = 0x6175646974  # "audit"
SEAL_BATCH = 5000
# Precommit buffer of captured create/update/delete events.
BUFFER_KEY = "audit_export.events"
USER_AGENT_MAX = 512
# Bulk insert of captured events: one array parameter per column, in the
# order of INSERT_COLUMNS, expanded by unnest (a constant statement).
INSERT_BATCH = 5000
INSERT_COLUMNS = (
    "uuid",
    "timestamp",
    "user_id",
    "user_uid",
    "login",
    "user_name",
    "action",
    "result",
    "res_model",
    "res_id",
    "res_name",
    "ip_address",
    "user_agent",
    "details",
    "message",
    "key_id",
    "digest",
    "salts",
    "chain_version",
    "origin",
)
INSERT_QUERY = """
    INSERT INTO audit_event (
        uuid, "timestamp", user_id, user_uid, login, user_name, action, result,
        res_model, res_id, res_name, ip_address, user_agent, details, message,
        key_id, digest, salts, chain_version, origin
    )
    SELECT * FROM unnest(
        %s::varchar[], %s::timestamp[], %s::int4[], %s::int4[], %s::varchar[],
        %s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[], %s::int4[],
        %s::varchar[], %s::varchar[], %s::varchar[], %s::jsonb[], %s::text[],
        %s::varchar[], %s::varchar[], %s::jsonb[], %s::int4[], %s::varchar[]
    )
"""
#: What verification reads of each sealed event.
VERIFY_COLUMNS = (
    "id",
    "sequence",
    "digest",
    "chain_hash",
    "key_id",
    "chain_version",
    "salts",
    "redactions",
    *chain.EVENT_FIELDS_V2,
)


CARRY_KIND = "audit_export.carry_over"


def _carry_message(bundle):
    data = {k: v for k, v in bundle.items() if k != "mac"}
    return (
        b"odoo-suite/audit-carry/v1\x00"
        + json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    )


class _ChainStore:
    """The sealed events as lib/chain.verify_log reads them (SQL)."""

    def __init__(self, cr):
        self.cr = cr
        self.columns = SQL(", ").join(SQL.identifier(name) for name in VERIFY_COLUMNS)

    def _rows(self):
        rows = self.cr.dictfetchall()
        for row in rows:
            # jsonb comes back JSON-normal: skip the round trip.
            if isinstance(row["details"], dict):
                row["details"] = chain.NormalizedDetails(row["details"])
        return rows

    def rows_after(self, sequence, limit):
        self.cr.execute(
            SQL(
                "SELECT %s FROM audit_event WHERE sequence > %s "
                "ORDER BY sequence, id LIMIT %s",
                self.columns,
                sequence,
                limit,
            )
        )
        return self._rows()

    def first_at_or_before(self, sequence):
        self.cr.execute(
            SQL(
                "SELECT id, sequence FROM audit_event WHERE sequence <= %s "
                "ORDER BY sequence LIMIT 1",
                sequence,
            )
        )
        return self.cr.dictfetchone()

    def hashes_at(self, sequences):
        self.cr.execute(
            SQL(
                "SELECT sequence, chain_hash FROM audit_event WHERE sequence = ANY(%s)",
                list(sequences),
            )
        )
        return dict(self.cr.fetchall())


def _escape_like(text):
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SubjectMatcher:
    """Which personal values of an event belong to a data subject."""

    ACTOR_SLOTS = ("login", "user_name", "ip_address", "user_agent")
    #: Shortest name searched inside longer texts (shorter: exact match only).
    MIN_NAME = 3

    def __init__(self, identifiers):
        identifiers = identifiers or {}

        def texts(key):
            return {
                str(value).strip().lower()
                for value in identifiers.get(key) or ()
                if value and str(value).strip()
            }

        def ints(key):
            return {int(value) for value in identifiers.get(key) or () if value}

        self.emails = texts("emails")
        self.logins = texts("logins")
        self.names = texts("names")
        self.partner_ids = ints("partner_ids")
        self.user_ids = ints("user_ids")
        self.exact = self.emails | self.logins | self.names
        # Searched inside longer texts: emails, e-mail-like logins, names.
        self.searched = (
            self.emails
            | {login for login in self.logins if "@" in login}
            | {name for name in self.names if len(name) >= self.MIN_NAME}
        )
        self._name_res = [
            re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)
            for name in self.names
            if len(name) >= self.MIN_NAME
        ]
        self._substrings = self.emails | {x for x in self.logins if "@" in x}

    def __bool__(self):
        return bool(self.exact or self.partner_ids or self.user_ids)

    def _text_mentions(self, text):
        lowered = text.strip().lower()
        if lowered in self.exact:
            return True
        if any(sub in lowered for sub in self._substrings):
            return True
        return any(regex.search(text) for regex in self._name_res)

    def mentions(self, value):
        """True when a JSON value holds one of the identifiers."""
        if isinstance(value, str):
            return self._text_mentions(value)
        if isinstance(value, dict):
            return any(self.mentions(v) for v in value.values())
        if isinstance(value, list):
            return any(self.mentions(v) for v in value)
        return False

    def slots_to_erase(self, row):
        """The slots of ``row`` to erase (those not erased already)."""
        personal = chain.personal_values(row)
        done = set()
        for record in row.get("redactions") or []:
            done.update(record.get("slots") or ())
            done.update(record.get("erased") or ())
        erase = set()
        login = (row.get("login") or "").strip().lower()
        if (
            (row.get("user_uid") or 0) in self.user_ids
            or (login and login in self.emails | self.logins)
            or (row.get("user_name") or "").strip().lower() in self.names
        ):
            erase.update(self.ACTOR_SLOTS)
        record = (row.get("res_model"), row.get("res_id") or 0)
        if (
            (record[0] == "res.partner" and record[1] in self.partner_ids)
            or (record[0] == "res.users" and record[1] in self.user_ids)
            or (row.get("res_name") and self.mentions(row["res_name"]))
        ):
            erase.update(slot for slot in personal if slot not in self.ACTOR_SLOTS)
        erase.update(slot for slot, value in personal.items() if self.mentions(value))
        return {slot for slot in erase if slot in personal and slot not in done}


class AuditEvent(models.Model):
    _name = "audit.event"
    _description = "Audit Event"
    _order = "timestamp desc, id desc"
    _rec_name = "summary"
    _log_access = False

    # Indexed by its UNIQUE constraint.
    uuid = fields.Char(required=True, readonly=True, copy=False)
    timestamp = fields.Datetime(required=True, readonly=True, index=True)
    user_id = fields.Many2one(
        "res.users", readonly=True, index=True, ondelete="set null"
    )
    user_uid = fields.Integer(string="User ID", readonly=True)
    login = fields.Char(readonly=True, help="The login used (or tried).")
    user_name = fields.Char(readonly=True)
    # Not indexed: listing by action walks the timestamp index (the list's
    # order); every index is paid twice per event (insert, then seal).
    action = fields.Selection(ACTIONS, required=True, readonly=True)
    result = fields.Selection(
        [("success", "Success"), ("failure", "Failure")],
        required=True,
        readonly=True,
        default="success",
    )
    # Indexed with res_id (the history of one record), see init().
    res_model = fields.Char(string="Model", readonly=True)
    res_id = fields.Many2oneReference(
        string="Record ID", model_field="res_model", readonly=True
    )
    res_name = fields.Char(string="Resource", readonly=True)
    ip_address = fields.Char(string="IP Address", readonly=True)
    user_agent = fields.Char(readonly=True)
    details = fields.Json(readonly=True)
    details_text = fields.Text(string="Details (JSON)", compute="_compute_details_text")
    message = fields.Text(readonly=True)
    summary = fields.Char(compute="_compute_summary")
    # Tamper evidence (see lib/chain.py)
    key_id = fields.Char(readonly=True)
    digest = fields.Char(readonly=True)
    sequence = fields.Integer(string="Chain Position", readonly=True, copy=False)
    chain_hash = fields.Char(readonly=True, copy=False)
    # Format 2: keyed link, salted commitments of the personal values (the
    # salts go with the values when they are erased).
    chain_version = fields.Integer(string="Chain Format", readonly=True, copy=False)
    salts = fields.Json(readonly=True, copy=False, groups="base.group_system")
    redactions = fields.Json(readonly=True, copy=False)
    redaction_note = fields.Char(string="Erasure", compute="_compute_redaction_note")
    origin = fields.Char(
        readonly=True,
        copy=False,
        help="Set on events carried over from the database a restore replaced.",
    )
    signed_with_keyring = fields.Boolean(compute="_compute_signed_with_keyring")

    _sql_constraints = [
        ("uuid_unique", "UNIQUE(uuid)", "An audit event UUID must be unique."),
        ("sequence_unique", "UNIQUE(sequence)", "A chain position is used once."),
    ]

    def init(self):
        res = super().init()
        tools.create_index(
            self.env.cr,
            "audit_event_res_model_res_id_index",
            self._table,
            ["res_model", "res_id"],
        )
        return res

    @api.depends("details")
    def _compute_details_text(self):
        for event in self:
            event.details_text = (
                json.dumps(event.details, indent=2, ensure_ascii=False, sort_keys=True)
                if event.details
                else False
            )

    @api.depends("redactions")
    def _compute_redaction_note(self):
        for event in self:
            records = event.redactions or []
            event.redaction_note = (
                "; ".join(
                    self.env._(
                        "Personal data erased under %(reason)s on %(date)s UTC",
                        reason=record.get("reason"),
                        date=record.get("at"),
                    )
                    for record in records
                )
                or False
            )

    @api.depends("key_id")
    def _compute_signed_with_keyring(self):
        for event in self:
            event.signed_with_keyring = chain.is_keyring_key(event.key_id)

    @api.depends("action", "res_model", "res_name", "login")
    def _compute_summary(self):
        labels = dict(self._fields["action"]._description_selection(self.env))
        for event in self:
            target = event.res_name or event.res_model or event.login or ""
            event.summary = f"{labels.get(event.action, event.action)} {target}".strip()

    # -- CRUD: append-only --------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        # Only the server writes events (as superuser); refused before any
        # value is looked at for everyone else.
        self.check_access("create")
        details_texts = self._sign_vals(vals_list)
        for vals, details_text in zip(vals_list, details_texts, strict=True):
            # What is stored is exactly what was hashed (a JSON round trip).
            vals["details"] = None if details_text is None else json.loads(details_text)
        events = super().create(vals_list)
        self._schedule_seal()
        return events

    @api.model
    def _sign_vals(self, vals_list):
        """Complete and sign event values in place; returns the details JSON.

        Every hashed value is set here: an ORM default applied after the
        digest would make the event look altered. The returned list holds
        each event's details as JSON text (``None`` when empty), the exact
        text that was hashed.
        """
        key_id, key = self._audit_key()
        now = last_stamp = last_normalized = None
        for vals in vals_list:
            if not vals.get("uuid"):
                vals["uuid"] = str(uuid.uuid4())
            if not vals.get("result"):
                vals["result"] = "success"
            stamp = vals.get("timestamp")
            if stamp is None:
                stamp = now = now or self._normalize_timestamp(None)
            elif stamp is not last_stamp:
                # A captured batch shares one time stamp object.
                last_stamp, last_normalized = stamp, self._normalize_timestamp(stamp)
                stamp = last_normalized
            else:
                stamp = last_normalized
            vals["timestamp"] = stamp
            for name in ("sequence", "chain_hash", "redactions"):
                vals.pop(name, None)
        details_texts = []
        for vals in vals_list:
            # Format 2: the digest covers a salted commitment of each
            # personal value (lib/chain.sign_v2), so they can be erased.
            event_digest, salts, details_text = chain.sign_v2(key, vals)
            vals["key_id"] = key_id
            vals["digest"] = event_digest
            vals["salts"] = salts
            vals["chain_version"] = chain.KEYED_VERSION
            details_texts.append(details_text)
        return details_texts

    # Append-only: events are never changed, removed or duplicated through
    # the ORM (retention purges and redaction go through SQL with their own
    # signed records), so these overrides deliberately do not call super().
    # pylint: disable=method-required-super,no-raise-unlink
    def write(self, vals):
        raise AccessError(self.env._("Audit events cannot be modified."))

    def unlink(self):
        raise AccessError(self.env._("Audit events cannot be deleted."))

    def copy(self, default=None):
        raise AccessError(self.env._("Audit events cannot be duplicated."))

    # pylint: enable=method-required-super,no-raise-unlink

    @api.model
    def _search(self, domain, *args, **kwargs):
        # Captured changes wait in a precommit buffer: make them visible first.
        self._flush_capture_buffer()
        return super()._search(domain, *args, **kwargs)

    # -- Public API ---------------------------------------------------------

    @api.private
    @api.model
    def log_event(
        self,
        action,
        *,
        record=None,
        res_model=None,
        res_id=None,
        res_name=None,
        result="success",
        details=None,
        message=None,
    ):
        """Record one audit event and return it (any user: runs as sudo).

        Server code only: private, so no RPC reaches it.

        ``record`` (a single record) fills the resource model, id and name;
        ``details`` is a JSON-serialisable dict; ``result`` is ``success``
        or ``failure``.
        """
        if record is not None:
            record.ensure_one()
            res_model = res_model or record._name
            res_id = res_id or record.id
            if res_name is None:
                res_name = record.sudo().display_name
        vals = self._prepare_event_vals(
            action,
            res_model=res_model,
            res_id=res_id,
            res_name=res_name,
            result=result,
            details=details,
            message=message,
        )
        return self.sudo().create([vals])

    @api.model
    def _prepare_event_vals(self, action, *, user=None, login=None, **values):
        user = user if user is not None else self.env.user
        if action not in dict(self._fields["action"].selection):
            raise UserError(
                self.env._("Unknown audit action %(action)s", action=action)
            )
        if values.get("result", "success") not in ("success", "failure"):
            raise UserError(self.env._("An audit result is 'success' or 'failure'."))
        vals = {
            "action": action,
            "user_id": user.id or False,
            "user_uid": user.id or False,
            "login": login if login is not None else (user.sudo().login or False),
            "user_name": user.sudo().name if user else False,
            **self._request_info(),
        }
        vals.update({k: v for k, v in values.items() if v is not None})
        return vals

    # -- Context of the request --------------------------------------------

    @api.model
    def _request_info(self):
        """IP address and user agent of the current HTTP request, if any."""
        if not request:
            return {}
        try:
            httprequest = request.httprequest
        except RuntimeError:
            return {}
        agent = httprequest.headers.get("User-Agent") or ""
        return {
            "ip_address": self._client_ip(httprequest) or False,
            "user_agent": agent[:USER_AGENT_MAX] or False,
        }

    @api.model
    def _client_ip(self, httprequest):
        """The client address; ``X-Forwarded-For`` only in proxy mode.

        Behind a proxy, the right-most address of ``X-Forwarded-For`` is the
        one the (trusted) proxy saw; earlier entries are client-supplied and
        can be forged. This matches Odoo's ProxyFix (``x_for=1``).
        """
        remote = httprequest.environ.get("REMOTE_ADDR") or ""
        if tools.config.get("proxy_mode"):
            forwarded = httprequest.headers.get("X-Forwarded-For", "")
            candidates = [part.strip() for part in forwarded.split(",") if part.strip()]
            if candidates:
                try:
                    return str(ipaddress.ip_address(candidates[-1]))
                except ValueError:
                    _logger.warning("Ignoring malformed X-Forwarded-For %r", forwarded)
        return remote

    @staticmethod
    def _normalize_timestamp(value):
        value = fields.Datetime.to_datetime(value) if value else None
        if value is None:
            value = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return value.replace(microsecond=0)

    # -- Capture buffer (create/update/delete on audited models) ------------

    @api.model
    def _buffer_event(self, vals):
        """Queue a captured event; inserted in bulk before commit (or search)."""
        self._buffer_events([vals])

    @api.model
    def _buffer_events(self, vals_list):
        """Queue captured events; inserted in bulk before commit (or search)."""
        if not vals_list:
            return
        cr = self.env.cr
        buffer = cr.precommit.data.get(BUFFER_KEY)
        if buffer is None:
            buffer = cr.precommit.data[BUFFER_KEY] = []
            cr.precommit.add(self._flush_capture_buffer)
        buffer.extend(vals_list)

    @api.model
    def _flush_capture_buffer(self):
        buffer = self.env.cr.precommit.data.get(BUFFER_KEY)
        if not buffer:
            return
        vals_list = buffer[:]
        buffer.clear()
        self._insert_events(vals_list)

    @api.model
    def _insert_events(self, vals_list):
        """Sign and insert events in bulk: one INSERT per ``INSERT_BATCH``.

        The fast path of captured changes (no ORM ``create``: no defaults,
        no per-record cache work). Each column is sent as ONE array
        parameter and expanded by ``unnest``, so the statement stays small
        whatever the number of events. Returns the number inserted.
        """
        details_texts = self._sign_vals(vals_list)
        cr = self.env.cr
        for start in range(0, len(vals_list), INSERT_BATCH):
            batch = vals_list[start : start + INSERT_BATCH]
            arrays = [
                details_texts[start : start + INSERT_BATCH]
                if name == "details"
                else [json.dumps(vals["salts"]) for vals in batch]
                if name == "salts"
                # False is the ORM's empty value: NULL in the database.
                else [vals.get(name) or None for vals in batch]
                for name in INSERT_COLUMNS
            ]
            cr.execute(SQL(INSERT_QUERY, *arrays))
        self._schedule_seal()
        return len(vals_list)

    # -- Hash chain -------------------------------------------------------

    @api.model
    def _audit_key(self):
        """``(key_id, key)`` used for new digests (keyring first)."""
        keyring = self._load_keyring()
        if keyring is not None:
            return f"kr:{keyring.active.key_id}", self._keyring_key(keyring, None)
        return "db", self._database_key()

    @api.model
    def _key_for(self, key_id, context=None):
        """The key of ``key_id``; ``context``: another database's uuid (a
        carried-over export) instead of this one's."""
        if key_id in (None, "db"):
            return self._database_key()
        if not key_id.startswith("kr:"):
            raise UserError(self.env._("Unknown audit key id %(key)s", key=key_id))
        keyring = self._load_keyring()
        if keyring is None:
            raise UserError(
                self.env._(
                    "Event signed with keyring key %(key)s but no keyring is "
                    "configured",
                    key=key_id,
                )
            )
        return self._keyring_key(keyring, key_id[3:], context)

    def _keyring_key(self, keyring, key_id, context=None):
        return keyring.derive(
            "audit-chain", context or self._database_uuid(), key_id=key_id
        )

    @api.model
    def _database_uuid(self):
        """The context of the chain key (the database uuid, else its name)."""
        dbuuid = self.env["ir.config_parameter"].sudo().get_param("database.uuid")
        return dbuuid or self.env.cr.dbname

    @api.model
    def _load_keyring(self):
        """The server keyring, or None when none is configured.

        A configured but unusable keyring raises: silently falling back to
        the weaker database key would hide a misconfiguration.
        """
        from suite_core import keyring as keyring_lib

        if not keyring_lib.is_configured(tools.config):
            return None
        return keyring_lib.Keyring.from_config(tools.config)

    @api.model
    def _database_key(self):
        secret = self.env["ir.config_parameter"].sudo().get_param("database.secret")
        return hashlib.sha256(f"audit_export|{secret}".encode()).digest()

    @api.model
    def _schedule_seal(self):
        """Seal this transaction's events right after it commits."""
        cr = self.env.cr
        if not cr.postcommit.data.get("audit_export.seal"):
            cr.postcommit.data["audit_export.seal"] = True
            dbname = cr.dbname
            cr.postcommit.add(lambda: self._seal_in_new_cursor(dbname))

    @api.model
    def _seal_in_new_cursor(self, dbname=None):
        """Seal committed events in a short transaction of its own.

        Under tests, everything runs in the test's single transaction (which
        is never committed), so the events are sealed in it.
        """
        from odoo.modules.registry import Registry

        registry = Registry(dbname or self.env.cr.dbname)
        if dbname is None and in_test_mode(self.env):
            return self._seal_pending()
        try:
            with registry.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                return env["audit.event"]._seal_pending(
                    isolated=not registry.in_test_mode()
                )
        except Exception:
            # The cron seals whatever is left; never lose the caller's commit.
            _logger.exception("Audit chain: sealing after commit failed")
        return 0

    @api.model
    def _seal_pending(self, isolated=False):
        """Give chain positions and keyed chain hashes to unsealed events.

        Runs under a transaction-level advisory lock, in READ COMMITTED when
        ``isolated`` (a fresh cursor): every statement then sees the latest
        committed chain head, so concurrent sealers never fork the chain.
        Only committed events (and this transaction's own) are visible, so
        the chain order is commit order. Each link is an HMAC under the
        event's key (lib/chain.link_v2); the new head is signed into
        ``audit.checkpoint`` and, once committed, appended to the external
        witness file. Returns the number sealed.
        """
        cr = self.env.cr
        if isolated:
            cr.execute(SQL("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"))
        self._flush_capture_buffer()
        self.flush_model()
        cr.execute(SQL("SELECT pg_advisory_xact_lock(%s)", CHAIN_LOCK_KEY))
        seq, prev_hash = self._chain_head()
        checkpoints = self.env["audit.checkpoint"]
        checkpoints._adopt_if_needed(seq, prev_hash)
        self._flush_capture_buffer()
        self.flush_model()
        self._upgrade_unsealed_legacy()
        link_key = self._link_key_getter()
        sealed = 0
        while True:
            cr.execute(
                SQL(
                    "SELECT id, digest, key_id FROM audit_event "
                    "WHERE sequence IS NULL ORDER BY id LIMIT %s",
                    SEAL_BATCH,
                )
            )
            rows = cr.fetchall()
            if not rows:
                break
            ids, seqs, hashes = [], [], []
            for event_id, event_digest, key_id in rows:
                seq += 1
                prev_hash = chain.link_v2(
                    link_key(key_id), prev_hash, seq, event_digest or "", key_id
                )
                ids.append(event_id)
                seqs.append(seq)
                hashes.append(prev_hash)
            cr.execute(
                SQL(
                    "UPDATE audit_event e SET sequence = v.seq, chain_hash = v.h, "
                    "chain_version = %s "
                    "FROM unnest(%s::int4[], %s::int4[], %s::varchar[]) "
                    "AS v(id, seq, h) WHERE e.id = v.id",
                    chain.KEYED_VERSION,
                    ids,
                    seqs,
                    hashes,
                )
            )
            sealed += len(rows)
        if sealed:
            checkpoints._set_head(seq, prev_hash)
            checkpoints._witness_write(
                checkpoints._witness_record(witness.HEAD, seq, prev_hash),
                after_commit=isolated,
            )
            self.invalidate_model(["sequence", "chain_hash", "chain_version"])
            _logger.info("Audit chain head: position %s hash %s", seq, prev_hash)
        return sealed

    @api.model
    def _link_key_getter(self):
        """``key_id -> key`` for sealing, cached; an unusable key id (the
        event will fail verification anyway) gets the active key, so one
        bad row cannot stop the chain."""
        keys = {}
        active = self._audit_key()

        def link_key(key_id):
            if key_id not in keys:
                try:
                    keys[key_id] = self._key_for(key_id)
                except Exception:
                    _logger.warning("Audit chain: no key %r to seal with", key_id)
                    keys[key_id] = active[1]
            return keys[key_id]

        return link_key

    @api.model
    def _upgrade_unsealed_legacy(self):
        """Re-sign unsealed events of the legacy format in format 2.

        Events written by the previous version and not yet sealed: each is
        re-signed (same key id) only if its legacy digest verifies; one that
        does not is left as it is and fails verification once sealed.
        """
        cr = self.env.cr
        names = ("id", "key_id", "digest", *chain.EVENT_FIELDS_V2)
        cols = SQL(", ").join(SQL.identifier(name) for name in names)
        cr.execute(
            SQL(
                "SELECT %s FROM audit_event WHERE sequence IS NULL "
                "AND chain_version IS NULL ORDER BY id",
                cols,
            )
        )
        for row in cr.dictfetchall():
            try:
                key = self._key_for(row["key_id"])
            except Exception:
                continue
            if chain.digest(key, row) != row["digest"]:
                _logger.warning(
                    "Audit chain: unsealed legacy event %s does not match its digest",
                    row["id"],
                )
                continue
            event_digest, salts, _details = chain.sign_v2(key, row)
            cr.execute(
                SQL(
                    "UPDATE audit_event SET digest = %s, salts = %s, "
                    "chain_version = %s WHERE id = %s",
                    event_digest,
                    json.dumps(salts),
                    chain.KEYED_VERSION,
                    row["id"],
                )
            )

    @api.model
    def _chain_head(self):
        cr = self.env.cr
        cr.execute(
            SQL(
                "SELECT sequence, chain_hash FROM audit_event "
                "WHERE sequence IS NOT NULL ORDER BY sequence DESC LIMIT 1"
            )
        )
        row = cr.fetchone()
        if row:
            return row[0], row[1]
        return self.env["audit.checkpoint"]._anchor()

    @api.model
    def _verify_chain(self):
        """Seal, then check the whole log; returns a report dict.

        See lib/chain.verify_log: ``ok``, ``checked``, ``problem`` (None or
        ``{"kind", "event_id", "sequence", "message"}``), ``warnings``,
        ``keyring``, the head, the anchor and the witness compared.
        Outside tests it reads in a fresh READ COMMITTED transaction, so the
        events just sealed and the witness file agree.
        """
        self._seal_in_new_cursor()
        if in_test_mode(self.env):
            return self._verify_chain_now()
        with self.env.registry.cursor() as cr:
            cr.execute(SQL("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"))
            return self.with_env(self.env(cr=cr))._verify_chain_now()

    @api.model
    def _verify_chain_now(self):
        keyring = self._load_keyring()
        keys = {}

        def key_for(key_id):
            if key_id not in keys:
                keys[key_id] = self._key_for(key_id)
            return keys[key_id]

        checkpoints = self.env["audit.checkpoint"]
        witness_snapshot = checkpoints._witness_snapshot()
        return chain.verify_log(
            _ChainStore(self.env.cr),
            key_for,
            keyring=keyring is not None,
            checkpoints=checkpoints._signed_rows(),
            witness=witness_snapshot,
        )

    def action_verify_integrity(self):
        """Button / server action: verify the chain and show the result."""
        self.check_access("read")
        report = self._verify_chain()
        # Written by the server only: an auditor reads the result, cannot
        # make one up (no create right; a transient record is its creator's).
        wizard = self.env["audit.verify.wizard"].sudo()._from_report(report)
        _logger.log(
            logging.INFO if report["ok"] else logging.WARNING,
            "Audit integrity check: %s",
            wizard.message,
        )
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Audit log integrity"),
            "res_model": "audit.verify.wizard",
            "res_id": wizard.id,
            "view_mode": "form",
            "views": [(False, "form")],
            "target": "new",
        }

    # -- Retention ----------------------------------------------------------

    @api.model
    def _retention_days(self):
        param = (
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("audit_export.retention_days", "730")
        )
        try:
            days = int(param)
        except ValueError:
            _logger.warning("Invalid audit_export.retention_days %r: using 730", param)
            days = 730
        return days

    @api.model
    def _cron_seal(self):
        self._seal_in_new_cursor()

    @api.model
    def _cron_purge(self):
        """Delete events older than the retention period, keeping an anchor.

        Only a prefix of the chain is purged (positions 1..N, all older than
        the cut-off), so the remaining chain still verifies from the anchor:
        the chain hash of the last purged event, signed with the chain key.
        Nothing is purged while the log fails verification: deleting the
        evidence of tampering would launder it.
        """
        days = self._retention_days()
        if days <= 0:
            return 0
        report = self._verify_chain()
        if not report["ok"]:
            message = report["problem"]["message"]
            _logger.warning("Audit retention skipped, the log failed: %s", message)
            self.log_event(
                "purge",
                result="failure",
                message=f"Retention skipped: the audit log failed verification "
                f"({message})",
            )
            return 0
        cutoff = fields.Datetime.now() - dt.timedelta(days=days)
        cr = self.env.cr
        cr.execute(SQL("SELECT pg_advisory_xact_lock(%s)", CHAIN_LOCK_KEY))
        anchor_seq, _anchor_hash = self.env["audit.checkpoint"]._anchor()
        cr.execute(
            SQL(
                "SELECT MIN(sequence) FROM audit_event "
                "WHERE sequence IS NOT NULL AND timestamp >= %s",
                cutoff,
            )
        )
        first_kept = cr.fetchone()[0]
        if first_kept is None:
            cr.execute(SQL("SELECT MAX(sequence) FROM audit_event"))
            last = cr.fetchone()[0]
            limit_seq = last or anchor_seq
        else:
            limit_seq = first_kept - 1
        if limit_seq <= anchor_seq:
            return 0
        cr.execute(
            SQL(
                "SELECT chain_hash, timestamp FROM audit_event WHERE sequence = %s",
                limit_seq,
            )
        )
        anchor_row = cr.fetchone()
        if not anchor_row:
            raise UserError(
                self.env._(
                    "Audit retention stopped: chain position %(seq)s is missing; "
                    "run Verify integrity.",
                    seq=limit_seq,
                )
            )
        purged = 0
        while True:
            cr.execute(
                SQL(
                    "DELETE FROM audit_event WHERE id IN (SELECT id FROM audit_event "
                    "WHERE sequence <= %s LIMIT %s)",
                    limit_seq,
                    SEAL_BATCH,
                )
            )
            if not cr.rowcount:
                break
            purged += cr.rowcount
        self.env["audit.checkpoint"]._add_anchor(
            limit_seq, anchor_row[0], purged, cutoff
        )
        self.invalidate_model()
        self.log_event(
            "purge",
            details={
                "purged": purged,
                "up_to_position": limit_seq,
                "anchor_hash": anchor_row[0],
                "retention_days": days,
            },
        )
        return purged

    # -- Erasure of personal data (GDPR) -------------------------------------

    @api.private
    @api.model
    def _redact_subject(self, identifiers, reason):
        """Erase the personal values of every event about a data subject.

        ``identifiers``: a dict with any of ``emails``, ``logins``, ``names``
        (strings, compared without case), ``partner_ids`` and ``user_ids``
        (ints). ``reason``: the reference recorded in place of the values,
        e.g. ``"DSR/2026/0003"``. An event is erased

        - as the *actor's* event (its user is the subject: ``user_uid``,
          login or user name match): login, user name, IP address, user agent;
        - as the *subject's record* (``res.partner``/``res.users`` of the
          subject, or a resource name that names them): resource name,
          message and every value in ``details``;
        - in any other event: each value that mentions an identifier.

        Each erased value reads ``erased under <reason>``; its salt is
        deleted and its commitment kept in a redaction record signed with
        the chain key (who, when, reason), so the chain still verifies.
        Server code only (private). Returns the number of events changed.
        """
        reason = str(reason or "").strip()
        if not reason or len(reason) > 100 or "\n" in reason:
            raise UserError(
                self.env._(
                    "An erasure needs a one-line reason of at most 100 characters."
                )
            )
        matcher = SubjectMatcher(identifiers)
        if not matcher:
            return 0
        self._flush_capture_buffer()
        self.flush_model()
        cr = self.env.cr
        strings = sorted(matcher.exact)
        patterns = [f"%{_escape_like(text)}%" for text in sorted(matcher.searched)]
        cr.execute(
            SQL(
                "SELECT id FROM audit_event WHERE user_uid = ANY(%(uids)s) "
                "OR (res_model = 'res.users' AND res_id = ANY(%(uids)s)) "
                "OR (res_model = 'res.partner' AND res_id = ANY(%(pids)s)) "
                "OR lower(login) = ANY(%(strings)s) "
                "OR lower(user_name) = ANY(%(strings)s) "
                "OR lower(res_name) = ANY(%(strings)s) "
                "OR login ILIKE ANY(%(patterns)s) "
                "OR user_name ILIKE ANY(%(patterns)s) "
                "OR res_name ILIKE ANY(%(patterns)s) "
                "OR message ILIKE ANY(%(patterns)s) "
                "OR details::text ILIKE ANY(%(patterns)s) ORDER BY id",
                uids=sorted(matcher.user_ids),
                pids=sorted(matcher.partner_ids),
                strings=strings,
                patterns=patterns,
            )
        )
        ids = [row[0] for row in cr.fetchall()]
        signer = self._audit_key()
        check = chain.EventCheck(self._key_for, self._trust_policy())
        columns = SQL(", ").join(SQL.identifier(name) for name in VERIFY_COLUMNS)
        at = fields.Datetime.to_string(fields.Datetime.now())
        changed = 0
        for start in range(0, len(ids), SEAL_BATCH):
            cr.execute(
                SQL(
                    "SELECT %s FROM audit_event WHERE id = ANY(%s) ORDER BY id",
                    columns,
                    ids[start : start + SEAL_BATCH],
                )
            )
            for row in cr.dictfetchall():
                slots = matcher.slots_to_erase(row)
                if slots:
                    self._erase_slots(row, slots, reason, at, signer, check)
                    changed += 1
        self.invalidate_model()
        if changed:
            self.log_event(
                "dsr",
                res_model="audit.event",
                res_name="Audit log erasure",
                details={
                    "operation": "audit_erasure",
                    "reason": reason,
                    "events": changed,
                },
            )
        return changed

    @api.model
    def _trust_policy(self):
        """``key_id -> bool``: may this key sign under the current policy?"""
        keyring = self._load_keyring() is not None
        return chain.ChainWalker(None, keyring=keyring).trusted

    @api.model
    def _erase_slots(self, row, slots, reason, at, signer, check):
        """Erase ``slots`` of one event row (SQL) and sign the record."""
        key_id, key = signer
        legacy = (row["chain_version"] or chain.LEGACY_VERSION) < chain.KEYED_VERSION
        values, salts, record = chain.erase_slots(
            row,
            slots,
            reason=reason,
            key=key,
            key_id=key_id,
            uid=self.env.uid,
            at=at,
            verified=check.problem(row) is None if legacy else True,
        )
        details = values.get("details")
        self.env.cr.execute(
            SQL(
                "UPDATE audit_event SET login = %s, user_name = %s, res_name = %s, "
                "ip_address = %s, user_agent = %s, message = %s, details = %s, "
                "salts = %s, redactions = COALESCE(redactions, '[]'::jsonb) || %s "
                "WHERE id = %s",
                *(values[name] or None for name in chain.COMMITTED_COLUMNS),
                None if details is None else json.dumps(details),
                None if salts is None else json.dumps(salts),
                json.dumps([record]),
                row["id"],
            )
        )

    # -- Carry-over across a restore -----------------------------------------

    @api.private
    @api.model
    def _export_since(self, timestamp):
        """The events recorded since ``timestamp``, signed (bytes).

        Called in the live database before a restore replaces it; give the
        result to :meth:`_carry_over` in the restored database. Unsealed
        events are included. Server code only (private).
        """
        self._seal_in_new_cursor()
        self._flush_capture_buffer()
        self.flush_model()
        return self._export_from_cursor(
            self.env.cr, timestamp, self._database_uuid(), self.env.cr.dbname
        )

    @api.model
    def _export_from_cursor(self, cr, timestamp, source_uuid, source_db):
        """:meth:`_export_since` on any cursor (e.g. of the database a
        restore kept aside), signed with this server's chain key for
        ``source_uuid``."""
        if isinstance(timestamp, str):
            timestamp = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        if isinstance(timestamp, dt.datetime) and timestamp.tzinfo is not None:
            timestamp = timestamp.astimezone(dt.UTC).replace(tzinfo=None)
        since = self._normalize_timestamp(timestamp)
        columns = SQL(", ").join(SQL.identifier(name) for name in VERIFY_COLUMNS)
        cr.execute(
            SQL(
                "SELECT %s FROM audit_event WHERE timestamp >= %s "
                "OR sequence IS NULL ORDER BY sequence NULLS LAST, id",
                columns,
                since,
            )
        )
        events = []
        for row in cr.dictfetchall():
            row["timestamp"] = fields.Datetime.to_string(row["timestamp"])
            events.append(row)
        key_id, key = self._carry_key(source_uuid)
        bundle = {
            "v": 1,
            "kind": CARRY_KIND,
            "source": {"db": source_db, "uuid": source_uuid},
            "since": fields.Datetime.to_string(since),
            "exported_at": fields.Datetime.to_string(fields.Datetime.now()),
            "key_id": key_id,
            "events": events,
        }
        bundle["mac"] = chain.sign(key, _carry_message(bundle))
        return json.dumps(bundle, default=str).encode()

    @api.model
    def _carry_key(self, source_uuid, key_id=None):
        keyring = self._load_keyring()
        if keyring is None:
            return "db", self._database_key()
        if key_id is not None and not chain.is_keyring_key(key_id):
            raise UserError(
                self.env._("A carried-over export must be signed with the keyring.")
            )
        kid = key_id[3:] if key_id else None
        sub_key = keyring.derive("audit-carry", source_uuid, key_id=kid)
        return f"kr:{kid or keyring.active.key_id}", sub_key

    @api.private
    @api.model
    def _carry_over(self, exported):
        """Re-append exported events (:meth:`_export_since`) to this chain.

        Checks the export's signature, then each event's own signature under
        the source database's chain key; events already here (same uuid) are
        skipped, events that fail are not carried (counted in the summary
        event). The others are appended as new events with their original
        values and time, ``origin`` naming the source and position. Returns
        ``{"carried", "skipped", "rejected"}``.
        """
        try:
            bundle = json.loads(exported)
        except (TypeError, ValueError) as exc:
            raise UserError(self.env._("Not an audit log export.")) from exc
        if not isinstance(bundle, dict) or bundle.get("kind") != CARRY_KIND:
            raise UserError(self.env._("Not an audit log export."))
        source = bundle.get("source") or {}
        key_id, key = self._carry_key(source.get("uuid"), bundle.get("key_id"))
        if key_id != bundle.get("key_id") or not hmac.compare_digest(
            chain.sign(key, _carry_message(bundle)), str(bundle.get("mac") or "")
        ):
            raise UserError(
                self.env._("The audit log export does not match its signature.")
            )
        source_keys = {}

        def source_key(event_key_id):
            if event_key_id not in source_keys:
                source_keys[event_key_id] = self._key_for(
                    event_key_id, context=source.get("uuid")
                )
            return source_keys[event_key_id]

        check = chain.EventCheck(source_key, self._trust_policy())
        cr = self.env.cr
        events = bundle.get("events") or []
        cr.execute(
            SQL(
                "SELECT uuid FROM audit_event WHERE uuid = ANY(%s)",
                [event.get("uuid") for event in events],
            )
        )
        present = {row[0] for row in cr.fetchall()}
        cr.execute(SQL("SELECT id FROM res_users"))
        users = {row[0] for row in cr.fetchall()}
        vals_list, skipped, rejected = [], 0, []
        for event in events:
            if event.get("uuid") in present:
                skipped += 1
                continue
            if check.problem(event):
                rejected.append(event.get("uuid"))
                continue
            vals = {name: event.get(name) for name in chain.EVENT_FIELDS_V2}
            vals["user_id"] = (
                event.get("user_uid") if event.get("user_uid") in users else None
            )
            vals["origin"] = (
                f"carried over from {source.get('db')} "
                f"(position {event.get('sequence') or 'unsealed'})"
            )
            vals_list.append(vals)
        if vals_list:
            self._insert_events(vals_list)
        _logger.info(
            "Audit chain: %s events carried over from %s (%s already here, "
            "%s rejected)",
            len(vals_list),
            source.get("db"),
            skipped,
            len(rejected),
        )
        summary = {
            "carried": len(vals_list),
            "skipped": skipped,
            "rejected": len(rejected),
        }
        self.log_event(
            "restore",
            res_model="audit.event",
            res_name="Audit log carried over",
            result="failure" if rejected else "success",
            details={
                "operation": "audit_carry_over",
                "source": source.get("db"),
                "since": bundle.get("since"),
                **summary,
                "rejected_uuids": rejected[:100],
            },
        )
        return summary

    @api.model
    def _on_database_restored(self, info):
        """Restore hook (db_backup_suite): carry the events recorded in the
        replaced database since the archive's date over into this one, then
        start a new witnessed history at this chain's head.

        ``info``: ``target``, ``archive_name``, ``archive_created_at``,
        ``safety_database`` (the replaced database, kept aside) and, when
        the archive's manifest has it, ``audit_head`` (the witnessed head
        when the backup was taken), checked against the restored chain.
        """
        checkpoints = self.env["audit.checkpoint"]
        if info.get("audit_head"):
            problem = checkpoints._check_archived_head(info["audit_head"])
            if problem:
                _logger.warning("Audit chain after the restore: %s", problem)
                self.log_event(
                    "restore",
                    res_model="audit.checkpoint",
                    res_name="Audit chain of the archive",
                    result="failure",
                    message=problem,
                )
        source = info.get("safety_database")
        since = info.get("archive_created_at")
        if source and since and info.get("target") == "production":
            import odoo.sql_db

            with odoo.sql_db.db_connect(source).cursor() as source_cr:
                exported = self._export_from_cursor(
                    source_cr, since, self._database_uuid(), source
                )
            self._carry_over(exported)
        checkpoints._witness_rebase(
            f"restore of {info.get('archive_name') or 'an archive'}"
        )
