"""Domains typed by users, read as literal data: nothing is ever evaluated.

A domain is text such as ``[('country_id.code', '=', 'BE'), '|',
('email', 'ilike', '@example.com'), ('user_id', '=', uid)]``. It is parsed
with :mod:`ast` and only these shapes are accepted:

- the domain: a list (or tuple) of items; an empty list matches everything;
- an item: one of the prefix operators ``'&'``, ``'|'``, ``'!'`` or a term;
- a term: ``(field_path, operator, value)`` where ``field_path`` is
  ``name`` or ``name.name...`` of identifiers (no dunder names) and
  ``operator`` one of Odoo's term operators; ``(1, '=', 1)`` and
  ``(0, '=', 1)`` (always true / always false) are accepted as is;
- a value: a string, a number (optionally signed), ``True``, ``False``,
  ``None``, a flat list or tuple of those, one of the names the caller
  resolves (:data:`VARIABLES`, e.g. ``uid``), or, for ``any`` and
  ``not any``, a sub-domain.

Anything else (attribute access, calls, subscripts, dunder names, lambdas,
comprehensions, f-strings, operators, unknown names, text over
:data:`MAX_LENGTH` characters or nested deeper than :data:`MAX_DEPTH`
levels) raises :class:`DomainError` naming the offending part of the text.
The result is plain Python data for Odoo's own domain tools.
"""

import ast
import math
import re

from suite_core.keyring import SuiteError

#: Odoo 18's term operators (``odoo.osv.expression.TERM_OPERATORS``; an Odoo
#: test pins the copy) and ``<>``, which Odoo reads as ``!=``.
TERM_OPERATORS = (
    "=",
    "!=",
    "<=",
    "<",
    ">",
    ">=",
    "=?",
    "=like",
    "=ilike",
    "like",
    "not like",
    "ilike",
    "not ilike",
    "in",
    "not in",
    "child_of",
    "parent_of",
    "any",
    "not any",
)
OPERATOR_ALIASES = {"<>": "!="}
DOMAIN_OPERATORS = {"&": 2, "|": 2, "!": 1}
SUBDOMAIN_OPERATORS = ("any", "not any")
#: Always-true and always-false terms.
CONSTANT_TERMS = ((1, "=", 1), (0, "=", 1))

#: Names a domain may use; the caller gives their values (``uid`` and
#: ``user_id``: the user id, ``company_id`` / ``company_ids``: the current
#: company / companies, ``today``: the user's date, ``now``: UTC date-time).
VARIABLES = ("uid", "user_id", "company_id", "company_ids", "today", "now")

#: The longest domain accepted, in characters. A list action for 20,000
#: selected records writes ``[("id", "in", [...])]`` of about 180,000.
MAX_LENGTH = 256 * 1024
#: The deepest nesting of lists and tuples (the domain is 1, a term 2, a
#: list of values 3, a sub-domain of ``any`` two more per level).
MAX_DEPTH = 16
#: The most hops in one field path.
MAX_PATH_PARTS = 12
#: Integers beyond PostgreSQL's bigint are refused.
MAX_INT = 2**63 - 1
#: How much of an offending part an error message quotes.
QUOTE_LENGTH = 80

_NAME = r"(?!__)[A-Za-z_][A-Za-z0-9_]*"
_PATH_RE = re.compile(rf"{_NAME}(?:\.{_NAME})*")

#: What each refused kind of syntax is called in messages.
KINDS = {
    "attribute": "Attribute access",
    "call": "A function call",
    "subscript": "A subscript",
    "lambda": "A lambda",
    "comprehension": "A comprehension",
    "fstring": "An f-string",
    "dunder": "A dunder name",
    "expression": "An operator expression",
    "dict": "A dictionary",
    "set": "A set",
    "bytes": "A bytes literal",
    "starred": "Unpacking",
    "other": "This syntax",
}

MESSAGES = {
    "type": "A domain is text, not {part}.",
    "too_long": "The domain is too long: {size} characters, at most {limit}.",
    "too_deep": "The domain is nested too deeply (at most {limit} levels): {part}",
    "syntax": "The domain is not a literal list ({detail}): {part}",
    "not_a_list": "A domain is a list of terms, not {part}",
    "single_term": "A domain is a list of terms: write [{part}]",
    "forbidden": "{kind} is not allowed in a domain: {part}",
    "unknown_name": "Unknown name in a domain: {part} (allowed: {detail})",
    "bad_item": "A domain item is '&', '|', '!' or a term, not {part}",
    "bad_term": "A domain term is (field, operator, value), not {part}",
    "bad_path": "Invalid field path in a domain: {part}",
    "bad_operator": "Unknown operator in a domain term: {part}",
    "bad_value": "Invalid value in a domain term ({detail}): {part}",
    "arity": "The domain's '&', '|' and '!' do not match its terms ({detail}): {part}",
}


