{
    "name": "GDPR / CCPA Data Subject Requests",
    "summary": "Register, discovery, export package and certified erasure of data "
    "subject requests, with erasures re-applied after database restores",
    "version": "18.0.1.2.0",
    "category": "Administration",
    "license": "LGPL-3",
    "author": "Backup & Compliance Suite",
    "development_status": "Beta",
    "depends": ["mail", "audit_export", "data_export_suite"],
    "external_dependencies": {"python": ["suite_core", "cryptography"]},
    "data": [
        "security/gdpr_dsr_groups.xml",
        "security/ir.model.access.csv",
        "security/dsr_request_security.xml",
        "security/dsr_wizard_security.xml",
        "data/ir_sequence_data.xml",
        "data/ir_cron_data.xml",
        "data/dsr_discovery_exclusion_data.xml",
        "report/dsr_certificate_templates.xml",
        "views/dsr_request_views.xml",
        "views/dsr_discovery_exclusion_views.xml",
        "wizards/dsr_package_wizard_views.xml",
        "wizards/dsr_erasure_wizard_views.xml",
        "views/gdpr_dsr_menus.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "gdpr_dsr/static/src/**/*",
        ],
        "web.assets_tests": [
            "gdpr_dsr/static/tests/tours/*.js",
        ],
    },
}
