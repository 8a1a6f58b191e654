"""Idempotency-Key on the two creates (draft-ietf-httpapi-idempotency-key-header-07),
through falcon.testing on every store backend, with a fake clock."""

from __future__ import annotations

import dataclasses
import threading
import urllib.parse

import pytest
from conftest import Session
from support.bodies import STAR_DESTROYER
from support.clock import FakeClock

from fleet_api.app import create_app
from fleet_api.idempotency import LEASE, TTL, Idempotency
from fleet_api.keys import load_keyring
from fleet_api.store.base import IdempotencyClaim, IdempotencyLost, IdempotencyRecord, IdempotentAnswer

KEY = '"8e03978e-40d5-43e8-bc93-6894a57f9324"'
OTHER_SHIP = {**STAR_DESTROYER, "model": "Victory I-class Star Destroyer"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_900_000_000)


@pytest.fixture
def settings(settings):
    """Tokens follow the same clock: let them outlive the 24 h these tests move it."""
    return dataclasses.replace(settings, access_token_ttl=3 * 24 * 3600)


@pytest.fixture
def app(settings, store, clock):
    return create_app(settings, store=store, clock=clock)


def post_ship(client, auth, body=STAR_DESTROYER, key=KEY, **kwargs):
    headers = {**auth.headers, **({"Idempotency-Key": key} if key is not None else {})}
    return client.simulate_post("/api/ships", json=body, headers=headers, **kwargs)


def post_user(client, body, key=KEY, headers=None, **kwargs):
    headers = {**({"Idempotency-Key": key} if key is not None else {}), **(headers or {})}
    return client.simulate_post("/api/users", json=body, headers=headers, **kwargs)


def path(location: str) -> str:
    return urllib.parse.urlsplit(location).path


def ship_count(store) -> int:
    return len(store.list_ships())


# --- replay --------------------------------------------------------------------
def test_same_key_same_body_replays_the_first_answer_and_creates_once(client, auth, store):
    before = ship_count(store)
    first = post_ship(client, auth)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    for _ in range(3):
        again = post_ship(client, auth)
        assert again.status_code == 201
        assert again.content == first.content
        assert again.headers["Location"] == first.headers["Location"]
        assert again.headers["Content-Type"] == "application/json"
        assert again.headers["Idempotent-Replayed"] == "true"
    assert ship_count(store) == before + 1
    assert client.simulate_get(path(first.headers["Location"])).json == first.json


def test_the_replay_is_the_first_answer_even_after_the_ship_changed(client, auth):
    first = post_ship(client, auth)
    changed = client.simulate_put(path(first.headers["Location"]), json=OTHER_SHIP, headers=auth.headers)
    assert changed.status_code == 200
    assert post_ship(client, auth).json == first.json  # what was answered, not what is now


def test_key_order_and_spacing_of_the_body_do_not_matter(client, auth, store):
    first = post_ship(client, auth)
    reordered = dict(reversed(list(STAR_DESTROYER.items())))
    again = post_ship(client, auth, body=reordered)
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert again.json == first.json


def test_a_user_create_replays_too(client, store):
    body = {"name": "retrying-user", "password": "s3cret-pass"}
    first = post_user(client, body)
    assert first.status_code == 201
    again = post_user(client, body)
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (201, "true")
    assert again.content == first.content and again.headers["Location"] == first.headers["Location"]
    assert "password" not in again.json
    assert [u.name for u in store.list_users()].count("retrying-user") == 1


def test_an_escaped_key_is_the_same_key(client, auth, store):
    before = ship_count(store)
    assert post_ship(client, auth, key=r'"a\"b\\c"').status_code == 201
    assert post_ship(client, auth, key=r' "a\"b\\c" ').headers["Idempotent-Replayed"] == "true"
    assert ship_count(store) == before + 1


# --- misuse ------------------------------------------------------------------------
def test_same_key_other_body_is_422_and_creates_nothing(client, auth, store):
    post_ship(client, auth)
    before = ship_count(store)
    result = post_ship(client, auth, body=OTHER_SHIP)
    assert result.status_code == 422
    assert result.json == {
        "error": "Unprocessable Entity",
        "message": "This Idempotency-Key was used for a different request body.",
    }
    assert ship_count(store) == before


def test_a_user_create_with_another_body_is_422(client):
    post_user(client, {"name": "first-name", "password": "s3cret-pass"})
    result = post_user(client, {"name": "first-name", "password": "another-pass"})
    assert result.status_code == 422


