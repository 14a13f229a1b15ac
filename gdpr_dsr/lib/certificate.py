"""Signing of erasure certificates (canonical JSON + HMAC-SHA256)."""

import hashlib
import hmac
import json

SIGNATURE_ALGORITHM = "HMAC-SHA256"


def canonical_json(document):
    """Deterministic UTF-8 JSON bytes of ``document`` (sorted keys)."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def sign(document, key, key_id=""):
    """Return a copy of ``document`` with a ``signature`` block.

    The signature covers the canonical JSON of the document without its
    ``signature`` key; ``content_sha256`` lets anyone check integrity, the
    HMAC proves the server holding ``key`` issued it.
    """
    if not key:
        raise ValueError("a signing key is required")
    body = {k: v for k, v in document.items() if k != "signature"}
    payload = canonical_json(body)
    signed = dict(body)
    signed["signature"] = {
        "algorithm": SIGNATURE_ALGORITHM,
        "key_id": key_id,
        "content_sha256": hashlib.sha256(payload).hexdigest(),
        "value": hmac.new(key, payload, hashlib.sha256).hexdigest(),
    }
    return signed


def verify(document, key):
    """True when ``document`` carries a valid signature made with ``key``."""
    signature = document.get("signature") or {}
    if signature.get("algorithm") != SIGNATURE_ALGORITHM:
        return False
    body = {k: v for k, v in document.items() if k != "signature"}
    payload = canonical_json(body)
    if hashlib.sha256(payload).hexdigest() != signature.get("content_sha256"):
        return False
    expected = hmac.new(key, payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, str(signature.get("value", "")))
