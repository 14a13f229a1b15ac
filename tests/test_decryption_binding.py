"""Every decryption names the tenant and the purpose it expects.

1. A static check over every Python file of the repository: each call of
   ``DecryptingReader(...)``, streamcrypt's ``verify(...)`` (also through
   ``db_backup_suite.lib.crypto``, which re-exports it), ``open_archive(...)``,
   ``scan_archive(...)`` and ``verify_archive(...)`` passes ``tenant=`` (and
   ``purpose=`` where the caller chooses it: ``open_archive`` and the
   backup helpers fix the purpose to ``backup`` themselves) as explicit
   keywords, never through ``**kwargs``.
2. Each reader refuses a blob of another purpose and of another tenant.
"""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest

from db_backup_suite.lib import crypto, scan
from db_backup_suite.lib.errors import FormatError, WrongKeyError
from suite_core import streamcrypt as sc

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv", "venv", ".ruff_cache"}

#: call name -> keywords it must carry
REQUIRED = {
    "DecryptingReader": ("tenant", "purpose"),
    "verify": ("tenant", "purpose"),  # streamcrypt.verify (and crypto.verify)
    "open_archive": ("tenant",),  # purpose fixed to "backup" by open_archive
    "scan_archive": ("tenant",),
    "verify_archive": ("tenant",),
}
#: modules whose ``verify`` is streamcrypt's
VERIFY_MODULES = {
    "suite_core.streamcrypt",
    "db_backup_suite.lib.crypto",
    "odoo.addons.db_backup_suite.lib.crypto",
}


def python_files():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if SKIP_DIRS & set(rel.parts):
            continue
        yield path


def _module_aliases(tree, package_hint: str) -> tuple[set[str], set[str]]:
    """Names bound to a module in VERIFY_MODULES, and names bound to its
    ``verify`` function, in one file."""
    modules, functions = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in VERIFY_MODULES:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's package
                parts = package_hint.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(p for p in [*parts, base] if p)
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                if full in VERIFY_MODULES:
                    modules.add(alias.asname or alias.name)
                elif base in VERIFY_MODULES and alias.name == "verify":
                    functions.add(alias.asname or alias.name)
    return modules, functions


def _package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts[:-1])


def _call_kind(call: ast.Call, modules, functions) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        name = func.id
        if name in functions:
            return "verify"
        return name if name in REQUIRED and name != "verify" else None
    if isinstance(func, ast.Attribute):
        name = func.attr
        if name == "verify":
            value = func.value
            dotted = []
            while isinstance(value, ast.Attribute):
                dotted.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name):
                dotted.append(value.id)
            dotted = ".".join(reversed(dotted))
            if dotted in modules or dotted in VERIFY_MODULES:
                return "verify"
            return None
        return name if name in REQUIRED else None
    return None


