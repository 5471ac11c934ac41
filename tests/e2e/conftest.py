"""Browser fixtures: Debian's Chromium driven by Playwright's sync API against pytest-django's live_server.

One browser per test module; every persona gets its own context (cookies, storage), so two people
can be signed in side by side. Playwright never downloads a browser here: we launch /usr/bin/chromium."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

# Playwright's sync API runs an event loop in the test thread; Django refuses ORM calls from such a
# thread unless told it is fine (the root conftest sets this too).
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEFAULT_TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
def _plain_http_live_server() -> Iterator[None]:
    """Tests run with DEBUG off, so the settings turn SECURE_SSL_REDIRECT on. The root conftest turns
    it off per test, but SecurityMiddleware reads it once, when the live server thread builds its
    handler, i.e. before any per-test override: start the server with it off already."""
    from django.test import override_settings

    with override_settings(SECURE_SSL_REDIRECT=False):
        yield


@pytest.fixture(scope="session")
def live_server(_plain_http_live_server, live_server):
    """pytest-django's live_server, started over plain http (see `_plain_http_live_server`)."""
    return live_server


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=DEFAULT_TIMEOUT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


# Every page reports what the Content-Security-Policy blocked, as a console error we can tell apart.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.effectiveDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile || document.location.href}:${event.lineNumber}`);
});
"""


class CspViolations(list):
    """What the CSP blocked in a test's browser contexts: Chromium's own console report and the page's
    `securitypolicyviolation` event, one line each."""

    def watch(self, context) -> None:
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        context.on("page", lambda page: page.on("console", self._heard))

    def _heard(self, message) -> None:
        text = message.text
        if message.type == "error" and (
            "Content Security Policy" in text or text.startswith("CSP violation")
        ):
            self.append(text)


@pytest.fixture
def csp_violations() -> CspViolations:
    return CspViolations()


class PageErrors(list):
    """Uncaught script errors in a test's pages (Playwright's `pageerror`), one line each."""

    def watch(self, context) -> None:
        context.on(
            "page", lambda page: page.on("pageerror", lambda error: self.append(f"{page.url}: {error}"))
        )


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def new_context(browser, live_server, csp_violations, page_errors) -> Iterator[Callable]:
    """`new_context(**options)` opens a fresh browser context (one persona) on the live server.

    With DEBUG off the session and CSRF cookies are Secure; Chromium still keeps them over plain
    http because the live server is on localhost, a secure context (keep --liveserver on localhost).

    Every browser test fails on anything the Content-Security-Policy blocked in its pages (htmx and
    our scripts must work under it, with no inline script, handler or style), and on any script
    error a page threw."""
    contexts = []

    def make(**options):
        context = browser.new_context(base_url=live_server.url, **options)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        csp_violations.watch(context)
        page_errors.watch(context)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
    assert list(csp_violations) == [], "the Content-Security-Policy blocked something"
    assert list(page_errors) == [], "a page threw a script error"
