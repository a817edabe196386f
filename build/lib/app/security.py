"""Password hashing with argon2id (argon2-cffi's defaults follow RFC 9106's recommendations)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import ARGON2_VERSION

_hasher = PasswordHasher()


def _dummy_hash() -> str:
    """An encoded hash with the hasher's own parameters and a random salt and digest, matching no
    password. Verifying against it costs what verifying a real hash costs, without hashing anything
    here: hashing at import made every process that imports the app (each worker, each export job)
    allocate the 64 MiB memory cost at start, which stayed as its peak resident memory."""

    def b64(n: int) -> str:
        return base64.b64encode(secrets.token_bytes(n)).decode().rstrip("=")

    kind = {Type.ID: "argon2id", Type.I: "argon2i", Type.D: "argon2d"}[_hasher.type]
    params = f"m={_hasher.memory_cost},t={_hasher.time_cost},p={_hasher.parallelism}"
    return f"${kind}$v={ARGON2_VERSION}${params}${b64(_hasher.salt_len)}${b64(_hasher.hash_len)}"


# Verified against when the email is unknown, so a failed login costs the same either way.
_DUMMY_HASH = _dummy_hash()


def keyed_hash(purpose: str, value: str, length: int = 16) -> str:
    """A short HMAC-SHA256 of ``value`` under ``SECRET_KEY``: the same input gives the same tag, which
    tells nothing about the input to whoever lacks the key (audit data about untrusted input)."""
    from flask import current_app

    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()[:length]


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