def unbound_calls(path: Path) -> list[str]:
    """``file:line: call lacks ...`` for each decryption call of ``path``
    missing an explicit required keyword."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules, functions = _module_aliases(tree, _package_of(path))
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        kind = _call_kind(node, modules, functions)
        if kind is None:
            continue
        given = {kw.arg for kw in node.keywords if kw.arg is not None}
        missing = [k for k in REQUIRED[kind] if k not in given]
        if missing:
            rel = path.relative_to(ROOT)
            problems.append(
                f"{rel}:{node.lineno}: {kind}(...) without "
                + ", ".join(f"{k}=" for k in missing)
            )
    return problems


def test_every_decryption_call_names_tenant_and_purpose():
    problems = []
    scanned = 0
    for path in python_files():
        scanned += 1
        problems.extend(unbound_calls(path))
    assert scanned > 50  # the walk really saw the repository
    assert not problems, "\n".join(problems)


def test_the_checker_catches_what_it_must(tmp_path, monkeypatch):
    """The static check itself: unbound calls are reported, bound ones not."""
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    bad = tmp_path / "pkg" / "bad.py"
    bad.parent.mkdir()
    bad.write_text(
        "from suite_core import streamcrypt as sc\n"
        "from suite_core.streamcrypt import verify as check\n"
        "from db_backup_suite.lib import crypto\n"
        "sc.DecryptingReader(raw, keyring=k, tenant=t)\n"
        "sc.verify(raw, keyring=k, purpose='backup')\n"
        "check(raw, keyring=k)\n"
        "crypto.verify(raw, keyring=k)\n"
        "crypto.open_archive(raw, keyring=k)\n"
        "crypto.open_archive(raw, keyring=k, **kw)\n"
        "scan_archive(raw, keyring=k)\n"
        "sc.DecryptingReader(raw, keyring=k, tenant=t, purpose='backup')\n"
        "crypto.open_archive(raw, keyring=k, tenant=sc.ANY_TENANT)\n"
        "other.verify(raw)\n"  # not streamcrypt's
    )
    problems = unbound_calls(bad)
    assert [p.split(":")[1] for p in problems] == [
        "4",
        "5",
        "6",
        "7",
        "8",
        "9",
        "10",
    ], problems
    assert "without purpose=" in problems[0] and "without tenant=" in problems[1]


# ---------------------------------------------------------------------------
# Each reader refuses another purpose and another tenant
# ---------------------------------------------------------------------------
RING = crypto.Keyring.parse(crypto.generate_key_line("binding"))
TENANT = "8d0a5c2e-0000-4000-8000-000000000001"
OTHER = "8d0a5c2e-0000-4000-8000-000000000002"


def _blob(tenant=TENANT, purpose=crypto.PURPOSE, data=b"payload " * 100) -> bytes:
    out = io.BytesIO()
    with sc.EncryptingWriter(
        out, keyring=RING, tenant=tenant, purpose=purpose, content_type="tar"
    ) as writer:
        writer.write(data)
    return out.getvalue()


def _decrypting_reader(blob, tenant, purpose):
    return sc.DecryptingReader(
        io.BytesIO(blob), keyring=RING, tenant=tenant, purpose=purpose
    ).read()


def _sc_verify(blob, tenant, purpose):
    return sc.verify(io.BytesIO(blob), keyring=RING, tenant=tenant, purpose=purpose)


def _crypto_verify(blob, tenant, purpose):
    return crypto.verify(io.BytesIO(blob), keyring=RING, tenant=tenant, purpose=purpose)


READERS = [_decrypting_reader, _sc_verify, _crypto_verify]


@pytest.mark.parametrize("read", READERS)
def test_reader_accepts_its_own_tenant_and_purpose(read):
    assert read(_blob(), TENANT, crypto.PURPOSE)


@pytest.mark.parametrize("read", READERS)
def test_reader_refuses_another_purpose(read):
    with pytest.raises(FormatError, match="'export' archive, not a 'backup'"):
        read(_blob(purpose="export"), TENANT, crypto.PURPOSE)


@pytest.mark.parametrize("read", READERS)
def test_reader_refuses_another_tenant(read):
    with pytest.raises(WrongKeyError, match="belongs to"):
        read(_blob(tenant=OTHER), TENANT, crypto.PURPOSE)


@pytest.mark.parametrize("read", READERS)
def test_any_tenant_is_the_explicit_way_to_read_another_tenant(read):
    assert read(_blob(tenant=OTHER), sc.ANY_TENANT, crypto.PURPOSE)


@pytest.mark.parametrize("read", READERS)
def test_reader_without_tenant_or_purpose_is_a_type_error(read):
    blob = _blob()
    with pytest.raises(TypeError):
        read(blob, None, crypto.PURPOSE)
    with pytest.raises(TypeError):
        read(blob, TENANT, None)


def test_open_archive_fixes_the_backup_purpose_and_checks_the_tenant():
    assert crypto.open_archive(io.BytesIO(_blob()), keyring=RING, tenant=TENANT).read()
    with pytest.raises(FormatError, match="not a 'backup'"):
        crypto.open_archive(
            io.BytesIO(_blob(purpose="export")), keyring=RING, tenant=TENANT
        )
    with pytest.raises(WrongKeyError, match="belongs to"):
        crypto.open_archive(
            io.BytesIO(_blob(tenant=OTHER)), keyring=RING, tenant=TENANT
        )
    unbound = crypto.open_archive  # an alias: the static check above skips it
    with pytest.raises(TypeError):
        unbound(io.BytesIO(_blob()), keyring=RING)


def test_verify_archive_and_scan_archive_check_the_tenant():
    with pytest.raises(WrongKeyError, match="belongs to"):
        crypto.verify_archive(
            io.BytesIO(_blob(tenant=OTHER)), keyring=RING, tenant=TENANT
        )
    with pytest.raises(FormatError, match="not a 'backup'"):
        crypto.verify_archive(
            io.BytesIO(_blob(purpose="export")), keyring=RING, tenant=TENANT
        )
    with pytest.raises(WrongKeyError, match="belongs to"):
        scan.scan_archive(io.BytesIO(_blob(tenant=OTHER)), keyring=RING, tenant=TENANT)
    with pytest.raises(FormatError, match="not a 'backup'"):
        scan.scan_archive(
            io.BytesIO(_blob(purpose="export")), keyring=RING, tenant=TENANT
        )
