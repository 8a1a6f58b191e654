"""GET /docs: Swagger UI for /openapi.json, served by us, tried in a real browser."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets

import falcon.testing
import pytest
from support.bodies import STAR_DESTROYER
from support.browser import headless_chromium, missing

from devtools.gunicorn import PROJECT_ROOT, GunicornServer
from devtools.http import call, login
from fleet_api.app import create_app
from fleet_api.resources.docs import assets_directory
from fleet_api.settings import Settings
from fleet_api.store import open_store

REPORTS = PROJECT_ROOT / "reports"
WAIT = 20  # seconds, for anything the page does
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def client():
    settings = Settings(secret_key=secrets.token_urlsafe(48), scrypt_n=2**4)
    return falcon.testing.TestClient(create_app(settings, store=open_store("memory://")))


# --- the page and its assets, through falcon.testing ---------------------------------
def test_the_page_is_html_with_a_strict_policy(client):
    result = client.simulate_get("/docs")
    assert result.status_code == 200
    assert result.headers["Content-Type"].startswith("text/html")
    assert result.headers["X-Content-Type-Options"] == "nosniff"
    policy = dict(part.strip().split(" ", 1) for part in result.headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    # The one inline script is allowed by its hash, and nothing else inline is.
    inline = re.findall(r"<script>(.*?)</script>", result.text, re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"


def test_the_page_loads_nothing_from_elsewhere(client):
    page = client.simulate_get("/docs").text
    urls = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert urls and all(not re.match(r"^[a-z]+:|^//", url) for url in urls), urls
    assert '"openapi.json"' in page


@pytest.mark.parametrize(
    "name, media_type",
    [
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon-32x32.png", "image/png"),
    ],
)
def test_assets_are_the_installed_packages_files(client, name, media_type):
    result = client.simulate_get(f"/docs/assets/{name}")
    assert result.status_code == 200
    assert media_type in result.headers["Content-Type"]
    assert result.content == (assets_directory() / name).read_bytes()


def test_no_file_outside_the_assets_is_served(client):
    assert client.simulate_get("/docs/assets/../core.py").status_code == 404
    assert client.simulate_get("/docs/assets/nope.js").status_code == 404


# --- the page in headless Chromium against a real gunicorn ---------------------------
@pytest.fixture(scope="module")
def server():
    env = {"FLEET_SECRET_KEY": secrets.token_urlsafe(48), "FLEET_SCRYPT_N": "16"}
    with GunicornServer(workers=2, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    reason = missing()
    if reason:
        pytest.fail(reason, pytrace=False)
    with headless_chromium() as driver:
        yield driver


def test_the_page_lists_every_operation_and_runs_them_with_a_bearer_token(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT)

    def find(css, within=browser):
        return wait.until(lambda _: within.find_element(By.CSS_SELECTOR, css))

    def click(css, within=browser):
        element = find(css, within)
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        wait.until(lambda _: element.is_displayed() and element.is_enabled())
        element.click()

    def try_it(operation: str):
        block = find(f"#operations-{operation}")
        if "is-open" not in block.get_attribute("class"):
            click(".opblock-summary-control", block)
        click("button.try-out__btn", block)
        return block

    def execute(block) -> tuple[str, str]:
        click("button.execute", block)
        status = find(".live-responses-table .response .response-col_status", block)
        wait.until(lambda _: status.text.strip())
        body = find(".live-responses-table .response-col_description pre", block)
        wait.until(lambda _: body.text.strip())
        return status.text.strip(), body.text

    document = call("GET", f"{server.url}/openapi.json").json
    tokens = login(server.url)

    browser.get(f"{server.url}/docs")
    wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, ".opblock"))

    # Every operation of the document is on the page, under its tag and operationId.
    expected = {
        (method.upper(), path, f"operations-{operation['tags'][0]}-{operation['operationId']}")
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }
    listed = {
        (
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"),
            block.get_attribute("id"),
        )
        for block in browser.find_elements(By.CSS_SELECTOR, ".opblock")
    }
    assert listed == expected

    # Authorize: paste the access token from the login.
    click("button.btn.authorize")
    modal = find(".modal-ux")
    find("input", modal).send_keys(tokens["access_token"])
    click(".auth-btn-wrapper button.authorize", modal)
    click(".auth-btn-wrapper button.btn-done", modal)
    wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))

    # Create a ship from the page: POST needs the bearer token.
    ship = {**STAR_DESTROYER, "model": f"Docs page {secrets.token_hex(4)}"}
    block = try_it("ships-createShip")
    editor = find("textarea.body-param__text", block)
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys(Keys.DELETE)
    editor.send_keys(json.dumps(ship))
    status, body = execute(block)
    assert status == "201", body
    created = json.loads(body)
    assert {k: created[k] for k in ship} == ship

    # And read it back from the page: GET /api/ships/{ship_id}.
    block = try_it("ships-getShip")
    find('tr[data-param-name="ship_id"] input', block).send_keys(str(created["id"]))
    status, body = execute(block)
    assert status == "200", body
    assert json.loads(body) == created
    assert call("GET", f"{server.url}/api/ships/{created['id']}").json == created

    # The page kept to its Content-Security-Policy: the browser reported no violation.
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors

    # Screenshots for people: the executed GET with its answer, and the page's top.
    REPORTS.mkdir(exist_ok=True)
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", block)
    browser.execute_script("window.scrollBy(0, -120)")
    for name in ("docs-get-ship.png", "docs-page.png"):
        screenshot = REPORTS / name
        assert browser.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
        browser.execute_script("window.scrollTo(0, 0)")


def test_without_chromium_the_browser_test_says_what_to_install(monkeypatch):
    from support import browser

    monkeypatch.setattr(browser, "_find", lambda names: None)
    assert browser.missing() == browser.MISSING
    assert "apt-get install -y chromium chromium-driver" in browser.MISSING
    with pytest.raises(RuntimeError, match="chromium-driver"), browser.headless_chromium():
        pass
