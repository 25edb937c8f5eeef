"""The interactive API docs (Swagger UI at ``/docs``, ReDoc at ``/redoc``), served from this package.

FastAPI's defaults load Swagger UI and ReDoc from cdn.jsdelivr.net and a favicon from another host: offline, or in
an image built with ``--network=none``, the pages stay blank. The assets are vendored, pinned, in ``api/static/docs``
(``make vendor-docs``) and served by the app itself, under whatever prefix a host mounts it at (``/api`` in the
product), so a docs page never asks another host for anything.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(__file__).resolve().parent / "static" / "docs"
ASSETS_PATH = "/docs-assets"
DOCS_PATH, REDOC_PATH, OAUTH2_REDIRECT_PATH = "/docs", "/redoc", "/docs/oauth2-redirect"
# No "validatorUrl": Swagger UI would otherwise send the schema to validator.swagger.io for its badge.
_SWAGGER_PARAMETERS = {"validatorUrl": None, "deepLinking": True, "showExtensions": True,
                       "showCommonExtensions": True}


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs``, ``/docs/oauth2-redirect``, ``/redoc`` and their assets from this package.

    The app must be built with ``docs_url=None`` and ``redoc_url=None`` (FastAPI's own pages load a CDN).
    """
    if not (ASSETS_DIR / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"{ASSETS_DIR} lacks the docs assets: run `make vendor-docs`")
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} · Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_PATH}", swagger_ui_parameters=_SWAGGER_PARAMETERS)

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} · ReDoc",
                              redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png", with_google_fonts=False)


def asset_paths() -> set[str]:
    """Paths of the docs pages and every asset: the API key gate leaves them open, like the schema."""
    return {DOCS_PATH, REDOC_PATH, OAUTH2_REDIRECT_PATH} | {f"{ASSETS_PATH}/{p.name}" for p in ASSETS_DIR.iterdir()}
