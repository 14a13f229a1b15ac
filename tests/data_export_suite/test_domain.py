"""data_export_suite.lib.domain: domains typed by users are literal data only."""

import pytest

from data_export_suite.lib import domain as domain_lib
from data_export_suite.lib.domain import (
    MAX_DEPTH,
    MAX_LENGTH,
    TERM_OPERATORS,
    VARIABLES,
    DomainError,
    parse_domain,
)

NAMES = {
    "uid": 7,
    "user_id": 7,
    "company_id": 1,
    "company_ids": [1, 3],
    "today": "2025-01-10",
    "now": "2025-01-10 12:00:00",
}


def refused(text, variables=NAMES):
    with pytest.raises(DomainError) as info:
        parse_domain(text, variables)
    return info.value


# -- good domains ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("  \n ", []),
        ("[]", []),
        ("()", []),
        ("[('name', '=', 'Alice')]", [("name", "=", "Alice")]),
        (
            "[('country_id.code', 'in', ('BE', 'NL')), ('active', '=', True)]",
            [("country_id.code", "in", ["BE", "NL"]), ("active", "=", True)],
        ),
        (
            "['|', ('email', 'ilike', '@example.com'), '!', ('parent_id', '=', None)]",
            [
                "|",
                ("email", "ilike", "@example.com"),
                "!",
                ("parent_id", "=", None),
            ],
        ),
        (
            "['&', ('amount', '>=', -12.5), ('amount', '<', +1e3)]",
            ["&", ("amount", ">=", -12.5), ("amount", "<", 1000.0)],
        ),
        ('[["id", "in", [1, 2, 3]]]', [("id", "in", [1, 2, 3])]),
        ("[('user_id', '=', uid)]", [("user_id", "=", 7)]),
        (
            "[('company_id', 'in', company_ids), ('create_uid', '=', user_id)]",
            [("company_id", "in", [1, 3]), ("create_uid", "=", 7)],
        ),
        (
            "[('date', '<=', today), ('write_date', '<', now)]",
            [("date", "<=", "2025-01-10"), ("write_date", "<", "2025-01-10 12:00:00")],
        ),
        ("[('company_id', '=', company_id)]", [("company_id", "=", 1)]),
        # Odoo's spelling variants: upper-case operators and <> for !=.
        (
            "[('name', 'NOT ILIKE', 'x'), ('state', '<>', 'draft')]",
            [("name", "not ilike", "x"), ("state", "!=", "draft")],
        ),
        ("[(1, '=', 1)]", [(1, "=", 1)]),
        ("[(0, '=', 1)]", [(0, "=", 1)]),
        (
            "[('partner_id', 'any', [('country_id.code', '=', 'BE')])]",
            [("partner_id", "any", [("country_id.code", "=", "BE")])],
        ),
        (
            "[('child_ids', 'not any', [])]",
            [("child_ids", "not any", [])],
        ),
        ("[('partner_id', 'child_of', 3)]", [("partner_id", "child_of", 3)]),
        # The ready-made Invoices profile.
        (
            "[('move_type', 'in', ('out_invoice', 'out_refund', "
            "'in_invoice', 'in_refund'))]",
            [
                (
                    "move_type",
                    "in",
                    ["out_invoice", "out_refund", "in_invoice", "in_refund"],
                )
            ],
        ),
        # The list action "Export (suite)" writes repr() of a list of ids.
        (
            repr([("id", "in", list(range(1, 2001)))]),
            [("id", "in", list(range(1, 2001)))],
        ),
    ],
)
def test_good_domains(text, expected):
    assert parse_domain(text, NAMES) == expected


def test_every_odoo_operator_is_accepted():
    for operator in TERM_OPERATORS:
        value = "[]" if operator in ("any", "not any") else "1"
        result = parse_domain(f"[('x', '{operator}', {value})]")
        assert result[0][1] == operator


def test_the_largest_list_action_fits():
    # 20,000 selected records (Odoo's active_ids limit), 7-digit ids.
    text = repr([("id", "in", list(range(1_000_000, 1_020_000)))])
    assert len(text) < MAX_LENGTH
    assert len(parse_domain(text)[0][2]) == 20_000


def test_names_are_only_those_the_caller_gives():
    assert set(VARIABLES) == set(NAMES)
    error = refused("[('user_id', '=', uid)]", variables={})
    assert error.code == "unknown_name"
    assert error.part == "uid"
    # A name the caller passes but the parser does not know stays refused.
    error = refused("[('user_id', '=', user)]", variables={**NAMES, "user": object()})
    assert error.code == "unknown_name"
    assert error.part == "user"


