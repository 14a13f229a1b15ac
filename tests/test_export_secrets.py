"""data_export_suite.lib.secrets: credentials never pass the field filter."""

import pytest

from data_export_suite.lib.secrets import is_secret_field


@pytest.mark.parametrize(
    ("model", "name", "ftype"),
    [
        ("res.users", "password", "char"),
        ("res.users", "new_password", "char"),
        ("res.users", "totp_secret", "char"),
        ("res.users", "totp_enabled", "boolean"),
        ("res.users", "api_key_ids", "one2many"),
        ("res.users", "signup_token", "char"),
        ("res.partner", "signup_url", "char"),
        ("ir.mail_server", "smtp_pass", "char"),
        ("ir.mail_server", "smtp_user", "char"),
        ("payment.provider", "stripe_secret_key", "char"),
        ("payment.provider", "paypal_client_secret", "char"),
        ("sale.order", "access_token", "char"),
        ("res.users.apikeys", "name", "char"),
        ("ir.config_parameter", "value", "text"),
        ("x.model", "ssh_private_key", "text"),
        ("x.model", "AWS_Access_Key", "char"),
        ("l10n.cert", "signing_key", "binary"),
        ("l10n.cert", "cert_key", "binary"),
        ("x.model", "db_passwd", "char"),
    ],
)
def test_secrets_are_detected(model, name, ftype):
    assert is_secret_field(model, name, ftype)


@pytest.mark.parametrize(
    ("model", "name", "ftype"),
    [
        ("res.partner", "name", "char"),
        ("res.partner", "email", "char"),
        ("res.partner", "passport_number", "char"),
        ("res.users", "login", "char"),
        ("res.users", "login_date", "datetime"),
        ("res.users", "groups_id", "many2many"),
        ("account.move", "amount_total", "monetary"),
        ("ir.translation", "key", "char"),
        ("product.product", "image_1920", "binary"),
        ("x.model", "", "char"),
    ],
)
def test_ordinary_fields_pass(model, name, ftype):
    assert not is_secret_field(model, name, ftype)
