"""Project-wide middleware: the API's own short chain, bad input refused at the door, browser feature
policy, and the API's error shape on every error answer (including those ninja or Django produce
before any handler of ours runs: 405 Method Not Allowed, 404, 500)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.common import CommonMiddleware as DjangoCommonMiddleware
from django.shortcuts import render
from django.utils.module_loading import import_string

from tenants.errors import NUL_REFUSED, error_response, http_error

API_PREFIX = "/api/"
# The API's one page (Swagger UI, a template with the page context processors): the page chain.
API_DOCS_PREFIX = "/api/v1/docs"
NUL = "\x00"


def _too_big() -> str:
    """What a page says of a request body over DATA_UPLOAD_MAX_MEMORY_SIZE (an upload, in practice)."""
    limit = f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE / 1024 / 1024:.1f}".removesuffix(".0")
    return f"The upload is larger than {limit} MB: split the file into smaller files and try again."


# A page's form that Django cannot parse (a multipart body without its boundary, or cut short).
FORM_UNREADABLE = "The form could not be read. Go back to the page and send it again."

# A JSON body's NUL: the raw byte, or the escape \u0000 that is not itself escaped (`\\u0000` is a
# backslash followed by the text "u0000").
_JSON_NUL = re.compile(rb"\x00|(?<!\\)(?:\\\\)*\\u0000")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _json_nul_path(value: object, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """Where in a parsed JSON document the first NUL sits (keys included), or None."""
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if NUL in str(key):
                return (*path, str(key).replace(NUL, ""))
            found = _json_nul_path(item, (*path, str(key)))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _json_nul_path(item, (*path, str(index)))
            if found is not None:
                return found
    return None


def _nul_in(request: HttpRequest) -> tuple[str, ...] | None:
    """Where the request carries a NUL — ("path",), ("query", name), ("header", name), ("form",
    name) or ("body", key, ...) — or None. PostgreSQL cannot hold NUL in text: a value that reached a
    query would fail as a DataError, a 500 for what a client sent."""
    if NUL in request.path:
        return ("path",)
    for key, values in request.GET.lists():
        if NUL in key or any(NUL in v for v in values):
            return ("query", key.replace(NUL, ""))
    for key, value in request.META.items():
        if (key.startswith("HTTP_") or key == "CONTENT_TYPE") and isinstance(value, str) and NUL in value:
            return ("header", key.removeprefix("HTTP_").replace("_", "-").lower())
    content_type = request.content_type or ""
    if request.method == "POST" and content_type in _FORM_TYPES:
        # Read the body first: POST is then parsed from the copy, and a view can still read the body
        # (multipart parsing would otherwise consume the stream). DATA_UPLOAD_MAX_MEMORY_SIZE bounds
        # the copy (a larger body is refused in words). An uploaded file's own content is its form's
        # to check (the client CSV import refuses a NUL with its line).
        request.body  # noqa: B018
        for key, values in request.POST.lists():
            if NUL in key or any(NUL in v for v in values):
                return ("form", key.replace(NUL, ""))
        return None
    # JSON only under the API: the webhook endpoint verifies its signature first and refuses NULs itself.
    if not (request.path.startswith(API_PREFIX) and content_type == "application/json"):
        return None
    if not _JSON_NUL.search(request.body):
        return None
    try:
        found = _json_nul_path(json.loads(request.body))
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's parser goes
        found = None
    return ("body", *found) if found else ("body",)


class RejectNulMiddleware:
    """Refuses a request with a NUL in its path, query, headers, form fields or (under /api/) JSON
    body before anything runs. Under /api/ it is bad input like any other (DESIGN "API conventions"):
    422 `invalid_request` with the place in `details`; elsewhere the styled 400 page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            where = _nul_in(request)
        except RequestDataTooBig:
            if not request.path.startswith(API_PREFIX):
                # A page (the client CSV import's upload): the styled page, in words, nothing kept.
                return render(request, "400.html", {"reason": _too_big()}, status=413)
            # The body is read here first (an API JSON body): over DATA_UPLOAD_MAX_MEMORY_SIZE it
            # is the API's 413, as ninja's own reading of it would answer (config.api).
            return error_response(*http_error(413), status=413)
        except MultiPartParserError:
            # Django would answer its 400 and log the parser's traceback, for what a client sent.
            if request.path.startswith(API_PREFIX):
                # The API reads no form: its handler refuses this one in words after the key's check
                # (422 "Send the body as JSON", tenants.api_fields.FormBody), as any other form.
                return self.get_response(request)
            return render(request, "400.html", {"reason": FORM_UNREADABLE}, status=400)
        if where is None:
            return self.get_response(request)
        if request.path.startswith(API_PREFIX):
            field = ".".join(where[1:]) or where[0]
            detail = {"type": "nul_character", "loc": list(where), "msg": NUL_REFUSED[1]}
            return error_response(
                "invalid_request", f"{field}: {NUL_REFUSED[1]}", status=422, details=[detail]
            )
        return render(request, "400.html", {"reason": NUL_REFUSED[1]}, status=400)


