"""Real-browser fixtures: Playwright from PyPI driving Debian's chromium (never `playwright install`).

- `browser`: one headless chromium for the whole session; skipped with the reason when chromium or
  Playwright is missing, a failure instead when `JETPERO_REQUIRE_SERVICES=1` (CI).
- `page`: a fresh browser context and page per test, its CSP violations in `page.csp_violations`.
- `browser_live`: the app over real HTTP, recording every request that reached it (`.seen`).
- `origin_server`: a factory of tiny pages served from other ports, i.e. other origins.
"""

from __future__ import annotations

import http.server
import shutil
from dataclasses import dataclass

import pytest

from tests.helpers import missing
from tests.servers import LiveServer, _Served

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Runs before any page script: records what the page's Content-Security-Policy refused.
CSP_RECORDER = (
    "window.__csp = [];"
    "document.addEventListener('securitypolicyviolation',"
    " e => window.__csp.push(e.effectiveDirective + ' ' + e.blockedURI));"
)


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -r requirements-dev.txt)")
    if not shutil.which(CHROMIUM):
        missing(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        yield browser
        browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    context.set_default_timeout(10_000)
    context.add_init_script(CSP_RECORDER)
    page = context.new_page()
    yield page
    context.close()


def csp_violations(page) -> list[str]:
    return page.evaluate("window.__csp")


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    origin: str | None
    preflight: bool  # an OPTIONS carrying Access-Control-Request-Method


class _Recorder:
    """WSGI middleware: notes each request, then hands it to the app unchanged."""

    def __init__(self, app):
        self.app, self.seen = app, []

    def __call__(self, environ, start_response):
        self.seen.append(
            Seen(
                environ["REQUEST_METHOD"],
                environ.get("PATH_INFO", ""),
                environ.get("HTTP_ORIGIN"),
                environ["REQUEST_METHOD"] == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ,
            )
        )
        return self.app(environ, start_response)


@pytest.fixture(scope="module")
def browser_live(app):
    recorder = _Recorder(app)
    server = LiveServer(recorder)
    server.seen = recorder.seen
    yield server
    server.stop()


class OriginServer(_Served):
    """Serves one small HTML page on its own port: a web origin of its own."""

    def __init__(self, host: str = "127.0.0.1"):
        body = b"<!DOCTYPE html><html><head><title>origin</title></head><body>origin</body></html>"

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self._serve(server, f"http://{host}:{server.server_address[1]}")


@pytest.fixture
def origin_server():
    servers: list[OriginServer] = []

    def start() -> OriginServer:
        servers.append(OriginServer())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
