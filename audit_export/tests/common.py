"""Test helpers shared with the addons that depend on this one."""

import contextlib
from unittest.mock import patch

from odoo.tools.translate import code_translations

#: the language the translation tests switch to
TEST_LANG = "fr_FR"


@contextlib.contextmanager
def translated_terms(env, module, terms):
    """For the block, the Python terms of ``module`` in :data:`TEST_LANG`
    are ``terms`` ({English source: translation}, nothing else translated);
    yields ``env`` in that language (activated)."""
    env["res.lang"]._activate_lang(TEST_LANG)
    key = (module, TEST_LANG)
    with patch.dict(code_translations.python_translations, {key: terms}):
        yield env(context=dict(env.context, lang=TEST_LANG))
