"""django-ninja's per-request run of an operation, without the work that does not apply to ours.

`Operation.run` (ninja 1.7) asks for every request and every auth callback whether it is a
coroutine function, builds a throw-away "temporal" response before the view runs, and walks its
throttle list; on the integration API's hot path (a request of about a millisecond in-process) that
is a tenth of the time. `streamlined` is an API-wide "view" decorator (`api.add_decorator(...,
mode="view")`, ninja's own hook for wrapping `operation.run`): for a synchronous operation with
synchronous auth, no throttles and no streaming it returns a run that does what ninja's does, in
the same order with the same calls for the same outcomes — auth callbacks in turn (an exception or
no key: ninja's error answer), then the parameters through the operation's own models (its
validation errors unchanged), the view, and ninja's own rendering of whatever the view returns —
with the checks decided once. Anything else keeps ninja's run.

One rule of ours is added after the key's check: a query parameter the operation does not take,
or one of its parameters given twice, is a 422 naming it, as a body field it does not take is
(tenants.api_fields.RequestBody; Stripe refuses an unknown parameter wherever it is sent). ninja
would ignore the one and take the last of the other: `?per_page=100000` for `page_size`, a
misspelled filter, answered as if nothing had been asked.

A request whose key came from the process's memory (`ApiKeyAuth(remembered=True)`) runs with that
key's confirmation (`tenants.key_confirmation`), and again from a fresh read of its key when the
confirmation finds it stale.

`tests/test_api_run.py` pins the ninja source this mirrors, so an upgrade is looked at again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from ninja.errors import AuthenticationError
from ninja.operation import Operation
from ninja.utils import is_async_callable

from tenants.api_fields import FieldErrors
from tenants.key_confirmation import KeyConfirmation, KeyStale

Run = Callable[..., HttpResponseBase]


def _sync(callback: Any) -> bool:
    return not (is_async_callable(callback) or getattr(callback, "is_async", False))


def streamlined(run: Run) -> Run:
    operation = getattr(run, "__self__", None)
    if (
        not isinstance(operation, Operation)
        or type(operation) is not Operation  # AsyncOperation, or a subclass with its own run
        or operation.throttle_objects
        or operation.stream_format
        or not all(_sync(callback) for callback in operation.auth_callbacks)
    ):
        callbacks = getattr(operation, "auth_callbacks", ())
        if any(getattr(callback, "remembered", False) for callback in callbacks):
            # Only this run confirms a remembered key (tenants.key_confirmation).
            raise ImproperlyConfigured(f"{run!r}: a remembered key needs the streamlined run")
        return run
    api = operation.api
    callbacks = list(operation.auth_callbacks)
    csrf_exempt = operation.csrf_exempt
    response_arg = operation.signature.response_arg
    known_query = frozenset(
        name
        for model in operation.models
        if getattr(model, "__ninja_param_source__", None) == "query"
        for name in getattr(model, "__ninja_flatten_map__", {})
    )

    def streamlined_run(request: HttpRequest, **kw: Any) -> HttpResponseBase:
        if csrf_exempt:
            request._ninja_csrf_exempt = True  # type: ignore[attr-defined]
        if callbacks:
            for callback in callbacks:
                try:
                    result = callback(request)
                except Exception as exc:
                    return api.on_exception(request, exc)
                if result:
                    request.auth = result  # type: ignore[attr-defined]
                    break
            else:
                return api.on_exception(request, AuthenticationError())
        confirmation: KeyConfirmation | None = request.__dict__.pop("key_confirmation", None)
        if confirmation is None:
            return after_auth(request, kw)
        # A remembered key (tenants.key_confirmation): confirmed by the first statement, or before
        # the answer; found stale, nothing was done and the request runs again from a fresh read.
        try:
            with connection.execute_wrapper(confirmation):
                response = after_auth(request, kw)
                confirmation.before_answer()
        except KeyStale:
            request.key_stale = True  # type: ignore[attr-defined]
            return streamlined_run(request, **kw)
        return response

    def after_auth(request: HttpRequest, kw: dict[str, Any]) -> HttpResponseBase:
        if request.META.get("QUERY_STRING"):
            refused = _query_refused(request, known_query)
            if refused is not None:
                return api.on_exception(request, refused)
        try:
            # Only a view that asks for the response (to set headers on it) needs it before it runs.
            temporal: HttpResponse | None = api.create_temporal_response(request) if response_arg else None
            values = operation._get_values(request, kw, temporal)  # type: ignore[arg-type]
            result = operation.view_func(request, **values)
            if isinstance(result, HttpResponseBase):
                return result  # as ninja's _result_to_response does first
            if temporal is None:
                temporal = api.create_temporal_response(request)
            return operation._result_to_response(request, result, temporal)
        except KeyStale:
            raise  # to streamlined_run, which runs the request again
        except Exception as e:
            if isinstance(e, TypeError) and "required positional argument" in str(e):
                msg = "Did you fail to use functools.wraps() in a decorator?"
                msg = f"{e.args[0]}: {msg}" if e.args else msg
                e.args = (msg, *e.args[1:])
            return api.on_exception(request, e)

    streamlined_run.__wrapped__ = run  # type: ignore[attr-defined]
    return streamlined_run


def _query_refused(request: HttpRequest, known: frozenset[str]) -> FieldErrors | None:
    """A parameter the operation does not take, or one of its parameters given twice (`?limit=1&
    limit=2`: ninja would take the last, a proxy or a log may read the first): none of them takes
    a list."""
    errors = [
        {"type": "extra_forbidden", "loc": ("query", name), "msg": "Unknown query parameter"}
        if name not in known
        else {"type": "repeated", "loc": ("query", name), "msg": "Given more than once: send it once"}
        for name, values in request.GET.lists()
        if name not in known or len(values) > 1
    ]
    return FieldErrors(errors) if errors else None
