"""The classroom's passwords: a salted scrypt hash per account in passwords.json (see `vitcourse.hub.auth`)."""
from __future__ import annotations

import hashlib
import hmac
import secrets


def hash_password(password: str, salt: bytes | None = None) -> dict[str, str]:
    """A salted scrypt hash of a password, as stored in passwords.json."""
    if not isinstance(password, str) or not password:
        raise ValueError("password must be a non-empty string.")
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=2**14, r=8, p=1)
    return {"salt": salt.hex(), "hash": digest.hex()}


def verify(password: str, entry: dict[str, str]) -> bool:
    """Whether `password` matches a stored hash."""
    if not isinstance(password, str) or not password:
        return False
    expected = hash_password(password, bytes.fromhex(entry["salt"]))["hash"]
    return hmac.compare_digest(expected, entry["hash"])
