"""GET of a ship or user that does not exist: 404 with the bare Falcon body,
whether the id is out of range or not a number at all."""

from __future__ import annotations

import pytest

NOT_FOUND = {"error": "Not Found"}


@pytest.mark.parametrize(
    "path",
    [
        *(f"/api/ships/{ship_id}" for ship_id in (0, 16, 999, 9223372036854775807)),
        *(f"/api/users/{user_id}" for user_id in (0, 3, 999, 9223372036854775807)),
    ],
)
def test_get_a_missing_item_is_404(client, path):
    result = client.simulate_get(path)

    assert result.status_code == 404
    assert result.json == NOT_FOUND


@pytest.mark.parametrize("path", ["/api/ships/x-wing", "/api/users/abc"])
def test_get_an_item_with_a_non_numeric_id_is_404(client, path):
    result = client.simulate_get(path)

    assert result.status_code == 404
    assert result.json == NOT_FOUND
