"""The keyed hash of an email address (HMAC-SHA256 with ``EMAIL_HASH_KEY``): the same address always gives
the same value, and without the key nobody can test an address against it. Minimised requests keep only
this; resend, lookup, rate limits and mail records key on it."""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app


def normalise(email: str) -> str:
    return (email or "").strip().lower()


def email_hash(email: str | None) -> str | None:
    if not email:
        return None
    key = current_app.config["EMAIL_HASH_KEY"].encode()
    return hmac.new(key, normalise(email).encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
