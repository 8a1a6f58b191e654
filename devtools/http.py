"""A few lines of urllib for the tests that talk to a real server over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class Response:
    def __init__(self, status: int, headers, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body) if self.body else None


def call(method: str, url: str, body=None, token: str | None = None, timeout: float = 30) -> Response:
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Response(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        return Response(err.code, err.headers, err.read())


def login(base: str, username: str = "user", password: str = "password") -> dict:
    result = call("POST", f"{base}/auth/login", {"username": username, "password": password})
    assert result.status == 200, result.body
    return result.json
