"""What the Stripe SDK itself says a request may carry: every request the recording HTTP client sees
is held against the SDK's typed parameters for its method (`stripe.params.*Params`) — the keys it
knows, the keys it requires, the literal values it lists, nested objects and lists included — so a
parameter the SDK does not know fails the test even when the test's author shared the mistake.

Requests arrive form-encoded (`items[0][price]=…`): they are unflattened, then every value is a
string, checked against what its type would encode to (an int is digits, a bool is true/false).

Where the SDK types a value as `Literal[...] | str` (its way of accepting values newer than itself),
the plain `str` is not taken as "anything goes": the value must be one of the listed literals. A
union of `Literal['']` and `str` (unset, or any text) keeps `str`."""

from __future__ import annotations

import collections.abc
import re
import types
import typing
from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from typing import Any, Literal

import stripe.params as p
from stripe._request_options import RequestOptions
from stripe.params import billing_portal, checkout

# (method, path pattern, the SDK's parameters for it). The order matters: the first match wins.
ROUTES: list[tuple[str, str, type]] = [
    ("POST", r"/v1/customers", p.CustomerCreateParams),
    ("GET", r"/v1/customers/[^/]+", p.CustomerRetrieveParams),
    ("POST", r"/v1/customers/[^/]+", p.CustomerUpdateParams),
    ("POST", r"/v1/checkout/sessions", checkout.SessionCreateParams),
    ("GET", r"/v1/checkout/sessions", checkout.SessionListParams),
    ("POST", r"/v1/checkout/sessions/[^/]+/expire", checkout.SessionExpireParams),
    ("GET", r"/v1/checkout/sessions/[^/]+", checkout.SessionRetrieveParams),
    ("POST", r"/v1/billing_portal/sessions", billing_portal.SessionCreateParams),
    ("GET", r"/v1/billing_portal/configurations", billing_portal.ConfigurationListParams),
    ("POST", r"/v1/billing_portal/configurations", billing_portal.ConfigurationCreateParams),
    ("POST", r"/v1/billing_portal/configurations/[^/]+", billing_portal.ConfigurationUpdateParams),
    ("GET", r"/v1/subscriptions", p.SubscriptionListParams),
    ("POST", r"/v1/subscriptions", p.SubscriptionCreateParams),
    ("GET", r"/v1/subscriptions/[^/]+", p.SubscriptionRetrieveParams),
    ("POST", r"/v1/subscriptions/[^/]+", p.SubscriptionUpdateParams),
    ("DELETE", r"/v1/subscriptions/[^/]+", p.SubscriptionCancelParams),
    ("POST", r"/v1/subscription_schedules", p.SubscriptionScheduleCreateParams),
    ("POST", r"/v1/subscription_schedules/[^/]+/release", p.SubscriptionScheduleReleaseParams),
    ("POST", r"/v1/subscription_schedules/[^/]+", p.SubscriptionScheduleUpdateParams),
    ("GET", r"/v1/subscription_schedules/[^/]+", p.SubscriptionScheduleRetrieveParams),
    ("POST", r"/v1/invoices/create_preview", p.InvoiceCreatePreviewParams),
    ("GET", r"/v1/invoices", p.InvoiceListParams),
    ("POST", r"/v1/invoices", p.InvoiceCreateParams),
    ("GET", r"/v1/invoices/[^/]+/lines", p.InvoiceLineItemListParams),
    ("POST", r"/v1/invoices/[^/]+/finalize", p.InvoiceFinalizeInvoiceParams),
    ("POST", r"/v1/invoices/[^/]+/pay", p.InvoicePayParams),
    ("POST", r"/v1/invoices/[^/]+/void", p.InvoiceVoidInvoiceParams),
    ("GET", r"/v1/invoices/[^/]+", p.InvoiceRetrieveParams),
    ("POST", r"/v1/invoiceitems", p.InvoiceItemCreateParams),
    ("GET", r"/v1/invoice_payments", p.InvoicePaymentListParams),
    ("POST", r"/v1/refunds", p.RefundCreateParams),
    ("GET", r"/v1/charges/[^/]+", p.ChargeRetrieveParams),
    ("GET", r"/v1/payment_intents/[^/]+", p.PaymentIntentRetrieveParams),
    ("POST", r"/v1/credit_notes", p.CreditNoteCreateParams),
    ("GET", r"/v1/credit_notes", p.CreditNoteListParams),
    ("GET", r"/v1/credit_notes/[^/]+", p.CreditNoteRetrieveParams),
    ("GET", r"/v1/disputes/[^/]+", p.DisputeRetrieveParams),
]

