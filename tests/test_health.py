"""GET /health for load balancers (issue 5)."""

from __future__ import annotations


def store_down(*args, **kwargs):
    raise ConnectionError("the store is down")


def test_health_is_200_ok_without_a_token(client):
    result = client.simulate_get("/health")

    assert result.status_code == 200
    assert result.headers["Content-Type"].startswith("application/json")
    assert result.json == {"status": "ok"}


def test_health_is_503_when_the_store_does_not_answer(client, store, monkeypatch):
    monkeypatch.setattr(store, "ping", store_down)

    result = client.simulate_get("/health")

    assert result.status_code == 503
    assert result.json["error"] == "Service Unavailable"
    assert isinstance(result.json["message"], str) and result.json["message"]
    assert set(result.json) == {"error", "message"}


def test_health_does_not_leak_the_store_error(client, store, monkeypatch):
    monkeypatch.setattr(store, "ping", store_down)

    result = client.simulate_get("/health")

    assert "the store is down" not in result.text


def test_health_is_200_again_once_the_store_answers(client, store, monkeypatch):
    monkeypatch.setattr(store, "ping", store_down)
    assert client.simulate_get("/health").status_code == 503

    monkeypatch.undo()

    result = client.simulate_get("/health")
    assert result.status_code == 200
    assert result.json == {"status": "ok"}
