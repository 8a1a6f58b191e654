"""GET /openapi.json, the app's OpenAPI document, and GET /docs, Swagger UI for it.

The document is built once, when the app is created, from the app's route
table (fleet_api/openapi.py), and served as ready bytes.

The page's scripts and styles come from the pinned `swagger-ui-py` package
(Swagger UI 5, which renders OpenAPI 3.1), served from where pip installed
it under /docs/assets: nothing is fetched from a CDN at run time. The one
inline script (the UI's settings) is allowed by its hash in the page's
Content-Security-Policy, so no other script can run on the page.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
from pathlib import Path

import falcon

from fleet_api import openapi
from fleet_api.media import dumps
from fleet_api.openapi import ok, operation, text

OPENAPI_PATH = "/openapi.json"
PATH = "/docs"
ASSETS = "/docs/assets"

# Paths are relative to the page, so the docs work under a mount prefix.
_INIT = """\
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  displayOperationId: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
});
"""

_PAGE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Fleet API docs</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script>{init}</script>
</body>
</html>
"""


def assets_directory() -> Path:
    """Swagger UI's files inside the installed package (found without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("GET /docs needs the swagger-ui-py package: pip install -r requirements.txt")
    directory = Path(next(iter(spec.submodule_search_locations))) / "static"
    if not (directory / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"no swagger-ui-bundle.js in {directory}")
    return directory


def content_security_policy(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'self' 'sha256-{digest}'",
            "style-src 'self' 'unsafe-inline'",  # Swagger UI sets style attributes
            "img-src 'self' data:",
            "connect-src 'self'",  # Try it out calls this API only
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


class OpenAPI:
    """The document of `routes` ((URI template, resource) pairs, as the app
    adds them) and of itself at `path`."""

    def __init__(self, routes: list[tuple[str, object]], path: str = OPENAPI_PATH) -> None:
        self.document = openapi.build_openapi([*routes, (path, self)])
        self._data = dumps(self.document)

    @operation("meta", "openapi", responses={200: ok("The OpenAPI 3.1 document.", {"type": "object"})})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """This document"""
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._data


class Docs:
    """The page, built once; its assets are a static route (`ASSETS`, `assets_directory()`)."""

    def __init__(self) -> None:
        self._page = _PAGE.format(init=_INIT).encode()
        self._policy = content_security_policy(_INIT)

    @operation("meta", "docs", responses={200: text("The HTML page.", "text/html")})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Interactive docs for this document (Swagger UI)

        Log in with `login`, paste the access token into Authorize, then try any operation.
        """
        resp.content_type = falcon.MEDIA_HTML
        resp.set_header("Content-Security-Policy", self._policy)
        resp.set_header("Referrer-Policy", "no-referrer")
        resp.data = self._page
