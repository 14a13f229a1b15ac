"""The backup engine: pure Python, never imports ``odoo``.

Archive format, keys, streaming backup and restore pipelines, storage sinks
(local, S3, SFTP), retention policy and the command-line interface. Usable
without Odoo installed: ``python -m db_backup_suite.lib --help``.
"""
