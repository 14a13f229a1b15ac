{
    "name": "Data Export Suite",
    "summary": "Per-model exports (CSV, JSON, XLSX, invoice PDF) as access-checked, "
    "streaming background jobs, encrypted at rest, with an audit trail",
    "version": "18.0.1.2.0",
    "category": "Administration",
    "license": "LGPL-3",
    "author": "Backup & Compliance Suite",
    "development_status": "Beta",
    "depends": ["audit_export", "mail", "bus"],
    "external_dependencies": {
        "python": ["suite_core", "cryptography", "pyzipper", "zxcvbn"]
    },
    "data": [
        "security/data_export_suite_groups.xml",
        "security/ir.model.access.csv",
        "security/data_export_job_security.xml",
        "security/data_export_profile_security.xml",
        "security/data_export_wizard_security.xml",
        "data/ir_cron_data.xml",
        "views/data_export_profile_views.xml",
        "views/data_export_job_views.xml",
        "wizards/data_export_wizard_views.xml",
        "views/data_export_suite_menus.xml",
        "data/data_export_profile_data.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "data_export_suite/static/src/**/*",
        ],
        "web.assets_tests": [
            "data_export_suite/static/tests/tours/**/*",
        ],
    },
    "application": True,
}
