"""`/docs`: Swagger UI over the OpenAPI document, its script and styles served from the package.

FastAPI's own page loads Swagger UI from a CDN and is blank on a machine without internet;
this one loads web/swagger-ui/ (Swagger UI, Apache-2.0; its README names the version), and turns
off the online validator badge, the page's one other outside call.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import FileResponse, HTMLResponse

from hypereal.errors import NotFound

ASSETS = Path(__file__).resolve().parent.parent / "web" / "swagger-ui"
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
ASSETS_PATH = "/docs/assets"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="hypereal API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(ASSETS_PATH + "/{name}")
async def asset(name: str) -> FileResponse:
    media_type = ASSET_TYPES.get(name)
    if media_type is None:
        raise NotFound("File not found")
    return FileResponse(ASSETS / name, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
