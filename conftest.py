"""Tier-1 pytest configuration: every module of tests/fixtures is a plugin."""

import pkgutil
from pathlib import Path

_FIXTURES = Path(__file__).parent / "tests" / "fixtures"
pytest_plugins = [
    f"tests.fixtures.{module.name}" for module in pkgutil.iter_modules([str(_FIXTURES)])
]