class HeadAsGetMiddleware:
    """Outermost of both chains: HEAD is answered as GET without the body (RFC 9110 §9.3.2: the
    same header fields as GET, no content), so an uptime check's `HEAD /healthz` is a 200 like its
    GET, and a route that answers no GET answers HEAD with the same 405. Outermost, so every layer
    (the API's error shape included) has made the GET answer before its body is dropped."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "HEAD":
            return self.get_response(request)
        request.method = "GET"
        try:
            response = self.get_response(request)
        finally:
            request.method = "HEAD"
        if isinstance(response, StreamingHttpResponse):  # a CSV export, a file
            response.streaming_content = []
        else:
            response["Content-Length"] = str(len(response.content))
            response.content = b""
        return response


def _has_body(request: HttpRequest) -> bool:
    """A body is sent: a Content-Length above zero, or a chunked one (a stray Content-Encoding
    header on a GET refuses nothing)."""
    length = request.META.get("CONTENT_LENGTH") or ""
    return (length.strip() not in ("", "0")) or "HTTP_TRANSFER_ENCODING" in request.META


class ContentEncodingMiddleware:
    """A request body sent with a Content-Encoding (gzip, br ...) is refused with 415 and
    `Accept-Encoding: identity` (RFC 9110 §15.5.16): bodies are read as sent, and a compressed one
    would otherwise be refused for what its bytes look like (they hold NULs)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        encoding = request.META.get("HTTP_CONTENT_ENCODING")
        if not encoding or encoding.strip().lower() in ("", "identity") or not _has_body(request):
            return self.get_response(request)
        code, message = http_error(415)
        if request.path.startswith(API_PREFIX) and not request.path.startswith(API_DOCS_PREFIX):
            response: HttpResponse = error_response(code, message, status=415)
        else:
            response = render(request, "400.html", {"reason": message}, status=415)
        response["Accept-Encoding"] = "identity"
        return response


class CommonMiddleware(DjangoCommonMiddleware):
    """Django's, except that only GET and HEAD are sent on to the path with a slash (APPEND_SLASH).
    A POST, PUT, PATCH or DELETE to `/t/<slug>/billing` or `/api/v1` was a 500 with DEBUG on
    (Django raises rather than redirect a body it would lose) and a 301 without it, which a client
    follows as a GET: either way not what was sent. It is now the 404 of a path that does not
    exist, in the page's or the API's shape."""

    def should_redirect_with_slash(self, request: HttpRequest) -> bool:
        return request.method in ("GET", "HEAD") and super().should_redirect_with_slash(request)


class PermissionsPolicyMiddleware:
    """`Permissions-Policy`: every feature in settings.PERMISSIONS_POLICY is off (`feature=()`)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.header = ", ".join(f"{feature}=()" for feature in settings.PERMISSIONS_POLICY)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.header:
            response.setdefault("Permissions-Policy", self.header)
        return response


class ApiErrorShapeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith(API_PREFIX) or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            try:
                if "error" in json.loads(response.content):
                    return response
            except (ValueError, TypeError):
                pass
        code, message = http_error(response.status_code)
        shaped = error_response(code, message, status=response.status_code)
        for header in ("Allow", "Retry-After"):
            if response.has_header(header):
                shaped[header] = response[header]
        return shaped


class PageMethodNotAllowedMiddleware:
    """A page's 405 (a GET on a POST-only action, a POST on a page) says so in the product's layout,
    as the 400, 403 and 404 pages do, instead of Django's empty answer; `Allow` is kept."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code != 405 or response.content or request.path.startswith(API_PREFIX):
            return response
        allowed = response.get("Allow", "")
        only = " or ".join(m.strip() for m in allowed.split(",") if m.strip()) or "another method"
        reason = f"This address answers {only} only: use the buttons and links on the page."
        page = render(request, "405.html", {"reason": reason}, status=405)
        if allowed:
            page["Allow"] = allowed
        return page


class _ApiHandler(BaseHandler):
    """Django's own handler (URL resolving, view and exception middleware, an exception turned into
    its answer at every layer) around settings.API_MIDDLEWARE instead of settings.MIDDLEWARE: what
    BaseHandler.load_middleware does for a synchronous server, whose every middleware here is
    synchronous."""

    def load_middleware(self, is_async: bool = False) -> None:
        assert not is_async, "the API chain is built for WSGI"
        view: list[Callable[..., Any]] = []
        template_response: list[Callable[..., Any]] = []
        exception: list[Callable[..., Any]] = []
        handler = convert_exception_to_response(self._get_response)  # type: ignore[attr-defined]
        for path in reversed(settings.API_MIDDLEWARE):
            middleware = import_string(path)(handler)
            if hasattr(middleware, "process_view"):
                view.insert(0, middleware.process_view)
            if hasattr(middleware, "process_template_response"):
                template_response.append(middleware.process_template_response)
            if hasattr(middleware, "process_exception"):
                exception.append(middleware.process_exception)
            handler = convert_exception_to_response(middleware)
        self._view_middleware = view
        self._template_response_middleware = template_response
        self._exception_middleware = exception
        self._middleware_chain = handler


class ApiMiddlewareChain:
    """First in settings.MIDDLEWARE: an integration-API request (under /api/, but the docs page)
    goes through settings.API_MIDDLEWARE — the same list less the page middleware (sessions, CSRF,
    users, messages, htmx, axes, static files), which nothing under /api/ reads and which add
    nothing to an API answer — instead of the rest of the list. Every header and body stays the
    same: the security headers, the NUL check, the error shape and the Host check are in both
    (tests/test_api_middleware_chain.py compares the two chains' answers). Pages are untouched."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        handler = _ApiHandler()
        handler.load_middleware()
        self.api_chain: Callable[[HttpRequest], HttpResponse] = handler._middleware_chain  # type: ignore[assignment]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith(API_PREFIX) and not path.startswith(API_DOCS_PREFIX):
            return self.api_chain(request)
        return self.get_response(request)
