{
    "name": "Audit Trail and Safe Exports",
    "summary": "Tamper-evident audit log (logins, data changes, suite events) "
    "with CSV/JSON/XLSX export for auditors",
    "version": "18.0.2.0.0",
    "category": "Administration",
    "license": "LGPL-3",
    "author": "Backup & Compliance Suite",
    "development_status": "Beta",
    "depends": ["base", "web"],
    "external_dependencies": {"python": ["suite_core", "cryptography", "zxcvbn"]},
    "data": [
        "security/audit_export_groups.xml",
        "security/ir.model.access.csv",
        "security/audit_export_wizard_security.xml",
        "data/audit_rule_data.xml",
        "data/ir_cron_data.xml",
        "views/audit_event_views.xml",
        "views/audit_rule_views.xml",
        "views/audit_checkpoint_views.xml",
        "views/res_config_settings_views.xml",
        "wizards/audit_export_wizard_views.xml",
        "wizards/audit_verify_wizard_views.xml",
        "views/audit_export_menus.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "audit_export/static/src/password_meter/*",
            "audit_export/static/src/job_progress/*",
        ],
        "web.assets_tests": [
            "audit_export/static/tests/tours/*.js",
        ],
    },
}