# -- hostile domains ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "code", "detail", "part"),
    [
        # The attack that made an exporter administrator.
        (
            "[('id', '=', user.sudo().write({'groups_id': [(4, 2)]}))]",
            "forbidden",
            "call",
            "user.sudo().write({'groups_id': [(4, 2)]})",
        ),
        ("[('id', '=', user.sudo)]", "forbidden", "attribute", "user.sudo"),
        (
            "[('id', '=', user.env.cr.execute('SELECT 1'))]",
            "forbidden",
            "call",
            "user.env.cr.execute('SELECT 1')",
        ),
        (
            "__import__('os').system('id')",
            "forbidden",
            "call",
            "__import__('os').system('id')",
        ),
        ("[('a', '=', __import__('os'))]", "forbidden", "call", "__import__('os')"),
        ("[('a', '=', __import__)]", "forbidden", "dunder", "__import__"),
        ("[('a', '=', __builtins__)]", "forbidden", "dunder", "__builtins__"),
        ("().__class__.__bases__", "forbidden", "attribute", "().__class__.__bases__"),
        (
            "[().__class__.__bases__]",
            "forbidden",
            "attribute",
            "().__class__.__bases__",
        ),
        (
            "[('a', '=', ().__class__.__bases__[0].__subclasses__())]",
            "forbidden",
            "call",
            "().__class__.__bases__[0].__subclasses__()",
        ),
        ("[('a', '=', (1, 2)[0])]", "forbidden", "subscript", "(1, 2)[0]"),
        ("[('a', '=', len('x'))]", "forbidden", "call", "len('x')"),
        ("[('a', '=', lambda: 1)]", "forbidden", "lambda", "lambda: 1"),
        (
            "[('a', 'in', [i for i in range(3)])]",
            "forbidden",
            "comprehension",
            "[i for i in range(3)]",
        ),
        (
            "[('a', 'in', list(i for i in 'ab'))]",
            "forbidden",
            "call",
            "list(i for i in 'ab')",
        ),
        (
            "[('a', '=', f'{user.password}')]",
            "forbidden",
            "fstring",
            "f'{user.password}'",
        ),
        ("[('a', '=', 1 + 1)]", "forbidden", "expression", "1 + 1"),
        ("[('a', '=', -uid)]", "forbidden", "expression", "-uid"),
        (
            "[('a', '=', 'x' if uid else 'y')]",
            "forbidden",
            "expression",
            "'x' if uid else 'y'",
        ),
        ("[('a', '=', (x := 1))]", "forbidden", "expression", "x := 1"),
        ("[('a', '=', {'k': 1})]", "forbidden", "dict", "{'k': 1}"),
        ("[('a', 'in', {1, 2})]", "forbidden", "set", "{1, 2}"),
        ("[('a', '=', b'x')]", "forbidden", "bytes", "b'x'"),
        ("[('a', 'in', [*range(3)])]", "forbidden", "starred", "*range(3)"),
        ("[('a', '=', user)]", "unknown_name", "", "user"),
        ("[('a', '=', context_today)]", "unknown_name", "", "context_today"),
        ("[('a', '=', datetime)]", "unknown_name", "", "datetime"),
    ],
)
def test_hostile_domains_are_refused_naming_the_part(text, code, detail, part):
    error = refused(text)
    assert error.code == code
    if detail:
        assert error.detail == detail
    assert error.part == part
    assert part in str(error)


def test_imports_are_not_domains():
    error = refused("import os")
    assert error.code == "syntax"
    assert "import os" in str(error)
    error = refused("[('a', '=', 1)]; import os")
    assert error.code == "syntax"
    assert "import os" in str(error)