class DomainError(SuiteError, ValueError):
    """A domain that is not literal data; ``code`` selects the message.

    ``part`` quotes the offending text, ``detail`` says more (the kind of
    syntax refused, the names allowed...), ``limit`` / ``size`` the numbers
    of a limit that was crossed. ``str()`` is the English message; the Odoo
    layer translates by ``code`` with the same placeholders.
    """

    def __init__(self, code, part="", detail="", limit=None, size=None):
        self.code = code
        self.part = part
        self.detail = detail
        self.limit = limit
        self.size = size
        super().__init__(MESSAGES[code].format(**self.params))

    @property
    def params(self):
        return {
            "part": self.part,
            "detail": self.detail,
            "limit": self.limit,
            "size": self.size,
            "kind": KINDS.get(self.detail, self.detail),
        }


def _quote(text):
    text = " ".join(str(text).split())
    if len(text) > QUOTE_LENGTH:
        return text[: QUOTE_LENGTH - 1] + "…"
    return text


class _Parser:
    def __init__(self, text, variables):
        self.text = text
        self.variables = variables

    def part(self, node):
        segment = ast.get_source_segment(self.text, node)
        return _quote(segment if segment is not None else ast.dump(node))

    def error(self, code, node, **kwargs):
        return DomainError(code, self.part(node), **kwargs)

    def check_nesting(self, root):
        """Refuse lists/tuples nested deeper than MAX_DEPTH, before anything
        else (iteratively: no recursion on hostile input)."""
        stack = [(root, 0)]
        while stack:
            node, depth = stack.pop()
            if isinstance(node, ast.List | ast.Tuple | ast.Set | ast.Dict):
                depth += 1
                if depth > MAX_DEPTH:
                    raise self.error("too_deep", node, limit=MAX_DEPTH)
            stack.extend((child, depth) for child in ast.iter_child_nodes(node))

    def check_depth(self, node, depth):
        if depth > MAX_DEPTH:
            raise self.error("too_deep", node, limit=MAX_DEPTH)

    # -- refused syntax ---------------------------------------------------
    def refuse(self, node, expected="bad_value", **kwargs):
        """The error for ``node``: the kind of code it is, else ``expected``."""
        kind = self.kind(node)
        if kind == "name":
            allowed = ", ".join(sorted(self.variables)) or "none"
            return self.error("unknown_name", node, detail=allowed)
        if kind:
            return self.error("forbidden", node, detail=kind)
        return self.error(expected, node, **kwargs)

    @staticmethod
    def kind(node):
        if isinstance(node, ast.Attribute):
            return "attribute"
        if isinstance(node, ast.Call):
            return "call"
        if isinstance(node, ast.Subscript | ast.Slice):
            return "subscript"
        if isinstance(node, ast.Lambda):
            return "lambda"
        if isinstance(
            node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp
        ):
            return "comprehension"
        if isinstance(node, ast.JoinedStr | ast.FormattedValue):
            return "fstring"
        if isinstance(node, ast.Name):
            return "dunder" if node.id.startswith("__") else "name"
        if isinstance(
            node,
            ast.BinOp
            | ast.BoolOp
            | ast.Compare
            | ast.UnaryOp
            | ast.IfExp
            | ast.NamedExpr
            | ast.Await
            | ast.Yield
            | ast.YieldFrom,
        ):
            return "expression"
        if isinstance(node, ast.Dict):
            return "dict"
        if isinstance(node, ast.Set):
            return "set"
        if isinstance(node, ast.Starred):
            return "starred"
        if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
            return "bytes"
        if not isinstance(node, ast.Constant | ast.List | ast.Tuple):
            return "other"
        return None

    # -- grammar ------------------------------------------------------------
    def domain(self, node, depth):
        """A list or tuple of items -> list (implicit '&' kept implicit)."""
        self.check_depth(node, depth)
        if not isinstance(node, ast.List | ast.Tuple):
            raise self.refuse(node, "not_a_list")
        if depth == 1 and self.looks_like_one_term(node):
            raise self.error("single_term", node)
        items = []
        expected = 1
        for elt in node.elts:
            if expected == 0:  # [A, B]: an implicit '&' in front
                expected = 1
            if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                if elt.value not in DOMAIN_OPERATORS:
                    raise self.error("bad_item", elt)
                items.append(elt.value)
                expected += DOMAIN_OPERATORS[elt.value] - 1
            elif isinstance(elt, ast.List | ast.Tuple):
                items.append(self.term(elt, depth + 1))
                expected -= 1
            else:
                raise self.refuse(elt, "bad_item")
        if items and expected:
            raise self.error(
                "arity",
                node,
                detail=f"{expected} term(s) missing"
                if expected > 0
                else "too many terms",
            )
        return items

    @staticmethod
    def looks_like_one_term(node):
        elts = node.elts
        return (
            len(elts) == 3
            and all(isinstance(e, ast.Constant) for e in elts[:2])
            and isinstance(elts[0].value, str)
            and elts[0].value not in DOMAIN_OPERATORS
            and isinstance(elts[1].value, str)
            and elts[1].value.lower() in (*TERM_OPERATORS, *OPERATOR_ALIASES)
        )

    def term(self, node, depth):
        self.check_depth(node, depth)
        if len(node.elts) != 3:
            raise self.error("bad_term", node)
        path_node, op_node, value_node = node.elts
        if not (isinstance(op_node, ast.Constant) and isinstance(op_node.value, str)):
            raise self.refuse(op_node, "bad_operator")
        operator = op_node.value.lower()
        operator = OPERATOR_ALIASES.get(operator, operator)
        if operator not in TERM_OPERATORS:
            raise self.error("bad_operator", op_node)
        if not isinstance(path_node, ast.Constant):
            raise self.refuse(path_node, "bad_path")
        path = path_node.value
        if isinstance(path, int) and not isinstance(path, bool):
            value = self.scalar(value_node)
            if (path, operator, value) in CONSTANT_TERMS and type(value) is int:
                return (path, operator, value)
            raise self.error("bad_path", path_node)
        if not isinstance(path, str) or not _PATH_RE.fullmatch(path):
            raise self.error("bad_path", path_node)
        if path.count(".") >= MAX_PATH_PARTS:
            raise self.error("bad_path", path_node)
        if operator in SUBDOMAIN_OPERATORS:
            return (path, operator, self.domain(value_node, depth + 1))
        return (path, operator, self.value(value_node, depth + 1))

    def value(self, node, depth):
        if isinstance(node, ast.List | ast.Tuple):
            self.check_depth(node, depth)
            values = []
            for elt in node.elts:
                if isinstance(elt, ast.List | ast.Tuple):
                    raise self.error("bad_value", elt, detail="nested list")
                values.append(self.scalar(elt))
            return values
        return self.scalar(node)

    def scalar(self, node):
        if isinstance(node, ast.Name) and node.id in self.variables:
            return self.variables[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = node.operand
            if isinstance(operand, ast.Constant) and self.is_number(operand.value):
                value = (
                    operand.value if isinstance(node.op, ast.UAdd) else -operand.value
                )
                return self.number(value, node)
            raise self.refuse(node)
        if not isinstance(node, ast.Constant):
            raise self.refuse(node)
        value = node.value
        if isinstance(value, str) and "\x00" in value:
            raise self.error("bad_value", node, detail="NUL character")
        if value is None or isinstance(value, bool | str):
            return value
        if self.is_number(value):
            return self.number(value, node)
        raise self.refuse(node, detail=type(value).__name__)

    @staticmethod
    def is_number(value):
        return isinstance(value, int | float) and not isinstance(value, bool)

    def number(self, value, node):
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error("bad_value", node, detail="not a finite number")
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise self.error("bad_value", node, detail="integer out of range")
        return value


def parse_domain(text, variables=None):
    """Parse ``text`` as a literal domain; return it as a list.

    :param str text: the domain as typed (empty or blank: ``[]``)
    :param variables: mapping of the names of :data:`VARIABLES` the domain
        may use to their values; a name missing from it is refused
    :return: list of ``'&'`` / ``'|'`` / ``'!'`` and ``(path, operator,
        value)`` tuples (value lists as lists, sub-domains as lists)
    :raises DomainError: naming the offending part of ``text``
    """
    if not isinstance(text, str):
        raise DomainError("type", _quote(type(text).__name__))
    if len(text) > MAX_LENGTH:
        raise DomainError("too_long", limit=MAX_LENGTH, size=len(text))
    if not text.strip():
        return []
    variables = {
        name: value for name, value in (variables or {}).items() if name in VARIABLES
    }
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        message = exc.msg or "invalid syntax"
        if "too many nested" in message:
            raise DomainError("too_deep", _quote(text), limit=MAX_DEPTH) from None
        where = exc.text or text
        if exc.offset:
            where = where[max(exc.offset - 1, 0) :]
        raise DomainError(
            "syntax", _quote(where.strip() or text), detail=message
        ) from None
    except (ValueError, MemoryError, RecursionError) as exc:
        # null bytes, over-long integer literals, pathological nesting
        if isinstance(exc, MemoryError | RecursionError):
            raise DomainError("too_deep", _quote(text), limit=MAX_DEPTH) from None
        raise DomainError("syntax", _quote(text), detail=str(exc)) from None
    parser = _Parser(text.strip(), variables)
    parser.check_nesting(tree.body)
    return parser.domain(tree.body, 1)
