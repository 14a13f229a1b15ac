"""The audit trail: one row per event, append-only and hash-chained."""

import datetime as dt
import hashlib
import ipaddress
import json
import logging
import os
import uuid

from odoo import SUPERUSER_ID, api, fields, models, tools
from odoo.exceptions import AccessError, UserError
from odoo.http import request
from odoo.tools import SQL

from ..lib import chain

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
)
INSERT_QUERY = """
    INSERT INTO audit_event (
        uuid, "timestamp", user_id, user_uid, login, user_name, action, result,
        res_model, res_id, res_name, ip_address, user_agent, details, message,
        key_id, digest
    )
    SELECT * FROM unnest(
        %s::varchar[], %s::timestamp[], %s::int4[], %s::int4[], %s::varchar[],
        %s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[], %s::int4[],
        %s::varchar[], %s::varchar[], %s::varchar[], %s::jsonb[], %s::text[],
        %s::varchar[], %s::varchar[]
    )
"""


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
        "res.users", string="User", readonly=True, index=True, ondelete="set null"
    )
    user_uid = fields.Integer(string="User ID", readonly=True)
    login = fields.Char(readonly=True, help="The login used (or tried).")
    user_name = fields.Char(string="User Name", readonly=True)
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

    _sql_constraints = [
        ("uuid_unique", "UNIQUE(uuid)", "An audit event UUID must be unique."),
        ("sequence_unique", "UNIQUE(sequence)", "A chain position is used once."),
    ]

    def init(self):
        super().init()
        tools.create_index(
            self.env.cr,
            "audit_event_res_model_res_id_index",
            self._table,
            ["res_model", "res_id"],
        )

    @api.depends("details")
    def _compute_details_text(self):
        for event in self:
            event.details_text = (
                json.dumps(event.details, indent=2, ensure_ascii=False, sort_keys=True)
                if event.details
                else False
            )

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
            vals.pop("sequence", None)
            vals.pop("chain_hash", None)
        details_texts = []
        for vals, (canonical, details_text) in zip(
            vals_list, chain.encode_many(vals_list), strict=True
        ):
            vals["key_id"] = key_id
            vals["digest"] = chain.sign(key, canonical)
            details_texts.append(details_text)
        return details_texts

    def write(self, vals):
        raise AccessError(self.env._("Audit events cannot be modified."))

    def unlink(self):
        raise AccessError(self.env._("Audit events cannot be deleted."))

    def copy(self, default=None):
        raise AccessError(self.env._("Audit events cannot be duplicated."))

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
    def _key_for(self, key_id):
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
        return self._keyring_key(keyring, key_id[3:])

    def _keyring_key(self, keyring, key_id):
        dbuuid = self.env["ir.config_parameter"].sudo().get_param("database.uuid")
        return keyring.derive(
            "audit-chain", dbuuid or self.env.cr.dbname, key_id=key_id
        )

    @api.model
    def _load_keyring(self):
        """The server keyring, or None when none is configured.

        A configured but unusable keyring raises: silently falling back to
        the weaker database key would hide a misconfiguration.
        """
        from ..lib import keyring as keyring_lib  # noqa: PLC0415

        config_path = tools.config.get(keyring_lib.CONFIG_OPTION)
        configured = config_path or any(
            (os.environ.get(name) or "").strip()
            for name in (keyring_lib.ENV_KEYRING_FILE, keyring_lib.ENV_KEYRING)
        )
        if not configured:
            return None
        return keyring_lib.Keyring.load(config_path=config_path)

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
        from odoo.modules import module as odoo_module  # noqa: PLC0415
        from odoo.modules.registry import Registry  # noqa: PLC0415

        registry = Registry(dbname or self.env.cr.dbname)
        in_test = registry.in_test_mode() or getattr(odoo_module, "current_test", None)
        if in_test and dbname is None:
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
        """Give chain positions and chain hashes to unsealed events.

        Runs under a transaction-level advisory lock, in READ COMMITTED when
        ``isolated`` (a fresh cursor): every statement then sees the latest
        committed chain head, so concurrent sealers never fork the chain.
        Only committed events (and this transaction's own) are visible, so
        the chain order is commit order. Returns the number sealed.
        """
        cr = self.env.cr
        if isolated:
            cr.execute(SQL("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"))
        self._flush_capture_buffer()
        self.flush_model()
        cr.execute(SQL("SELECT pg_advisory_xact_lock(%s)", CHAIN_LOCK_KEY))
        seq, prev_hash = self._chain_head()
        sealed = 0
        while True:
            cr.execute(
                SQL(
                    "SELECT id, digest FROM audit_event WHERE sequence IS NULL "
                    "ORDER BY id LIMIT %s",
                    SEAL_BATCH,
                )
            )
            rows = cr.fetchall()
            if not rows:
                break
            ids, seqs, hashes = [], [], []
            for event_id, event_digest in rows:
                seq += 1
                prev_hash = chain.link(prev_hash, seq, event_digest or "")
                ids.append(event_id)
                seqs.append(seq)
                hashes.append(prev_hash)
            cr.execute(
                SQL(
                    "UPDATE audit_event e SET sequence = v.seq, chain_hash = v.h "
                    "FROM unnest(%s::int4[], %s::int4[], %s::varchar[]) "
                    "AS v(id, seq, h) WHERE e.id = v.id",
                    ids,
                    seqs,
                    hashes,
                )
            )
            sealed += len(rows)
        if sealed:
            self.env["audit.checkpoint"]._set_head(seq, prev_hash)
            self.invalidate_model(["sequence", "chain_hash"])
            _logger.info("Audit chain head: position %s hash %s", seq, prev_hash)
        return sealed

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
        """Seal, then check the whole chain; returns a dict (see lib/chain)."""
        self._seal_in_new_cursor()
        checkpoint = self.env["audit.checkpoint"]
        anchor_seq, anchor_hash = checkpoint._anchor()
        keys = {}

        def key_for(key_id):
            if key_id not in keys:
                keys[key_id] = self._key_for(key_id)
            return keys[key_id]

        cols = SQL(", ").join(
            SQL.identifier(name)
            for name in (
                "id",
                "sequence",
                "digest",
                "chain_hash",
                "key_id",
                *chain.CANONICAL_FIELDS,
            )
        )
        cr = self.env.cr
        checked, last_seq, last_hash, problem = 0, anchor_seq, anchor_hash, None
        # Rows at or before the anchor should have been purged.
        cr.execute(
            SQL(
                "SELECT id, sequence FROM audit_event WHERE sequence <= %s "
                "ORDER BY sequence LIMIT 1",
                anchor_seq,
            )
        )
        stale = cr.dictfetchone()
        if stale:
            problem = {
                "kind": "inserted",
                "event_id": stale["id"],
                "sequence": stale["sequence"],
                "message": f"event {stale['id']} sits at chain position "
                f"{stale['sequence']}, before the retention anchor "
                f"{anchor_seq}: it was inserted outside the audit API",
            }
        while problem is None:
            cr.execute(
                SQL(
                    "SELECT %s FROM audit_event WHERE sequence > %s "
                    "ORDER BY sequence, id LIMIT %s",
                    cols,
                    last_seq,
                    SEAL_BATCH,
                )
            )
            rows = cr.dictfetchall()
            if not rows:
                break
            count, last_seq, last_hash, problem = chain.check_chain(
                rows, last_seq, last_hash, key_for
            )
            checked += count
        if problem is None:
            head_seq, head_hash = checkpoint._head()
            if head_seq and head_seq > last_seq:
                problem = {
                    "kind": "removed",
                    "event_id": False,
                    "sequence": last_seq + 1,
                    "message": f"the last events (chain positions {last_seq + 1} "
                    f"to {head_seq}) were removed",
                }
            elif head_seq == last_seq and head_hash and head_hash != last_hash:
                problem = {
                    "kind": "altered",
                    "event_id": False,
                    "sequence": last_seq,
                    "message": "the chain head does not match the recorded head",
                }
        return {
            "ok": problem is None,
            "checked": checked,
            "head_sequence": last_seq,
            "head_hash": last_hash,
            "anchor_sequence": anchor_seq,
            "problem": problem,
        }

    def action_verify_integrity(self):
        """Button / server action: verify the chain and show the result."""
        self.check_access("read")
        report = self._verify_chain()
        if report["ok"]:
            message = self.env._(
                "Audit log intact: %(count)s events verified (chain head %(head)s).",
                count=report["checked"],
                head=report["head_hash"][:16],
            )
            kind = "success"
        else:
            message = self.env._(
                "Audit log TAMPERED: %(message)s", message=report["problem"]["message"]
            )
            kind = "danger"
        _logger.log(
            logging.INFO if report["ok"] else logging.WARNING,
            "Audit integrity check: %s",
            message,
        )
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("Audit log integrity"),
                "message": message,
                "type": kind,
                "sticky": not report["ok"],
            },
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
        the chain hash of the last purged event.
        """
        days = self._retention_days()
        if days <= 0:
            return 0
        self._seal_in_new_cursor()
        cutoff = fields.Datetime.now() - dt.timedelta(days=days)
        cr = self.env.cr
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
