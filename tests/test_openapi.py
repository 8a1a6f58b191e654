"""GET /openapi.json: a valid OpenAPI 3.1 document that matches the app exactly.

One memory-store app for the module: the document does not depend on the
backend, so these tests don't run once per store.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import falcon
import falcon.inspect
import falcon.testing
import jsonschema
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from support.bodies import SHIP_2

from fleet_api import openapi, schemas
from fleet_api.app import create_app
from fleet_api.media import MERGE_PATCH
from fleet_api.openapi import REF, Operation, UndocumentedOperation, build_openapi, ok
from fleet_api.settings import Settings
from fleet_api.store import open_store

README = Path(__file__).resolve().parent.parent / "README.md"
# The ship README's `GET /api/ships/2` answers with.
README_SHIP = SHIP_2
SUBPROCESS_TIMEOUT = 60  # seconds, for a Python that imports the app
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture(scope="module")
def app():
    settings = Settings(secret_key=secrets.token_urlsafe(48), store_url="memory://", scrypt_n=2**4)
    return create_app(settings, store=open_store("memory://"))


@pytest.fixture(scope="module")
def client(app):
    return falcon.testing.TestClient(app)


@pytest.fixture(scope="module")
def doc(client) -> dict:
    result = client.simulate_get("/openapi.json")
    assert result.status_code == 200
    return result.json


def operations(doc):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method.upper(), operation


def deref(doc: dict, node: dict) -> dict:
    """Follow a local `$ref` (one level is all the document uses)."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target = doc
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return target


def validator_for(doc: dict, schema: dict) -> jsonschema.Draft202012Validator:
    """A validator for a schema inside the document, with its refs resolvable."""
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


def routes_served(app) -> dict[tuple[str, str], object]:
    """(path, METHOD) -> resource for every responder the app's router holds:
    Falcon's own view (the app itself never reads these private attributes,
    and falcon.inspect names resources' classes, not the instances)."""
    found = {}

    def walk(nodes):
        for node in nodes:
            if node.resource is not None:
                path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", node.uri_template)
                for method, responder in node.method_map.items():
                    if getattr(responder, "__self__", None) is node.resource:
                        found[(path, method)] = node.resource
            walk(node.children)

    walk(app._router._roots)
    return found


# --- the document ------------------------------------------------------------
def test_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"].startswith("3.1.")
    OpenAPIV31SpecValidator(doc).validate()


def test_served_as_json_bytes_built_once(app, client, monkeypatch):
    first = client.simulate_get("/openapi.json")
    assert first.headers["Content-Type"] == "application/json"
    # Built at app creation: a request never builds it again.
    monkeypatch.setattr(openapi, "build_openapi", lambda *a, **k: pytest.fail("built per request"))
    second = client.simulate_get("/openapi.json")
    assert second.content == first.content
    assert json.loads(second.content) == first.json


def test_lists_exactly_the_routes_and_methods_the_app_serves(app, doc):
    served = set()
    for route in falcon.inspect.inspect_routes(app):
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.path)
        served |= {
            (path, m.method) for m in route.methods if not m.internal and m.method not in ("OPTIONS", "HEAD")
        }
    documented = {(path, method) for path, method, _ in operations(doc)}
    assert documented == served
    assert ("/openapi.json", "GET") in documented
    assert len(served) == len(OPERATION_NAMES)


