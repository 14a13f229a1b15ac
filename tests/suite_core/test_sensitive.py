"""suite_core.sensitive: the suite's one rule for secrets."""

import pytest

from suite_core.sensitive import groups_withhold, is_secret_field, is_withheld


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
        ("x.model", "smtp_pwd", "char"),
        ("x.model", "password_salt", "char"),
        ("x.model", "user_salts", "char"),
        ("x.model", "old_passwords", "text"),
        ("x.model", "client_secrets", "text"),
        ("x.model", "refresh_tokens", "text"),
        ("x.model", "gpg_passphrases", "text"),
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


@pytest.mark.parametrize(
    ("groups", "held", "withheld"),
    [
        ("", set(), False),
        (None, set(), False),
        ("base.group_system", set(), True),
        ("base.group_system", {"base.group_system"}, False),
        ("base.group_system,base.group_erp_manager", {"base.group_erp_manager"}, False),
        ("!base.group_portal", set(), False),
        ("!base.group_portal", {"base.group_portal"}, True),
        ("base.group_user,!base.group_portal", {"base.group_user"}, False),
        (
            "base.group_user,!base.group_portal",
            {"base.group_user", "base.group_portal"},
            True,
        ),
    ],
)
def test_groups_restrictions_follow_odoo_semantics(groups, held, withheld):
    assert groups_withhold(groups, held.__contains__) is withheld


def test_is_withheld_combines_names_and_groups():
    assert is_withheld("ir.mail_server", "smtp_pass", "char")
    assert is_withheld(
        "res.partner", "name", "char", "base.group_system", set().__contains__
    )
    assert not is_withheld(
        "res.partner",
        "name",
        "char",
        "base.group_system",
        {"base.group_system"}.__contains__,
    )
    # without a reader to ask, any groups= restriction withholds the value
    assert is_withheld("res.partner", "name", "char", "base.group_user")
    assert not is_withheld("res.partner", "name", "char", "")
