"""``/docs``: Swagger UI, served from this app's own files.

FastAPI's own ``/docs`` page loads Swagger UI from a CDN and starts it with
an inline script: blank offline, and refused by a strict Content Security
Policy. Here the page, its script and Swagger UI's files (the pinned
``swagger-ui-bundle-v2`` package, in uv.lock) all come from the app, and
the page says so in its own CSP: nothing else may load.
"""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path

from policyengine_backend._errors import NotFound

ASSETS = Path(str(swagger_ui_path))
# What the page may load: its own files, Swagger UI's inline SVG icons, and
# calls to this API ("Try it out").
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'"
)
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>API docs</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" href="/docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/start.js"></script>
</body>
</html>
"""
START = """SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  showExtensions: true,
  presets: [SwaggerUIBundle.presets.apis],
});
"""
SERVED = {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"}

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def docs() -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": POLICY})


@router.get("/docs/start.js")
async def start() -> Response:
    return Response(START, media_type="text/javascript")


@router.get("/docs/assets/{name}")
async def asset(name: str) -> FileResponse:
    if name not in SERVED:
        raise NotFound("no such file")
    return FileResponse(ASSETS / name)
