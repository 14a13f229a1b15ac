from odoo import api, models
from odoo.exceptions import AccessError


class DbBackupGuardedMixin(models.AbstractModel):
    """Fields that gate a dangerous step are set by the server only.

    A model lists what a user may send in ``create`` and ``write``
    (``_user_create_fields`` / ``_user_write_fields``, ``None``: anything but
    ``_server_owned_fields``); anything else from a user (RPC, the web
    client, an import, ``copy``) is refused with an ``AccessError`` before
    anything is written. ``default_<field>`` keys of the context are held to
    the same list, so a context cannot smuggle a value in either. The
    server's own methods write through ``sudo()``, which this guard lets
    through.
    """

    _name = "db.backup.guarded.mixin"
    _description = "Backup Suite: server-owned fields"

    #: field names a user may give to ``create`` (None: all but the owned)
    _user_create_fields = None
    #: field names a user may give to ``write`` (None: all but the owned)
    _user_write_fields = None
    #: field names only the server writes (used when the lists above are None)
    _server_owned_fields = ()
    #: records only the server creates (a user's ``create`` is refused)
    _server_creates_only = False

    def _user_may_set(self, names, allowed):
        if allowed is not None:
            return {name for name in names if name not in allowed}
        return {name for name in names if name in self._server_owned_fields}

    def _refuse_server_owned(self, names, allowed):
        if self.env.su:
            return
        refused = self._user_may_set(names, allowed)
        if refused:
            raise AccessError(
                self.env._(
                    "%(model)s: %(fields)s are set by the server only.",
                    model=self._description,
                    fields=", ".join(sorted(refused)),
                )
            )

    def _without_owned_defaults(self):
        """This model without context defaults for fields a user may not set
        (``default_state`` and the like are dropped, not applied)."""
        if self.env.su:
            return self
        context = self.env.context
        owned = self._user_may_set(
            [
                key[8:]
                for key in context
                if key.startswith("default_") and key[8:] in self._fields
            ],
            self._user_create_fields,
        )
        if not owned:
            return self
        # the whole context, minus defaults for server-owned fields
        return self.with_context(  # pylint: disable=context-overridden
            {
                key: value
                for key, value in context.items()
                if not (key.startswith("default_") and key[8:] in owned)
            }
        )

    @api.model_create_multi
    def create(self, vals_list):
        if self._server_creates_only and not self.env.su:
            raise AccessError(
                self.env._(
                    "%(model)s records are created by the server only.",
                    model=self._description,
                )
            )
        for vals in vals_list:
            self._refuse_server_owned(vals, self._user_create_fields)
        return super(DbBackupGuardedMixin, self._without_owned_defaults()).create(
            vals_list
        )

    def write(self, vals):
        self._refuse_server_owned(vals, self._user_write_fields)
        return super().write(vals)
