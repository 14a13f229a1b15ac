"""Decide which fields are secrets and must never leave the database.

The rule is deliberately broad: a false positive only hides a column, a false
negative leaks a credential. ``is_secret_field`` is used to filter the fields
offered in the export screens and, again, the fields actually exported (so an
RPC caller asking for ``password`` gets nothing).
"""

import re

# Name tokens that mark a credential wherever they appear (``smtp_pass``,
# ``totp_secret``, ``stripe_secret_key``, ``access_token``, ``api_key_ids``).
_SECRET_TOKENS = (
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "secret",
    "token",
    "tokens",
    "apikey",
    "apikeys",
    "totp",
    "otp",
    "hotp",
    "credential",
    "credentials",
    "salt",
    "privkey",
)
_SECRET_PHRASES = (
    "api_key",
    "private_key",
    "signing_key",
    "secret_key",
    "client_key",
    "encryption_key",
    "auth_key",
    "access_key",
    "webhook_key",
)
_TOKEN_RE = re.compile(r"[^a-z0-9]+")

# Whole models that only hold credentials or server secrets.
SECRET_MODELS = frozenset(
    {
        "res.users.apikeys",
        "res.users.apikeys.description",
        "auth_totp.device",
        "res.users.identitycheck",
        "change.password.wizard",
        "change.password.user",
        "change.password.own",
        "ir.config_parameter",
    }
)

# Fields whose names do not look secret but are.
SECRET_FIELDS = frozenset(
    {
        ("res.users", "new_password"),
        ("res.users", "totp_trusted_device_ids"),
        ("res.users", "api_key_ids"),
        ("res.users", "signup_url"),
        ("res.partner", "signup_url"),
        ("ir.mail_server", "smtp_user"),
        ("fetchmail.server", "user"),
        ("ir.attachment", "access_token"),
    }
)


def is_secret_field(model, name, ftype=None):
    """Return True when ``model.name`` holds a secret and must not be exported.

    :param str model: technical model name (``res.users``)
    :param str name: field name (``password``)
    :param str ftype: Odoo field type, or None; ``password``-typed fields
        (``fields.Char(password=True)`` is a widget, not a type, so the name is
        what matters) and ``binary`` keys are covered by the name rules
    """
    if not name:
        return False
    if model in SECRET_MODELS:
        return True
    if (model, name) in SECRET_FIELDS:
        return True
    lowered = name.lower()
    if any(phrase in lowered for phrase in _SECRET_PHRASES):
        return True
    tokens = [tok for tok in _TOKEN_RE.split(lowered) if tok]
    if any(tok in _SECRET_TOKENS for tok in tokens):
        return True
    # A binary field named "key" or "*_key" is key material (certificates,
    # e-invoicing keys); a char "key" is usually an identifier: keep those.
    return ftype == "binary" and bool(tokens) and tokens[-1] in ("key", "pem", "p12")
