"""The Stripe gateway against the wire: what StripeClient sends for each call, and how the answer maps.

A recording HTTP client stands in for the network under the real SDK. It keeps each request as Stripe
would receive it (method, path, decoded form or query parameters, headers) and answers with the
project's trimmed Stripe objects from `stripe_fixtures/`. Those are held against Stripe's published
example objects where `../shared/stripe/fixtures3.json` exists. No database, no network."""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import stripe
import time_machine

from billing_portal.gateway import stripe_gateway
from billing_portal.gateway.base import (
    GatewayCheckoutSession,
    GatewayError,
    GatewayEvent,
    GatewayInvoice,
    GatewayInvoiceLine,
    GatewayInvoicePreview,
    GatewaySchedule,
    WebhookSignatureError,
)
from billing_portal.gateway.stripe_gateway import (
    MSG_REFUSED,
    MSG_UNREACHABLE,
    PINNED_API_VERSION,
    StripeGateway,
    invoice_from_stripe,
)
from billing_portal.tests import stripe_params

FIXTURES = Path(__file__).parent / "stripe_fixtures"
# Stripe's published objects: STRIPE_FIXTURES_PATH, else ../shared/stripe/fixtures3.json beside the
# repository (parents: [0] tests, [1] billing_portal, [2] the repository, [3] its parent).
REFERENCE = Path(
    os.environ.get("STRIPE_FIXTURES_PATH")
    or Path(__file__).resolve().parents[3] / "shared/stripe/fixtures3.json"
)

API_KEY = "sk_test_allowance_contract"
WEBHOOK_SECRET = "whsec_allowance_contract_tests"

CUS = "cus_RAcmeTenant001"
SUB = "sub_1RAcmeAgents0001"
SI = "si_RAcmeAgents0001"
STARTER = "price_1RAgentsStarter01"
GROWTH = "price_1RAgentsGrowth001"
SCHED = "sub_sched_1RAcmeDowngr01"
INV = "in_1RAcmeFeb2026001"
PACK_INV = "in_1RAcmePack000001"
CS = "cs_test_a1RAcmeAgentsStarterCheckout0001"