@pytest.mark.parametrize(
    "key, message",
    [
        ('""', "Idempotency-Key must not be empty."),
        ('"' + "k" * 256 + '"', "Idempotency-Key may be at most 255 characters."),
        ("8e03978e-40d5", "quoted"),  # a token, not a string
        ('"unterminated', "quoted"),
        ('"a\\b"', "quoted"),  # only \" and \\ are escapes
        ('"caf\u00e9"', "quoted"),  # sf-string is printable ASCII
        ('"a", "b"', "quoted"),  # two keys (a list), not one item
        ("", "quoted"),
    ],
    ids=["empty", "too-long", "token", "unterminated", "bad-escape", "non-ascii", "two-keys", "blank"],
)
def test_a_malformed_key_is_400_json_and_creates_nothing(client, auth, store, key, message):
    before = ship_count(store)
    result = post_ship(client, auth, key=key)
    assert result.status_code == 400
    assert result.json["error"] == "Bad Request"
    assert message in result.json["message"]
    assert ship_count(store) == before


def test_an_invalid_body_is_400_before_the_key_is_taken(client, auth):
    bad = {**STAR_DESTROYER, "crew": "many"}
    assert post_ship(client, auth, body=bad).status_code == 400
    assert post_ship(client, auth).status_code == 201  # the key was not spent on the bad body
    assert "Idempotent-Replayed" not in post_ship(client, auth, key='"fresh"').headers


def test_a_failed_create_releases_the_key(client):
    taken = post_user(client, {"name": "user", "password": "whatever1"})  # the seed user's name
    assert taken.status_code == 400
    result = post_user(client, {"name": "free-name", "password": "whatever1"})
    assert result.status_code == 201  # not 422: the failed request left no record
    assert "Idempotent-Replayed" not in result.headers


# --- scope -------------------------------------------------------------------------
def test_ship_keys_are_per_user(client, auth, store):
    assert (
        client.simulate_post("/api/users", json={"name": "other", "password": "pw-other"}).status_code == 201
    )
    other = Session(client, "other", "pw-other")
    first = post_ship(client, auth)
    second = post_ship(client, other)
    assert second.status_code == 201 and "Idempotent-Replayed" not in second.headers
    assert second.json["id"] != first.json["id"]
    assert post_ship(client, other, body=OTHER_SHIP).status_code == 422  # other's own key now


