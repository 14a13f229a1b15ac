"""The suite's one rule for secrets: which field values never leave the database.

Used by the audit capture (a secret is recorded as "changed", never as a
value), the data exports (secret columns are neither offered nor exported)
and the DSR access packages. The rule is deliberately broad: a false
positive only hides a column, a false negative leaks a credential.

- :func:`is_secret_field`: by model and field name and type (credentials,
  keys, tokens, salts, their plurals, binary key material);
- :func:`groups_withhold`: a field restricted with ``groups=`` that the
  reading role does not hold;
- :func:`is_withheld`: both, the check every caller makes.
"""

import re

# Name tokens that mark a credential wherever they appear (``smtp_pass``,
# ``totp_secret``, ``stripe_secret_key``, ``access_token``, ``api_key_ids``).
_SECRET_TOKENS = (
    "password",
    "passwords",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "passphrases",
    "secret",
    "secrets",
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
    "salts",
    "privkey",
    "privkeys",
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


def groups_withhold(groups, has_group):
    """True when a field's ``groups=`` attribute is not satisfied by a reader.

    Odoo's semantics: ``groups`` is a comma-separated list of group xml ids;
    the reader needs at least one of the positive ones and none of the ones
    prefixed with ``!``.

    :param str groups: the field's ``groups`` attribute (empty: no restriction)
    :param has_group: ``callable(xmlid) -> bool`` for the reading role
    """
    if not groups:
        return False
    names = [name.strip() for name in groups.split(",") if name.strip()]
    positive = [name for name in names if not name.startswith("!")]
    negative = [name[1:] for name in names if name.startswith("!")]
    if any(has_group(name) for name in negative):
        return True
    return bool(positive) and not any(has_group(name) for name in positive)


def is_withheld(model, name, ftype=None, groups=None, has_group=None):
    """True when the value of ``model.name`` must not be stored or exported.

    A secret by :func:`is_secret_field`, or a field whose ``groups=`` the
    reading role (``has_group``) does not hold. Without ``has_group`` any
    ``groups=`` restriction withholds the value.
    """
    if is_secret_field(model, name, ftype):
        return True
    if not groups:
        return False
    if has_group is None:
        return True
    return groups_withhold(groups, has_group)
