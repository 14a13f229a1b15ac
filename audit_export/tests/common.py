"""Helpers the suite's Odoo tests share (every addon of the suite depends on
audit_export, so its tests import them as
``odoo.addons.audit_export.tests.common``)."""

import contextlib
import json
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


ACCESS_ERROR = "odoo.exceptions.AccessError"


def error_class_name(name):
    """The class name a JSON-RPC error reply gives for ``name``: a bare
    name (``"AccessError"``) is one of ``odoo.exceptions``."""
    return name if "." in name else f"odoo.exceptions.{name}"


class RpcMixin:
    """Model calls over a real HTTP session of an ``HttpCase``, sent as the
    web client (or a hostile client) sends them: the server's access checks,
    its JSON-RPC dispatch and its error replies all run."""

    #: seconds a call may take (``url_open``'s default is 12)
    rpc_timeout = 60

    def rpc_password(self, login):
        """The password of ``login`` in these tests (the login itself, as
        ``new_test_user`` sets it, unless a class says otherwise)."""
        return login

    def call_kw(self, model, method, args=(), kwargs=None, *, route="call_kw"):
        """``model.method(*args, **kwargs)`` as a JSON-RPC call to
        ``/web/dataset/<route>`` in the current session (``route`` is
        ``call_kw`` or ``call_button``); the decoded reply, ``{"result": …}``
        or ``{"error": …}``."""
        payload = {
            "jsonrpc": "2.0",
            "method": "call",
            "id": 1,
            "params": {
                "model": model,
                "method": method,
                "args": list(args),
                "kwargs": kwargs or {},
            },
        }
        response = self.url_open(
            f"/web/dataset/{route}/{model}/{method}",
            data=json.dumps(payload),
            headers={"Content-Type": "application/json"},
            timeout=self.rpc_timeout,
        )
        self.assertEqual(response.status_code, 200, response.text[:500])
        return response.json()

    def rpc(self, model, method, *args, **kwargs):
        """``model.method(*args, **kwargs)`` in the current session; the
        decoded reply."""
        return self.call_kw(model, method, args, kwargs)

    def rpc_as(self, login, model, method, *args, **kwargs):
        """:meth:`rpc` as ``login``, logged in first."""
        self.authenticate(login, self.rpc_password(login))
        return self.rpc(model, method, *args, **kwargs)

    def assertRpcOk(self, reply):
        """The call succeeded; its result."""
        self.assertNotIn("error", reply, reply.get("error"))
        return reply["result"]

    def assertRpcError(self, reply, *names):
        """The call failed with one of the exception classes ``names``
        (full or ``odoo.exceptions`` names; by default AccessError); the
        error's message."""
        self.assertIn("error", reply, f"the call succeeded: {reply}")
        data = reply["error"]["data"]
        expected = [error_class_name(name) for name in names or (ACCESS_ERROR,)]
        self.assertIn(data["name"], expected, data.get("message"))
        return data["message"]