def test_user_keys_are_per_client_address(client):
    a = post_user(client, {"name": "from-a", "password": "pw-aaaaa"}, remote_addr="192.0.2.1")
    b = post_user(client, {"name": "from-b", "password": "pw-bbbbb"}, remote_addr="192.0.2.2")
    assert (a.status_code, b.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in b.headers
    again = post_user(client, {"name": "from-a", "password": "pw-aaaaa"}, remote_addr="192.0.2.1")
    assert again.headers["Idempotent-Replayed"] == "true"


def test_user_keys_follow_the_throttles_trusted_proxy_rule(make_client):
    client = make_client(trusted_proxies="10.0.0.0/8")
    body = {"name": "behind-proxy", "password": "pw-proxy1"}
    via = {"remote_addr": "10.0.0.5"}
    first = post_user(client, body, headers={"X-Forwarded-For": "198.51.100.7"}, **via)
    assert first.status_code == 201
    # The same client through the same proxy is recognised; another client behind it is not.
    same = post_user(client, body, headers={"X-Forwarded-For": "198.51.100.7"}, **via)
    assert same.headers.get("Idempotent-Replayed") == "true"
    other = post_user(
        client,
        {"name": "behind-proxy-2", "password": "pw-proxy2"},
        headers={"X-Forwarded-For": "198.51.100.8"},
        **via,
    )
    assert other.status_code == 201 and "Idempotent-Replayed" not in other.headers


# --- in flight, abandoned, expired ----------------------------------------------------
def test_a_retry_while_the_first_is_in_flight_is_409(client, auth, store, monkeypatch):
    inside, release = threading.Event(), threading.Event()
    original = store.create_ship_once

    def slow(*args, **kwargs):
        inside.set()
        assert release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(store, "create_ship_once", slow)
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", post_ship(client, auth)))
    first.start()
    try:
        assert inside.wait(10)
        retry = post_ship(client, auth)
        assert retry.status_code == 409
        assert retry.headers["Retry-After"] == "1"
        assert "still being processed" in retry.json["message"]
    finally:
        release.set()
        first.join(10)
    assert results["first"].status_code == 201
    assert post_ship(client, auth).headers["Idempotent-Replayed"] == "true"


def test_an_abandoned_reservation_blocks_until_its_lease_ends_then_the_retry_creates(
    client, auth, store, clock, settings
):
    """A worker that died after reserving the key: no ship, only the reservation."""
    scope = f"ships/user:{store.get_user_by_name('user').id}"
    dead = IdempotencyClaim(scope, KEY.strip('"'), "dead-worker")
    fingerprint = Idempotency(store, load_keyring(settings).derived_secret("idempotency")).fingerprint(
        scope, STAR_DESTROYER
    )
    now = int(clock())
    assert store.reserve_idempotency(dead, fingerprint, now, now + LEASE, now + TTL) is None
    before = ship_count(store)
    clock.advance(LEASE - 1)
    assert post_ship(client, auth).status_code == 409
    clock.advance(1)
    first = post_ship(client, auth)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    assert ship_count(store) == before + 1
    # The dead worker's late write (had it survived) is refused and writes nothing.
    with pytest.raises(IdempotencyLost):
        store.create_ship_once(STAR_DESTROYER, dead, lambda ship: IdempotentAnswer(201, "/x", b"{}"))
    assert ship_count(store) == before + 1
    assert post_ship(client, auth).headers["Idempotent-Replayed"] == "true"


def test_keys_are_kept_24_hours_then_forgotten(client, auth, store, clock):
    first = post_ship(client, auth)
    clock.advance(TTL - 1)
    assert post_ship(client, auth).headers["Idempotent-Replayed"] == "true"
    assert post_ship(client, auth, body=OTHER_SHIP).status_code == 422
    clock.advance(1)
    fresh = post_ship(client, auth, body=OTHER_SHIP)
    assert fresh.status_code == 201 and "Idempotent-Replayed" not in fresh.headers
    assert fresh.json["id"] != first.json["id"]


def test_expired_records_are_swept(store):
    now = 1_900_000_000
    for i in range(3):
        claim = IdempotencyClaim("sweep", f"k{i}", "t")
        assert store.reserve_idempotency(claim, "fp", now, now + LEASE, now + TTL + i) is None
    assert store.purge_expired_idempotency(now + TTL + 1) == 2
    assert store.purge_expired_idempotency(now + TTL + 1) == 0
    assert (
        store.reserve_idempotency(IdempotencyClaim("sweep", "k2", "u"), "fp", now, now + LEASE, now + TTL)
        is not None
    )


# --- the create and its stored answer are one transaction --------------------------------
def test_a_create_that_fails_before_its_answer_is_stored_leaves_no_ship(store):
    now = 1_900_000_000
    claim = IdempotencyClaim("atomic", "k", "mine")
    assert store.reserve_idempotency(claim, "fp", now, now + LEASE, now + TTL) is None
    before = ship_count(store)

    def crash(ship):
        raise RuntimeError("worker died between the insert and the answer")

    with pytest.raises(RuntimeError):
        store.create_ship_once(STAR_DESTROYER, claim, crash)
    assert ship_count(store) == before
    # Still reserved and unanswered: the same claim can finish the job.
    result = store.create_ship_once(
        STAR_DESTROYER, claim, lambda ship: IdempotentAnswer(201, f"/api/ships/{ship['id']}", b"{}")
    )
    assert ship_count(store) == before + 1
    retry = IdempotencyClaim("atomic", "k", "retry")
    assert store.reserve_idempotency(retry, "fp", now, now + LEASE, now + TTL) == IdempotencyRecord(
        "fp", result
    )


def test_a_user_create_that_fails_before_its_answer_is_stored_leaves_no_user(store):
    now = 1_900_000_000
    claim = IdempotencyClaim("atomic-user", "k", "mine")
    assert store.reserve_idempotency(claim, "fp", now, now + LEASE, now + TTL) is None

    def crash(user):
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        store.create_user_once("half-made", "hash", claim, crash)
    assert store.get_user_by_name("half-made") is None


def test_without_a_key_nothing_changes(client, auth, store):
    before = ship_count(store)
    first = post_ship(client, auth, key=None)
    second = post_ship(client, auth, key=None)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json["id"] != second.json["id"]
    assert ship_count(store) == before + 2
