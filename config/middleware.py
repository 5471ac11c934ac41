"""Every answer of the integration API that is an error has our shape, including those that ninja
or Django produce before any handler of ours runs (405 Method Not Allowed, 404, 500)."""

from __future__ import annotations

import json
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from tenants.errors import error_body

CODES = {
    400: ("bad_request", "The request could not be understood."),
    401: ("unauthorized", "A valid API key is required: send it as 'Authorization: Bearer <key>'."),
    403: ("forbidden", "This key may not do that."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "This method is not allowed on this endpoint."),
    500: ("server_error", "Something went wrong on our side. Try again later."),
}


class ApiErrorShapeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith("/api/") or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            try:
                if "error" in json.loads(response.content):
                    return response
            except (ValueError, TypeError):
                pass
        code, message = CODES.get(response.status_code, ("error", "The request failed."))
        shaped = JsonResponse(error_body(code, message), status=response.status_code)
        if response.has_header("Allow"):
            shaped["Allow"] = response["Allow"]
        return shaped
