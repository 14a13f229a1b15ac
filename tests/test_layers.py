"""The layers of the code, checked on its source (an import-linter of our
own, no Odoo needed):

- every ``<addon>/lib`` is pure Python: no module imports ``odoo`` (also not
  inside a function), so the engine runs and is tested without Odoo;
- ``audit_export/lib`` is the shared core: it imports no other addon;
- another addon's ``lib`` reaches another addon's code only through that
  addon's ``lib`` (never its models, wizards or controllers);
- within a ``lib``, the import graph has no cycle (function-level imports
  count: a cycle hidden inside a function is still a cycle).
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ADDONS = sorted(
    p.parent.name for p in REPO.glob("*/__manifest__.py") if (p.parent / "lib").is_dir()
)


def _lib_modules(addon):
    lib = REPO / addon / "lib"
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


def _strip_odoo_addons(name):
    return name[len("odoo.addons.") :] if name.startswith("odoo.addons.") else name


def _is_odoo(name):
    """An import of Odoo itself. ``odoo.addons.<suite addon>.lib`` is not:
    it is how a lib reaches the shared core's modules under one identity
    when Odoo loaded them (``db_backup_suite/lib/crypto.py``)."""
    if name != "odoo" and not name.startswith("odoo."):
        return False
    parts = name.split(".")
    return not (
        len(parts) >= 4
        and parts[1] == "addons"
        and parts[2] in ADDONS
        and parts[3] == "lib"
    )


@pytest.mark.parametrize("addon", ADDONS)
def test_lib_never_imports_odoo(addon):
    offenders = [
        f"{module} imports {name}"
        for module, path in _lib_modules(addon)
        for name in _imports(module, path)
        if _is_odoo(name)
    ]
    assert offenders == []


@pytest.mark.parametrize("addon", ADDONS)
def test_lib_reaches_other_addons_only_through_their_lib(addon):
    offenders = []
    for module, path in _lib_modules(addon):
        for name in map(_strip_odoo_addons, _imports(module, path)):
            head = name.split(".")[0]
            if head in ADDONS and head != addon:
                if addon == "audit_export":
                    offenders.append(f"{module} (shared core) imports {name}")
                elif not name.startswith(f"{head}.lib"):
                    offenders.append(f"{module} imports {name}")
    assert offenders == []


@pytest.mark.parametrize("addon", ADDONS)
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
