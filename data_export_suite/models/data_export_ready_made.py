"""Ready-made profiles: shared export profiles following the installed apps.

The definitions are data (``lib/ready_made.py``); this creates the profiles
and their "Export (suite)" list actions for the apps present, when modules
are installed or updated (``data.export.profile._register_hook``) or when an
administrator refreshes them. Inherited by ``data.export.profile``.
"""

import copy

from odoo import api, models

from ..lib.ready_made import READY_MADE_SPECS


class DataExportReadyMade(models.AbstractModel):
    _name = "data.export.ready.made"
    _description = "Ready-made Export Profiles"

    @api.model
    def _ready_made_specs(self):
        """Definitions of the shipped profiles (hook: extend the list).

        Each: key, name, model, candidate fields (kept when they exist),
        and optional domain, date field, include_archived, requires (a field
        that must exist, e.g. qty_available needs the Inventory app).
        """
        return copy.deepcopy(READY_MADE_SPECS)

    @api.model
    def _setup_ready_made_profiles(self):
        """Create the ready-made profiles (and list actions) for the apps present.

        Idempotent: an existing profile keeps what the administrator edited;
        one whose columns are still those this method generated follows the
        fields now present (e.g. Customers gains the lifetime spend once
        accounting is installed). Profiles of uninstalled apps disappear with
        their model (cascade). Returns the profiles created.
        """
        created = self.env["data.export.profile"]
        Profile = created.sudo().with_context(active_test=False)
        existing = {
            profile.ready_made_key: profile
            for profile in Profile.search([("ready_made_key", "!=", False)])
        }
        IrModel = self.env["ir.model"].sudo()
        for sequence, spec in enumerate(self._ready_made_specs(), start=1):
            if spec["model"] not in self.env:
                continue
            Model = self.env[spec["model"]]
            if spec.get("requires") and spec["requires"] not in Model._fields:
                continue
            self._ensure_list_action(spec["model"])
            paths = "\n".join(f for f in spec["fields"] if f in Model._fields)
            profile = existing.get(spec["key"])
            if profile:
                if (
                    profile.ready_made_paths
                    and profile.field_paths == profile.ready_made_paths
                    and profile.field_paths != paths
                ):
                    profile.write({"field_paths": paths, "ready_made_paths": paths})
                continue
            date_field = spec.get("date_field")
            date_field_rec = (
                self.env["ir.model.fields"].sudo()._get(spec["model"], date_field)
                if date_field and date_field in Model._fields
                else self.env["ir.model.fields"]
            )
            created |= Profile.create(
                {
                    "name": spec["name"],
                    "sequence": sequence,
                    "ready_made_key": spec["key"],
                    "user_id": False,
                    "model_id": IrModel._get_id(spec["model"]),
                    "field_paths": paths,
                    "ready_made_paths": paths,
                    "domain": spec.get("domain", "[]"),
                    "date_field_id": date_field_rec.id,
                    "include_archived": spec.get("include_archived", False),
                }
            )
        return created

    @api.model
    def _ensure_list_action(self, model_name):
        """An "Export (suite)" entry in the Action menu of ``model_name`` lists.

        A server action bound to the model (binding type ``action``, list
        views only) is the JS-free Odoo way; restricted to the export group.
        """
        xmlid_name = "list_action_export_%s" % model_name.replace(".", "_")
        # The xml id may outlive its action: uninstalling the app deletes the
        # action with its model (database cascade), not this addon's xml id.
        xmlid = (
            self.env["ir.model.data"]
            .sudo()
            .search(
                [("module", "=", "data_export_suite"), ("name", "=", xmlid_name)],
                limit=1,
            )
        )
        if xmlid:
            existing = (
                self.env["ir.actions.server"].sudo().browse(xmlid.res_id).exists()
            )
            if existing:
                return existing
        action = (
            self.env["ir.actions.server"]
            .sudo()
            .create(
                {
                    "name": self.env._("Export (suite)"),
                    "model_id": self.env["ir.model"]._get_id(model_name),
                    "binding_model_id": self.env["ir.model"]._get_id(model_name),
                    "binding_view_types": "list",
                    "state": "code",
                    "code": "action = env['data.export.wizard']"
                    "._action_open_for_records(model._name, records.ids)",
                    "groups_id": [
                        (4, self.env.ref("data_export_suite.export_group_user").id)
                    ],
                }
            )
        )
        if xmlid:
            xmlid.write({"model": "ir.actions.server", "res_id": action.id})
            # xml id lookups read the table directly (and cache the answer).
            xmlid.flush_recordset()
            return action
        self.env["ir.model.data"].sudo().create(
            {
                "module": "data_export_suite",
                "name": xmlid_name,
                "model": "ir.actions.server",
                "res_id": action.id,
                "noupdate": True,
            }
        )
        return action
