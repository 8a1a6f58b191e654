"""Idempotency-Key over a real gunicorn with 4 workers on the shared SQLite store:
a retry that lands on another worker than the first request is recognised."""

from __future__ import annotations

import json
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.bodies import STAR_DESTROYER

from devtools.http import login

ROUNDS = 40  # rounds of concurrent retries until one lands on another worker
AT_ONCE = 8  # retries in flight at once: one busy worker can't take them all


# `server`: conftest's, 4 workers on their own SQLite file.


@pytest.fixture(scope="module")
def twin(server, gunicorn_server):
    """A second gunicorn on the same store file and key: its worker is
    another process for certain, whatever the kernel does with accepts."""
    with gunicorn_server(workers=1, **server.env) as twin:
        yield twin


def post(url: str, body: dict, key: str, token: str | None = None):
    """One request on a fresh connection: (status, headers, body bytes)."""
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def worker_of(headers) -> str:
    """The answering process: request ids are `<per-process random prefix>-<counter>`."""
    return headers["X-Request-ID"].rsplit("-", 1)[0]


def ships_named(server, model: str) -> int:
    with urllib.request.urlopen(f"{server.url}/api/ships?q={urllib.parse.quote(model)}", timeout=30) as resp:
        return sum(ship["model"] == model for ship in json.loads(resp.read()))


@pytest.mark.parametrize("what", ["ship", "user"])
def test_a_retry_on_another_worker_replays_the_first_answer(server, twin, what):
    token = login(server.url)["access_token"]
    unique = secrets.token_hex(16)
    key = f'"{unique}"'
    if what == "ship":
        url, body = f"{server.url}/api/ships", {**STAR_DESTROYER, "model": f"Retry {unique}"}
    else:
        url, body, token = (
            f"{server.url}/api/users",
            {"name": f"retry-{unique}", "password": "pw-12345"},
            None,
        )
    status, headers, first = post(url, body, key, token)
    assert status == 201, first
    first_worker = worker_of(headers)
    seen = set()
    with ThreadPoolExecutor(AT_ONCE) as pool:
        for _ in range(ROUNDS):
            # Half of each round to the twin: some retry lands on another process.
            targets = [url if i % 2 else url.replace(server.url, twin.url) for i in range(AT_ONCE)]
            for status, again_headers, again in pool.map(
                lambda target: post(target, body, key, token), targets
            ):
                assert (status, again_headers["Idempotent-Replayed"]) == (201, "true")
                assert again == first and again_headers["Location"] == headers["Location"]
                seen.add(worker_of(again_headers))
            if seen - {first_worker}:
                break
    assert seen - {first_worker}, f"every retry landed on the first worker {first_worker}"
    if what == "ship":
        assert ships_named(server, body["model"]) == 1


def test_concurrent_requests_with_one_key_create_exactly_once(server):
    token = login(server.url)["access_token"]
    unique = secrets.token_hex(16)
    key = f'"{unique}"'
    body = {**STAR_DESTROYER, "model": f"Concurrent {unique}"}
    results: list = []
    lock = threading.Lock()

    def send():
        result = post(f"{server.url}/api/ships", body, key, token)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 8
    fresh = [r for r in results if r[0] == 201 and "Idempotent-Replayed" not in r[1]]
    replayed = [r for r in results if r[0] == 201 and r[1].get("Idempotent-Replayed") == "true"]
    conflicts = [r for r in results if r[0] == 409]
    assert len(fresh) == 1, [r[0] for r in results]
    assert len(fresh) + len(replayed) + len(conflicts) == 8
    assert all(r[2] == fresh[0][2] for r in replayed)
    assert ships_named(server, body["model"]) == 1
    # Once the first has answered, every retry is a replay.
    status, headers, again = post(f"{server.url}/api/ships", body, key, token)
    assert (status, headers["Idempotent-Replayed"], again) == (201, "true", fresh[0][2])
