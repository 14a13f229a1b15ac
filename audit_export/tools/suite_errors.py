"""The translated message of an error of the suite's libraries.

The libraries (``<addon>/lib``) know no Odoo and speak English; their errors
share one root, ``SuiteError``. The Odoo layer shows them through
:func:`suite_error_message`, which maps the error's class (most specific
first) to a message in the user's language, filled from the error's own
attributes. An error of no listed class keeps the library's message.

This addon is the base of the suite and imports no other addon: the addons
that depend on it list their own libraries' error classes with
:func:`register` when Odoo imports them.
"""

from suite_core import keyring, passwords, streamcrypt, witness, writers


def _missing_key(env, exc):
    name = getattr(exc, "object_name", None)
    whats = {
        "destination": lambda: env._(
            "The credentials of destination %(name)s", name=name
        ),
        "archive": lambda: env._("Archive %(name)s", name=name),
        "export": lambda: env._("Export %(name)s", name=name),
    }
    kind = getattr(exc, "kind", None)
    what = whats[kind]() if name and kind in whats else env._("This data")
    key_id = getattr(exc, "key_id", None)
    if not key_id:
        return env._(
            "%(what)s cannot be decrypted: the server key that encrypted it is "
            "not in the server keyring.",
            what=what,
        )
    return env._(
        "%(what)s cannot be decrypted: the server key that encrypted it, "
        "%(key_id)s, is not in the server keyring. Add that key back to the "
        "keyring (keep every key that encrypted something you may need).",
        what=what,
        key_id=key_id,
    )


#: (error class, message builder), most specific first: the first class the
#: error is an instance of gives its message. A builder takes ``(env, exc)``
#: and returns the message in the language of ``env``.
MESSAGES = [
    (
        passwords.PasswordPolicyError,
        lambda env, exc: env["audit.password.policy"]._message(exc.verdict),
    ),
    (
        streamcrypt.WrongPasswordError,
        lambda env, exc: env._(
            "Wrong password: the archive cannot be decrypted with it. Nothing "
            "was read from it."
        ),
    ),
    (
        streamcrypt.WrongKeyError,
        lambda env, exc: env._(
            "The archive cannot be decrypted with the server keyring's keys: it "
            "was encrypted with another key or a password (%(detail)s).",
            detail=str(exc),
        ),
    ),
    (
        streamcrypt.TamperedError,
        lambda env, exc: env._(
            "The archive was altered or damaged: it fails its authentication "
            "check. Nothing from it was used."
        ),
    ),
    (
        streamcrypt.TruncatedError,
        lambda env, exc: env._(
            "The archive is incomplete: it ends before its last block (an "
            "interrupted copy or upload?). Nothing from it was used."
        ),
    ),
    (
        streamcrypt.FormatError,
        lambda env, exc: env._(
            "This file is not an archive of the suite, or of a format version "
            "this server does not read (%(detail)s).",
            detail=str(exc),
        ),
    ),
    (keyring.UnknownKeyError, _missing_key),
    (
        keyring.KeyringError,
        lambda env, exc: env._(
            "The server keyring is missing or cannot be read: %(detail)s",
            detail=str(exc),
        ),
    ),
    (
        witness.WitnessError,
        lambda env, exc: env._(
            "The audit witness file cannot be used: %(detail)s", detail=str(exc)
        ),
    ),
    (
        writers.WriterError,
        lambda env, exc: env._(
            "The export file cannot be written (%(detail)s). Check the export's "
            "settings (CSV delimiter, time zone), then run it again.",
            detail=str(exc),
        ),
    ),
]


def register(cls, build):
    """List ``cls`` (an error class of an addon's library) with its message
    builder ``build(env, exc)``; called by the addons at import. It goes
    before the first listed class it derives from, so the most specific
    class still gives the message; registering a listed class again
    replaces its builder."""
    for index, (listed, _build) in enumerate(MESSAGES):
        if listed is cls:
            MESSAGES[index] = (cls, build)
            return
    for index, (listed, _build) in enumerate(MESSAGES):
        if issubclass(cls, listed):
            MESSAGES.insert(index, (cls, build))
            return
    MESSAGES.append((cls, build))


def suite_error_message(env, exc):
    """The message of ``exc`` (an error of the suite's libraries) in the
    language of ``env``; the library's own message for a class not listed."""
    for cls, build in MESSAGES:
        if isinstance(exc, cls):
            return build(env, exc)
    return str(exc)
