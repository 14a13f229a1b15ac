"""The layers of the code, checked on its source (an import-linter of our
own, no Odoo needed):

- ``suite_core`` (the shared core: keyring, streaming encryption, writers,
  password and secret rules, witness) is the bottom layer: it imports
  neither ``odoo`` nor any addon, and every addon reaches it by that one
  name;
- every ``<addon>/lib`` is pure Python: no module imports ``odoo`` (also not
  inside a function), so the engine runs and is tested without Odoo;
- a ``lib`` reaches another addon's code only through that addon's ``lib``
  (never its models, wizards or controllers);
- within ``suite_core`` and within each ``lib``, the import graph has no
  cycle (function-level imports count: a cycle hidden inside a function is
  still a cycle);
- the engine's child process (``db_backup_suite/service/engine_job.py``)
  runs as plain Python: it and its package import no Odoo.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ADDONS = sorted(
    p.parent.name for p in REPO.glob("*/__manifest__.py") if (p.parent / "lib").is_dir()
)


#: the pure-Python packages: the shared core, then each addon's ``lib``
PACKAGES = ["suite_core", *ADDONS]


def _lib_modules(addon):
    lib = REPO / addon if addon == "suite_core" else REPO / addon / "lib"
    for path in sorted(lib.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _imports(module, path):
    """Every module name ``module`` imports (absolute), at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module
            found.add(target)
            # ``from . import x``: x may be a module of the package
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _is_odoo(name):
    """An import of Odoo itself, or of any addon through ``odoo.addons``."""
    return name == "odoo" or name.startswith("odoo.")


@pytest.mark.parametrize("addon", PACKAGES)
def test_lib_never_imports_odoo(addon):
    offenders = [
        f"{module} imports {name}"
        for module, path in _lib_modules(addon)
        for name in _imports(module, path)
        if _is_odoo(name)
    ]
    assert offenders == []


def test_suite_core_imports_no_addon():
    offenders = [
        f"{module} imports {name}"
        for module, path in _lib_modules("suite_core")
        for name in _imports(module, path)
        if name.split(".")[0] in ADDONS
    ]
    assert offenders == []


@pytest.mark.parametrize("addon", ADDONS)
def test_lib_reaches_other_addons_only_through_their_lib(addon):
    offenders = []
    for module, path in _lib_modules(addon):
        for name in _imports(module, path):
            head = name.split(".")[0]
            if head in ADDONS and head != addon and not name.startswith(f"{head}.lib"):
                offenders.append(f"{module} imports {name}")
    assert offenders == []


def test_the_addons_reach_the_core_by_one_name():
    """No module anywhere imports the core through another addon's path or
    switches its import on ``__name__`` (the old two-name layout)."""
    offenders = []
    core_modules = [p.stem for p in (REPO / "suite_core").glob("*.py")]
    for path in sorted(REPO.glob("*/**/*.py")):
        if path.parts[len(REPO.parts)] in {"docker", ".git"}:
            continue
        text = path.read_text()
        for old in (".".join(("audit_export", "lib", m)) for m in core_modules):
            if old in text:
                offenders.append(f"{path.relative_to(REPO)} names {old}")
    for package in PACKAGES:
        for module, path in _lib_modules(package):
            if '__name__.startswith("odoo.addons.")' in path.read_text():
                offenders.append(f"{module} switches its imports on __name__")
    assert offenders == []


@pytest.mark.parametrize("addon", PACKAGES)
def test_lib_import_graph_has_no_cycle(addon):
    modules = dict(_lib_modules(addon))
    graph = {
        module: {
            name
            for name in _imports(module, path)
            if name in modules and name != module
        }
        for module, path in modules.items()
    }
    # a package's __init__ importing its own modules is not a cycle
    for module in graph:
        graph[module] = {
            name
            for name in graph[module]
            if not module.startswith(name + ".") or modules[name].name != "__init__.py"
        }
    cycles = []
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == []


#: what ``python -m db_backup_suite.service.engine_job`` (the engine's child
#: process, started without Odoo) imports of the addon beside ``lib``
ENGINE_CHILD = [
    "db_backup_suite/service/__init__.py",
    "db_backup_suite/service/engine_job.py",
]


def test_engine_child_never_imports_odoo():
    """The engine's child process runs as plain Python: neither its module
    nor the ``service`` package around it imports Odoo, or a module of the
    addon's Odoo layer (``service`` holds its own modules that do)."""
    offenders = []
    for relative in ENGINE_CHILD:
        path = REPO / relative
        module = ".".join(Path(relative).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        for name in _imports(module, path):
            inside = name.startswith("db_backup_suite.") and not name.startswith(
                "db_backup_suite.lib"
            )
            if _is_odoo(name) or (inside and name != module):
                offenders.append(f"{relative} imports {name}")
    assert offenders == []


def test_engine_child_starts_without_odoo():
    """The child starts where ``odoo`` cannot be imported and answers an
    unknown action with its error event (exit code 1)."""
    boot = (
        "import runpy, sys; sys.modules['odoo'] = None; "
        "runpy.run_module('db_backup_suite.service.engine_job', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", boot],
        input=json.dumps({"action": "no-such-action"}),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    lines = done.stdout.splitlines()
    assert lines, done.stderr  # an import error: a traceback, no event
    assert done.returncode == 1, done.stderr
    assert json.loads(lines[-1]) == {
        "event": "error",
        "type": "KeyError",
        "message": "'no-such-action'",
    }
