"""/docs and /redoc work offline: every asset comes from the service itself, also under the product's /api."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Mount

from api.main import create_app

# Every URL a page makes the browser fetch: <script src>, <link href>, and the spec or redoc script in the JS.
_FETCHED = re.compile(r'(?:src|href)="([^"]+)"|url: ?["\']([^"\']+)["\']|spec-url="([^"]+)"')


def _fetched_urls(html: str) -> list[str]:
    return [next(group for group in match.groups() if group) for match in _FETCHED.finditer(html)]


def _check_pages(client: TestClient, prefix: str) -> None:
    for page in ("/docs", "/redoc"):
        response = client.get(f"{prefix}{page}")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        html = response.text
        assert "cdn.jsdelivr.net" not in html and "fonts.googleapis" not in html and "fastapi.tiangolo" not in html
        urls = _fetched_urls(html)
        assert urls, html
        for url in urls:
            assert url.startswith(f"{prefix}/"), f"{page} fetches {url} from elsewhere"
            fetched = client.get(url)
            assert fetched.status_code == 200 and fetched.content, url
    assert client.get(f"{prefix}/docs/oauth2-redirect").status_code == 200
    assert "validatorUrl" in client.get(f"{prefix}/docs").text  # no schema sent to validator.swagger.io


def test_docs_pages_load_nothing_from_another_host(exports_dir, settings_factory) -> None:
    with TestClient(create_app(settings_factory(exports_dir))) as client:
        _check_pages(client, "")


def test_docs_pages_under_the_products_prefix(exports_dir, settings_factory) -> None:
    host = Starlette(routes=[Mount("/api", app=create_app(settings_factory(exports_dir)))])
    with TestClient(host) as client:
        _check_pages(client, "/api")


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs-assets/swagger-ui-bundle.js", "/openapi.json"])
def test_docs_stay_open_when_api_keys_are_required(exports_dir, settings_factory, path: str) -> None:
    app = create_app(settings_factory(exports_dir, api_keys=("k-0123456789abcdef",)))
    with TestClient(app) as client:
        assert client.get(path).status_code == 200
        assert client.post("/v1/predict", json={"text": "hi"}).status_code == 401
