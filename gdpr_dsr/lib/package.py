"""The layout of a subject access package (no Odoo import): the sections
of its ``data.json`` and where each category of discovered record goes,
and the name of an attached file inside the ZIP."""

import re

# Characters kept in a file name taken from a record (the rest is replaced).
SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")

# Categories whose records are listed flat, and the section that holds them.
LIST_SECTIONS = {
    "profile": ("profile",),
    "related_partner": ("related_contacts",),
    "user": ("users",),
    "message": ("communications", "messages"),
    "mail": ("communications", "emails"),
    "follower": ("communications", "followers"),
}
# Categories whose records are grouped by model, and their section; any
# other category goes to "records".
MODEL_SECTIONS = {"invoice": "invoices", "payment": "payment_information"}


def new_sections():
    """The empty sections of the package document."""
    return {
        "profile": [],
        "related_contacts": [],
        "users": [],
        "communications": {"messages": [], "emails": [], "followers": []},
        "invoices": {},
        "payment_information": {},
        "records": {},
    }


def add_to_section(sections, category, model_name, data):
    """Add the serialised records ``data`` of ``model_name``, discovered as
    ``category``, to their section of ``sections``."""
    path = LIST_SECTIONS.get(category)
    if path is not None:
        target = sections
        for key in path:
            target = target[key]
        target.extend(data)
        return
    section = sections[MODEL_SECTIONS.get(category, "records")]
    section.setdefault(model_name, []).extend(data)


def attachment_arcname(attachment_id, name):
    """The ZIP member name of an attached file: its id (unique) and its
    name made safe (at most 100 characters, never a path)."""
    return "attachments/%d-%s" % (
        attachment_id,
        SAFE_NAME_RE.sub("_", name or "file")[:100],
    )
