"""The course hub through its REST APIs: accounts, tokens, servers (JupyterHub's), files and kernels (each user's).

What the tests and the class benchmark use to act as the administrator (the `classroom-admin` service's token,
in the state folder) or as one user (a token made for that user, with that user's permissions only).
"""
from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from .classroom import Classroom


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect (to the login page, say) is an answer to report, not to follow."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class HubError(RuntimeError):
    """A request the hub or a user's server answered with an error; `status` holds the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def admin_token(room: Classroom) -> str:
    return (room.state / "admin_token").read_text(encoding="utf-8").strip()


def request(room: Classroom, method: str, path: str, token: str, body: Any = None, timeout: float = 60) -> Any:
    """One request to the hub's public URL (`/hub/api/...` or `/user/<name>/api/...`); the decoded JSON answer."""
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/', e.g. '/hub/api/users', not {path!r}.")
    data = None if body is None else json.dumps(body).encode()
    call = urllib.request.Request(f"{room.url}{path}", data=data, method=method,
                                  headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    try:
        with _OPENER.open(call, timeout=timeout) as answer:
            text = answer.read()
    except urllib.error.HTTPError as error:
        raise HubError(error.code, f"{method} {path}: HTTP {error.code}: {error.read()[:300]!r}") from None
    return json.loads(text) if text else None


def request_text(room: Classroom, path: str, token: str, timeout: float = 60) -> str:
    """A page (HTML) from the hub's public URL, as the token's owner."""
    call = urllib.request.Request(f"{room.url}{path}", headers={"Authorization": f"token {token}"})
    try:
        with _OPENER.open(call, timeout=timeout) as answer:
            return answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        raise HubError(error.code, f"GET {path}: HTTP {error.code}") from None


def add_users(room: Classroom, names: list[str]) -> None:
    """Create hub accounts (the system users must exist when the hub runs as root)."""
    request(room, "POST", "/hub/api/users", admin_token(room), {"usernames": names})


def user_token(room: Classroom, user: str) -> str:
    """A new API token for `user`, with that user's own permissions."""
    answer = request(room, "POST", f"/hub/api/users/{user}/tokens", admin_token(room),
                     {"note": "classroom test", "expires_in": 3600})
    return answer["token"]


def start_servers(room: Classroom, users: list[str], timeout: float = 300) -> None:
    """Start each user's JupyterLab (all at once, as a class logging in does) and wait until all are ready."""
    token = admin_token(room)
    for user in users:
        try:
            request(room, "POST", f"/hub/api/users/{user}/server", token)
        except HubError as error:
            if error.status != 400:  # 400: already running
                raise
    waiting = set(users)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for user in sorted(waiting):
            model = request(room, "GET", f"/hub/api/users/{user}", token)
            if model.get("servers", {}).get("", {}).get("ready"):
                waiting.discard(user)
        time.sleep(0.5)
    if waiting:
        raise TimeoutError(f"the servers of {sorted(waiting)} did not become ready within {timeout:.0f} s")


def stop_server(room: Classroom, user: str) -> None:
    try:
        request(room, "DELETE", f"/hub/api/users/{user}/server", admin_token(room))
    except HubError as error:
        if error.status not in (400, 404):
            raise


def run_code(room: Classroom, user: str, token: str, code: str, timeout: float = 120) -> dict[str, Any]:
    """Run `code` in a new kernel of `user`'s server (as that user) and return its output.

    Returns:
        {"stdout": ..., "stderr": ..., "error": "Ename: value" or None}
    """
    kernel = request(room, "POST", f"/user/{user}/api/kernels", token, {"name": "python3"})
    try:
        return asyncio.run(_execute(room, user, token, kernel["id"], code, timeout))
    finally:
        try:
            request(room, "DELETE", f"/user/{user}/api/kernels/{kernel['id']}", token)
        except HubError:
            pass


async def _execute(room: Classroom, user: str, token: str, kernel_id: str, code: str,
                   timeout: float) -> dict[str, Any]:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = f"ws://127.0.0.1:{room.port}/user/{user}/api/kernels/{kernel_id}/channels"
    socket = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
    message_id = uuid.uuid4().hex
    socket.write_message(json.dumps({
        "header": {"msg_id": message_id, "msg_type": "execute_request", "username": user, "session": uuid.uuid4().hex,
                   "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    result: dict[str, Any] = {"stdout": "", "stderr": "", "error": None}
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the code did not finish in {user}'s kernel within {timeout:.0f} s")
            raw = await asyncio.wait_for(socket.read_message(), left)
            if raw is None:
                raise ConnectionError(f"{user}'s kernel closed the connection")
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != message_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                result[content["name"]] += content["text"]
            elif kind == "error":
                result["error"] = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                return result
    finally:
        socket.close()


def read_file(room: Classroom, user: str, token: str, path: str) -> dict[str, Any]:
    """A file from `user`'s server through its contents API (as the token's owner)."""
    return request(room, "GET", f"/user/{user}/api/contents/{urllib.parse.quote(path)}?content=1", token)


def write_notebook(room: Classroom, user: str, token: str, path: str, notebook: dict[str, Any]) -> None:
    request(room, "PUT", f"/user/{user}/api/contents/{urllib.parse.quote(path)}", token,
            {"type": "notebook", "format": "json", "content": notebook})


def server_memory(room: Classroom, users: list[str]) -> dict[str, int]:
    """Resident memory (bytes) of each user's server process, and its kernels, read from /proc."""
    mark = b"JUPYTERHUB_USER="
    totals: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if f"VITCOURSE_CLASSROOM_OF={room.state}".encode() not in environ:
            continue
        user = next((item[len(mark):].decode() for item in environ if item.startswith(mark)), None)
        rss = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        if user in users:
            totals[user] = totals.get(user, 0) + rss
    return totals