JAN1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB1 = datetime(2026, 2, 1, tzinfo=UTC)
MAR1 = datetime(2026, 3, 1, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def unix(moment: datetime) -> str:
    """As the form encoding carries it."""
    return str(int(moment.timestamp()))


# --- the recording HTTP client ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    params: dict[str, Any]  # one value per key, a list where the key repeats
    headers: dict[str, str]


class RecordingHTTPClient(stripe_gateway.RetryRateLimits, stripe.HTTPClient):
    """Answers StripeClient's requests from a route table and records them; never opens a socket.
    Every request is first held against the SDK's typed parameters for its method (stripe_params):
    a key, a missing required key or a value the SDK does not list fails the test."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Sent] = []
        self._answers: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        self._failures: dict[tuple[str, str], Exception] = {}
        self.sleeps: list[float] = []

    def _sleep_time_seconds(self, num_retries: int) -> float:
        # The SDK's backoff, recorded instead of slept: a retry in a test costs no time.
        self.sleeps.append(super()._sleep_time_seconds(num_retries))
        return 0

    def answer(self, method: str, path: str, body: Any, *, status: int = 200) -> None:
        """Queue an answer; the last one queued for a route repeats."""
        self._answers.setdefault((method, path), []).append((status, body))

    def fail(self, method: str, path: str, error: Exception) -> None:
        self._failures[(method, path)] = error

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("https", "api.stripe.com"), url
        encoded = post_data if method == "post" else parts.query
        if isinstance(encoded, bytes):
            encoded = encoded.decode()
        params = {
            key: values[0] if len(values) == 1 else values
            for key, values in parse_qs(encoded or "", keep_blank_values=True).items()
        }
        route = (method.upper(), parts.path)
        wrong = stripe_params.problems(route[0], route[1], params)
        if wrong:
            raise AssertionError("a request the SDK's types refuse:\n" + "\n".join(wrong))
        self.sent.append(Sent(route[0], route[1], params, dict(headers or {})))
        if route in self._failures:
            raise self._failures[route]
        answers = self._answers.get(route)
        if not answers:
            raise AssertionError(f"unexpected request {route[0]} {route[1]}")
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        return json.dumps(body), status, {"content-type": "application/json"}

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        raise AssertionError("the gateway never streams")

    def close(self) -> None:
        pass


def assert_sent(sent: Sent, method: str, path: str, *, idempotency_key: str | None = None) -> None:
    """Method, path and the headers every request carries; a POST carries the key we derived."""
    assert (sent.method, sent.path) == (method, path)
    assert sent.headers["Stripe-Version"] == PINNED_API_VERSION
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    if idempotency_key is not None:
        assert sent.headers["Idempotency-Key"] == idempotency_key
    elif method == "GET":
        assert "Idempotency-Key" not in sent.headers


@pytest.fixture
def http() -> RecordingHTTPClient:
    return RecordingHTTPClient()


@pytest.fixture
def gateway(http: RecordingHTTPClient) -> StripeGateway:
    return StripeGateway(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, http_client=http)


def card_declined(message: str = "Your card has insufficient funds.") -> dict[str, Any]:
    return {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": message,
            "doc_url": "https://docs.stripe.com/error-codes/card-declined",
            "request_log_url": "https://dashboard.stripe.com/test/logs/req_1RDeclined0001",
        }
    }


def invalid_request(message: str, *, code: str, param: str = "") -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "code": code, "message": message, "param": param}}


def page(objects: list[dict[str, Any]], *, url: str, has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": objects, "has_more": has_more, "url": url}


# --- the recording client checks every request against the SDK's own types -------------------------


@pytest.mark.parametrize(
    ("call", "complaint"),
    [
        (
            lambda c: c.v1.subscriptions.update(SUB, params={"payment_behaviour": "pending_if_incomplete"}),  # type: ignore[typeddict-unknown-key]
            "POST /v1/subscriptions/sub_1RAcmeAgents0001.payment_behaviour: not a parameter the SDK knows",
        ),
        (
            lambda c: c.v1.subscriptions.update(SUB, params={"proration_behavior": "always_invoiced"}),  # type: ignore[typeddict-item]
            "'always_invoiced' is not one of ['always_invoice', 'create_prorations', 'none']",
        ),
        (
            lambda c: c.v1.subscriptions.update(SUB, params={"items": [{"id": SI, "prices": GROWTH}]}),  # type: ignore[typeddict-unknown-key]
            ".items[0].prices: not a parameter the SDK knows",
        ),
        (
            lambda c: c.v1.billing_portal.configurations.create(params={}),  # type: ignore[typeddict-item]
            ".features: required by the SDK (ConfigurationCreateParams)",
        ),
        (
            lambda c: c.v1.subscription_schedules.update(
                SCHED,
                params={"phases": [{"items": [{"price": GROWTH}], "end_date": "soon"}]},  # type: ignore[typeddict-item]
            ),
            ".phases[0].end_date: 'soon' is none of",
        ),
        (
            lambda c: c.v1.invoices.pay(INV, params={"off_session": "yes"}),  # type: ignore[typeddict-item]
            ".off_session: true or false expected, not 'yes'",
        ),
    ],
)
def test_a_request_the_sdks_types_refuse_fails_the_test(http, call, complaint) -> None:
    client = stripe.StripeClient(API_KEY, http_client=http)

    with pytest.raises(AssertionError) as refused:
        call(client)

    assert complaint in str(refused.value)
    assert http.sent == []


def test_every_request_the_gateway_makes_has_a_route_of_the_sdk() -> None:
    """The checker knows each route the gateway calls (an unknown route fails too)."""
    assert stripe_params.problems("POST", "/v1/unknown_things", {}) == [
        "POST /v1/unknown_things: no SDK parameters are known for this route"
    ]
    assert (
        stripe_params.problems(
            "POST",
            f"/v1/subscriptions/{SUB}",
            {"items[0][id]": SI, "items[0][price]": GROWTH, "cancel_at": "", "metadata[tenant]": "acme"},
        )
        == []
    )


# --- the pin ------------------------------------------------------------------------------------------


def test_pinned_api_version_is_the_installed_sdks_own() -> None:
    # The mapping reads this version's shapes; an SDK upgrade that moves the version must move the pin
    # (and a look at the changelog) in the same change.
    assert PINNED_API_VERSION == stripe.api_version == "2026-10-28.endive"


def test_requests_name_the_pinned_version_not_the_sdks_default(http, monkeypatch) -> None:
    # The pin equals the SDK's default today, so only a different pin shows it is what is sent.
    monkeypatch.setattr(stripe_gateway, "PINNED_API_VERSION", "2099-01-01.pinned")
    gateway = StripeGateway(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, http_client=http)
    http.answer("GET", f"/v1/subscriptions/{SUB}", fixture("subscription"))

    gateway.retrieve_subscription(SUB)

    assert http.sent[0].headers["Stripe-Version"] == "2099-01-01.pinned"


def test_a_call_gives_up_well_inside_gunicorns_60_seconds() -> None:
    """Issue 7, defect 9 (failed before the fix: the SDK's default client waits 80 s a try, so a
    request could outlast gunicorn's 60 s worker timeout). Our client waits at most STRIPE_TIMEOUT
    seconds a try (connect, then read), and the retries with the SDK's backoff add up to well under
    the worker's timeout."""
    from django.conf import settings

    gateway = StripeGateway(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET)

    client = gateway.http_client
    assert isinstance(client, stripe_gateway.StripeHTTPClient)
    assert client._timeout == (stripe_gateway.CONNECT_TIMEOUT, settings.STRIPE_TIMEOUT) == (5, 10)
    assert gateway.max_network_retries == settings.STRIPE_MAX_NETWORK_RETRIES == 2
    # Every try at its timeout, every backoff at its longest (0.5 s, then 1 s, capped at 5 s).
    worst = stripe_gateway.worst_case_seconds(timeout=10, retries=2)
    assert worst == 3 * (5 + 10) + 0.5 + 1.0 == 46.5
    assert worst < 60


def test_a_rate_limited_request_is_retried_with_backoff_and_the_same_key(gateway, http) -> None:
    """Issue 7, defect 9 (failed before the fix: the SDK retries a 429 only when Stripe's
    Stripe-Should-Retry header asks for it). A 429 (rate limit, lock timeout) is tried again after
    the SDK's backoff, with the same Idempotency-Key, so the retry cannot create a second object.
    https://docs.stripe.com/rate-limits#handling-limiting-gracefully"""
    limited = {
        "error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests."}
    }
    http.answer("POST", "/v1/customers", limited, status=429)
    http.answer("POST", "/v1/customers", fixture("customer"))

    assert gateway.create_customer(email="a@b.c", name="A", metadata={}, idempotency_key="k-1") == CUS

    first, second = http.sent
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == "k-1"
    assert len(http.sleeps) == 1
    assert 0.5 <= http.sleeps[0] <= 1.0


def test_a_webhook_tolerance_of_zero_is_refused() -> None:
    # The SDK reads 0 as "skip the timestamp check", which would accept replayed events forever.
    with pytest.raises(ValueError, match="webhook_tolerance"):
        StripeGateway(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, webhook_tolerance=0)


# --- customers, checkout, portal --------------------------------------------------------------------


def test_create_customer_posts_email_name_metadata_with_our_key(gateway, http) -> None:
    http.answer("POST", "/v1/customers", fixture("customer"))

    customer_id = gateway.create_customer(
        email="billing@acme.test",
        name="Acme Corp",
        metadata={"tenant": "acme"},
        idempotency_key="tenant-7:customer",
    )

    assert customer_id == CUS
    [sent] = http.sent
    assert_sent(sent, "POST", "/v1/customers", idempotency_key="tenant-7:customer")
    assert sent.params == {"email": "billing@acme.test", "name": "Acme Corp", "metadata[tenant]": "acme"}


def test_create_checkout_session_asks_for_a_subscription_to_one_price(gateway, http) -> None:
    http.answer("POST", "/v1/checkout/sessions", fixture("checkout_session"))

    session = gateway.create_checkout_session(
        customer_id=CUS,
        price_id=STARTER,
        success_url="https://allowance.test/t/acme/billing/return?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="https://allowance.test/t/acme/billing/plans",
        client_reference_id="tenant:acme",
        metadata={"tenant": "acme"},
        idempotency_key="checkout-31",
    )

    [sent] = http.sent
    assert_sent(sent, "POST", "/v1/checkout/sessions", idempotency_key="checkout-31")
    assert sent.params == {
        "mode": "subscription",
        "customer": CUS,
        "line_items[0][price]": STARTER,
        "line_items[0][quantity]": "1",
        "success_url": "https://allowance.test/t/acme/billing/return?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://allowance.test/t/acme/billing/plans",
        "client_reference_id": "tenant:acme",
        "metadata[tenant]": "acme",
        "subscription_data[metadata][tenant]": "acme",
    }
    assert session == GatewayCheckoutSession(
        id=CS,
        url=f"https://checkout.stripe.com/c/pay/{CS}",
        status="open",
        customer_id=CUS,
        subscription_id="",
        client_reference_id="tenant:acme",
        metadata={"tenant": "acme"},
    )


def test_retrieve_checkout_session_names_the_subscription_once_complete(gateway, http) -> None:
    complete = fixture("checkout_session") | {
        "status": "complete",
        "payment_status": "paid",
        "subscription": SUB,
        "url": None,
    }
    http.answer("GET", f"/v1/checkout/sessions/{CS}", complete)

    session = gateway.retrieve_checkout_session(CS)

    [sent] = http.sent
    assert_sent(sent, "GET", f"/v1/checkout/sessions/{CS}")
    assert sent.params == {}
    assert (session.status, session.subscription_id, session.url) == ("complete", SUB, "")


def test_create_portal_session_returns_the_portal_url(gateway, http) -> None:
    http.answer("POST", "/v1/billing_portal/sessions", fixture("billing_portal_session"))

    url = gateway.create_portal_session(customer_id=CUS, return_url="https://allowance.test/t/acme/billing")

    assert url == "https://billing.stripe.com/p/session/test_YWNjdF8xUkFsbG93YW5jZQ"
    [sent] = http.sent
    assert_sent(sent, "POST", "/v1/billing_portal/sessions")
    assert sent.params == {"customer": CUS, "return_url": "https://allowance.test/t/acme/billing"}
    # The interface gives no key here; the SDK's own random one still makes its retries safe.
    assert sent.headers["Idempotency-Key"]


def test_the_card_checkout_saved_on_the_subscription_moves_to_the_customer(gateway, http) -> None:
    """Issue 7, defect 2: the subscription's default_payment_method wins over the customer's, which
    is what the portal updates; the card moves to the customer and the subscription's is cleared."""
    http.answer(
        "GET",
        f"/v1/subscriptions/{SUB}",
        fixture("subscription") | {"default_payment_method": "pm_1RCheckout001"},
    )
    http.answer("POST", f"/v1/customers/{CUS}", fixture("customer"))
    http.answer(
        "POST", f"/v1/subscriptions/{SUB}", fixture("subscription") | {"default_payment_method": None}
    )

    sub = gateway.adopt_subscription_card(subscription_id=SUB, idempotency_key="attempt-21")

    _read, customer, subscription = http.sent
    assert_sent(customer, "POST", f"/v1/customers/{CUS}", idempotency_key="attempt-21:customer")
    assert customer.params == {"invoice_settings[default_payment_method]": "pm_1RCheckout001"}
    assert_sent(subscription, "POST", f"/v1/subscriptions/{SUB}", idempotency_key="attempt-21:subscription")
    assert subscription.params == {"default_payment_method": ""}  # an empty string unsets it
    assert sub.default_payment_method == ""


def test_a_subscription_without_its_own_card_is_left_alone(gateway, http) -> None:
    http.answer("GET", f"/v1/subscriptions/{SUB}", fixture("subscription"))

    assert gateway.adopt_subscription_card(subscription_id=SUB, idempotency_key="attempt-22").id == SUB
    assert [sent.method for sent in http.sent] == ["GET"]


def test_pay_invoice_posts_pay_with_the_attempts_key_and_a_decline_is_the_cardholders_message(
    gateway, http
) -> None:
    """https://docs.stripe.com/api/invoices/pay"""
    http.answer("POST", f"/v1/invoices/{INV}/pay", fixture("invoice"))
    assert gateway.pay_invoice(INV, idempotency_key="attempt-23").status == "paid"
    assert_sent(http.sent[0], "POST", f"/v1/invoices/{INV}/pay", idempotency_key="attempt-23")
    assert http.sent[0].params == {}

    http.answer("POST", f"/v1/invoices/{PACK_INV}/pay", card_declined("Your card was declined."), status=402)
    with pytest.raises(GatewayError) as declined:
        gateway.pay_invoice(PACK_INV, idempotency_key="attempt-24")
    assert (declined.value.code, declined.value.message) == ("card_declined", "Your card was declined.")


def test_retrieve_customer_reads_its_default_card_or_that_it_was_deleted(gateway, http) -> None:
    customer = fixture("customer")
    customer["invoice_settings"] = customer.get("invoice_settings") or {}
    customer["invoice_settings"]["default_payment_method"] = "pm_1RPortal0001"
    http.answer("GET", f"/v1/customers/{CUS}", customer)
    found = gateway.retrieve_customer(CUS)
    assert (found.id, found.default_payment_method, found.deleted) == (CUS, "pm_1RPortal0001", False)


def test_a_portal_session_names_our_configuration(gateway, http) -> None:
    """Issue 7, defect 4 (failed before the fix: no configuration was passed, so the Dashboard's
    default decided cancel mode, plan switching and pause)."""
    http.answer("POST", "/v1/billing_portal/sessions", fixture("billing_portal_session"))

    gateway.create_portal_session(
        customer_id=CUS,
        return_url="https://allowance.test/t/acme/billing",
        configuration_id="bpc_1RAllowance01",
    )

    assert http.sent[0].params == {
        "customer": CUS,
        "return_url": "https://allowance.test/t/acme/billing",
        "configuration": "bpc_1RAllowance01",
    }


PORTAL_FEATURES = {
    "features[payment_method_update][enabled]": "true",
    "features[invoice_history][enabled]": "true",
    "features[subscription_cancel][enabled]": "true",
    "features[subscription_cancel][mode]": "at_period_end",
    "features[subscription_cancel][proration_behavior]": "none",
    "features[subscription_update][enabled]": "false",
    "features[subscription_pause][enabled]": "false",
    "features[customer_update][enabled]": "false",
    "business_profile[headline]": "Manage your payment methods, invoices and subscription.",
    "metadata[managed_by]": "allowance",
    "metadata[installation]": "alw-test",
}


def portal_configuration(config_id: str, metadata: dict[str, str]) -> dict[str, Any]:
    return {"id": config_id, "object": "billing_portal.configuration", "metadata": metadata}


def test_configure_portal_creates_the_configuration_when_none_is_ours(gateway, http) -> None:
    """https://docs.stripe.com/api/customer_portal/configurations/create: payment methods and invoice
    history on, cancel at the end of the period, plan switching and pause off."""
    from billing_portal.services import PORTAL

    http.answer(
        "GET",
        "/v1/billing_portal/configurations",
        page(
            [portal_configuration("bpc_1RDefault0001", {})],
            url="/v1/billing_portal/configurations",
            has_more=False,
        ),
    )
    http.answer("POST", "/v1/billing_portal/configurations", portal_configuration("bpc_1RAllowance01", {}))

    found = gateway.configure_portal(
        settings=PORTAL,
        marker={"managed_by": "allowance", "installation": "alw-test"},
        idempotency_key="attempt-31",
    )

    assert found == "bpc_1RAllowance01"
    listing, create = http.sent
    assert listing.params == {"limit": "100"}
    assert_sent(create, "POST", "/v1/billing_portal/configurations", idempotency_key="attempt-31")
    assert create.params == PORTAL_FEATURES


def test_configure_portal_updates_ours_when_it_exists(gateway, http) -> None:
    from billing_portal.services import PORTAL

    ours = portal_configuration("bpc_1RAllowance01", {"managed_by": "allowance", "installation": "alw-test"})
    http.answer(
        "GET",
        "/v1/billing_portal/configurations",
        page([ours], url="/v1/billing_portal/configurations", has_more=False),
    )
    http.answer("POST", "/v1/billing_portal/configurations/bpc_1RAllowance01", ours)

    found = gateway.configure_portal(
        settings=PORTAL,
        marker={"managed_by": "allowance", "installation": "alw-test"},
        idempotency_key="attempt-32",
    )

    assert found == "bpc_1RAllowance01"
    assert http.sent[1].path == "/v1/billing_portal/configurations/bpc_1RAllowance01"
    assert http.sent[1].params == PORTAL_FEATURES


# --- subscriptions ------------------------------------------------------------------------------------


def test_retrieve_subscription_takes_the_period_from_its_item(gateway, http) -> None:
    http.answer("GET", f"/v1/subscriptions/{SUB}", fixture("subscription"))

    sub = gateway.retrieve_subscription(SUB)

    assert_sent(http.sent[0], "GET", f"/v1/subscriptions/{SUB}")
    assert sub.id == SUB
    assert sub.customer_id == CUS
    assert sub.status == "active"
    assert sub.price_id == STARTER
    assert sub.current_period_start == FEB1
    assert sub.current_period_end == MAR1
    assert sub.current_period_start.utcoffset() == timedelta(0)
    assert (sub.cancel_at_period_end, sub.cancel_at, sub.canceled_at, sub.ended_at) == (
        False,
        None,
        None,
        None,
    )
    assert (sub.schedule_id, sub.latest_invoice_id) == ("", INV)
    assert sub.metadata == {"tenant": "acme"}


def test_list_subscriptions_asks_for_every_status_and_reads_every_page(gateway, http) -> None:
    first = fixture("subscription")
    older = fixture("subscription") | {
        "id": "sub_1RAcmeOld0000001",
        "status": "canceled",
        "canceled_at": int(JAN1.timestamp()) - 86400,
        "ended_at": int(JAN1.timestamp()) - 86400,
    }
    http.answer("GET", "/v1/subscriptions", page([first], url="/v1/subscriptions", has_more=True))
    http.answer("GET", "/v1/subscriptions", page([older], url="/v1/subscriptions", has_more=False))

    subs = gateway.list_subscriptions(customer_id=CUS)

    assert [(sub.id, sub.status) for sub in subs] == [(SUB, "active"), ("sub_1RAcmeOld0000001", "canceled")]
    assert subs[1].ended_at == JAN1 - timedelta(days=1)
    one, two = http.sent
    assert_sent(one, "GET", "/v1/subscriptions")
    assert one.params == {"customer": CUS, "status": "all", "limit": "100"}
    assert_sent(two, "GET", "/v1/subscriptions")
    assert two.params == {"customer": CUS, "status": "all", "limit": "100", "starting_after": SUB}


def on_growth(subscription: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(subscription)
    item = changed["items"]["data"][0]
    item["price"] |= {"id": GROWTH, "lookup_key": "agents-growth", "nickname": "Growth", "unit_amount": 19900}
    item["price"]["unit_amount_decimal"] = "19900"
    return changed


def test_change_subscription_price_swaps_the_items_price_and_prorates(gateway, http) -> None:
    http.answer("GET", f"/v1/subscriptions/{SUB}", fixture("subscription"))
    http.answer("POST", f"/v1/subscriptions/{SUB}", on_growth(fixture("subscription")))

    sub = gateway.change_subscription_price(subscription_id=SUB, price_id=GROWTH, idempotency_key="change-12")

    read, update = http.sent
    assert_sent(read, "GET", f"/v1/subscriptions/{SUB}")
    assert_sent(update, "POST", f"/v1/subscriptions/{SUB}", idempotency_key="change-12")
    # The item is named by id, so its price is replaced rather than a second item added; a pending
    # cancellation is not touched.
    assert update.params == {
        "items[0][id]": SI,
        "items[0][price]": GROWTH,
        "proration_behavior": "always_invoice",
        "payment_behavior": "allow_incomplete",  # Stripe's default, said out loud
    }
    assert sub.price_id == GROWTH
    assert sub.current_period_end == MAR1


def test_change_to_the_price_already_held_sends_no_update(gateway, http) -> None:
    http.answer("GET", f"/v1/subscriptions/{SUB}", fixture("subscription"))

    sub = gateway.change_subscription_price(
        subscription_id=SUB, price_id=STARTER, idempotency_key="change-13"
    )

    assert [(sent.method, sent.path) for sent in http.sent] == [("GET", f"/v1/subscriptions/{SUB}")]
    assert sub.price_id == STARTER


def test_preview_price_change_asks_stripe_for_the_invoice_the_change_would_make(gateway, http) -> None:
    """Stripe's create preview invoice endpoint with the same item swap and `always_invoice` as the
    change itself: what Immediately charges now (https://docs.stripe.com/api/invoices/create_preview)."""
    from stripe.params import InvoiceCreatePreviewParams
    from stripe.params._invoice_create_preview_params import (
        InvoiceCreatePreviewParamsSubscriptionDetails,
        InvoiceCreatePreviewParamsSubscriptionDetailsItem,
    )

    http.answer("GET", f"/v1/subscriptions/{SUB}", fixture("subscription"))
    http.answer("POST", "/v1/invoices/create_preview", fixture("invoice_preview"))

    preview = gateway.preview_price_change(subscription_id=SUB, price_id=GROWTH)

    read, ask = http.sent
    assert_sent(read, "GET", f"/v1/subscriptions/{SUB}")
    assert_sent(ask, "POST", "/v1/invoices/create_preview")
    assert ask.params == {
        "subscription": SUB,
        "subscription_details[items][0][id]": SI,
        "subscription_details[items][0][price]": GROWTH,
        "subscription_details[proration_behavior]": "always_invoice",
    }
    # Every key we send is one the SDK's own typed parameters know.
    assert {"subscription", "subscription_details"} <= set(InvoiceCreatePreviewParams.__annotations__)
    assert {"items", "proration_behavior"} <= set(
        InvoiceCreatePreviewParamsSubscriptionDetails.__annotations__
    )
    assert {"id", "price"} <= set(InvoiceCreatePreviewParamsSubscriptionDetailsItem.__annotations__)
    # A preview creates nothing: no key of ours (the SDK's random one only makes its retries safe).
    assert ask.headers["Idempotency-Key"] != ""
    assert preview == GatewayInvoicePreview(
        currency="usd",
        amount_due=7500,
        total=7500,
        lines=(
            GatewayInvoiceLine(
                description="Unused time on Starter after 15 Feb 2026",
                amount=-2450,
                period_start=datetime(2026, 2, 15, 12, tzinfo=UTC),
                period_end=MAR1,
            ),
            GatewayInvoiceLine(
                description="Remaining time on Growth after 15 Feb 2026",
                amount=9950,
                period_start=datetime(2026, 2, 15, 12, tzinfo=UTC),
                period_end=MAR1,
            ),
        ),
    )


def test_preview_at_a_custom_date_asks_for_the_proration_as_of_that_date_s18(gateway, http) -> None:
    """S18, On custom date: the dialog's estimate of what the switch invoices at the date is Stripe's
    preview of the same update with `subscription_details.proration_date` (failed before the fix: the
    gateway could not preview a date at all). https://docs.stripe.com/api/invoices/create_preview"""
    from stripe.params._invoice_create_preview_params import InvoiceCreatePreviewParamsSubscriptionDetails

    at = datetime(2026, 2, 15, 12, tzinfo=UTC)
    http.answer("GET", f"/v1/subscriptions/{SUB}", fixture("subscription"))
    http.answer("POST", "/v1/invoices/create_preview", fixture("invoice_preview"))

    preview = gateway.preview_price_change(subscription_id=SUB, price_id=GROWTH, at=at)

    _read, ask = http.sent
    assert_sent(ask, "POST", "/v1/invoices/create_preview")
    assert ask.params == {
        "subscription": SUB,
        "subscription_details[items][0][id]": SI,
        "subscription_details[items][0][price]": GROWTH,
        "subscription_details[proration_behavior]": "always_invoice",
        "subscription_details[proration_date]": unix(at),
    }
    assert "proration_date" in InvoiceCreatePreviewParamsSubscriptionDetails.__annotations__
    assert (preview.amount_due, [line.period_start for line in preview.lines]) == (7500, [at, at])


def test_preview_of_a_downgrade_is_a_credit_with_nothing_due(gateway, http) -> None:
    credit = fixture("invoice_preview") | {
        "amount_due": 0,
        "amount_remaining": 0,
        "total": -2450,
        "subtotal": -2450,
    }
    http.answer("GET", f"/v1/subscriptions/{SUB}", on_growth(fixture("subscription")))
    http.answer("POST", "/v1/invoices/create_preview", credit)

    preview = gateway.preview_price_change(subscription_id=SUB, price_id=STARTER)

    assert (preview.amount_due, preview.total, preview.credit) == (0, -2450, 2450)


def test_preview_of_the_price_already_held_asks_nothing_more(gateway, http) -> None:
    http.answer("GET", f"/v1/subscriptions/{SUB}", fixture("subscription"))

    preview = gateway.preview_price_change(subscription_id=SUB, price_id=STARTER)

    assert [(sent.method, sent.path) for sent in http.sent] == [("GET", f"/v1/subscriptions/{SUB}")]
    assert preview == GatewayInvoicePreview(currency="usd", amount_due=0, total=0)


def test_a_refused_preview_is_a_gateway_error(gateway, http) -> None:
    http.answer("GET", f"/v1/subscriptions/{SUB}", fixture("subscription"))
    http.answer(
        "POST",
        "/v1/invoices/create_preview",
        invalid_request("No such price: 'price_gone'", code="resource_missing", param="subscription_details"),
        status=400,
    )

    with pytest.raises(GatewayError) as refused:
        gateway.preview_price_change(subscription_id=SUB, price_id="price_gone")

    assert (refused.value.code, refused.value.message) == ("resource_missing", MSG_REFUSED)


def two_phases(schedule: dict[str, Any]) -> dict[str, Any]:
    updated = copy.deepcopy(schedule)
    current = updated["phases"][0]
    updated["phases"].append(
        current
        | {
            "start_date": int(MAR1.timestamp()),
            "end_date": int(MAR1.timestamp()) + 31 * 86400,
            "items": [{"metadata": {}, "price": GROWTH, "quantity": 1}],
        }
    )
    return updated


def test_schedule_subscription_change_keeps_the_current_phase_then_switches_at_the_date(
    gateway, http
) -> None:
    """S18: the current phase restated without a proration, then the new price from the date, its
    phase saying `always_invoice`: Stripe prorates the switch from that moment to the period's end
    and invoices it then, as the immediate change does now (a phase's default, create_prorations,
    would leave the prorations for the renewal; none would not charge the days at all).
    https://docs.stripe.com/api/subscription_schedules/update#update_subscription_schedule-phases-proration_behavior"""
    http.answer("GET", f"/v1/subscriptions/{SUB}", fixture("subscription"))
    http.answer("POST", "/v1/subscription_schedules", fixture("subscription_schedule"))
    http.answer("POST", f"/v1/subscription_schedules/{SCHED}", two_phases(fixture("subscription_schedule")))

    schedule = gateway.schedule_subscription_change(
        subscription_id=SUB, price_id=GROWTH, at=MAR1, idempotency_key="scheduled-change-5"
    )

    assert schedule == GatewaySchedule(id=SCHED, subscription_id=SUB, status="active")
    read, create, update = http.sent
    assert_sent(read, "GET", f"/v1/subscriptions/{SUB}")  # no schedule holds it already
    assert_sent(create, "POST", "/v1/subscription_schedules", idempotency_key="scheduled-change-5:create")
    assert create.params == {"from_subscription": SUB}
    assert_sent(
        update, "POST", f"/v1/subscription_schedules/{SCHED}", idempotency_key="scheduled-change-5:update"
    )
    assert update.params == {
        "phases[0][items][0][price]": STARTER,
        "phases[0][items][0][quantity]": "1",
        "phases[0][currency]": "usd",
        "phases[0][proration_behavior]": "none",
        "phases[0][start_date]": unix(FEB1),  # the current phase's own start, as Stripe requires
        "phases[0][end_date]": unix(MAR1),
        "phases[1][items][0][price]": GROWTH,
        "phases[1][items][0][quantity]": "1",
        "phases[1][currency]": "usd",
        # S18: the switch is prorated and invoiced at the date (failed before the fix: "none").
        "phases[1][proration_behavior]": "always_invoice",
        "phases[1][start_date]": unix(MAR1),
        "end_behavior": "release",
        "proration_behavior": "none",
        "metadata[managed_by]": "allowance",
    }


def test_restating_the_current_phase_keeps_its_settings_and_says_how_to_prorate(gateway, http) -> None:
    """Issue 7, defect 6 (failed before the fix: the restated phase carried only price and quantity,
    so the update dropped the phase's card, discounts, tax rates and metadata). The current phase is
    copied unchanged and the new one inherits its settings; proration is said, not defaulted: none for
    restating the current phase, always_invoice when the new price starts (S18: the switch is
    prorated and invoiced at its date, as the plan-change dialog says).
    https://docs.stripe.com/billing/subscriptions/subscription-schedules#updating"""
    made = fixture("subscription_schedule")
    made["phases"][0] |= {
        "default_payment_method": "pm_1RAcmeCard000001",
        "discounts": [{"coupon": "co_1RLoyalty", "discount": None, "promotion_code": None}],
        "default_tax_rates": [{"id": "txr_1RVat20", "object": "tax_rate", "percentage": 20.0}],
        "metadata": {"contract": "ref-9"},
        "collection_method": "charge_automatically",
        "invoice_settings": {"account_tax_ids": None, "days_until_due": None, "issuer": {"type": "self"}},
        "description": "Agents for Acme",
        "items": [
            {
                "metadata": {"seat": "1"},
                "price": {"id": STARTER, "object": "price"},
                "quantity": 1,
                "tax_rates": [{"id": "txr_1RVat20", "object": "tax_rate"}],
                "discounts": [],
            }
        ],
    }
    http.answer("GET", f"/v1/subscriptions/{SUB}", fixture("subscription"))
    http.answer("POST", "/v1/subscription_schedules", made)
    http.answer("POST", f"/v1/subscription_schedules/{SCHED}", two_phases(made))

    gateway.schedule_subscription_change(
        subscription_id=SUB, price_id=GROWTH, at=MAR1, idempotency_key="scheduled-change-9"
    )

    update = http.sent[2]
    kept = {
        "default_payment_method": "pm_1RAcmeCard000001",
        "discounts[0][coupon]": "co_1RLoyalty",
        "default_tax_rates[0]": "txr_1RVat20",
        "metadata[contract]": "ref-9",
        "collection_method": "charge_automatically",
        "currency": "usd",
        "invoice_settings[issuer][type]": "self",
        "description": "Agents for Acme",
        "items[0][metadata][seat]": "1",
        "items[0][quantity]": "1",
        "items[0][tax_rates][0]": "txr_1RVat20",
        "proration_behavior": "none",
    }
    assert update.params == {
        **{
            f"phases[0][{key.split('[')[0]}]{key[len(key.split('[')[0]) :]}": value
            for key, value in kept.items()
        },
        "phases[0][items][0][price]": STARTER,
        "phases[0][start_date]": unix(FEB1),
        "phases[0][end_date]": unix(MAR1),
        **{
            f"phases[1][{key.split('[')[0]}]{key[len(key.split('[')[0]) :]}": value
            for key, value in kept.items()
        },
        "phases[1][items][0][price]": GROWTH,
        "phases[1][start_date]": unix(MAR1),
        "phases[1][proration_behavior]": "always_invoice",
        "end_behavior": "release",
        "proration_behavior": "none",
        "metadata[managed_by]": "allowance",
    }


def test_a_refused_schedule_update_releases_the_schedule_it_made(gateway, http) -> None:
    http.answer("GET", f"/v1/subscriptions/{SUB}", fixture("subscription"))
    http.answer("POST", "/v1/subscription_schedules", fixture("subscription_schedule"))
    http.answer(
        "POST",
        f"/v1/subscription_schedules/{SCHED}",
        invalid_request("The phase end date must be after its start date.", code="parameter_invalid_integer"),
        status=400,
    )
    released = fixture("subscription_schedule") | {"status": "released", "subscription": None}
    http.answer("POST", f"/v1/subscription_schedules/{SCHED}/release", released)

    with pytest.raises(GatewayError) as refused:
        gateway.schedule_subscription_change(
            subscription_id=SUB, price_id=GROWTH, at=JAN1, idempotency_key="scheduled-change-6"
        )

    assert refused.value.message == MSG_REFUSED
    assert refused.value.code == "parameter_invalid_integer"
    assert [(sent.method, sent.path) for sent in http.sent] == [
        ("GET", f"/v1/subscriptions/{SUB}"),
        ("POST", "/v1/subscription_schedules"),
        ("POST", f"/v1/subscription_schedules/{SCHED}"),
        ("POST", f"/v1/subscription_schedules/{SCHED}/release"),
    ]
    assert_sent(
        http.sent[3],
        "POST",
        f"/v1/subscription_schedules/{SCHED}/release",
        idempotency_key="scheduled-change-6:undo",
    )


def test_a_schedule_update_that_fails_for_any_reason_releases_the_schedule_it_made(gateway, http) -> None:
    """Issue 7, defect 5 (failed before the fix: after a 429 or a network error the half-made schedule
    was left "for the retry", but a retry is a new attempt with a new key, which would find the
    subscription held by it). Whatever the failure, the schedule this attempt made is released."""
    http.answer("GET", f"/v1/subscriptions/{SUB}", fixture("subscription"))
    http.answer("POST", "/v1/subscription_schedules", fixture("subscription_schedule"))
    http.answer(
        "POST",
        f"/v1/subscription_schedules/{SCHED}",
        {"error": {"type": "rate_limit_error", "message": "Too many requests."}},
        status=429,
    )
    released = fixture("subscription_schedule") | {"status": "released", "subscription": None}
    http.answer("POST", f"/v1/subscription_schedules/{SCHED}/release", released)

    with pytest.raises(GatewayError) as failed:
        gateway.schedule_subscription_change(
            subscription_id=SUB, price_id=GROWTH, at=MAR1, idempotency_key="scheduled-change-7"
        )

    assert failed.value.message == MSG_UNREACHABLE
    # The first try and the SDK's two retries, with the backoff between them; then the release.
    assert [sent.path for sent in http.sent] == [
        f"/v1/subscriptions/{SUB}",
        "/v1/subscription_schedules",
        f"/v1/subscription_schedules/{SCHED}",
        f"/v1/subscription_schedules/{SCHED}",
        f"/v1/subscription_schedules/{SCHED}",
        f"/v1/subscription_schedules/{SCHED}/release",
    ]
    assert len(http.sleeps) == 2
    assert http.sent[-1].headers["Idempotency-Key"] == "scheduled-change-7:undo"


def held_by(schedule_id: str) -> dict[str, Any]:
    return fixture("subscription") | {"schedule": schedule_id}


def test_a_leftover_of_a_failed_attempt_is_released_before_a_new_schedule_is_made(gateway, http) -> None:
    """Issue 7, defect 5 (failed before the fix: the subscription's schedule was not looked at, and
    Stripe refuses a second one). A schedule with only the current phase and no settings of ours is
    what a failed attempt leaves (made from the subscription, never updated): released first."""
    leftover = fixture("subscription_schedule") | {"id": "sub_sched_1RLeftover0001"}
    http.answer("GET", f"/v1/subscriptions/{SUB}", held_by("sub_sched_1RLeftover0001"))
    http.answer("GET", "/v1/subscription_schedules/sub_sched_1RLeftover0001", leftover)
    http.answer(
        "POST",
        "/v1/subscription_schedules/sub_sched_1RLeftover0001/release",
        leftover | {"status": "released", "subscription": None},
    )
    http.answer("POST", "/v1/subscription_schedules", fixture("subscription_schedule"))
    http.answer("POST", f"/v1/subscription_schedules/{SCHED}", two_phases(fixture("subscription_schedule")))

    schedule = gateway.schedule_subscription_change(
        subscription_id=SUB, price_id=GROWTH, at=MAR1, idempotency_key="attempt-12"
    )

    assert schedule.id == SCHED
    assert [(sent.method, sent.path) for sent in http.sent] == [
        ("GET", f"/v1/subscriptions/{SUB}"),
        ("GET", "/v1/subscription_schedules/sub_sched_1RLeftover0001"),
        ("POST", "/v1/subscription_schedules/sub_sched_1RLeftover0001/release"),
        ("POST", "/v1/subscription_schedules"),
        ("POST", f"/v1/subscription_schedules/{SCHED}"),
    ]
    assert http.sent[2].headers["Idempotency-Key"] == "attempt-12:release-leftover"


def test_our_own_schedule_for_the_same_change_is_taken_as_it_is(gateway, http) -> None:
    """An attempt whose answer was lost (the call succeeded, our commit did not) left a complete
    schedule of ours for the very change asked again: it is the answer, nothing is made twice."""
    ours = two_phases(fixture("subscription_schedule")) | {"metadata": {"managed_by": "allowance"}}
    ours["phases"][1]["start_date"] = int(MAR1.timestamp())
    http.answer("GET", f"/v1/subscriptions/{SUB}", held_by(SCHED))
    http.answer("GET", f"/v1/subscription_schedules/{SCHED}", ours)

    schedule = gateway.schedule_subscription_change(
        subscription_id=SUB, price_id=GROWTH, at=MAR1, idempotency_key="attempt-13"
    )

    assert schedule == GatewaySchedule(id=SCHED, subscription_id=SUB, status="active")
    assert [sent.method for sent in http.sent] == ["GET", "GET"]


def test_a_schedule_made_outside_allowance_is_left_alone_and_the_change_refused(gateway, http) -> None:
    """A schedule with phases of its own and no mark of ours was made by someone else (the
    Dashboard, another integration): not ours to release. Stripe would refuse a second one."""
    foreign = two_phases(fixture("subscription_schedule")) | {"id": "sub_sched_1RDashboard001"}
    http.answer("GET", f"/v1/subscriptions/{SUB}", held_by("sub_sched_1RDashboard001"))
    http.answer("GET", "/v1/subscription_schedules/sub_sched_1RDashboard001", foreign)

    with pytest.raises(GatewayError) as refused:
        gateway.schedule_subscription_change(
            subscription_id=SUB, price_id=GROWTH, at=MAR1, idempotency_key="attempt-14"
        )

    assert refused.value.code == "subscription_schedule_exists"
    assert refused.value.message == (
        "This subscription already has a schedule made outside Allowance. "
        "Release it at the payment provider first."
    )
    assert [sent.method for sent in http.sent] == ["GET", "GET"]


def test_schedule_subscription_change_refuses_a_naive_datetime(gateway, http) -> None:
    with pytest.raises(ValueError, match="aware"):
        gateway.schedule_subscription_change(
            subscription_id=SUB,
            price_id=GROWTH,
            at=datetime(2026, 3, 1),
            idempotency_key="scheduled-change-8",
        )
    assert http.sent == []


def test_release_schedule_posts_release_with_our_key(gateway, http) -> None:
    released = fixture("subscription_schedule") | {
        "status": "released",
        "subscription": None,
        "released_subscription": SUB,
        "released_at": 1770100000,
    }
    http.answer("POST", f"/v1/subscription_schedules/{SCHED}/release", released)

    gateway.release_schedule(SCHED, idempotency_key="scheduled-change-5:release")

    [sent] = http.sent
    assert_sent(
        sent,
        "POST",
        f"/v1/subscription_schedules/{SCHED}/release",
        idempotency_key="scheduled-change-5:release",
    )
    assert sent.params == {}


def test_retrieve_schedule_gets_the_schedule_and_maps_its_status(gateway, http) -> None:
    """The schedule webhooks re-read the schedule: a GET, no parameters, no idempotency key."""
    http.answer("GET", f"/v1/subscription_schedules/{SCHED}", fixture("subscription_schedule"))

    schedule = gateway.retrieve_schedule(SCHED)

    [sent] = http.sent
    assert_sent(sent, "GET", f"/v1/subscription_schedules/{SCHED}")
    assert sent.params == {}
    assert schedule == GatewaySchedule(id=SCHED, subscription_id=SUB, status="active")


@pytest.mark.parametrize("status", ["released", "canceled", "completed"])
def test_retrieve_schedule_of_an_ended_schedule_still_names_its_subscription(gateway, http, status) -> None:
    """A released schedule's `subscription` is null; `released_subscription` names it
    (https://docs.stripe.com/api/subscription_schedules/object#subscription_schedule_object-released_subscription)."""
    ended = fixture("subscription_schedule") | {
        "status": status,
        "subscription": None if status == "released" else SUB,
        "released_subscription": SUB if status == "released" else None,
        "released_at": 1770100000 if status == "released" else None,
    }
    http.answer("GET", f"/v1/subscription_schedules/{SCHED}", ended)

    assert gateway.retrieve_schedule(SCHED) == GatewaySchedule(id=SCHED, subscription_id=SUB, status=status)


def test_retrieve_schedule_of_an_unknown_schedule_is_a_refusal_with_stripes_code(gateway, http) -> None:
    http.answer(
        "GET",
        f"/v1/subscription_schedules/{SCHED}",
        invalid_request(f"No such subscription_schedule: '{SCHED}'", code="resource_missing", param="id"),
        status=404,
    )

    with pytest.raises(GatewayError) as refused:
        gateway.retrieve_schedule(SCHED)

    assert (refused.value.message, refused.value.code) == (MSG_REFUSED, "resource_missing")


def test_cancel_at_period_end_sets_the_flag_and_the_subscription_runs_on(gateway, http) -> None:
    http.answer("POST", f"/v1/subscriptions/{SUB}", fixture("subscription") | {"cancel_at_period_end": True})

    sub = gateway.cancel_subscription(subscription_id=SUB, at_period_end=True, idempotency_key="cancel-3")

    [sent] = http.sent
    assert_sent(sent, "POST", f"/v1/subscriptions/{SUB}", idempotency_key="cancel-3")
    assert sent.params == {"cancel_at_period_end": "true"}
    assert (sub.status, sub.cancel_at_period_end, sub.current_period_end) == ("active", True, MAR1)


def test_cancel_now_deletes_the_subscription(gateway, http) -> None:
    ended = int(datetime(2026, 2, 10, 12, tzinfo=UTC).timestamp())
    http.answer(
        "DELETE",
        f"/v1/subscriptions/{SUB}",
        fixture("subscription") | {"status": "canceled", "canceled_at": ended, "ended_at": ended},
    )

    sub = gateway.cancel_subscription(subscription_id=SUB, at_period_end=False, idempotency_key="cancel-4")

    [sent] = http.sent
    assert_sent(sent, "DELETE", f"/v1/subscriptions/{SUB}", idempotency_key="cancel-4")
    assert sent.params == {}
    assert sub.status == "canceled"
    assert sub.ended_at == sub.canceled_at == datetime(2026, 2, 10, 12, tzinfo=UTC)


def test_resume_sets_cancel_at_period_end_back_to_false_with_our_key(gateway, http) -> None:
    """docs.stripe.com/billing/subscriptions/cancel: reactivate by updating cancel_at_period_end to false."""
    canceled = fixture("subscription") | {
        "cancel_at_period_end": True,
        "cancel_at": int(MAR1.timestamp()),
        "canceled_at": int(FEB1.timestamp()) + 86400,
    }
    http.answer("GET", f"/v1/subscriptions/{SUB}", canceled)
    http.answer("POST", f"/v1/subscriptions/{SUB}", fixture("subscription"))

    sub = gateway.resume_subscription(subscription_id=SUB, idempotency_key="resume-7:1770000000.000000")

    read, update = http.sent
    assert_sent(read, "GET", f"/v1/subscriptions/{SUB}")
    assert_sent(update, "POST", f"/v1/subscriptions/{SUB}", idempotency_key="resume-7:1770000000.000000")
    assert update.params == {"cancel_at_period_end": "false"}
    assert (sub.status, sub.cancel_at_period_end, sub.cancel_at, sub.canceled_at) == (
        "active",
        False,
        None,
        None,
    )
    assert sub.current_period_end == MAR1


def test_resume_of_a_cancellation_set_as_a_date_unsets_the_date(gateway, http) -> None:
    http.answer(
        "GET", f"/v1/subscriptions/{SUB}", fixture("subscription") | {"cancel_at": int(MAR1.timestamp())}
    )
    http.answer("POST", f"/v1/subscriptions/{SUB}", fixture("subscription"))

    sub = gateway.resume_subscription(subscription_id=SUB, idempotency_key="resume-8")

    update = http.sent[1]
    assert_sent(update, "POST", f"/v1/subscriptions/{SUB}", idempotency_key="resume-8")
    assert update.params == {"cancel_at": ""}  # an empty string unsets a parameter
    assert sub.cancel_at is None


def test_resume_of_a_subscription_that_is_not_canceled_sends_no_update(gateway, http) -> None:
    http.answer("GET", f"/v1/subscriptions/{SUB}", fixture("subscription"))

    sub = gateway.resume_subscription(subscription_id=SUB, idempotency_key="resume-9")

    assert [(sent.method, sent.path) for sent in http.sent] == [("GET", f"/v1/subscriptions/{SUB}")]
    assert (sub.status, sub.cancel_at_period_end) == ("active", False)


def test_an_ended_subscription_cannot_be_resumed(gateway, http) -> None:
    ended = int(datetime(2026, 2, 10, 12, tzinfo=UTC).timestamp())
    http.answer(
        "GET",
        f"/v1/subscriptions/{SUB}",
        fixture("subscription") | {"status": "canceled", "canceled_at": ended, "ended_at": ended},
    )

    with pytest.raises(GatewayError) as exc:
        gateway.resume_subscription(subscription_id=SUB, idempotency_key="resume-10")

    assert (exc.value.code, exc.value.message) == (
        "subscription_canceled",
        "A canceled subscription cannot be resumed.",
    )
    assert [sent.method for sent in http.sent] == ["GET"]


# --- invoices -----------------------------------------------------------------------------------------


def test_retrieve_invoice_maps_amounts_tax_dates_lines_and_the_subscription(gateway, http) -> None:
    http.answer("GET", f"/v1/invoices/{INV}", fixture("invoice"))

    invoice = gateway.retrieve_invoice(INV)

    assert_sent(http.sent[0], "GET", f"/v1/invoices/{INV}")
    assert invoice == GatewayInvoice(
        id=INV,
        customer_id=CUS,
        subscription_id=SUB,  # from parent.subscription_details
        number="ACME0001-0002",
        status="paid",
        currency="usd",
        subtotal=4900,
        tax=980,
        total=5880,
        amount_due=5880,
        amount_paid=5880,
        amount_remaining=0,
        created=FEB1,
        period_start=JAN1,
        period_end=FEB1,
        paid_at=datetime(2026, 2, 1, 1, 2, 3, tzinfo=UTC),
        hosted_invoice_url="https://invoice.stripe.com/i/acct_1RAllowance0001/test_YWNjdF8xUkFsbG93YW5jZTAwMDE",
        invoice_pdf="https://pay.stripe.com/invoice/acct_1RAllowance0001/test_YWNjdF8xUkFsbG93YW5jZTAwMDE/pdf",
        billing_reason="subscription_cycle",
        attempt_count=1,
        lines=(
            GatewayInvoiceLine(
                description="1 × Starter (at $49.00 / month)",  # noqa: RUF001  (Stripe's own sign)
                amount=4900,
                quantity=1,
                period_start=FEB1,
                period_end=MAR1,
            ),
        ),
        metadata={},
    )


def test_an_invoice_in_the_older_shape_names_its_subscription_at_the_top() -> None:
    legacy = fixture("invoice") | {"parent": None, "subscription": SUB, "tax": 980}
    del legacy["total_taxes"]

    invoice = invoice_from_stripe(legacy)

    assert (invoice.subscription_id, invoice.tax) == (SUB, 980)


def test_list_invoices_since_a_date_filters_on_created_and_reads_every_page(gateway, http) -> None:
    march = fixture("invoice") | {"id": "in_1RAcmeMar2026001", "created": int(MAR1.timestamp())}
    http.answer("GET", "/v1/invoices", page([march], url="/v1/invoices", has_more=True))
    http.answer("GET", "/v1/invoices", page([fixture("invoice")], url="/v1/invoices", has_more=False))

    invoices = gateway.list_invoices(customer_id=CUS, created_since=FEB1)

    assert [(invoice.id, invoice.created) for invoice in invoices] == [
        ("in_1RAcmeMar2026001", MAR1),
        (INV, FEB1),
    ]
    one, two = http.sent
    assert_sent(one, "GET", "/v1/invoices")
    assert one.params == {"customer": CUS, "created[gte]": unix(FEB1), "limit": "100"}
    assert two.params == {
        "customer": CUS,
        "created[gte]": unix(FEB1),
        "limit": "100",
        "starting_after": "in_1RAcmeMar2026001",
    }


def test_an_invoices_lines_beyond_the_first_page_are_read_through_auto_pagination(gateway, http) -> None:
    """An invoice object carries the first lines only (has_more): the rest come from its lines list,
    page by page (https://docs.stripe.com/api/invoices/invoice_lines)."""
    first_line = fixture("invoice")["lines"]["data"][0]
    more = [
        first_line | {"id": f"il_1RMore{n:010d}", "amount": n, "description": f"Line {n}"} for n in (2, 3, 4)
    ]
    long_invoice = fixture("invoice")
    long_invoice["lines"] = page([first_line], url=f"/v1/invoices/{INV}/lines", has_more=True)
    http.answer("GET", f"/v1/invoices/{INV}", long_invoice)
    http.answer(
        "GET",
        f"/v1/invoices/{INV}/lines",
        page([first_line, more[0]], url=f"/v1/invoices/{INV}/lines", has_more=True),
    )
    http.answer(
        "GET", f"/v1/invoices/{INV}/lines", page(more[1:], url=f"/v1/invoices/{INV}/lines", has_more=False)
    )

    invoice = gateway.retrieve_invoice(INV)

    assert [line.description for line in invoice.lines] == [
        first_line["description"],
        "Line 2",
        "Line 3",
        "Line 4",
    ]
    _read, one, two = http.sent
    assert one.params == {"limit": "100"}
    assert two.params == {"limit": "100", "starting_after": "il_1RMore0000000002"}


def test_list_invoices_without_a_date_sends_no_created_filter(gateway, http) -> None:
    http.answer("GET", "/v1/invoices", page([], url="/v1/invoices", has_more=False))

    assert gateway.list_invoices(customer_id=CUS) == []
    assert http.sent[0].params == {"customer": CUS, "limit": "100"}


PACK_CREATED = 1770638400  # 2026-02-09 12:00 UTC


def pack_invoice(status: str) -> dict[str, Any]:
    """The one-off invoice for an extra pack, as Stripe returns it at each step."""
    invoice = fixture("invoice") | {
        "id": PACK_INV,
        "billing_reason": "manual",
        "created": PACK_CREATED,
        "period_start": PACK_CREATED,
        "period_end": PACK_CREATED,
        "parent": None,
        "metadata": {"tenant": "acme", "extra_pack": "42"},
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "total": 0,
        "total_excluding_tax": 0,
        "total_taxes": [],
        "amount_due": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "attempt_count": 0,
        "attempted": False,
        "status": "draft",
        "number": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "lines": page([], url=f"/v1/invoices/{PACK_INV}/lines", has_more=False),
    }
    if status == "draft":
        return invoice
    line = copy.deepcopy(fixture("invoice")["lines"]["data"][0]) | {
        "id": "il_1RAcmePack000001",
        "invoice": PACK_INV,
        "amount": 1500,
        "subtotal": 1500,
        "description": "Extra pack: 1,000 AI credits",
        "period": {"start": PACK_CREATED, "end": PACK_CREATED},
        "parent": {
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": "ii_1RAcmePack000001",
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": None,
            },
            "subscription_item_details": None,
        },
    }
    invoice |= {
        "status": "open",
        "number": "ACME0001-0003",
        "subtotal": 1500,
        "subtotal_excluding_tax": 1500,
        "total": 1500,
        "total_excluding_tax": 1500,
        "amount_due": 1500,
        "amount_remaining": 1500,
        "auto_advance": True,
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1RAllowance0001/test_UGFjazQy",
        "invoice_pdf": "https://pay.stripe.com/invoice/acct_1RAllowance0001/test_UGFjazQy/pdf",
        "status_transitions": invoice["status_transitions"] | {"finalized_at": PACK_CREATED + 1},
        "lines": page([line], url=f"/v1/invoices/{PACK_INV}/lines", has_more=False),
    }
    if status == "open":
        return invoice
    return invoice | {
        "status": "paid",
        "amount_paid": 1500,
        "amount_remaining": 0,
        "attempt_count": 1,
        "attempted": True,
        "status_transitions": invoice["status_transitions"] | {"paid_at": PACK_CREATED + 2},
    }


def charge_pack(gateway: StripeGateway) -> GatewayInvoice:
    return gateway.charge_one_off(
        customer_id=CUS,
        amount=1500,
        currency="usd",
        description="Extra pack: 1,000 AI credits",
        metadata={"tenant": "acme", "extra_pack": "42"},
        idempotency_key="extra-pack-42",
    )


def test_charge_one_off_invoices_exactly_the_one_item_and_collects_it_now(gateway, http) -> None:
    http.answer("POST", "/v1/invoices", pack_invoice("draft"))
    http.answer("POST", "/v1/invoiceitems", fixture("invoiceitem"))
    http.answer("POST", f"/v1/invoices/{PACK_INV}/finalize", pack_invoice("open"))
    http.answer("POST", f"/v1/invoices/{PACK_INV}/pay", pack_invoice("paid"))

    invoice = charge_pack(gateway)

    create, item, finalize, pay = http.sent
    assert_sent(create, "POST", "/v1/invoices", idempotency_key="extra-pack-42:invoice")
    assert create.params == {
        "customer": CUS,
        "currency": "usd",
        "collection_method": "charge_automatically",
        "auto_advance": "false",
        # Not the customer's other pending items (a plan change's prorations wait for the renewal).
        "pending_invoice_items_behavior": "exclude",
        "description": "Extra pack: 1,000 AI credits",
        "metadata[tenant]": "acme",
        "metadata[extra_pack]": "42",
    }
    assert_sent(item, "POST", "/v1/invoiceitems", idempotency_key="extra-pack-42:item")
    assert item.params == {
        "customer": CUS,
        "invoice": PACK_INV,
        "amount": "1500",
        "currency": "usd",
        "description": "Extra pack: 1,000 AI credits",
        "metadata[tenant]": "acme",
        "metadata[extra_pack]": "42",
    }
    assert_sent(
        finalize, "POST", f"/v1/invoices/{PACK_INV}/finalize", idempotency_key="extra-pack-42:finalize"
    )
    assert finalize.params == {"auto_advance": "true"}
    assert_sent(pay, "POST", f"/v1/invoices/{PACK_INV}/pay", idempotency_key="extra-pack-42:pay")
    assert pay.params == {}

    assert (invoice.id, invoice.status, invoice.subscription_id, invoice.billing_reason) == (
        PACK_INV,
        "paid",
        "",
        "manual",
    )
    assert (invoice.total, invoice.amount_paid, invoice.amount_remaining, invoice.tax) == (1500, 1500, 0, 0)
    assert invoice.paid_at == datetime.fromtimestamp(PACK_CREATED + 2, tz=UTC)
    assert invoice.lines == (
        GatewayInvoiceLine(
            description="Extra pack: 1,000 AI credits",
            amount=1500,
            quantity=1,
            period_start=datetime(2026, 2, 9, 12, tzinfo=UTC),
            period_end=datetime(2026, 2, 9, 12, tzinfo=UTC),
        ),
    )
    assert invoice.metadata == {"tenant": "acme", "extra_pack": "42"}


def test_charge_one_off_settled_by_the_customer_balance_at_finalize_is_not_paid_again(gateway, http) -> None:
    http.answer("POST", "/v1/invoices", pack_invoice("draft"))
    http.answer("POST", "/v1/invoiceitems", fixture("invoiceitem"))
    http.answer("POST", f"/v1/invoices/{PACK_INV}/finalize", pack_invoice("paid"))

    invoice = charge_pack(gateway)

    assert invoice.status == "paid"
    assert [sent.path for sent in http.sent] == [
        "/v1/invoices",
        "/v1/invoiceitems",
        f"/v1/invoices/{PACK_INV}/finalize",
    ]


def test_a_declined_card_is_a_gateway_error_with_stripes_message_for_the_cardholder(gateway, http) -> None:
    http.answer("POST", "/v1/invoices", pack_invoice("draft"))
    http.answer("POST", "/v1/invoiceitems", fixture("invoiceitem"))
    http.answer("POST", f"/v1/invoices/{PACK_INV}/finalize", pack_invoice("open"))
    http.answer("POST", f"/v1/invoices/{PACK_INV}/pay", card_declined(), status=402)

    with pytest.raises(GatewayError) as declined:
        charge_pack(gateway)

    assert declined.value.message == "Your card has insufficient funds."
    assert declined.value.code == "card_declined"
    assert isinstance(declined.value.__cause__, stripe.CardError)
    assert len(http.sent) == 4  # a decline is an answer, not a reason to retry


# --- errors -------------------------------------------------------------------------------------------


def test_a_missing_object_is_a_refusal_that_keeps_stripes_code(gateway, http) -> None:
    http.answer(
        "GET",
        f"/v1/invoices/{INV}",
        invalid_request(f"No such invoice: '{INV}'", code="resource_missing", param="id"),
        status=404,
    )

    with pytest.raises(GatewayError) as refused:
        gateway.retrieve_invoice(INV)

    assert (refused.value.message, refused.value.code) == (MSG_REFUSED, "resource_missing")
    assert INV not in refused.value.message  # Stripe's own wording stays in the logs


def test_a_network_failure_is_reported_as_unreachable(gateway, http) -> None:
    http.fail(
        "GET", f"/v1/subscriptions/{SUB}", stripe.APIConnectionError("Connection refused", should_retry=False)
    )

    with pytest.raises(GatewayError) as failed:
        gateway.retrieve_subscription(SUB)

    assert failed.value.message == MSG_UNREACHABLE
    assert failed.value.message == "The payment provider could not be reached. Try again in a minute."


# --- webhooks -----------------------------------------------------------------------------------------

NOW = datetime(2026, 2, 1, 1, 2, 10, tzinfo=UTC)


def signed(payload: bytes, *, at: datetime = NOW, secret: str = WEBHOOK_SECRET) -> str:
    """A Stripe-Signature header, made the way Stripe makes it: t=<unix>,v1=HMAC-SHA256(secret, "t.payload")."""
    return stripe.WebhookSignature.generate_signature_header(
        payload.decode(), secret, timestamp=int(at.timestamp())
    )


@pytest.fixture
def invoice_paid() -> bytes:
    return json.dumps(fixture("event")).encode()


@pytest.fixture
def now():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def test_verify_webhook_accepts_a_signed_event_and_maps_it(gateway, http, invoice_paid, now) -> None:
    event = gateway.verify_webhook(payload=invoice_paid, signature_header=signed(invoice_paid))

    assert event == GatewayEvent(
        id="evt_1RAcmeInvPaid0001",
        type="invoice.paid",
        created=datetime(2026, 2, 1, 1, 2, 4, tzinfo=UTC),
        object_type="invoice",
        object_id=INV,
        data=fixture("invoice"),
    )
    assert type(event.data) is dict
    assert http.sent == []  # verifying reads nothing from Stripe


def test_verify_webhook_accepts_an_event_signed_just_inside_the_tolerance(gateway, invoice_paid, now) -> None:
    header = signed(invoice_paid, at=NOW - timedelta(seconds=299))

    assert gateway.verify_webhook(payload=invoice_paid, signature_header=header).id == "evt_1RAcmeInvPaid0001"


def test_verify_webhook_rejects_a_stale_timestamp(gateway, invoice_paid, now) -> None:
    header = signed(invoice_paid, at=NOW - timedelta(seconds=301))

    with pytest.raises(WebhookSignatureError, match="tolerance"):
        gateway.verify_webhook(payload=invoice_paid, signature_header=header)


def test_verify_webhook_rejects_a_signature_made_with_another_secret(gateway, invoice_paid, now) -> None:
    header = signed(invoice_paid, secret="whsec_someone_else")

    with pytest.raises(WebhookSignatureError):
        gateway.verify_webhook(payload=invoice_paid, signature_header=header)


def test_verify_webhook_rejects_a_garbled_signature(gateway, invoice_paid, now) -> None:
    timestamp = int(NOW.timestamp())

    for header in ("", "garbage", f"t={timestamp}", f"t={timestamp},v1={'0' * 64}", f"v1={'0' * 64}"):
        with pytest.raises(WebhookSignatureError):
            gateway.verify_webhook(payload=invoice_paid, signature_header=header)


def test_verify_webhook_rejects_a_payload_with_one_byte_changed(gateway, invoice_paid, now) -> None:
    header = signed(invoice_paid)
    position = invoice_paid.index(b'"amount_paid": 5880') + len(b'"amount_paid": ')
    tampered = invoice_paid[:position] + b"9" + invoice_paid[position + 1 :]
    assert len(tampered) == len(invoice_paid)
    assert tampered != invoice_paid

    with pytest.raises(WebhookSignatureError):
        gateway.verify_webhook(payload=tampered, signature_header=header)


def test_verify_webhook_rejects_a_signed_body_that_is_not_an_event(gateway, now) -> None:
    payload = json.dumps(fixture("invoice")).encode()

    with pytest.raises(WebhookSignatureError):
        gateway.verify_webhook(payload=payload, signature_header=signed(payload))


def test_verify_webhook_uses_the_real_clock_when_time_is_not_frozen(gateway, invoice_paid) -> None:
    fresh = stripe.WebhookSignature.generate_signature_header(invoice_paid.decode(), WEBHOOK_SECRET)
    assert gateway.verify_webhook(payload=invoice_paid, signature_header=fresh).type == "invoice.paid"

    stale_at = int(time.time()) - 3600
    stale = stripe.WebhookSignature.generate_signature_header(invoice_paid.decode(), WEBHOOK_SECRET, stale_at)
    with pytest.raises(WebhookSignatureError):
        gateway.verify_webhook(payload=invoice_paid, signature_header=stale)


# --- the fixtures against Stripe's published objects --------------------------------------------------

FIXTURE_RESOURCES = {
    "customer": "customer",
    "checkout_session": "checkout.session",
    "billing_portal_session": "billing_portal.session",
    "subscription": "subscription",
    "subscription_schedule": "subscription_schedule",
    "invoice": "invoice",
    "invoice_preview": "invoice",
    "invoiceitem": "invoiceitem",
    "event": "event",
    "credit_note": "credit_note",
}


def test_every_fixture_file_is_held_against_the_reference() -> None:
    assert sorted(path.stem for path in FIXTURES.glob("*.json")) == sorted(FIXTURE_RESOURCES)


def keys_outside(
    ours: Mapping[str, Any], real: Mapping[str, Any], resources: Mapping[str, Any], at: str
) -> list[str]:
    """Keys of `ours` that Stripe's example object lacks, at every depth where both sides are objects.
    A nested object of another type than the example's (an event's `data.object`) is held against its
    own resource; an empty example object is a map of free keys (metadata) and is not looked into."""
    kind = ours.get("object")
    if isinstance(kind, str) and kind != real.get("object") and kind in resources:
        real = resources[kind]
    outside = []
    for key, value in ours.items():
        if key not in real:
            outside.append(f"{at}{key}")
            continue
        reference = real[key]
        if (
            isinstance(value, dict) and isinstance(reference, dict) and reference
        ):  # {} is a free map (metadata)
            outside += keys_outside(value, reference, resources, f"{at}{key}.")
        elif (
            isinstance(value, list)
            and isinstance(reference, list)
            and reference
            and isinstance(reference[0], dict)
        ):
            for index, element in enumerate(value):
                if isinstance(element, dict):
                    outside += keys_outside(element, reference[0], resources, f"{at}{key}[{index}].")
    return outside


@pytest.mark.skipif(not REFERENCE.exists(), reason=f"Stripe's reference objects are not at {REFERENCE}")
@pytest.mark.parametrize(("name", "resource"), FIXTURE_RESOURCES.items())
def test_fixture_has_only_keys_stripes_object_has(name: str, resource: str) -> None:
    resources = json.loads(REFERENCE.read_text())["resources"]
    ours = fixture(name)

    assert ours["object"] == resources[resource]["object"] == resource
    assert keys_outside(ours, resources[resource], resources, "") == []


# --- a subscription paid with the saved card (Subscribe Now, C09/C11) --------------------------------

PLUS = "price_1RAiPlusMonthly01"


def new_subscription(status: str) -> dict[str, Any]:
    """The subscription fixture as `subscriptions.create` answers with default_incomplete."""
    sub = fixture("subscription")
    item = sub["items"]["data"][0]
    item["price"] = item["price"] | {"id": PLUS}
    return sub | {"status": status, "metadata": {"tenant_id": "7", "plan": "ai-plus"}}


def authentication_required(code: str = "authentication_required") -> dict[str, Any]:
    return {
        "error": {
            "type": "card_error",
            "code": code,
            "decline_code": "authentication_required",
            "message": "Your card was declined. This transaction requires authentication.",
        }
    }


def subscribe(gateway: StripeGateway):
    return gateway.create_subscription(
        customer_id=CUS,
        price_id=PLUS,
        metadata={"tenant_id": "7", "plan": "ai-plus"},
        idempotency_key="inst:create_subscription:9:abc",
    )


def test_create_subscription_creates_it_incomplete_then_pays_its_first_invoice_once(gateway, http) -> None:
    """C11: default_incomplete, then one invoices.pay on the customer's saved card; each request
    carries its own key derived from the attempt's."""
    http.answer("POST", "/v1/subscriptions", new_subscription("incomplete"))
    http.answer("POST", f"/v1/invoices/{INV}/pay", fixture("invoice"))
    http.answer("GET", f"/v1/subscriptions/{SUB}", new_subscription("active"))

    sub = subscribe(gateway)

    create, pay, reread = http.sent
    assert_sent(create, "POST", "/v1/subscriptions", idempotency_key="inst:create_subscription:9:abc:create")
    assert create.params == {
        "customer": CUS,
        "items[0][price]": PLUS,
        "items[0][quantity]": "1",
        "collection_method": "charge_automatically",
        "payment_behavior": "default_incomplete",
        "metadata[tenant_id]": "7",
        "metadata[plan]": "ai-plus",
    }
    assert_sent(pay, "POST", f"/v1/invoices/{INV}/pay", idempotency_key="inst:create_subscription:9:abc:pay")
    assert pay.params == {}
    assert_sent(reread, "GET", f"/v1/subscriptions/{SUB}")
    assert (sub.id, sub.status, sub.price_id, sub.latest_invoice_id) == (SUB, "active", PLUS, INV)
    assert sub.metadata == {"tenant_id": "7", "plan": "ai-plus"}


def test_create_subscription_declined_cancels_the_incomplete_subscription_and_says_why(gateway, http) -> None:
    http.answer("POST", "/v1/subscriptions", new_subscription("incomplete"))
    http.answer("POST", f"/v1/invoices/{INV}/pay", card_declined("Your card was declined."), status=402)
    http.answer("DELETE", f"/v1/subscriptions/{SUB}", new_subscription("canceled"))

    with pytest.raises(GatewayError) as declined:
        subscribe(gateway)

    assert (declined.value.code, declined.value.message) == ("card_declined", "Your card was declined.")
    assert [(s.method, s.path) for s in http.sent] == [
        ("POST", "/v1/subscriptions"),
        ("POST", f"/v1/invoices/{INV}/pay"),
        ("DELETE", f"/v1/subscriptions/{SUB}"),
    ]
    assert http.sent[2].headers["Idempotency-Key"] == "inst:create_subscription:9:abc:cancel"


@pytest.mark.parametrize("code", ["authentication_required", "invoice_payment_intent_requires_action"])
def test_create_subscription_needing_3d_secure_returns_it_incomplete_for_the_hosted_invoice_page(
    gateway, http, code
) -> None:
    """Paying an invoice whose payment needs 3D Secure is refused with either code (Stripe's error
    codes); both mean the customer confirms on the invoice's page."""
    http.answer("POST", "/v1/subscriptions", new_subscription("incomplete"))
    http.answer("POST", f"/v1/invoices/{INV}/pay", authentication_required(code), status=402)
    http.answer("GET", f"/v1/subscriptions/{SUB}", new_subscription("incomplete"))

    sub = subscribe(gateway)

    assert (sub.status, sub.latest_invoice_id) == ("incomplete", INV)
    assert [(s.method, s.path) for s in http.sent][-1] == ("GET", f"/v1/subscriptions/{SUB}")
    assert not any(s.method == "DELETE" for s in http.sent)  # kept: the customer confirms it


def test_create_subscription_whose_payment_is_unknown_is_not_canceled(gateway, http) -> None:
    """Stripe unreachable while paying: the payment may have gone through, so the subscription is
    left to its events (or to Stripe's expiry of an unpaid incomplete one), never canceled."""
    http.answer("POST", "/v1/subscriptions", new_subscription("incomplete"))
    http.fail(
        "POST", f"/v1/invoices/{INV}/pay", stripe.APIConnectionError("Connection reset", should_retry=False)
    )

    with pytest.raises(GatewayError) as failed:
        subscribe(gateway)

    assert (failed.value.code, failed.value.message) == ("gateway_unavailable", MSG_UNREACHABLE)
    assert [(s.method, s.path) for s in http.sent] == [
        ("POST", "/v1/subscriptions"),
        ("POST", f"/v1/invoices/{INV}/pay"),
    ]


def test_create_subscription_replayed_after_payment_is_not_paid_again(gateway, http) -> None:
    """A retry of the same attempt: Stripe replays the create (now active); nothing else is sent."""
    http.answer("POST", "/v1/subscriptions", new_subscription("active"))

    sub = subscribe(gateway)

    assert sub.status == "active"
    assert len(http.sent) == 1


# --- voiding an invoice (a declined extra pack is never collected later) -----------------------------


def test_void_invoice_posts_void_with_the_attempts_key_and_maps_the_void_invoice(gateway, http) -> None:
    """https://docs.stripe.com/api/invoices/void: no parameters; the answer is the voided invoice."""
    opened = pack_invoice("open")
    voided = opened | {
        "status": "void",
        "amount_remaining": 0,
        "auto_advance": False,
        "status_transitions": opened["status_transitions"] | {"voided_at": PACK_CREATED + 60},
    }
    http.answer("POST", f"/v1/invoices/{PACK_INV}/void", voided)

    invoice = gateway.void_invoice(PACK_INV, idempotency_key="attempt-31")

    [sent] = http.sent
    assert_sent(sent, "POST", f"/v1/invoices/{PACK_INV}/void", idempotency_key="attempt-31")
    assert sent.params == {}
    assert (invoice.id, invoice.status, invoice.amount_paid, invoice.amount_remaining, invoice.paid_at) == (
        PACK_INV,
        "void",
        0,
        0,
        None,
    )
    assert invoice.metadata == {"tenant": "acme", "extra_pack": "42"}


def test_voiding_a_paid_invoice_is_stripes_refusal_with_its_code(gateway, http) -> None:
    """Only open and uncollectible invoices can be voided
    (https://docs.stripe.com/invoicing/integration/workflow-transitions); Stripe answers an
    invalid request, which is a refusal, not a reason to retry."""
    http.answer(
        "POST",
        f"/v1/invoices/{PACK_INV}/void",
        invalid_request(
            "You can only void an open or uncollectible invoice.", code="status_transition_invalid"
        ),
        status=400,
    )

    with pytest.raises(GatewayError) as refused:
        gateway.void_invoice(PACK_INV, idempotency_key="attempt-32")

    assert (refused.value.code, refused.value.message) == ("status_transition_invalid", MSG_REFUSED)
    assert len(http.sent) == 1


# --- giving back what the customer's credit balance paid (a duplicate's invoice, S15) ------------------


def test_credit_invoice_to_balance_issues_a_credit_note_whose_whole_amount_is_credit_amount(
    gateway, http
) -> None:
    """A refund returns only what a charge collected; the part of an invoice the customer's credit
    balance paid goes back to that balance through a credit note with credit_amount
    (https://docs.stripe.com/api/credit_notes/create): amount and credit_amount are the same, the
    attempt's key is sent, and what was credited is read from the expanded balance transaction."""
    http.answer("POST", "/v1/credit_notes", fixture("credit_note"))

    note = gateway.credit_invoice_to_balance(
        INV,
        amount=1000,
        reason="duplicate",
        memo="A second subscription, canceled: what the credit balance paid goes back to it.",
        metadata={"invoice": INV, "reason": "duplicate_subscription"},
        idempotency_key="inst:credit_to_balance:12:abc",
    )

    [sent] = http.sent
    assert_sent(sent, "POST", "/v1/credit_notes", idempotency_key="inst:credit_to_balance:12:abc")
    assert sent.params == {
        "invoice": INV,
        "amount": "1000",
        "credit_amount": "1000",
        "reason": "duplicate",
        "memo": "A second subscription, canceled: what the credit balance paid goes back to it.",
        "metadata[invoice]": INV,
        "metadata[reason]": "duplicate_subscription",
        "expand[0]": "customer_balance_transaction",
    }
    assert (note.id, note.invoice_id, note.amount, note.credited_to_balance, note.currency) == (
        "cn_1RAcmeDuplicate01",
        INV,
        1000,
        1000,
        "usd",
    )


def test_a_refused_credit_note_is_a_gateway_error_with_stripes_code(gateway, http) -> None:
    http.answer(
        "POST",
        "/v1/credit_notes",
        invalid_request(
            "The credit note amount is too large.", code="parameter_invalid_integer", param="amount"
        ),
        status=400,
    )

    with pytest.raises(GatewayError) as refused:
        gateway.credit_invoice_to_balance(
            INV, amount=999999, reason="duplicate", memo="", metadata={}, idempotency_key="k"
        )

    assert (refused.value.code, refused.value.message) == ("parameter_invalid_integer", MSG_REFUSED)
    assert "memo" not in http.sent[0].params  # an empty memo is not sent


def test_invoice_credited_to_balance_sums_what_its_credit_notes_credited_and_skips_voided_ones(
    gateway, http
) -> None:
    """Read back before a retry gives anything again: every credit note of the invoice, each with
    the balance transaction it made (expanded; negative: a credit), a voided one aside; a note that
    refunded to the card or credited outside Stripe credited nothing to the balance."""
    credited = fixture("credit_note")
    voided = credited | {"id": "cn_1RAcmeVoided00001", "status": "void", "voided_at": 1770640000}
    refund_only = credited | {
        "id": "cn_1RAcmeRefund00001",
        "customer_balance_transaction": None,
        "refunds": [{"amount_refunded": 1000, "refund": "re_1RAcme000001", "payment_record_refund": None}],
    }
    second_page = credited | {
        "id": "cn_1RAcmeDuplicate02",
        "customer_balance_transaction": credited["customer_balance_transaction"] | {"amount": -250},
    }
    http.answer(
        "GET",
        "/v1/credit_notes",
        page([credited, voided, refund_only], url="/v1/credit_notes", has_more=True),
    )
    http.answer("GET", "/v1/credit_notes", page([second_page], url="/v1/credit_notes", has_more=False))

    assert gateway.invoice_credited_to_balance(INV) == 1250

    first, following = http.sent
    assert_sent(first, "GET", "/v1/credit_notes")
    assert first.params == {
        "invoice": INV,
        "limit": "100",
        "expand[0]": "data.customer_balance_transaction",
    }
    assert following.params["starting_after"] == "cn_1RAcmeRefund00001"