def test_path_ids_are_documented_with_the_routes_range(doc):
    for path, method, operation in operations(doc):
        names = re.findall(r"\{(\w+)\}", path)
        params = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "path"}
        assert set(params) == set(names), (method, path)
        for name, param in params.items():
            assert param["required"] is True
            if name == "session_id":  # a random string, not a row number
                assert param["schema"] == {"type": "string"}
            else:
                assert param["schema"] == {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


def test_operation_ids_are_unique(doc):
    ids = [operation["operationId"] for _, _, operation in operations(doc)]
    assert len(ids) == len(set(ids))


OPERATION_NAMES = {
    ("/auth/login", "POST"): ("auth", "login"),
    ("/auth/refresh", "POST"): ("auth", "refreshToken"),
    ("/auth/logout", "DELETE"): ("auth", "logout"),
    ("/auth/logout2", "DELETE"): ("auth", "logoutRefresh"),
    ("/auth/revoke", "POST"): ("auth", "revokeToken"),
    ("/auth/introspect", "POST"): ("auth", "introspectToken"),
    ("/api/sessions", "GET"): ("sessions", "listSessions"),
    ("/api/sessions", "DELETE"): ("sessions", "endOtherSessions"),
    ("/api/sessions/{session_id}", "DELETE"): ("sessions", "endSession"),
    ("/api/users", "GET"): ("users", "listUsers"),
    ("/api/users", "POST"): ("users", "createUser"),
    ("/api/users/{user_id}", "GET"): ("users", "getUser"),
    ("/api/users/{user_id}", "PUT"): ("users", "updateUser"),
    ("/api/users/{user_id}", "PATCH"): ("users", "patchUser"),
    ("/api/users/{user_id}", "DELETE"): ("users", "deleteUser"),
    ("/api/ships", "GET"): ("ships", "listShips"),
    ("/api/ships", "POST"): ("ships", "createShip"),
    ("/api/ships/{ship_id}", "GET"): ("ships", "getShip"),
    ("/api/ships/{ship_id}", "PUT"): ("ships", "updateShip"),
    ("/api/ships/{ship_id}", "PATCH"): ("ships", "patchShip"),
    ("/api/ships/{ship_id}", "DELETE"): ("ships", "deleteShip"),
    ("/health", "GET"): ("meta", "health"),
    ("/openapi.json", "GET"): ("meta", "openapi"),
    ("/docs", "GET"): ("meta", "docs"),
    ("/metrics", "GET"): ("meta", "metrics"),
    ("/.well-known/jwks.json", "GET"): ("meta", "jwks"),
}


def test_every_operation_has_one_declared_tag_and_a_meaningful_operation_id(doc):
    declared = [tag["name"] for tag in doc["tags"]]
    assert declared == ["auth", "sessions", "users", "ships", "meta"]
    named = {
        (path, method): (operation["tags"], operation["operationId"])
        for path, method, operation in operations(doc)
    }
    assert named == {op: ([tag], name) for op, (tag, name) in OPERATION_NAMES.items()}


@pytest.mark.parametrize("path, method", [("/api/ships", "post"), ("/api/users", "post")])
def test_idempotency_key_is_documented_on_the_creates(doc, path, method):
    operation = doc["paths"][path][method]
    header = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header" and not header.get("required")
    pattern = re.compile(header["schema"]["pattern"])
    assert pattern.search('"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    assert not pattern.search("8e03978e")  # a bare token is not an sf-string
    assert {"409", "422"} <= set(operation["responses"])
    assert "Idempotency-Key" in deref(doc, operation["responses"]["409"])["description"]


THING = Operation("meta", "getThing", "A thing", responses={200: ok("The thing.")})


class Undescribed:
    def on_get(self, req, resp):
        pass


class Unserved:
    operations = {"GET": THING, "DELETE": THING}

    def on_get(self, req, resp):
        pass


class Unknown:
    operations = {"GET": Operation("meta", "getThing", "A thing", security=("cookie",), responses={})}

    def on_get(self, req, resp):
        pass


@pytest.mark.parametrize(
    "resource, template, message",
    [
        (Undescribed(), "/extra", r"GET /extra \(Undescribed\) is not described"),
        (Unserved(), "/extra", r"DELETE /extra \(Unserved\) is described but not served"),
        (Unknown(), "/extra", r"no security scheme \['cookie'\]"),
        (Undescribed(), "/extra/{day:dt}", "no schema for the route converter 'dt'"),
    ],
    ids=["responder without operation", "operation without responder", "unknown scheme", "unknown converter"],
)
def test_a_route_the_document_cannot_describe_fails_at_app_creation(resource, template, message):
    """create_app builds the document from its route table, so these raise there."""
    with pytest.raises(UndocumentedOperation, match=message):
        build_openapi([(template, resource)])


def test_an_operation_is_summarized_by_its_docstring():
    class Thing:
        @openapi.operation("meta", "getThing", responses={})
        def on_get(self, req, resp):
            """Get the thing

            Its description, over
            two lines.
            """

    assert Thing.on_get.operation.summary == "Get the thing"
    assert Thing.on_get.operation.description == "Its description, over two lines."
    with pytest.raises(UndocumentedOperation, match="on_get has no docstring"):

        @openapi.operation("meta", "getThing", responses={})
        def on_get(self, req, resp):
            pass


def test_under_python_oo_the_operation_ids_stand_in_for_the_stripped_docstrings():
    """-OO strips docstrings; the app must still start and serve its document."""
    script = (  # plain WSGI: falcon.testing itself needs docstrings
        "import json, wsgiref.util; from fleet_api.app import create_app; from fleet_api.settings import Settings; "
        "app = create_app(Settings(secret_key='k' * 48, store_url='memory://', scrypt_n=16, metrics=False)); "
        "env = {'PATH_INFO': '/openapi.json'}; wsgiref.util.setup_testing_defaults(env); "
        "doc = json.loads(b''.join(app(env, lambda status, headers: None))); "
        "print(doc['paths']['/api/ships']['get']['summary'], doc['paths']['/auth/refresh']['post']['summary'])"
    )
    result = subprocess.run(
        [sys.executable, "-OO", "-c", script], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    # The declared-in-__init__ operations keep their text: it is not a docstring.
    assert result.stdout.split(" ", 1) == ["listShips", "A new access token for a refresh token\n"]


def test_a_route_table_is_all_the_document_needs():
    """No falcon.App: the operations come from the resources, path ids from the
    templates' converters, security from the `auth` dicts; HEAD is no operation."""

    class Thing:
        auth = {"DELETE": "access"}
        operations = {"GET": THING, "DELETE": Operation("meta", "dropThing", "Drop it", responses={})}

        def on_get(self, req, resp, thing_id, part):
            pass

        on_head = on_get

        def on_delete(self, req, resp, thing_id, part):
            pass

    doc = build_openapi([("/things/{thing_id:int(min=1)}/{part}", Thing())])
    OpenAPIV31SpecValidator(doc).validate()
    item = doc["paths"]["/things/{thing_id}/{part}"]
    assert set(item) == {"get", "delete"}
    assert item["get"]["parameters"] == [
        {"name": "thing_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}},
        {"name": "part", "in": "path", "required": True, "schema": {"type": "string"}},
    ]
    assert "security" not in item["get"] and set(item["get"]["responses"]) == {"200", "500"}
    assert item["delete"]["security"] == [{"bearerAuth": []}]
    assert item["delete"]["description"] == "Needs an access token."
    assert set(item["delete"]["responses"]) == {"401", "422", "500"}


# --- one source of truth: the pydantic models ---------------------------------
@pytest.mark.parametrize(
    "path, method, model",
    [
        ("/api/ships", "post", schemas.ShipIn),
        ("/api/ships/{ship_id}", "put", schemas.ShipReplace),
        ("/api/ships/{ship_id}", "patch", schemas.ShipPatch),
        ("/api/users", "post", schemas.UserIn),
        ("/api/users/{user_id}", "put", schemas.UserReplace),
        ("/api/users/{user_id}", "patch", schemas.UserPatch),
        ("/auth/login", "post", schemas.Credentials),
    ],
)
def test_request_bodies_are_the_pydantic_models(doc, path, method, model):
    content = doc["paths"][path][method]["requestBody"]["content"]
    expected_types = {MERGE_PATCH, "application/json"} if method == "patch" else {"application/json"}
    assert set(content) == expected_types
    for media in content.values():
        assert media["schema"] == {"$ref": f"#/components/schemas/{model.__name__}"}
    expected = model.model_json_schema(ref_template=REF)
    expected.pop("$defs", None)
    assert doc["components"]["schemas"][model.__name__] == expected


def test_defs_are_hoisted_into_components(doc):
    text = json.dumps(doc)
    assert "$defs" not in text
    for ref in re.findall(r'"\$ref": "([^"]+)"', text):
        assert deref(doc, {"$ref": ref}) is not None  # raises KeyError when dangling


@pytest.mark.parametrize(
    ("path", "model"),
    [("/api/ships", schemas.ShipQuery), ("/api/users", schemas.UserQuery)],
)
def test_list_parameters_are_the_query_models_properties(doc, path, model):
    params = doc["paths"][path]["get"]["parameters"]
    query = {p["name"]: p for p in params if p["in"] == "query"}
    properties = model.model_json_schema()["properties"]
    assert list(query) == list(properties)
    for name, param in query.items():
        assert param["required"] is False
        assert param.get("description") is None or param["description"].startswith(
            properties[name].get("description", "")
        )
        assert "null" not in json.dumps(param["schema"])  # a query value is text, never null
    assert query["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}


def test_sort_pattern_accepts_what_the_query_model_accepts(doc):
    param = next(p for p in doc["paths"]["/api/ships"]["get"]["parameters"] if p["name"] == "sort")
    pattern = re.compile(param["schema"]["pattern"])
    for good in ("-length,model", "id", "crew,-ship_class"):
        schemas.ShipQuery.model_validate({"sort": good})
        assert pattern.search(good)
    for bad in ("roles", "length,", "-", "name"):
        assert not pattern.search(bad)


# --- auth --------------------------------------------------------------------
def test_bearer_security_follows_the_resources_auth_dicts(app, doc):
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        **doc["components"]["securitySchemes"]["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    served = routes_served(app)
    needing = 0
    for path, method, operation in operations(doc):
        token = getattr(served[(path, method)], "auth", {}).get(method)
        if (path, method) == ("/auth/introspect", "POST"):
            # Checks its caller itself: an access token, or a resource server's key.
            assert operation["security"] == [
                {"bearerAuth": []},
                {"introspectionKey": []},
                {"introspectionBasic": []},
            ]
            assert operation["x-token-type"] == "access"
            assert deref(doc, operation["responses"]["401"])["headers"]["WWW-Authenticate"]
            continue
        if token is not None:
            needing += 1
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert operation["x-token-type"] == token
            assert {"401", "422"} <= set(operation["responses"]), (method, path)
            assert deref(doc, operation["responses"]["401"])["headers"]["WWW-Authenticate"]
        else:
            assert "security" not in operation, (method, path)
            assert "x-token-type" not in operation
            if (path, method) != ("/auth/login", "POST"):  # a failed login is the one other 401
                assert "401" not in operation["responses"], (method, path)
    # ships POST/PUT/PATCH/DELETE, users PUT/PATCH/DELETE, refresh, logout, logout2,
    # sessions GET/DELETE and DELETE one
    assert needing == 13
    assert doc["paths"]["/auth/refresh"]["post"]["x-token-type"] == "refresh"
    assert doc["paths"]["/auth/logout2"]["delete"]["x-token-type"] == "refresh"
    assert doc["paths"]["/auth/logout"]["delete"]["x-token-type"] == "access"
    assert "security" not in doc  # nothing is protected by default


def test_error_statuses_per_operation(doc):
    for path, method, operation in operations(doc):
        responses = operation["responses"]
        assert "500" in responses
        assert ("429" in responses) == ((path, method) == ("/auth/login", "POST"))
        assert "405" not in responses
        oauth = path in ("/auth/revoke", "/auth/introspect")
        for status, response in responses.items():
            schema = deref(doc, response).get("content", {}).get("application/json", {}).get("schema")
            if oauth and status == "400":  # RFC 6749 section 5.2's shape
                assert schema == {"$ref": "#/components/schemas/OAuthError"}
            elif oauth and status == "401":
                assert schema == {
                    "anyOf": [
                        {"$ref": "#/components/schemas/Error"},
                        {"$ref": "#/components/schemas/OAuthError"},
                    ]
                }
            elif int(status) >= 400:
                assert schema == {"$ref": "#/components/schemas/Error"}
        if "requestBody" in operation:
            assert {"400", "413"} <= set(responses)
        if path.startswith(("/api/ships/", "/api/users/")) and method in ("PUT", "PATCH", "DELETE"):
            assert {"404", "412"} <= set(responses)
        if path.startswith("/api/users/") and method != "GET":
            assert "403" in responses
    login = doc["paths"]["/auth/login"]["post"]["responses"]
    assert deref(doc, login["429"])["headers"]["Retry-After"]
    assert "415" not in login  # a non-JSON login body is "missing credentials"
    for path, method in [
        ("/api/ships", "post"),
        ("/api/ships/{ship_id}", "put"),
        ("/api/users/{user_id}", "patch"),
    ]:
        assert "415" in doc["paths"][path][method]["responses"]


def test_success_responses_and_headers(doc):
    paths = doc["paths"]

    def headers(path, method, status):
        return set(paths[path][method]["responses"][status].get("headers", {}))

    assert headers("/api/ships", "get", "200") == {"ETag", "X-Total-Count", "Link"}
    assert "304" in paths["/api/ships"]["get"]["responses"]
    assert headers("/api/ships/{ship_id}", "get", "200") == {"ETag"}
    assert headers("/api/ships", "post", "201") == {"Location", "Idempotent-Replayed"}
    assert headers("/api/users", "post", "201") == {"Location", "Idempotent-Replayed"}
    assert headers("/auth/login", "post", "200") == {"Cache-Control", "RateLimit-Policy", "RateLimit"}
    assert headers("/auth/refresh", "post", "200") == {"Cache-Control"}
    assert set(paths["/api/ships/{ship_id}"]["delete"]["responses"]) >= {"204"}
    assert "content" not in paths["/api/ships/{ship_id}"]["delete"]["responses"]["204"]


# --- the schemas describe what the app really sends ------------------------------
def response_schema(doc, path, method, status):
    return doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]


def test_readme_ship_validates_against_the_response_schema(doc):
    validator_for(doc, response_schema(doc, "/api/ships/{ship_id}", "get", "200")).validate(README_SHIP)
    validator_for(doc, response_schema(doc, "/api/ships", "get", "200")).validate([README_SHIP])
    with pytest.raises(jsonschema.ValidationError):
        validator_for(doc, response_schema(doc, "/api/ships/{ship_id}", "get", "200")).validate(
            {k: v for k, v in README_SHIP.items() if k != "id"}
        )
    if README.exists():
        ships = []
        for line in README.read_text().splitlines():
            if line.startswith('{"affiliation"'):
                try:
                    ships.append(json.loads(line))
                except ValueError:  # an abbreviated one: `{..., "id":2, ...}`
                    continue
        assert README_SHIP in ships
        for ship in ships:
            validator_for(doc, response_schema(doc, "/api/ships/{ship_id}", "get", "200")).validate(ship)


@pytest.mark.parametrize(
    "body, documented, status",
    [
        ({"username": "user", "password": "password"}, True, 200),
        ({"username": "user", "password": "password", "remember": True}, True, 200),
        ({"username": "nobody", "password": "password"}, True, 401),
        ({}, False, 400),
        ({"username": "user"}, False, 400),
        ({"username": "", "password": "password"}, False, 400),
        ({"username": "user", "password": 0}, False, 400),
        ({"username": 1, "password": "password"}, False, 401),
        ({"username": "user", "password": ["password"]}, False, 401),
    ],
    ids=["ok", "extra member", "unknown", "empty", "no password", "empty name", "falsy", "number", "list"],
)
def test_login_checks_the_body_the_document_shows(doc, client, body, documented, status):
    """The document's Credentials is what login checks: a body it accepts is
    never a 400, and what it refuses gets the example's 400 or 401 wording."""
    schema = doc["paths"]["/auth/login"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert validator_for(doc, schema).is_valid(body) is documented
    result = client.simulate_post("/auth/login", json=body)
    assert result.status_code == status
    if status == 400:
        assert result.json == {"error": "Bad Request", "message": "Username or password missing."}
    elif status == 401:
        assert result.json == {"error": "Unauthorized", "message": "Username or password invalid."}


def test_real_responses_validate(doc, client):
    def check(path, method, status, result):
        assert result.status_code == int(status), result.text
        schema = deref(doc, doc["paths"][path][method]["responses"][status])["content"]["application/json"][
            "schema"
        ]
        validator_for(doc, schema).validate(result.json)

    check("/api/ships", "get", "200", client.simulate_get("/api/ships"))
    check("/api/users", "get", "200", client.simulate_get("/api/users"))
    check("/api/users/{user_id}", "get", "200", client.simulate_get("/api/users/1"))
    check("/health", "get", "200", client.simulate_get("/health"))
    login = client.simulate_post("/auth/login", json={"username": "user", "password": "password"})
    check("/auth/login", "post", "200", login)
    refresh = {"Authorization": f"Bearer {login.json['refresh_token']}"}
    check("/auth/refresh", "post", "200", client.simulate_post("/auth/refresh", headers=refresh))
    check("/auth/logout2", "delete", "200", client.simulate_delete("/auth/logout2", headers=refresh))
    check("/api/users", "post", "400", client.simulate_post("/api/users", json={"name": -1, "id": 3}))
    check("/api/ships", "get", "400", client.simulate_get("/api/ships", params={"sort": "roles"}))
    check("/api/ships", "post", "401", client.simulate_post("/api/ships", json={}))
    check("/api/ships/{ship_id}", "get", "404", client.simulate_get("/api/ships/999"))
    check("/openapi.json", "get", "200", client.simulate_get("/openapi.json"))
