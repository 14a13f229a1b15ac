"""Tier-1 tests of gdpr_dsr/lib/package.py: where each category of a
subject's records goes in the access package, and the ZIP names of files."""

from gdpr_dsr.lib.package import add_to_section, attachment_arcname, new_sections


def test_each_category_lands_in_its_section():
    sections = new_sections()
    for category in (
        "profile",
        "related_partner",
        "user",
        "message",
        "mail",
        "follower",
        "invoice",
        "payment",
        "sale",
    ):
        add_to_section(sections, category, f"model.{category}", [{"c": category}])
    assert sections == {
        "profile": [{"c": "profile"}],
        "related_contacts": [{"c": "related_partner"}],
        "users": [{"c": "user"}],
        "communications": {
            "messages": [{"c": "message"}],
            "emails": [{"c": "mail"}],
            "followers": [{"c": "follower"}],
        },
        "invoices": {"model.invoice": [{"c": "invoice"}]},
        "payment_information": {"model.payment": [{"c": "payment"}]},
        "records": {"model.sale": [{"c": "sale"}]},
    }


def test_records_of_one_model_are_appended_in_order():
    sections = new_sections()
    add_to_section(sections, "invoice", "account.move", [{"id": 1}])
    add_to_section(sections, "invoice", "account.move", [{"id": 2}, {"id": 3}])
    add_to_section(sections, "other", "sale.order", [{"id": 4}])
    add_to_section(sections, "other", "sale.order", [{"id": 5}])
    assert sections["invoices"] == {"account.move": [{"id": 1}, {"id": 2}, {"id": 3}]}
    assert sections["records"] == {"sale.order": [{"id": 4}, {"id": 5}]}


def test_new_sections_are_never_shared():
    first = new_sections()
    add_to_section(first, "message", "mail.message", [{"id": 1}])
    assert new_sections()["communications"]["messages"] == []


def test_attachment_names_cannot_leave_the_attachments_folder():
    assert attachment_arcname(7, "../../etc/passwd") == "attachments/7-.._.._etc_passwd"
    assert attachment_arcname(8, "café report.pdf") == "attachments/8-caf_report.pdf"
    assert attachment_arcname(9, False) == "attachments/9-file"
    assert attachment_arcname(10, "x" * 300) == "attachments/10-" + "x" * 100
