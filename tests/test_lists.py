"""GET /api/ships and /api/users with paging, filters, search and sort (issue 5).

Every test runs on each store backend (the `client` fixture is parametrized),
so these also pin down that memory, SQLite and PostgreSQL answer alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

SEED = json.loads((Path(__file__).parent.parent / "data.json").read_text())
SEED_SHIPS = sorted(SEED["ships"], key=lambda ship: ship["id"])
SEED_USERS = [{"id": 1, "name": "user"}, {"id": 2, "name": "guest"}]
ALL_SHIP_IDS = list(range(1, 16))

EMPIRE = [2, 3, 6, 7, 9, 10, 14]
REBELS = [1, 4, 5, 8, 11, 12, 13, 15]
# sort=-length,model over the seed: the two 1600 m destroyers tie on length
# and "Imperial I-class" < "Imperial II-class" in code point order.
BY_LENGTH_DESC_THEN_MODEL = [9, 10, 8, 11, 12, 15, 13, 14, 4, 1, 5, 7, 6, 3, 2]

NEW_SHIP = {
    "affiliation": "Empire",
    "category": "Capital Ships",
    "crew": 37085,
    "length": 1600,
    "manufacturer": "Kuat Drive Yards",
    "model": "Imperial I-class Star Destroyer",
    "roles": ["Destroyer"],
    "ship_class": "Star Destroyer",
}

LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([^",;\s]+)"?')


def ships(client, **params):
    return client.simulate_get("/api/ships", params=params)


def users(client, **params):
    return client.simulate_get("/api/users", params=params)


def ids(result) -> list[int]:
    assert result.status_code == 200, result.text
    return [item["id"] for item in result.json]


def links(result) -> dict[str, str]:
    """rel -> target of the Link header (none when there is no header)."""
    return {rel: target for target, rel in LINK.findall(result.headers.get("Link", ""))}


def follow(client, target: str):
    url = urlsplit(target)
    return client.simulate_get(url.path, query_string=url.query)


def link_params(target: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(target).query).items()}


def post_ship(client, auth, **fields):
    result = client.simulate_post("/api/ships", json={**NEW_SHIP, **fields}, headers=auth.headers)
    assert result.status_code == 201, result.text
    return result.json["id"]


def create_user(client, name):
    result = client.simulate_post("/api/users", json={"name": name, "password": "secret"})
    assert result.status_code == 201, result.text
    return result.json["id"]


def collect_pages(client, first):
    """Every item from `first` on, following rel=next until there is none."""
    items, result, pages = [], first, 0
    while True:
        assert result.status_code == 200, result.text
        items.extend(result.json)
        pages += 1
        assert pages <= 50, "rel=next never ran out"
        target = links(result).get("next")
        if target is None:
            return items, pages
        result = follow(client, target)


def assert_bad_parameter(result, param):
    assert result.status_code == 400, result.text
    body = result.json
    assert body["error"] == "Bad Request"
    assert list(body["message"]) == [param]
    messages = body["message"][param]
    assert isinstance(messages, list) and messages
    assert all(isinstance(text, str) and text for text in messages)


# --- no parameters: exactly the old answers --------------------------------


def test_list_ships_without_parameters_is_every_seed_ship_as_before(client):
    result = client.simulate_get("/api/ships")

    assert result.status_code == 200
    assert result.json == SEED_SHIPS
    # The example's (jsonify's) key order: alphabetical.
    assert [list(ship) for ship in result.json] == [sorted(ship) for ship in SEED_SHIPS]


def test_list_users_without_parameters_is_every_seed_user_as_before(client):
    result = client.simulate_get("/api/users")

    assert result.status_code == 200
    assert result.json == SEED_USERS


def test_list_without_parameters_has_a_total_count_and_no_link(client, subtests):
    for path, total in (("/api/ships", "15"), ("/api/users", "2")):
        with subtests.test(path=path):
            result = client.simulate_get(path)

            assert result.headers["X-Total-Count"] == total
            assert "Link" not in result.headers


# --- limit and offset ------------------------------------------------------


def test_limit_returns_the_first_items(client):
    result = ships(client, limit=5)

    assert ids(result) == [1, 2, 3, 4, 5]
    assert isinstance(result.json, list)


def test_limit_and_offset_return_a_page(client):
    assert ids(ships(client, limit=4, offset=4)) == [5, 6, 7, 8]


def test_offset_alone_skips_items(client):
    assert ids(ships(client, offset=10)) == [11, 12, 13, 14, 15]


def test_offset_past_the_end_is_an_empty_list(client):
    result = ships(client, limit=5, offset=15)

    assert result.status_code == 200
    assert result.json == []
    assert result.headers["X-Total-Count"] == "15"


def test_limit_of_1000_is_allowed(client):
    assert ids(ships(client, limit=1000)) == ALL_SHIP_IDS


def test_limit_of_1_is_allowed(client):
    assert ids(users(client, limit=1)) == [1]


def test_total_count_counts_every_match_not_just_the_page(client):
    result = ships(client, affiliation="Empire", limit=2)

    assert ids(result) == EMPIRE[:2]
    assert result.headers["X-Total-Count"] == str(len(EMPIRE))


def test_users_list_pages_with_limit_and_offset(client):
    for name in ("alice", "bob", "carol"):
        create_user(client, name)

    result = users(client, limit=2, offset=2)

    assert result.json == [{"id": 3, "name": "alice"}, {"id": 4, "name": "bob"}]
    assert result.headers["X-Total-Count"] == "5"


# --- Link headers ----------------------------------------------------------


def test_first_page_links_only_to_the_next(client):
    found = links(ships(client, limit=5))

    assert set(found) == {"next"}
    assert link_params(found["next"]) == {"limit": "5", "offset": "5"}


def test_middle_page_links_to_the_next_and_the_previous(client):
    found = links(ships(client, limit=5, offset=5))

    assert set(found) == {"next", "prev"}
    assert link_params(found["next"]) == {"limit": "5", "offset": "10"}
    assert link_params(found["prev"]) == {"limit": "5", "offset": "0"}


def test_last_page_links_only_to_the_previous(client):
    found = links(ships(client, limit=5, offset=10))

    assert set(found) == {"prev"}
    assert link_params(found["prev"]) == {"limit": "5", "offset": "5"}


def test_single_page_has_no_links(client):
    result = ships(client, limit=15)

    assert ids(result) == ALL_SHIP_IDS
    assert links(result) == {}


def test_links_keep_the_filters_and_sort(client):
    result = ships(client, affiliation="Empire", sort="-length,model", limit=2, offset=2)

    found = links(result)
    for rel, offset in (("next", "4"), ("prev", "0")):
        assert link_params(found[rel]) == {
            "affiliation": "Empire",
            "sort": "-length,model",
            "limit": "2",
            "offset": offset,
        }


def test_following_next_links_collects_every_ship_once_in_order(client):
    expected = ids(ships(client, sort="-length,model"))

    items, pages = collect_pages(client, ships(client, sort="-length,model", limit=4))

    assert [ship["id"] for ship in items] == expected == BY_LENGTH_DESC_THEN_MODEL
    assert pages == 4


def test_following_next_links_collects_every_filtered_ship_once_in_order(client):
    expected = ships(client, q="star", sort="model")

    items, _ = collect_pages(client, ships(client, q="star", sort="model", limit=2))

    assert items == expected.json
    assert len({ship["id"] for ship in items}) == len(items) == int(expected.headers["X-Total-Count"]) > 2


def test_following_next_links_collects_every_user_once_in_order(client):
    for name in ("alice", "bob", "carol", "dave", "erin"):
        create_user(client, name)

    items, pages = collect_pages(client, users(client, limit=2))

    assert items == client.simulate_get("/api/users").json
    assert [user["id"] for user in items] == list(range(1, 8))
    assert pages == 4


def test_following_prev_links_walks_back_to_the_first_page(client):
    result = ships(client, limit=4, offset=12)
    seen = list(result.json)
    while "prev" in links(result):
        result = follow(client, links(result)["prev"])
        seen[:0] = result.json

    assert [ship["id"] for ship in seen] == ALL_SHIP_IDS


# --- exact filters ---------------------------------------------------------


def test_ship_filters_are_exact_and_case_insensitive(client, subtests):
    cases = [
        ("affiliation", "empire", EMPIRE),
        ("affiliation", "REBEL ALLIANCE", REBELS),
        ("category", "capital ships", [8, 9, 10]),
        ("ship_class", "STARFIGHTER", [1, 2, 5, 6, 7]),  # not "Assault Starfighter"
        ("manufacturer", "kuat DRIVE yards", [9, 10, 11]),
    ]
    for field, value, expected in cases:
        with subtests.test(field=field, value=value):
            assert ids(ships(client, **{field: value})) == expected


def test_ship_filters_do_not_match_part_of_a_value(client, subtests):
    for field, value in (
        ("affiliation", "Emp"),
        ("category", "Capital"),
        ("ship_class", "Star"),
        ("manufacturer", "Kuat"),
        ("affiliation", " Empire"),
    ):
        with subtests.test(field=field, value=value):
            result = ships(client, **{field: value})

            assert ids(result) == []
            assert result.headers["X-Total-Count"] == "0"


def test_ship_filters_combine_with_and(client):
    result = ships(client, affiliation="Empire", category="Starfighters", manufacturer="Sienar Fleet Systems")

    assert ids(result) == [2, 3, 6, 7]


def test_ship_filters_fold_only_ascii_letters(client, auth, subtests):
    new_id = post_ship(client, auth, manufacturer="Ærodyne Élan")
    for value, expected in (
        ("Ærodyne Élan", [new_id]),
        ("ÆRODYNE ÉLAN", [new_id]),  # only the ASCII letters change case
        ("ærodyne élan", []),
    ):
        with subtests.test(value=value):
            assert ids(ships(client, manufacturer=value)) == expected


# --- ranges ----------------------------------------------------------------


def test_crew_and_length_bounds_are_inclusive(client, subtests):
    cases = [
        ({"crew_min": 850}, [8, 9, 10, 11]),
        ({"crew_max": 2}, [1, 2, 3, 4, 5, 6, 7, 13, 14]),
        ({"crew_min": 2, "crew_max": 7}, [13, 14, 15]),
        ({"crew_min": 37085, "crew_max": 37085}, [9]),
        ({"length_min": 1200}, [8, 9, 10]),
        ({"length_max": 8}, [2, 3]),
        ({"length_min": 10, "length_max": 10}, [5, 7]),
        ({"length_min": 0}, ALL_SHIP_IDS),
        ({"crew_min": 2, "length_max": 35}, [13, 14]),
    ]
    for params, expected in cases:
        with subtests.test(**params):
            assert ids(ships(client, **params)) == expected


def test_ranges_combine_with_filters(client):
    assert ids(ships(client, affiliation="Empire", length_min=9, length_max=20)) == [6, 7, 14]


# --- free text -------------------------------------------------------------


def test_q_searches_every_ship_text_field_case_insensitively(client, subtests):
    cases = [
        ("EMPIRE", EMPIRE),  # affiliation
        ("capital", [8, 9, 10]),  # category
        ("SIENAR", [2, 3, 6, 7, 14]),  # manufacturer
        ("x-wing", [1]),  # model
        ("planetary", [3]),  # ship_class
        ("wing", [1, 4, 5]),  # anywhere in the value
        ("escort", [11, 12]),  # category and model, not roles
    ]
    for q, expected in cases:
        with subtests.test(q=q):
            assert ids(ships(client, q=q)) == expected


def test_q_does_not_search_roles(client):
    # Ship 4 (Y-Wing) has the role "Bomber"; only ship 3 has it in a text field.
    assert ids(ships(client, q="bomber")) == [3]


def test_q_does_not_search_numbers(client):
    # "37085" is a crew size, but appears in no text field.
    assert ids(ships(client, q="37085")) == []


def test_q_combines_with_filters(client):
    assert ids(ships(client, q="tie", affiliation="empire")) == [2, 3, 6, 7]


def test_q_searches_user_names_case_insensitively(client, subtests):
    for q, expected in (("UES", [2]), ("s", [1, 2]), ("user", [1]), ("nobody", [])):
        with subtests.test(q=q):
            assert ids(users(client, q=q)) == expected


def test_q_never_matches_a_password(client):
    assert ids(users(client, q="password")) == []


def test_q_wildcards_match_literally(client, auth, subtests):
    odd_id = post_ship(client, auth, model="100% Pure_Bred \\ Cruiser")
    cases = [
        ("%", [odd_id]),
        ("_", [odd_id]),
        ("\\", [odd_id]),
        ("0% p", [odd_id]),
        ("e_b", [odd_id]),
        ("T_65", []),  # "_" is not any one character: ship 1 is "T-65"
        ("%Wing", []),
        ("X%Wing", []),
        ("\\%", []),
        ("[a-z]", []),
        (".*", []),
    ]
    for q, expected in cases:
        with subtests.test(q=q):
            assert ids(ships(client, q=q)) == expected


def test_q_wildcards_match_literally_in_user_names(client, subtests):
    odd_id = create_user(client, "per_cent%")
    for q, expected in (("_", [odd_id]), ("%", [odd_id]), ("r_c", [odd_id]), ("u_er", [])):
        with subtests.test(q=q):
            assert ids(users(client, q=q)) == expected


def test_q_folds_only_ascii_letters(client, auth, subtests):
    new_id = post_ship(client, auth, model="Ærodyne Élan")
    cases = [("ÆRODYNE", [new_id]), ("Élan", [new_id]), ("ÉLAN", [new_id]), ("ærodyne", []), ("élan", [])]
    for q, expected in cases:
        with subtests.test(q=q):
            assert ids(ships(client, q=q)) == expected


# --- sort ------------------------------------------------------------------


def test_sort_descending_then_ascending(client):
    assert ids(ships(client, sort="-length,model")) == BY_LENGTH_DESC_THEN_MODEL


def test_sort_ties_go_by_id_ascending(client, subtests):
    for sort, expected in (
        ("affiliation", EMPIRE + REBELS),
        ("-affiliation", REBELS + EMPIRE),
        ("crew", [1, 2, 3, 4, 5, 6, 7, 13, 14, 15, 12, 11, 8, 10, 9]),
        ("-manufacturer,-crew", [14, 2, 3, 6, 7, 8, 9, 10, 11, 4, 1, 15, 12, 13, 5]),
    ):
        with subtests.test(sort=sort):
            assert ids(ships(client, sort=sort)) == expected


def test_sort_text_in_code_point_order(client, auth):
    lower_id = post_ship(client, auth, model="aurek")  # lower case sorts after every upper case
    zeta_id = post_ship(client, auth, model="Zeta-class")

    expected = [4, 12, 11, 15, 9, 10, 14, 8, 5, 1, 6, 7, 2, 3, 13, zeta_id, lower_id]
    assert ids(ships(client, sort="model")) == expected


def test_sort_is_allowed_on_every_non_list_ship_field(client, subtests):
    for field in ("id", "affiliation", "category", "crew", "length", "manufacturer", "model", "ship_class"):
        for key in (field, f"-{field}"):
            with subtests.test(sort=key):
                result = ships(client, sort=key)

                assert sorted(ids(result)) == ALL_SHIP_IDS
                values = [ship[field] for ship in result.json]
                assert values == sorted(values, reverse=key.startswith("-"))


def test_sort_users_by_name(client, subtests):
    for sort, expected in (("name", [2, 1]), ("-name", [1, 2]), ("-id", [2, 1]), ("id", [1, 2])):
        with subtests.test(sort=sort):
            assert ids(users(client, sort=sort)) == expected


def test_sort_applies_before_paging(client):
    assert ids(ships(client, sort="-length,model", limit=3, offset=3)) == BY_LENGTH_DESC_THEN_MODEL[3:6]


# --- bad parameters --------------------------------------------------------


# Each list's bad query strings, with the parameter its 400 names.
BAD_LIST_PARAMETERS = {
    "ships": [
        ("hyperdrive=2", "hyperdrive"),
        ("name=user", "name"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=1.5", "limit"),
        ("offset=-1", "offset"),
        ("offset=abc", "offset"),
        ("sort=hyperdrive", "sort"),
        ("sort=-hyperdrive", "sort"),
        ("sort=roles", "sort"),
        ("sort=-roles", "sort"),
        ("sort=model,model", "sort"),
        ("sort=model,-model", "sort"),
        ("sort=-length,crew,length", "sort"),
        ("limit=1&limit=2", "limit"),
        ("q=wing&q=tie", "q"),
        ("affiliation=Empire&affiliation=Rebel%20Alliance", "affiliation"),
        ("q=", "q"),
        ("q=x%00", "q"),
        ("crew_min=abc", "crew_min"),
        ("crew_min=-1", "crew_min"),
        ("length_max=1.5", "length_max"),
    ],
    "users": [
        ("affiliation=Empire", "affiliation"),
        ("password=password", "password"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("sort=password", "sort"),
        ("sort=roles", "sort"),
        ("sort=name,-name", "sort"),
        ("offset=1&offset=2", "offset"),
        ("q=", "q"),
        ("q=%00", "q"),
    ],
}


@pytest.mark.parametrize("collection", BAD_LIST_PARAMETERS)
def test_bad_list_parameter_is_400_naming_it(client, subtests, collection):
    for query, param in BAD_LIST_PARAMETERS[collection]:
        with subtests.test(query=query):
            assert_bad_parameter(client.simulate_get(f"/api/{collection}", query_string=query), param)


def test_bad_parameter_message_is_a_json_error_not_a_list(client):
    result = client.simulate_get("/api/ships", query_string="limit=0")

    assert result.headers["Content-Type"].startswith("application/json")
    assert set(result.json) == {"error", "message"}
