"""The classroom's login: one password per account, made when the hub starts (a local reference, not a campus login).

`make classroom` writes `passwords.json` (readable by the hub's user only) with a salted scrypt hash per account,
and prints the passwords once. No system password (PAM) is read or changed: a real deployment uses its own
authenticator (the university's OAuth, LDAP, ...); this one exists so the local hub needs nothing from outside.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jupyterhub.auth import Authenticator
from traitlets import Unicode

from .passwords import verify


class ClassroomAuthenticator(Authenticator):
    """Accounts and passwords from the classroom's passwords.json; nothing else gets in."""

    passwords_file = Unicode("", config=True, help="passwords.json written by `make classroom`.")

    async def authenticate(self, handler: Any, data: dict[str, str]) -> str | None:
        table = json.loads(Path(self.passwords_file).read_text(encoding="utf-8"))
        name = data.get("username", "")
        entry = table.get(name)
        if entry is None or not verify(data.get("password", ""), entry):
            self.log.warning("classroom login refused for %r", name)
            return None
        return name