# Keys of the request options some Params inherit: they travel as headers, never as parameters.
_OPTION_KEYS = frozenset(RequestOptions.__annotations__)
_INT = re.compile(r"-?\d+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def params_for(method: str, path: str) -> type | None:
    for route_method, pattern, params in ROUTES:
        if route_method == method and re.fullmatch(pattern, path):
            return params
    return None


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`{"items[0][price]": "x"}` → `{"items": [{"price": "x"}]}`: Stripe's form encoding undone
    (an object whose keys are all indexes is a list)."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        parts = re.findall(r"[^\[\]]+|\[\]", key)
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(tree)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _lists(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


def problems(method: str, path: str, flat: Mapping[str, Any]) -> list[str]:
    """What is wrong with a request, by the SDK's types; [] when nothing is."""
    params = params_for(method, path)
    if params is None:
        return [f"{method} {path}: no SDK parameters are known for this route"]
    return _check_typed_dict(unflatten(flat), params, f"{method} {path}")


@cache
def _hints(typed_dict: type) -> dict[str, Any]:
    found = typing.get_type_hints(
        typed_dict, localns={"StripeContext": object, "Mapping": collections.abc.Mapping}
    )
    return {key: hint for key, hint in found.items() if key not in _OPTION_KEYS}


def _check_typed_dict(value: Any, typed_dict: type, at: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{at}: an object is expected, not {value!r}"]
    hints = _hints(typed_dict)
    found = [
        f"{at}.{key}: not a parameter the SDK knows ({typed_dict.__name__})"
        for key in value
        if key not in hints
    ]
    required = getattr(typed_dict, "__required_keys__", frozenset()) - _OPTION_KEYS
    found += [
        f"{at}.{key}: required by the SDK ({typed_dict.__name__})" for key in sorted(required - set(value))
    ]
    for key, item in value.items():
        if key in hints:
            found += _check(item, hints[key], f"{at}.{key}")
    return found


def _members(hint: Any) -> list[Any]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = list(typing.get_args(hint))
        listed = any(
            typing.get_origin(m) is Literal and any(arg != "" for arg in typing.get_args(m)) for m in members
        )
        # `Literal['a', 'b'] | str`: the SDK accepting values newer than itself. Ours must be listed.
        return [m for m in members if not (listed and m is str)]
    return [hint]


def _check(value: Any, hint: Any, at: str) -> list[str]:
    origin = typing.get_origin(hint)
    if origin in (typing.NotRequired, typing.Required, typing.Annotated):
        return _check(value, typing.get_args(hint)[0], at)
    members = _members(hint)
    if len(members) > 1:
        failures = [_check(value, member, at) for member in members]
        if any(not failure for failure in failures):
            return []
        return [f"{at}: {value!r} is none of {hint}"]
    hint = members[0]
    origin = typing.get_origin(hint)
    if hint is Any:
        return []
    if origin is Literal:
        allowed = [str(arg).lower() if isinstance(arg, bool) else str(arg) for arg in typing.get_args(hint)]
        return [] if value in allowed else [f"{at}: {value!r} is not one of {allowed}"]
    if hint is str:
        return [] if isinstance(value, str) else [f"{at}: text expected, not {value!r}"]
    if hint is bool:
        return [] if value in ("true", "false") else [f"{at}: true or false expected, not {value!r}"]
    if hint is int:
        return (
            []
            if isinstance(value, str) and _INT.fullmatch(value)
            else [f"{at}: an integer expected, not {value!r}"]
        )
    if hint in (float, Decimal):
        return (
            []
            if isinstance(value, str) and _NUMBER.fullmatch(value)
            else [f"{at}: a number expected, not {value!r}"]
        )
    if origin in (list, collections.abc.Sequence):
        if not isinstance(value, list):
            return [f"{at}: a list expected, not {value!r}"]
        (element,) = typing.get_args(hint)
        return [problem for i, item in enumerate(value) for problem in _check(item, element, f"{at}[{i}]")]
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return [f"{at}: an object expected, not {value!r}"]
        _, element = typing.get_args(hint)
        return [problem for key, item in value.items() for problem in _check(item, element, f"{at}[{key}]")]
    if isinstance(hint, type) and hasattr(hint, "__required_keys__"):
        return _check_typed_dict(value, hint, at)
    if (
        getattr(origin, "__name__", "") == "UntypedStripeObject"
        or getattr(hint, "__name__", "") == "UntypedStripeObject"
    ):
        return [] if isinstance(value, dict) else [f"{at}: an object expected, not {value!r}"]
    return [f"{at}: the checker does not know the SDK's type {hint!r}"]
