"""The errors of ``service/`` belong to the suite's one error hierarchy.

Every Exception subclass a module of ``db_backup_suite/service`` defines
derives from ``suite_core.keyring.SuiteError`` (as every error of
``suite_core`` and of the ``lib`` packages does, ``tests/test_error_hierarchy.py``),
so one ``except SuiteError`` catches them too. These modules import Odoo:
the check runs here, in the Odoo tier.
"""

import importlib
import inspect
import pkgutil
import types
from unittest.mock import patch

from odoo.tests import BaseCase, tagged
from odoo.tools import config

from suite_core.keyring import SuiteError

from .. import service
from ..service import backup_engine


def _service_modules():
    """Every module of the ``service`` package, imported."""
    return [
        importlib.import_module(info.name)
        for info in pkgutil.iter_modules(service.__path__, service.__name__ + ".")
    ]


def _own_exceptions(module):
    """The Exception subclasses ``module`` defines (not those it imports)."""
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == module.__name__
    ]


@tagged("post_install", "-at_install")
class TestServiceErrors(BaseCase):
    def test_every_service_error_derives_from_suite_error(self):
        modules = _service_modules()
        # the walk saw the package's modules, not an empty or wrong path
        names = {module.__name__.rsplit(".", 1)[-1] for module in modules}
        self.assertLessEqual(
            {"backup_engine", "engine_job", "restore_drill", "restore_job"}, names
        )
        checked = {}
        for module in modules:
            for cls in _own_exceptions(module):
                checked["%s.%s" % (module.__name__, cls.__name__)] = cls
        # and found the errors it is there for
        self.assertIn(backup_engine.KeyringUnavailable, checked.values())
        self.assertIn(backup_engine.JobError, checked.values())
        outside = sorted(
            name for name, cls in checked.items() if not issubclass(cls, SuiteError)
        )
        self.assertEqual(outside, [], "errors outside the SuiteError hierarchy")

    def test_the_walk_sees_a_stray_error(self):
        """A class rooted in Exception alone would be reported."""
        module = types.ModuleType("fake_service")

        class StrayError(Exception):
            pass

        StrayError.__module__ = module.__name__
        module.StrayError = StrayError
        module.SuiteError = SuiteError  # imported, not defined here: skipped
        self.assertEqual(_own_exceptions(module), [StrayError])

    def test_existing_handlers_still_catch_them(self):
        """The handlers written for ``KeyringUnavailable`` and ``JobError``
        work as before (message, the job's error event), and ``except
        SuiteError`` catches them too."""
        missing = "/nonexistent/db_backup_suite/keyring"
        with patch.dict(config.options, {"suite_keyring_file": missing}):
            ok, message = backup_engine.keyring_status()
            self.assertFalse(ok)
            self.assertTrue(message)
            with self.assertRaises(SuiteError) as caught:
                backup_engine.load_keyring()
        self.assertIsInstance(caught.exception, backup_engine.KeyringUnavailable)
        # a job the engine child refuses: its error event comes back
        with self.assertRaises(SuiteError) as caught:
            backup_engine.run_job({"action": "no-such-action"})
        error = caught.exception
        self.assertIsInstance(error, backup_engine.JobError)
        self.assertEqual(error.event["event"], "error")
        self.assertEqual(error.event["type"], "KeyError")
        self.assertIn("no-such-action", str(error))

    def test_the_emergency_page_refusal_is_a_suite_error(self):
        """The one error class of the Odoo layer outside ``service`` that is
        not an Odoo ``UserError`` (the emergency restore page's refusal)."""
        from ..controllers.emergency import EmergencyRefused

        self.assertTrue(issubclass(EmergencyRefused, SuiteError))
