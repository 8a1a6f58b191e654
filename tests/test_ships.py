"""GET/POST /api/ships and GET/PUT/DELETE /api/ships/{id} (issue 2), with the
example README's own bodies."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from support.answers import assert_validation_error
from support.bodies import SHIP_2, STAR_DESTROYER

# The README's `GET /api/ships` (first item) and `GET /api/ships/2`.
SHIP_1 = {
    "affiliation": "Rebel Alliance",
    "category": "Starfighters",
    "crew": 1,
    "id": 1,
    "length": 13,
    "manufacturer": "Incom Corporation",
    "model": "T-65 X-Wing",
    "roles": ["Space Superiority Starfighter", "Escort"],
    "ship_class": "Starfighter",
}
STAR_DESTROYER_II = {**STAR_DESTROYER, "model": "Imperial II-class Star Destroyer", "crew": 37050}

SHIP_FIELDS = {
    "affiliation",
    "category",
    "crew",
    "id",
    "length",
    "manufacturer",
    "model",
    "roles",
    "ship_class",
}
STRING_FIELDS = ["affiliation", "category", "manufacturer", "model", "ship_class"]
INT_FIELDS = ["crew", "length"]
REQUIRED_FIELDS = sorted(SHIP_FIELDS - {"id"})

MISSING_FIELD = ["Missing data for required field."]
NOT_A_STRING = ["Not a valid string."]
NOT_AN_INTEGER = ["Not a valid integer."]
AT_LEAST_ONE = ["Must be greater than or equal to 1."]
UNKNOWN_FIELD = ["Unknown field."]
NOT_FOUND = {"error": "Not Found"}
ID_MISMATCH = {"error": "Bad Request", "message": "Request data id has to match resource id."}


def post_ship(client, auth, body):
    return client.simulate_post("/api/ships", json=body, headers=auth.headers)


def put_ship(client, auth, ship_id, body):
    return client.simulate_put(f"/api/ships/{ship_id}", json=body, headers=auth.headers)


def ship_count(client) -> int:
    return len(client.simulate_get("/api/ships").json)


# --- GET -------------------------------------------------------------------


def test_list_ships_returns_the_fifteen_seed_ships_in_id_order(client):
    result = client.simulate_get("/api/ships")

    assert result.status_code == 200
    assert [ship["id"] for ship in result.json] == list(range(1, 16))


def test_list_ships_shows_every_field_of_every_ship(client):
    ships = client.simulate_get("/api/ships").json

    assert all(set(ship) == SHIP_FIELDS for ship in ships)
    assert ships[0] == SHIP_1
    assert ships[1] == SHIP_2


def test_list_ships_needs_no_token(client):
    assert client.simulate_get("/api/ships").status_code == 200


def test_get_ship_2_is_the_readme_example(client):
    result = client.simulate_get("/api/ships/2")

    assert result.status_code == 200
    assert result.headers["Content-Type"].startswith("application/json")
    assert result.json == SHIP_2


# A missing ship or user: test_not_found.py.


# --- POST ------------------------------------------------------------------


def test_create_the_readme_star_destroyer(client, auth):
    result = post_ship(client, auth, STAR_DESTROYER)

    assert result.status_code == 201
    assert result.json == {**STAR_DESTROYER, "id": 16}


def test_create_ship_sets_an_absolute_location(client, auth):
    result = post_ship(client, auth, STAR_DESTROYER)

    location = urlsplit(result.headers["Location"])
    assert location.scheme in ("http", "https")
    assert location.netloc
    assert location.path == "/api/ships/16"


def test_created_ship_is_found_at_its_location(client, auth):
    result = post_ship(client, auth, STAR_DESTROYER)

    found = client.simulate_get(urlsplit(result.headers["Location"]).path)
    assert found.status_code == 200
    assert found.json == result.json


def test_created_ship_appears_in_the_list(client, auth):
    post_ship(client, auth, STAR_DESTROYER)

    assert client.simulate_get("/api/ships").json[-1] == {**STAR_DESTROYER, "id": 16}


def test_create_ship_without_token_is_401(client):
    result = client.simulate_post("/api/ships", json=STAR_DESTROYER)

    assert result.status_code == 401
    assert result.json == {"error": "Missing Authorization Header"}
    assert ship_count(client) == 15


def test_create_ship_with_refresh_token_is_422(client, auth):
    result = client.simulate_post("/api/ships", json=STAR_DESTROYER, headers=auth.refresh_headers)

    assert result.status_code == 422
    assert result.json == {"error": "Only access tokens are allowed"}
    assert ship_count(client) == 15


def test_create_ship_with_empty_roles_is_201(client, auth):
    result = post_ship(client, auth, {**STAR_DESTROYER, "roles": []})

    assert result.status_code == 201
    assert result.json["roles"] == []


def test_create_ship_with_an_id_is_a_bare_400(client, auth):
    # The example's schema accepts an id; its db.add_ship then refuses it.
    result = post_ship(client, auth, {**STAR_DESTROYER, "id": 16})

    assert result.status_code == 400
    assert result.json == {"error": "Bad Request"}
    assert ship_count(client) == 15


def test_create_ship_with_a_bad_id_is_400_naming_it(client, auth, subtests):
    for value, message in ((0, AT_LEAST_ONE), ("16", NOT_AN_INTEGER), (None, ["Field may not be null."])):
        with subtests.test(id=value):
            assert_validation_error(post_ship(client, auth, {**STAR_DESTROYER, "id": value}), {"id": message})
    assert ship_count(client) == 15


def test_create_ship_with_an_unknown_field_is_400(client, auth):
    result = post_ship(client, auth, {**STAR_DESTROYER, "hyperdrive": "Class 2"})

    assert_validation_error(result, {"hyperdrive": UNKNOWN_FIELD})


def test_create_ship_with_empty_body_object_lists_every_field_as_missing(client, auth):
    result = post_ship(client, auth, {})

    assert_validation_error(result, {field: MISSING_FIELD for field in REQUIRED_FIELDS})


def test_create_ship_without_a_field_is_400_missing(client, auth, subtests):
    for field in REQUIRED_FIELDS:
        with subtests.test(field=field):
            body = {k: v for k, v in STAR_DESTROYER.items() if k != field}

            result = post_ship(client, auth, body)

            assert_validation_error(result, {field: MISSING_FIELD})


# Wrong values for a field: (fields, values, the message for each).
WRONG_VALUES = {
    "text-not-a-string": (STRING_FIELDS, (42, 4.2, True, ["Empire"], {"name": "Empire"}), NOT_A_STRING),
    "count-a-boolean": (INT_FIELDS, (True, False), NOT_AN_INTEGER),
    "count-a-float": (INT_FIELDS, (1.5, 37085.5), NOT_AN_INTEGER),
    "count-a-string": (INT_FIELDS, ("12", "twelve", [12]), NOT_AN_INTEGER),
    "count-below-one": (INT_FIELDS, (0, -1, -37085), AT_LEAST_ONE),
}


@pytest.mark.parametrize("fields, values, message", WRONG_VALUES.values(), ids=WRONG_VALUES)
def test_create_ship_with_a_wrong_value_is_400(client, auth, subtests, fields, values, message):
    for field in fields:
        for value in values:
            with subtests.test(field=field, value=value):
                result = post_ship(client, auth, {**STAR_DESTROYER, field: value})

                assert_validation_error(result, {field: message})


def test_create_ship_with_a_null_field_is_400(client, auth, subtests):
    for field in REQUIRED_FIELDS:
        with subtests.test(field=field):
            result = post_ship(client, auth, {**STAR_DESTROYER, field: None})

            assert result.status_code == 400
            assert set(result.json["message"]) == {field}


def test_create_ship_with_a_count_of_one_is_201(client, auth, subtests):
    for field in INT_FIELDS:
        with subtests.test(field=field):
            result = post_ship(client, auth, {**STAR_DESTROYER, field: 1})

            assert result.status_code == 201
            assert result.json[field] == 1


def test_create_ship_with_roles_not_a_list_is_400(client, auth, subtests):
    for value in ("Destroyer", 3, {"0": "Destroyer"}):
        with subtests.test(value=value):
            result = post_ship(client, auth, {**STAR_DESTROYER, "roles": value})

            assert_validation_error(result, {"roles": ["Not a valid list."]})


def test_create_ship_with_a_role_that_is_not_a_string_is_400(client, auth, subtests):
    for item in (1, True, None, ["Carrier"]):
        with subtests.test(item=item):
            result = post_ship(client, auth, {**STAR_DESTROYER, "roles": ["Destroyer", item]})

            # marshmallow's shape for a list item: {"roles": {"<index>": [...]}}
            expected = "Field may not be null." if item is None else "Not a valid string."
            assert_validation_error(result, {"roles": {"1": [expected]}})


def test_create_ship_reports_every_bad_field_at_once(client, auth):
    body = {
        "affiliation": 1,
        "crew": True,
        "length": 0,
        "manufacturer": "Kuat Drive Yards",
        "model": "Imperial I-class Star Destroyer",
        "roles": "Destroyer",
        "ship_class": "Star Destroyer",
        "id": 16,
        "shields": 9000,
    }

    result = post_ship(client, auth, body)

    assert_validation_error(
        result,
        {
            "affiliation": NOT_A_STRING,
            "category": MISSING_FIELD,
            "crew": NOT_AN_INTEGER,
            "length": AT_LEAST_ONE,
            "roles": ["Not a valid list."],
            "shields": UNKNOWN_FIELD,
        },
    )


def test_failed_create_ship_creates_nothing(client, auth):
    post_ship(client, auth, {**STAR_DESTROYER, "crew": 0})

    assert ship_count(client) == 15
    assert post_ship(client, auth, STAR_DESTROYER).json["id"] == 16


# --- PUT -------------------------------------------------------------------


def test_update_the_readme_star_destroyer(client, auth):
    post_ship(client, auth, STAR_DESTROYER)

    result = put_ship(client, auth, 16, STAR_DESTROYER_II)

    assert result.status_code == 200
    assert result.json == {**STAR_DESTROYER_II, "id": 16}


def test_updated_ship_is_stored(client, auth):
    post_ship(client, auth, STAR_DESTROYER)
    put_ship(client, auth, 16, STAR_DESTROYER_II)

    assert client.simulate_get("/api/ships/16").json == {**STAR_DESTROYER_II, "id": 16}


def test_update_seed_ship_replaces_every_field(client, auth):
    result = put_ship(client, auth, 2, STAR_DESTROYER)

    assert result.status_code == 200
    assert result.json == {**STAR_DESTROYER, "id": 2}
    assert client.simulate_get("/api/ships/2").json == {**STAR_DESTROYER, "id": 2}
    assert ship_count(client) == 15


def test_update_ship_with_matching_id_in_body_is_200(client, auth):
    result = put_ship(client, auth, 2, {**STAR_DESTROYER, "id": 2})

    assert result.status_code == 200
    assert result.json == {**STAR_DESTROYER, "id": 2}


def test_update_ship_with_another_id_in_body_is_400_mismatch(client, auth):
    result = put_ship(client, auth, 2, {**STAR_DESTROYER, "id": 3})

    assert result.status_code == 400
    assert result.json == ID_MISMATCH
    assert client.simulate_get("/api/ships/2").json == SHIP_2
    assert client.simulate_get("/api/ships/3").json["model"] == "TIE/SA Bomber"


def test_update_missing_ship_is_404(client, auth):
    result = put_ship(client, auth, 16, STAR_DESTROYER)

    assert result.status_code == 404
    assert result.json == NOT_FOUND
    assert client.simulate_get("/api/ships/16").status_code == 404


def test_update_ship_without_token_is_401(client):
    result = client.simulate_put("/api/ships/2", json=STAR_DESTROYER)

    assert result.status_code == 401
    assert result.json == {"error": "Missing Authorization Header"}
    assert client.simulate_get("/api/ships/2").json == SHIP_2


def test_update_ship_with_refresh_token_is_422(client, auth):
    result = client.simulate_put("/api/ships/2", json=STAR_DESTROYER, headers=auth.refresh_headers)

    assert result.status_code == 422
    assert client.simulate_get("/api/ships/2").json == SHIP_2


def test_update_ship_without_a_field_is_400_missing(client, auth, subtests):
    for field in REQUIRED_FIELDS:
        with subtests.test(field=field):
            body = {k: v for k, v in STAR_DESTROYER.items() if k != field}

            result = put_ship(client, auth, 2, body)

            assert_validation_error(result, {field: MISSING_FIELD})
            assert client.simulate_get("/api/ships/2").json == SHIP_2


def test_update_ship_with_an_unknown_field_is_400(client, auth):
    result = put_ship(client, auth, 2, {**STAR_DESTROYER, "hyperdrive": "Class 2"})

    assert_validation_error(result, {"hyperdrive": UNKNOWN_FIELD})


def test_update_ship_validates_types(client, auth):
    result = put_ship(client, auth, 2, {**STAR_DESTROYER, "crew": True, "length": 1.5, "model": 7})

    assert_validation_error(result, {"crew": NOT_AN_INTEGER, "length": NOT_AN_INTEGER, "model": NOT_A_STRING})
    assert client.simulate_get("/api/ships/2").json == SHIP_2


def test_update_ship_with_a_count_below_one_is_400(client, auth):
    result = put_ship(client, auth, 2, {**STAR_DESTROYER, "crew": 0})

    assert_validation_error(result, {"crew": AT_LEAST_ONE})


# --- DELETE ----------------------------------------------------------------


# 204 without a body, then gone: test_delete.py, for ships and users alike.


def test_delete_ship_twice_is_404(client, auth):
    client.simulate_delete("/api/ships/2", headers=auth.headers)

    result = client.simulate_delete("/api/ships/2", headers=auth.headers)

    assert result.status_code == 404
    assert result.json == NOT_FOUND


def test_update_deleted_ship_is_404(client, auth):
    client.simulate_delete("/api/ships/2", headers=auth.headers)

    assert put_ship(client, auth, 2, STAR_DESTROYER).status_code == 404
    assert client.simulate_get("/api/ships/2").status_code == 404


def test_delete_missing_ship_is_404(client, auth):
    result = client.simulate_delete("/api/ships/16", headers=auth.headers)

    assert result.status_code == 404
    assert result.json == NOT_FOUND


def test_delete_ship_without_token_is_401(client):
    result = client.simulate_delete("/api/ships/2")

    assert result.status_code == 401
    assert result.json == {"error": "Missing Authorization Header"}
    assert client.simulate_get("/api/ships/2").json == SHIP_2


def test_delete_ship_with_refresh_token_is_422(client, auth):
    result = client.simulate_delete("/api/ships/2", headers=auth.refresh_headers)

    assert result.status_code == 422
    assert client.simulate_get("/api/ships/2").json == SHIP_2


def test_any_users_access_token_may_write_ships(client, login):
    guest = login("guest", "guest")

    created = post_ship(client, guest, STAR_DESTROYER)
    updated = put_ship(client, guest, 1, STAR_DESTROYER_II)
    deleted = client.simulate_delete("/api/ships/2", headers=guest.headers)

    assert (created.status_code, updated.status_code, deleted.status_code) == (201, 200, 204)
