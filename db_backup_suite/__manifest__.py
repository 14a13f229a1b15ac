{
    "name": "Database Backup Suite",
    "summary": "Encrypted scheduled backups to local, S3 and SFTP storage, "
    "with a gated restore wizard, sandboxes and alerts",
    "version": "18.0.1.1.0",
    "category": "Administration",
    "license": "LGPL-3",
    "author": "Backup & Compliance Suite",
    "development_status": "Beta",
    "depends": ["base", "mail", "bus", "audit_export"],
    "external_dependencies": {
        "python": [
            "suite_core",
            "boto3",
            "cryptography",
            "paramiko",
            "zstandard",
            "psycopg2",
            "pyfastcdc",
        ]
    },
    "data": [
        "security/db_backup_suite_groups.xml",
        "security/ir.model.access.csv",
        "security/db_backup_suite_security.xml",
        "data/ir_cron_data.xml",
        "data/mail_template_data.xml",
        "views/db_backup_run_views.xml",
        "views/db_backup_destination_views.xml",
        "views/db_backup_schedule_views.xml",
        "views/db_backup_sandbox_views.xml",
        "wizards/db_backup_key_rotation_views.xml",
        "wizards/db_backup_emergency_export_views.xml",
        "views/res_config_settings_views.xml",
        "views/emergency_templates.xml",
        "wizards/db_backup_dashboard_views.xml",
        "wizards/db_backup_restore_wizard_views.xml",
        "wizards/db_backup_download_wizard_views.xml",
        "views/db_backup_suite_menus.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "db_backup_suite/static/src/backend/**/*",
            "db_backup_suite/static/src/maintenance/**/*",
        ],
        "web.assets_tests": [
            "db_backup_suite/static/tests/tours/*.js",
        ],
    },
    "application": True,
}
