"""Shared set-up of the db_backup_suite Odoo tests.

The tests run the real engine in child processes against the real test
database; the keyring is a throw-away file configured through Odoo's
``suite_keyring_file`` option for the duration of a test class.
"""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from odoo.tests import TransactionCase, new_test_user
from odoo.tools import config

MANIFEST = '{"odoo_version": "18.0", "modules": {"base": "18.0"}}'
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the shared S3 / SFTP fixtures live in tests/
    sys.path.insert(0, str(REPO))


def manifest_of(env, **overrides):
    """A run's manifest (JSON) saying it is a backup of ``env``'s database."""
    manifest = {
        "odoo_version": "18.0",
        "modules": {"base": "18.0"},
        "database": env.cr.dbname,
        "uuid": env["ir.config_parameter"].sudo().get_param("database.uuid"),
        "created_at": "2026-01-01T00:00:00Z",
    }
    manifest.update(overrides)
    return json.dumps(manifest)


def drop_test_databases(prefix):
    """Drop the databases (and filestores) a test made, all named
    ``<prefix>...``: test clean-up, beside the suite's own guarded drop."""
    assert len(prefix) >= 8, "a test prefix, not a pattern for everything"
    for name in backup_engine_module().list_databases(prefix):
        _drop(name)


def drop_derived_databases(production_db, kinds=("sandbox", "safety")):
    """Drop the sandboxes and safety copies (``kinds``) the engine named
    after ``production_db``, with their filestores: test clean-up. Matched
    by the engine's own naming rule, so the names it cut to fit a long
    ``production_db`` (CI's test databases) are found too."""
    from ..lib import safety

    # a cut name keeps at least its first 12 characters (a sandbox's
    # ``-sandbox-<day>-<n>`` leaves 15 or more of 36); _derives_from then
    # applies the naming rule itself
    for name in backup_engine_module().list_databases(production_db[:12]):
        if any(safety._derives_from(name, kind, production_db) for kind in kinds):
            _drop(name)


def backup_engine_module():
    from ..service import backup_engine

    return backup_engine


def _drop(name):
    from ..lib import pgtools

    engine = backup_engine_module()
    engine._close_database(name)
    pgtools.drop_database(engine.pg_params(), name)
    shutil.rmtree(
        os.path.join(config["data_dir"], "filestore", name), ignore_errors=True
    )


def make_keyring_file(directory):
    from suite_core import keyring

    path = os.path.join(directory, "keyring")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(keyring.generate_key_line("h7test") + "\n")
    return path


class KeyringMixin:
    @classmethod
    def setup_keyring(cls):
        cls.tmp_dir = tempfile.mkdtemp(prefix="dbbs_")
        cls.keyring_path = make_keyring_file(cls.tmp_dir)
        cls._saved_keyring = config.get("suite_keyring_file")
        config["suite_keyring_file"] = cls.keyring_path
        cls.addClassCleanup(cls._restore_keyring_option)

    @classmethod
    def setup_local_destination(cls):
        """A local destination in a new directory of the class's temporary
        one (``cls.local_dir``); the record."""
        cls.local_dir = os.path.join(cls.tmp_dir, "dest")
        os.makedirs(cls.local_dir)
        return cls.env["db.backup.destination"].create(
            {"name": "Local", "dest_type": "local", "local_path": cls.local_dir}
        )

    @classmethod
    def _restore_keyring_option(cls):
        if cls._saved_keyring:
            config["suite_keyring_file"] = cls._saved_keyring
        else:
            config.options.pop("suite_keyring_file", None)
        shutil.rmtree(cls.tmp_dir, ignore_errors=True)


class BackupCase(KeyringMixin, TransactionCase):
    """Keyring, a local destination, an operator, a restore user, a plain user."""

    def unreachable_sftp_destination(self):
        """An SFTP destination whose server never answers (port 1 of the
        loopback), its host key confirmed: a connection test fails fast."""
        return self.env["db.backup.destination"].create(
            {
                "name": "Nowhere",
                "dest_type": "sftp",
                "sftp_host": "127.0.0.1",
                "sftp_port": 1,
                "sftp_username": "nobody",
                "sftp_password": "pw-123456789",
                "sftp_known_hosts": "[127.0.0.1]:1 ssh-ed25519 "
                "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            }
        )

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_keyring()
        # Progress is written with separate cursors: in test mode they share
        # the test transaction, so nothing is committed.
        cls.registry.enter_test_mode(cls.cr)
        cls.addClassCleanup(cls.registry.leave_test_mode)
        cls.local_dir = os.path.join(cls.tmp_dir, "local-dest")
        os.makedirs(cls.local_dir)
        cls.local_dest = cls.env["db.backup.destination"].create(
            {"name": "Local disk", "dest_type": "local", "local_path": cls.local_dir}
        )
        cls.operator = new_test_user(
            cls.env,
            login="test_operator",
            email="op@example.com",
            groups="base.group_user,db_backup_suite.backup_group_operator",
        )
        cls.restorer = new_test_user(
            cls.env,
            login="test_restorer",
            email="rest@example.com",
            groups="base.group_user,db_backup_suite.backup_group_restore",
        )
        cls.plain = new_test_user(cls.env, login="test_plain", groups="base.group_user")
        cls.admin = cls.env.ref("base.user_admin")
        cls.admin.email = cls.admin.email or "admin@example.com"
