"""DELETE of a ship or of one's own user, alike: 204 with no body, then 404
for the item and gone from its list. What differs (who may delete, what a
deleted user's tokens do) stays in test_ships and test_users."""

from __future__ import annotations

import pytest

# (the item deleted, its list, what is left in the list: the fields compared)
DELETED = {
    "ship": ("/api/ships/2", "/api/ships", [{"id": n} for n in (1, *range(3, 16))]),
    "user": ("/api/users/1", "/api/users", [{"id": 2, "name": "guest"}]),
}


@pytest.mark.parametrize("path, listing, left", DELETED.values(), ids=DELETED)
def test_delete_is_204_without_body(client, auth, path, listing, left):
    result = client.simulate_delete(path, headers=auth.headers)

    assert result.status_code == 204
    assert result.content == b""


@pytest.mark.parametrize("path, listing, left", DELETED.values(), ids=DELETED)
def test_deleted_item_is_gone_from_its_item_and_its_list(client, auth, path, listing, left):
    client.simulate_delete(path, headers=auth.headers)

    assert client.simulate_get(path).status_code == 404
    assert [{key: item[key] for key in left[0]} for item in client.simulate_get(listing).json] == left