@pytest.mark.parametrize(
    ("text", "code", "part"),
    [
        ("[('__class__', '=', 1)]", "bad_path", "'__class__'"),
        ("[('partner_id.__class__', '=', 1)]", "bad_path", "'partner_id.__class__'"),
        ("[('a..b', '=', 1)]", "bad_path", "'a..b'"),
        ("[('a b', '=', 1)]", "bad_path", "'a b'"),
        ("[('1abc', '=', 1)]", "bad_path", "'1abc'"),
        ("[('name;drop', '=', 1)]", "bad_path", "'name;drop'"),
        ("[('', '=', 1)]", "bad_path", "''"),
        ("[(('a',), '=', 1)]", "bad_path", "('a',)"),
        ("[('.'.join(['a']), '=', 1)]", "forbidden", "'.'.join(['a'])"),
        ("[(1, '=', 2)]", "bad_path", "1"),
        ("[('a', 'foo', 1)]", "bad_operator", "'foo'"),
        ("[('a', '=like=', 1)]", "bad_operator", "'=like='"),
        ("[('a', op, 1)]", "unknown_name", "op"),
        ("[('a', '=')]", "bad_term", "('a', '=')"),
        ("[('a', '=', 1, 2)]", "bad_term", "('a', '=', 1, 2)"),
        ("['AND', ('a', '=', 1)]", "bad_item", "'AND'"),
        ("[5]", "bad_item", "5"),
        ("['|', ('a', '=', 1)]", "arity", "['|', ('a', '=', 1)]"),
        ("['!']", "arity", "['!']"),
        ("('a', '=', 1)", "single_term", "('a', '=', 1)"),
        ("'name'", "not_a_list", "'name'"),
        ("{'a': 1}", "forbidden", "{'a': 1}"),
        ("[('a', 'in', [[1]])]", "bad_value", "[1]"),
        ("[('a', '=', 1e999)]", "bad_value", "1e999"),
        ("[('a', '=', 2j)]", "bad_value", "2j"),
        ("[('a', '=', 2**70)]", "forbidden", "2**70"),
        ("[('a', '=', 99999999999999999999)]", "bad_value", "99999999999999999999"),
        ("[('a', '=', ...)]", "bad_value", "..."),
        ("[('a', '=', 'nul\\x00')]", "bad_value", "'nul\\x00'"),
        ("[('a', 'any', 'x')]", "not_a_list", "'x'"),
        ("[('a', 'any', [('b', '=', user.id)])]", "forbidden", "user.id"),
    ],
)
def test_malformed_domains_are_refused_naming_the_part(text, code, part):
    error = refused(text)
    assert error.code == code
    assert error.part == part
    assert part in str(error)


def test_over_long_text_is_refused_before_parsing():
    text = "[('name', '=', '" + "x" * (1 << 20) + "')]"
    error = refused(text)
    assert error.code == "too_long"
    assert (error.size, error.limit) == (len(text), MAX_LENGTH)
    assert str(len(text)) in str(error)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100, 500, 5000])
def test_deep_nesting_is_refused(depth):
    # Lists in lists, sub-domains of "any" in each other, tuples in a value.
    for text in (
        "[" * depth + "]" * depth,
        "[('a', 'any', " * depth + "[]" + ")]" * depth,
        "[('a', 'in', " + "(" * depth + "1" + ",)" * depth + ")]",
    ):
        error = refused(text)
        assert error.code == "too_deep", (depth, text[:40])
        assert error.limit == MAX_DEPTH
        assert str(MAX_DEPTH) in str(error)
        assert error.part[:10] in text


def test_nesting_within_the_limit_is_accepted():
    levels = (MAX_DEPTH - 1) // 2  # each "any" level nests a term and a list
    text = "[('a', 'any', " * levels + "[]" + ")]" * levels
    result = parse_domain(text)
    for _level in range(levels - 1):
        ((_path, operator, result),) = result
        assert operator == "any"


def test_long_unary_chains_and_strings_do_not_crash_the_parser():
    error = refused("[('a', '=', " + "-" * 100_000 + "1)]")
    assert error.code in ("too_deep", "forbidden")
    assert parse_domain("[('a', '=', '" + "(" * 1000 + "')]") == [
        ("a", "=", "(" * 1000)
    ]


def test_non_text_is_refused():
    for value in (None, 5, b"[]", [("a", "=", 1)]):
        error = refused(value)
        assert error.code == "type"


def test_quoted_parts_are_short():
    error = refused("[('a', '=', user.write({'x': '" + "y" * 5000 + "'}))]")
    assert len(error.part) <= domain_lib.QUOTE_LENGTH
    assert error.part.startswith("user.write(")


def test_every_error_code_has_a_message():
    for code in domain_lib.MESSAGES:
        assert str(DomainError(code, "p", "call", 1, 2))
    assert set(domain_lib.KINDS) >= {
        "attribute",
        "call",
        "subscript",
        "lambda",
        "comprehension",
        "fstring",
        "dunder",
        "expression",
    }
