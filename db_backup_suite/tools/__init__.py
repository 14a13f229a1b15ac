"""Odoo-layer helpers that are not models (loaded with the addon)."""

from . import error_messages
