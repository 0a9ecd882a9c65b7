"""The API from a real browser: CORS as Chromium applies it (`make test-browser`).

A page (client/browser/) uses the generated client to call /calculate and
/compare on this session's app, served by uvicorn, and shows the answers.
Playwright opens it in headless Chromium twice: from an origin the API
allows (http://localhost:5173, Vite's port, or :3000, Next.js's, when 5173
is taken), where the page must show exactly what the API answers, and from
one it does not (127.0.0.1 on another port), where the browser must refuse
to hand the answer to the page.

Needs Node, client/node_modules and Chromium (CHROMIUM_PATH, default
/usr/bin/chromium); a missing one fails the test, saying what to do.
"""

import errno
import json
import os
import re
import shutil
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

from policyengine_backend._settings import get_settings
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY
from policyengine_backend.testing import free_port

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "client"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Local frontends' ports that the API allows by default (policyengine_backend/_settings.py).
ALLOWED_PORTS = (5173, 3000)
REQUESTS = {
    "calculate": {"household": EXAMPLE_HOUSEHOLD},
    "compare": {"household": EXAMPLE_HOUSEHOLD, "policy": EXAMPLE_POLICY},
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The page's files: the page, the client and page.ts compiled by tsc,
    openapi-fetch, and the requests to send."""
    tsc = CLIENT / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "client/node_modules is missing: run `make test-browser`"
    site = tmp_path_factory.mktemp("site")
    shutil.copy(CLIENT / "browser" / "index.html", site / "index.html")
    (site / "node_modules").mkdir()
    (site / "node_modules" / "openapi-fetch").symlink_to(
        CLIENT / "node_modules" / "openapi-fetch"
    )
    (site / "request.json").write_text(json.dumps(REQUESTS))
    done = subprocess.run(
        [
            str(tsc),
            "-p",
            str(CLIENT),
            "--noEmit",
            "false",
            "--outDir",
            str(site / "build"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return site


class Files(SimpleHTTPRequestHandler):
    # Browsers run a module script only if it is served as JavaScript.
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
    }

    def log_message(self, format, *args):
        pass


def serve(site: Path, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(Files, directory=site))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def pages(site):
    """(allowed origin, refused origin), each serving the page."""
    allowed = None
    for port in ALLOWED_PORTS:
        try:
            allowed = serve(site, port)
            break
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
    assert allowed, (
        f"ports {ALLOWED_PORTS} are both in use (a frontend dev server?): "
        "the page must be served from an origin the API allows; stop one"
    )
    refused = serve(site, free_port())
    yield (
        f"http://localhost:{allowed.server_address[1]}",
        f"http://127.0.0.1:{refused.server_address[1]}",
    )
    for server in (allowed, refused):
        server.shutdown()
        server.server_close()


def open_in_chromium(urls: list[str]) -> dict:
    assert Path(CHROMIUM).exists(), (
        f"no Chromium at {CHROMIUM}: install one (apt-get install chromium, or "
        "`npx playwright-core install chromium` in client/, which prints its "
        "path) and set CHROMIUM_PATH to it, or to your Chrome"
    )
    done = subprocess.run(
        ["node", str(CLIENT / "browser" / "open.mjs"), *urls],
        capture_output=True,
        text=True,
        env={**os.environ, "CHROMIUM_PATH": CHROMIUM},
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def shown(served, pages) -> dict:
    """What the page shows from each origin, and what Chromium logged."""
    urls = [f"{origin}/?api={quote(served, safe='')}" for origin in pages]
    shown = open_in_chromium(urls)
    return {origin: shown[url] for origin, url in zip(pages, urls, strict=True)}


def allowed_by_the_api(origin: str) -> bool:
    settings = get_settings()
    pattern = settings.cors_allow_origin_regex
    return origin in settings.cors_allow_origins or bool(
        pattern and re.fullmatch(pattern, origin)
    )


def test_the_page_on_an_allowed_origin_shows_the_apis_answers(client, pages, shown):
    allowed, _ = pages
    assert allowed_by_the_api(allowed), allowed
    for endpoint, body in REQUESTS.items():
        outcome, _, answer = shown[allowed][endpoint].partition(" ")

        assert outcome == "ok", shown[allowed]
        assert json.loads(answer) == client.post(f"/{endpoint}", json=body).json()


def test_the_browser_refuses_the_page_on_another_origin(pages, shown):
    _, refused = pages
    assert not allowed_by_the_api(refused), refused
    for endpoint in REQUESTS:
        # The request may reach the API; the browser keeps the answer from
        # the page, which sees only a network error.
        assert shown[refused][endpoint] == "refused TypeError: Failed to fetch", shown
    assert any(
        f"from origin '{refused}' has been blocked by CORS policy" in line
        for line in shown[refused]["console"]
    ), shown[refused]["console"]
