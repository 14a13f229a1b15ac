"""One error hierarchy: every error class the shared core (``suite_core``)
or a ``<addon>/lib`` module defines on purpose derives from the suite's one
root, ``suite_core.keyring.SuiteError``, so one ``except SuiteError``
catches every error the engine raises deliberately, the CLI maps each
family to its exit code and the Odoo layer to a translated message.

The test imports every module of ``suite_core`` and of every ``lib``
(outside Odoo, as the CLI does) and checks every Exception subclass defined
there. Classes that keep a second base (``ValueError``,
``OSError``...) for existing handlers still pass: only the root is checked.
"""

import importlib
import inspect
from pathlib import Path

import pytest

from suite_core.keyring import SuiteError

REPO = Path(__file__).resolve().parent.parent
ADDONS = sorted(
    p.parent.name for p in REPO.glob("*/__manifest__.py") if (p.parent / "lib").is_dir()
)

#: Exception subclasses deliberately outside the hierarchy, with the reason.
#: Keep this empty unless a class is not an error of the suite (e.g. a
#: control-flow signal that must not be caught by ``except SuiteError``).
OUTSIDE = {}


def _lib_modules():
    for lib in [REPO / "suite_core"] + [REPO / addon / "lib" for addon in ADDONS]:
        for path in sorted(lib.rglob("*.py")):
            if path.name == "__main__.py":  # runs the CLI when imported
                continue
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts)


MODULES = list(_lib_modules())


def _own_exceptions(module):
    for name, obj in vars(module).items():
        if (
            inspect.isclass(obj)
            and issubclass(obj, BaseException)
            and obj.__module__ == module.__name__
        ):
            yield name, obj


def test_every_lib_module_is_walked():
    assert "db_backup_suite.lib.cli" in MODULES
    assert "db_backup_suite.lib.repository.repo" in MODULES
    assert "gdpr_dsr.lib.erasure_register" in MODULES
    assert "suite_core.streamcrypt" in MODULES
    assert len(MODULES) > 40


@pytest.mark.parametrize("modname", MODULES)
def test_every_lib_error_derives_from_suite_error(modname):
    module = importlib.import_module(modname)
    outside = [
        f"{modname}.{name}"
        for name, cls in _own_exceptions(module)
        if not issubclass(cls, SuiteError) and f"{modname}.{name}" not in OUTSIDE
    ]
    assert not outside, f"errors outside the SuiteError hierarchy: {outside}"


def test_the_check_sees_a_stray_error():
    """The walk would catch a class rooted in Exception alone."""
    import types

    module = types.ModuleType("fake_lib")

    class StrayError(Exception):
        pass

    StrayError.__module__ = "fake_lib"
    module.StrayError = StrayError
    found = [n for n, c in _own_exceptions(module) if not issubclass(c, SuiteError)]
    assert found == ["StrayError"]


def test_second_bases_are_kept_for_existing_handlers():
    from data_export_suite.lib.domain import DomainError
    from data_export_suite.lib.zipper import ZipperError
    from suite_core.passwords import PasswordPolicyError
    from suite_core.writers import WriterError

    for cls in (PasswordPolicyError, WriterError, DomainError, ZipperError):
        assert issubclass(cls, SuiteError)
        assert issubclass(cls, ValueError)
