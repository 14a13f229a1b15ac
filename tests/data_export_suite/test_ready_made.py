"""data_export_suite.lib.ready_made: the shipped profile definitions are valid
data (what the Odoo layer creates profiles from, at every module update)."""

from data_export_suite.lib.domain import parse_domain
from data_export_suite.lib.ready_made import READY_MADE_SPECS
from data_export_suite.lib.serialize import check_path_syntax

REQUIRED = {"key", "name", "model", "fields"}
OPTIONAL = {"domain", "date_field", "include_archived", "requires"}


def test_every_spec_has_a_unique_key_and_only_known_entries():
    keys = [spec["key"] for spec in READY_MADE_SPECS]
    assert len(keys) == len(set(keys))
    for spec in READY_MADE_SPECS:
        assert spec.keys() >= REQUIRED, spec["key"]
        assert spec.keys() <= REQUIRED | OPTIONAL, spec["key"]


def test_columns_start_with_id_and_are_valid_paths_once_each():
    for spec in READY_MADE_SPECS:
        fields = spec["fields"]
        assert fields[0] == "id", spec["key"]
        assert len(fields) == len(set(fields)), spec["key"]
        for path in fields:
            check_path_syntax(path)


def test_domains_are_literal_domains():
    for spec in READY_MADE_SPECS:
        if "domain" in spec:
            assert parse_domain(spec["domain"], {}), spec["key"]
