"""No 5xx for anything a client can send (issue 6). Every URL pattern of the project, walked as in
`tests/test_isolation.py` but as the tenant's own admin (so each request would reach its view), is
sent a NUL character in each path parameter, in each query and form field a view reads, in the
headers we read and in an API JSON body: each answer is a 400 (the API's error shape under /api/,
the styled page elsewhere) and nothing changes. Ids far beyond any column's range are a 4xx too.

A NUL never reaches PostgreSQL (which refuses it in text: a DataError, a 500): `RejectNulMiddleware`
answers before any view, session or form runs."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from tests.test_isolation import (  # the sweep's URL walk, fillers and victim objects
    PUBLIC_FILLERS,
    SHARED_FILLERS,
    _fill,
    _snapshot,
    all_routes,
    victim,  # noqa: F401  (a fixture)
)

NUL = "\x00"
NUL_MESSAGE = "The request contains a NUL character, which no field, path or header may hold."
# Every name a view of ours reads from a query string or a form (pages, dialogs, filters, the
# local gateway's stand-ins, sign-up, log-in, invitations, password forms, the admin's search).
FIELDS = [
    "product",
    "status",
    "since",
    "until",
    "page",
    "action",
    "actor",
    "name",
    "email",
    "role",
    "when",
    "custom_date",
    "message",
    "last4",
    "organization",
    "full_name",
    "password",
    "username",
    "new_password1",
    "old_password",
    "next",
    "checkout",
    "q",
    "sort",
    "license",
    "company_type",
    "agreement_type",
    "external_id",
    "clients",
]
# Headers a view or middleware of ours reads.
HEADERS = {
    "HTTP_AUTHORIZATION": "Bearer alw_{nul}",
    "HTTP_STRIPE_SIGNATURE": "t=1,v1={nul}",
    "HTTP_HX_REQUEST": "true{nul}",
    "HTTP_HX_CURRENT_URL": "http://testserver/{nul}",
    "HTTP_REFERER": "http://testserver/{nul}",
    "HTTP_X_FORWARDED_FOR": "203.0.113.7{nul}",
    "HTTP_COOKIE": "sessionid=abc{nul}defghijk",
}


@pytest.fixture
def walk(victim, tenant, admin) -> list[tuple[str, str, dict[str, Any]]]:  # noqa: F811
    """(route name, a URL filled with valid values, the values) for every route."""
    found = []
    for r in all_routes():
        values = {**PUBLIC_FILLERS, **SHARED_FILLERS, **victim["ids"], "slug": tenant.slug}
        found.append((r.name, r.route, {p: values[p] for p in r.params}))
    assert len(found) > 30
    return found


def _assert_refused(label: str, response, path: str) -> None:
    if path.startswith("/api/"):
        # Bad input to the API is a 422 with where it was (DESIGN "API conventions").
        assert response.status_code == 422, f"{label} answered {response.status_code}"
        error = response.json()["error"]
        assert (error["code"], error["message"].endswith(NUL_MESSAGE)) == ("invalid_request", True), label
        assert [d["type"] for d in error["details"]] == ["nul_character"], label
    else:
        assert response.status_code == 400, f"{label} answered {response.status_code}"
        assert NUL_MESSAGE in response.content.decode(), label


def test_a_nul_in_any_path_parameter_query_or_form_field_or_header_is_a_400(walk, tenant, client_for, admin):
    client = client_for(admin)
    before = _snapshot(tenant)
    sent = 0
    for name, route, values in walk:
        url = _fill(route, values)
        for param in values:
            bad = _fill(route, {**values, param: f"{values[param]}{NUL}"})
            for method in ("get", "post"):
                _assert_refused(
                    f"{method.upper()} {name} with a NUL in <{param}>", getattr(client, method)(bad), bad
                )
                sent += 1
        for field in FIELDS:
            label = f"{name}: {field}"
            _assert_refused(f"GET {label}", client.get(url, {field: f"x{NUL}"}), url)
            _assert_refused(f"POST {label}", client.post(url, {field: f"x{NUL}"}), url)
            urlencoded = client.post(url, f"{field}=x%00", content_type="application/x-www-form-urlencoded")
            _assert_refused(f"POST (urlencoded) {label}", urlencoded, url)
            sent += 3
        _assert_refused(f"GET {name}: a NUL in a field's name", client.get(url, {f"na{NUL}me": "x"}), url)
        for header, value in HEADERS.items():
            response = client.get(url, **{header: value.format(nul=NUL)})
            _assert_refused(f"GET {name}: {header}", response, url)
            sent += 1
    assert sent > 2000
    assert _snapshot(tenant) == before


def test_a_nul_in_an_api_json_body_is_a_422_naming_the_field(db):
    for body, loc in (
        (json.dumps({"product": "ai_agents\x00"}), ["body", "product"]),  # the escape \u0000
        ('{"product": "ai_\\u0000agents"}', ["body", "product"]),
        ('{"product": "ai_agents", "note\\u0000": 1}', ["body", "note"]),
        (
            '{"items": [{"name": "\\\\\\u0000"}]}',
            ["body", "items", "0", "name"],
        ),  # escaped backslash, then a NUL
    ):
        response = Client().post("/api/v1/entitlements", body, content_type="application/json")
        assert response.status_code == 422, body
        field = ".".join(loc[1:])
        assert response.json() == {
            "error": {
                "code": "invalid_request",
                "message": f"{field}: {NUL_MESSAGE}",
                "details": [{"type": "nul_character", "loc": loc, "msg": NUL_MESSAGE}],
            }
        }, body


def test_the_text_backslash_u0000_in_a_json_body_is_not_a_nul(db):
    """`"\\\\u0000"` is a backslash followed by the text u0000: the request goes on (to a 405 here)."""
    response = Client().post(
        "/api/v1/entitlements", '{"product": "\\\\u0000"}', content_type="application/json"
    )

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_ids_beyond_any_columns_range_are_not_found(walk, client_for, admin):
    client = client_for(admin)
    int_params = {
        "membership_id",
        "invitation_id",
        "key_id",
        "invoice_id",
        "change_id",
        "client_pk",
        "import_id",
    }
    checked = 0
    for name, route, values in walk:
        for param in int_params & set(values):
            for huge in (2**63, 10**30):
                url = _fill(route, {**values, param: huge})
                for method in ("get", "post"):
                    response = getattr(client, method)(url)
                    assert response.status_code in (404, 405), (
                        f"{method.upper()} {name} {url}: {response.status_code}"
                    )
                    checked += 1
    assert checked >= 20


def test_a_nul_in_a_webhook_body_is_refused_by_the_endpoint_itself(db):
    """Not the middleware: the webhook verifies its signature first (billing_portal/tests/test_webhook_envelope.py)."""
    response = Client().post(
        "/billing/webhooks/stripe/",
        '{"id": "evt_\\u0000"}',
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE="t=1,v1=0",
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_signature"


def test_every_route_of_the_sweep_is_walked(walk):
    names = {name for name, _, _ in walk}
    assert {
        "billing",
        "invoices",
        "invoice_csv",
        "tenant_new",
        "dev_checkout",
        "stripe_webhook",
        "api:api-root",
    } <= names
    assert all(not re.search(r"<\w+", _fill(route, values)) for _, route, values in walk)


# Values at the edges of what a date, a moment or a number field can parse: the year 9999, moments
# that parse but fall outside the years UTC can hold, and integers beyond any column.
# "²": `str.isdigit` says yes, `int()` says no (tenants.text.ascii_digits).
EDGE_VALUES = [
    "9999-12-31",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "99999999999999999999",
    "\u00b2",
]
EDGE_FIELDS = [
    "since", "until", "custom_date", "as_of", "page", "days", "before", "after", "limit", "cursor", "clients",
]  # fmt: skip


def test_edge_dates_and_numbers_in_any_query_or_form_field_are_never_a_5xx(walk, tenant, client_for, admin):
    """Every route, as its own admin: a date in the year 9999, a moment past what UTC holds, a huge
    number, a superscript digit — each is answered (a page, a refusal, a 4xx), never a server error.
    Each value goes in every field at once (a view reads its own; a form checks all of its fields).
    Signed in again whenever a route ended the session (the log-out route): every route after it
    would otherwise be asked as nobody, a redirect to the log-in page with the view never run."""
    client = client_for(admin)
    sent = 0
    for name, route, values in walk:
        url = _fill(route, values)
        for value in EDGE_VALUES:
            for method in ("get", "post"):
                if "_auth_user_id" not in client.session:
                    client.force_login(admin, backend="django.contrib.auth.backends.ModelBackend")
                response = getattr(client, method)(url, dict.fromkeys(EDGE_FIELDS, value))
                assert response.status_code < 500, f"{method.upper()} {name} {value}"
                sent += 1
                if name in ("ai_statistics", "plans_and_licenses") and method == "get":
                    assert response.status_code == 200, f"{name} {value} was not asked as the admin"
    assert sent > 800


@pytest.fixture
def api_auth(tenant, admin) -> dict[str, str]:
    """The test client's keyword for a key of the tenant."""
    from tenants.services import api_key_create

    return {"HTTP_AUTHORIZATION": f"Bearer {api_key_create(tenant=tenant, name='k', actor=admin).secret}"}


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_an_api_moment_outside_what_utc_holds_is_a_422_naming_the_field(tenant, admin, moment):
    """It parses, but in UTC it is in the year 10000 (or 0): refused by the shared `Moment` type
    (tenants/api_fields.py), not a 500 where it is converted."""
    from tenants.services import api_key_create

    client = Client(
        HTTP_AUTHORIZATION=f"Bearer {api_key_create(tenant=tenant, name='edge', actor=admin).secret}"
    )
    answers = {
        "as_of": client.get("/api/v1/credits/ledger", {"as_of": moment}),
        "at": client.post(
            "/api/v1/sessions",
            json.dumps({"conversation_id": "c", "direction": "inbound", "at": moment}),
            content_type="application/json",
        ),
    }
    for field, response in answers.items():
        assert response.status_code == 422, field
        error = response.json()["error"]
        assert (
            error["message"]
            == f"{field.strip()}: Input should be a moment between the years 1 and 9999 in UTC"
        )
        assert [d["type"] for d in error["details"]] == ["datetime_out_of_range"]


@pytest.mark.parametrize("debug", [False, True])
def test_an_api_body_too_large_or_not_json_is_a_clear_error_in_debug_too(settings, debug, api_auth):
    """DEBUG on (make run) answers as production does: never ninja's traceback (a 500) for a body
    over DATA_UPLOAD_MAX_MEMORY_SIZE, whatever its Content-Type, nor the parser's own words."""
    from credits.models import Consumption

    settings.DEBUG = debug
    big = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    for content_type in ("text/plain", "application/octet-stream", "application/json"):
        response = Client().post("/api/v1/credits/consume", big, content_type=content_type, **api_auth)
        assert response.status_code == 413, content_type
        assert response.json()["error"]["code"] == "payload_too_large"
    for body in ("{", "9" * 5000, '{"feature": '):
        response = Client().post("/api/v1/credits/consume", body, content_type="application/json", **api_auth)
        assert (response.status_code, response.json()["error"]) == (
            422,
            {"code": "invalid_request", "message": "The request body is not valid JSON."},
        ), body
    assert not Consumption.objects.exists()


@pytest.mark.parametrize(
    ("path", "field"),
    [("/api/v1/credits/consume", "data"), ("/api/v1/tickets", "payload"), ("/api/v1/sessions", "payload")],
)
@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "7", "null"])
def test_an_api_body_that_is_json_but_not_an_object_is_a_422_naming_no_class(path, field, body, api_auth):
    from credits.models import Consumption
    from licensing.models import Ticket
    from sessions_billing.models import Conversation

    response = Client().post(path, body, content_type="application/json", **api_auth)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    # Neither a schema class (ConsumeIn, TicketIn) nor the view's parameter ("data", "payload").
    assert error["message"] == "The request body should be a JSON object."
    assert error["details"] == [
        {"type": "model_attributes_type", "loc": ["body"], "msg": "The request body should be a JSON object."}
    ]
    assert field not in json.dumps(error)
    assert not Consumption.objects.exists()
    assert not Ticket.objects.exists()
    assert not Conversation.objects.exists()


def test_an_api_moment_given_with_an_offset_is_answered_in_utc(tenant, admin):
    """Times are ISO 8601 in UTC in every answer, whatever offset the client sent: the shared
    `Moment` type converts them, so the first answer and its replay say the same."""
    from datetime import UTC, datetime, timedelta

    from sessions_billing.tests.conftest import paid
    from tenants.services import api_key_create

    paid(tenant)
    client = Client(
        HTTP_AUTHORIZATION=f"Bearer {api_key_create(tenant=tenant, name='k', actor=admin).secret}"
    )
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    sent = at.astimezone(datetime.fromisoformat("2026-01-01T00:00:00+14:00").tzinfo).isoformat()
    assert sent.endswith("+14:00")
    body = json.dumps({"conversation_id": "tz", "direction": "inbound", "at": sent})
    first = client.post("/api/v1/sessions", body, content_type="application/json")
    again = client.post("/api/v1/sessions", body, content_type="application/json")
    assert (first.status_code, again.status_code) == (201, 200)
    expected = at.isoformat().replace("+00:00", "Z")
    assert first.json()["started_at"] == again.json()["started_at"] == expected
    ledger = client.get("/api/v1/credits/ledger", {"as_of": sent})
    assert (ledger.status_code, ledger.json()["as_of"]) == (200, expected)


@pytest.mark.parametrize(
    "char",
    ["\u202e", "\u2066", "\x85", "\t", "\x7f", "\u200b", "\u2028", "\u2060", "\u206a", "\ufeff", "\ufffb"],
)
def test_an_api_id_or_key_with_a_control_character_is_a_422_naming_the_field(char, api_auth):
    """One rule for the ids and keys a client sends (tenants.text): no C0, DEL, C1, or bidirectional
    embedding, override or isolate, which would show the text reordered on the pages, nor an
    invisible format character (a zero-width space, a line separator, a BOM...). Refused
    before anything is stored. (Within the text: licensing trims whitespace, NEL and TAB included,
    around an id.)"""
    from credits.models import Consumption, Hold
    from licensing.models import Ticket
    from sessions_billing.models import Conversation

    consume = {"feature": "ai_review", "quantity": 1, "idempotency_key": "k"}
    start = {"conversation_id": "c", "direction": "inbound"}
    cases = [
        ("/api/v1/credits/consume", consume | {"client_id": f"a{char}b"}, "client_id"),
        ("/api/v1/credits/consume", consume | {"idempotency_key": f"k{char}"}, "idempotency_key"),
        ("/api/v1/credits/holds", {"credits": "1", "idempotency_key": f"h{char}"}, "idempotency_key"),
        ("/api/v1/sessions", start | {"conversation_id": f"c{char}"}, "conversation_id"),
        ("/api/v1/sessions", start | {"agent": f"b{char}ot"}, "agent"),
        ("/api/v1/tickets", {"ticket_id": f"t{char}x", "client_id": "c"}, "ticket_id"),
        ("/api/v1/tickets", {"ticket_id": "t", "client_id": f"c{char}x"}, "client_id"),
    ]
    for path, body, field in cases:
        response = Client().post(path, json.dumps(body), content_type="application/json", **api_auth)
        assert response.status_code == 422, (path, field)
        assert response.json()["error"]["message"].startswith(f"{field}: "), (path, field)
    assert not Consumption.objects.exists()
    assert not Hold.objects.exists()
    assert not Conversation.objects.exists()
    assert not Ticket.objects.exists()


def test_the_joiners_and_marks_that_scripts_need_are_not_control_characters(api_auth):
    """ZWJ, ZWNJ, LRM and RLM stay allowed: the consumption is refused for want of a plan (402),
    not for its client id."""

    for char in ("\u200d", "\u200c", "\u200e", "\u200f"):
        body = {"feature": "ai_review", "quantity": 1, "idempotency_key": "k", "client_id": f"a{char}b"}
        response = Client().post(
            "/api/v1/credits/consume", json.dumps(body), content_type="application/json", **api_auth
        )
        assert response.status_code == 402, char


@pytest.mark.parametrize("nul", [False, True])
def test_an_api_body_nested_deeper_than_the_parser_goes_is_a_422(nul, api_auth):
    """100,000 open brackets (well under the upload limit) make Python's JSON parser raise
    RecursionError, not ValueError: still "not valid JSON" (or, holding a NUL, the NUL's 422)."""
    from credits.models import Consumption

    body = '{"a":' * 50_000 + ('"\\u0000"' if nul else "1") + "}" * 50_000
    for path in (
        "/api/v1/credits/consume",
        "/api/v1/credits/holds/1/commit",
        "/api/v1/tickets",
        "/api/v1/sessions",
    ):
        for sent in (body, "[" * 100_000):
            response = Client().post(path, sent, content_type="application/json", **api_auth)
            assert response.status_code == 422, (path, sent[:10])
            assert response.json()["error"]["code"] == "invalid_request"
    assert not Consumption.objects.exists()


@pytest.mark.parametrize(
    "char",
    ["\u200b", "\u2028", "\u2029", "\u2060", "\u2064", "\u206a", "\u206f", "\ufeff", "\ufff9", "\ufffb"],
)
def test_an_invisible_format_character_in_a_name_is_refused_in_words(char):
    """tenants.text: a name holding a zero-width space, a line separator or a BOM would look like
    another name (or break where nothing shows); every form field that names something refuses it
    with the one message, and the API's pattern (tenants.api_fields) reads the same class."""
    from django.core.exceptions import ValidationError

    from tenants.api_fields import PRINTABLE
    from tenants.text import MSG_CONTROL, no_control_characters

    with pytest.raises(ValidationError) as refused:
        no_control_characters(f"Ac{char}me")
    assert refused.value.messages == [MSG_CONTROL]
    assert re.fullmatch(PRINTABLE, f"Ac{char}me") is None
    no_control_characters("Acme\u200d\u200c\u200e\u200f")  # the joiners and marks stay allowed


@pytest.mark.parametrize("moment", ["1700000000", "-1", "0", "1e9", "2026"])
def test_an_api_moment_that_is_not_iso_8601_text_is_a_422(moment, api_auth):
    """pydantic reads numbers as seconds since 1970; the API promises ISO 8601 with a zone, so
    `as_of=-1` is not a moment in 1969, and a number in a body is not one either."""
    from sessions_billing.models import Conversation

    ledger = Client().get("/api/v1/credits/ledger", {"as_of": moment}, **api_auth)
    assert ledger.status_code == 422
    assert ledger.json()["error"]["message"].startswith("as_of: ")
    body = json.dumps({"conversation_id": "c", "direction": "inbound", "at": json.loads(moment)})
    started = Client().post("/api/v1/sessions", body, content_type="application/json", **api_auth)
    assert started.status_code == 422
    assert started.json()["error"]["message"].startswith("at: ")
    assert not Conversation.objects.exists()


@pytest.mark.parametrize(
    "day", ["0", "1", "-1", "1700000000", "20260101", "2026-01-01T00:00:00Z", "2026-1-1"]
)
def test_an_api_day_that_is_not_iso_8601_text_is_a_422(day, tenant, api_auth):
    """The Sessions list's `since` and `until` are days, YYYY-MM-DD: `until=0` is not 1 January
    1970 (pydantic reads a number as seconds since then), nor is a moment a day."""
    from sessions_billing.tests.conftest import paid

    paid(tenant)
    for name in ("since", "until"):
        response = Client().get("/api/v1/sessions", {name: day}, **api_auth)
        assert (response.status_code, response.json()["error"]) == (
            422,
            {
                "code": "invalid_request",
                "message": f"{name}: Input should be an ISO 8601 date (YYYY-MM-DD)",
                "details": [
                    {
                        "type": "date_not_iso",
                        "loc": ["query", name],
                        "msg": "Input should be an ISO 8601 date (YYYY-MM-DD)",
                    }
                ],
            },
        ), (name, day)
    listed = Client().get("/api/v1/sessions", {"since": "2026-01-01", "until": "9999-12-31"}, **api_auth)
    assert listed.status_code == 200


FORM_REFUSED = {
    "code": "invalid_request",
    "message": "Send the body as JSON (application/json).",
    "details": [
        {"type": "content_type", "loc": ["body"], "msg": "Send the body as JSON (application/json)."}
    ],
}
MULTIPART = "multipart/form-data; boundary=B"


def test_a_form_body_is_refused_by_every_write_whatever_its_method(tenant, admin, api_auth):
    """A body sent as a form (curl -d's default Content-Type) is a 422 and the write is not done,
    for PUT and DELETE as for POST: Django parses a form for a POST only, so a PUT's or a DELETE's
    fields once read as no body and the write went ahead (a license removed by `-d
    '{"dry_run": true}'`). A form is not read as JSON either, on any endpoint. A form without
    fields (an empty body) is still no body."""
    from credits.factories import grant, on_plus
    from credits.models import Hold
    from licensing.factories import on_helpdesk
    from licensing.models import Client as PsaClient
    from sessions_billing.models import SessionLimit
    from sessions_billing.tests.conftest import paid

    on_plus(tenant)
    on_helpdesk(tenant)
    paid(tenant)
    grant(tenant, 50)
    client = Client()

    def send(method: str, path: str, body: str, content_type: str = "application/json"):
        return client.generic(method, path, body, content_type=content_type, **api_auth)

    hold = send("POST", "/api/v1/credits/holds", '{"credits": "1", "idempotency_key": "h"}').json()
    for external_id in ("c-1", "c-2"):
        send("PUT", f"/api/v1/clients/{external_id}", '{"name": "Contoso"}')
    assert send("PUT", "/api/v1/clients/c-1/licenses/ai", "").status_code == 200
    assert send("PUT", "/api/v1/usage/session-limit", '{"session_limit": 120}').status_code == 200
    assert (
        send("POST", "/api/v1/sessions", '{"conversation_id": "s-1", "direction": "inbound"}').status_code
        == 201
    )
    writes = [
        ("POST", "/api/v1/sessions/s-1/events"),
        ("POST", f"/api/v1/credits/holds/{hold['id']}/release"),
        ("POST", f"/api/v1/credits/holds/{hold['id']}/commit"),
        ("POST", "/api/v1/credits/refund"),
        ("PUT", "/api/v1/clients/c-2/licenses/ai"),
        ("DELETE", "/api/v1/clients/c-1/licenses/ai"),
        ("PUT", "/api/v1/usage/session-limit"),
        ("DELETE", "/api/v1/usage/session-limit"),
    ]
    forms = [
        ("application/x-www-form-urlencoded", "session_limit=5"),
        ("application/x-www-form-urlencoded", '{"session_limit": 5, "dry_run": true}'),
        ("application/x-www-form-urlencoded", '{"type": "end"}'),
        ("application/x-www-form-urlencoded; charset=utf-8", "x=1"),
        (MULTIPART, '--B\r\nContent-Disposition: form-data; name="dry_run"\r\n\r\ntrue\r\n--B--\r\n'),
    ]
    for method, path in writes:
        for content_type, body in forms:
            refused = send(method, path, body, content_type)
            assert (refused.status_code, refused.json()["error"]) == (422, FORM_REFUSED), (method, path, body)
    assert Hold.objects.get(pk=hold["id"]).status == "held"
    assert PsaClient.objects.get(external_id="c-1").ai_license_since is not None
    assert PsaClient.objects.get(external_id="c-2").ai_license_since is None
    assert SessionLimit.objects.get(tenant=tenant).session_limit == 120
    assert send("GET", "/api/v1/sessions/s-1", "").json()["ended_at"] is None
    # A form without fields is no body, whatever the method: the write is done.
    for content_type, empty in (("application/x-www-form-urlencoded", ""), (MULTIPART, "--B--\r\n")):
        assert send("DELETE", "/api/v1/usage/session-limit", empty, content_type).status_code == 200
        assert send("PUT", "/api/v1/clients/c-2/licenses/ai", empty, content_type).status_code == 200
        assert send("DELETE", "/api/v1/clients/c-2/licenses/ai", empty, content_type).status_code == 200
    assert not SessionLimit.objects.filter(tenant=tenant, session_limit=120).exists()
    assert send("POST", f"/api/v1/credits/holds/{hold['id']}/release", "", MULTIPART).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/api/v1/credits/consume",
            {"feature": "ai_review", "quantity": 1, "idempotency_key": "k", "qty": 2},
        ),
        ("/api/v1/credits/holds", {"credits": "1", "idempotency_key": "h", "ttl_second": 5}),
        ("/api/v1/tickets", {"ticket_id": "t-1", "client_id": "c-1", "clientid": "c-2"}),
        ("/api/v1/sessions", {"conversation_id": "c", "direction": "inbound", "agnet": "bot"}),
    ],
)
def test_an_api_body_with_a_field_the_endpoint_does_not_know_is_a_422_naming_it(path, body, api_auth):
    """A misspelled field is refused, as Stripe refuses an unknown parameter, never taken for the
    field's absence (issue 9's holds: "ttl_second" would have quietly held for the default 900 s)."""
    from credits.models import Consumption, Hold
    from licensing.models import Ticket
    from sessions_billing.models import Conversation

    response = Client().post(path, json.dumps(body), content_type="application/json", **api_auth)

    assert response.status_code == 422
    error = response.json()["error"]
    unknown = next(name for name in body if name in ("qty", "ttl_second", "clientid", "agnet"))
    assert (error["code"], error["message"]) == (
        "invalid_request",
        f"{unknown}: Extra inputs are not permitted",
    )
    assert not Consumption.objects.exists()
    assert not Hold.objects.exists()
    assert not Ticket.objects.exists()
    assert not Conversation.objects.exists()


def test_a_write_that_takes_no_body_refuses_fields_and_does_nothing(tenant, admin, api_auth):
    """Releasing a hold, assigning or removing a license and resetting the session limit read no
    body: a field sent anyway is refused as an unknown field is elsewhere (422 naming it), and the
    write is not done. No body, `{}` or a form post without fields still do it."""
    from credits.factories import grant, on_plus
    from credits.models import Hold
    from licensing.factories import on_helpdesk
    from licensing.models import Client as PsaClient

    on_plus(tenant)
    on_helpdesk(tenant)
    grant(tenant, 50)
    client = Client()
    hold = client.post(
        "/api/v1/credits/holds", json.dumps({"credits": "1", "idempotency_key": "h"}),
        content_type="application/json", **api_auth,
    ).json()  # fmt: skip
    client.put(
        "/api/v1/clients/c-1", json.dumps({"name": "Contoso"}), content_type="application/json", **api_auth
    )
    writes = [
        ("post", f"/api/v1/credits/holds/{hold['id']}/release"),
        ("put", "/api/v1/clients/c-1/licenses/ai"),
        ("delete", "/api/v1/clients/c-1/licenses/ai"),
        ("delete", "/api/v1/usage/session-limit"),
    ]
    for method, path in writes:
        refused = getattr(client, method)(path, '{"foo": 1}', content_type="application/json", **api_auth)
        assert (refused.status_code, refused.json()["error"]["message"]) == (
            422,
            "foo: Extra inputs are not permitted",
        ), path
        for body in ('"x"', "{"):
            assert (
                getattr(client, method)(path, body, content_type="application/json", **api_auth).status_code
                == 422
            )
    assert Hold.objects.get(pk=hold["id"]).status == "held"
    assert PsaClient.objects.get(external_id="c-1").ai_license_since is None
    # (The session limit's reset keeping the limit: sessions_billing/tests/test_limit.py.)
    assert (
        client.put(
            "/api/v1/clients/c-1/licenses/ai", "{}", content_type="application/json", **api_auth
        ).status_code
        == 200
    )
    assert client.post(f"/api/v1/credits/holds/{hold['id']}/release", **api_auth).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/api/v1/credits/consume",
            '{"feature": "ai_review", "quantity": 1, "quantity": 1000, "idempotency_key": "d"}',
        ),
        ("/api/v1/tickets", '{"ticket_id": "T-1", "client_id": "a", "client_id": "b"}'),
        ("/api/v1/sessions", '{"conversation_id": "c", "direction": "inbound", "direction": "outbound"}'),
    ],
)
def test_a_json_key_named_twice_is_a_422_and_nothing_is_stored(path, body, api_auth):
    """RFC 8259 leaves a repeated name's meaning to each reader (one keeps the first, another the
    last): the API refuses the request instead of charging for one reading of it."""
    from credits.models import Consumption
    from licensing.models import Ticket
    from sessions_billing.models import Conversation

    response = Client().post(path, body, content_type="application/json", **api_auth)

    assert response.status_code == 422
    error = response.json()["error"]
    key = error["details"][0]["loc"][1]
    assert error["code"] == "invalid_request"
    assert error["message"] == f"{key}: Named twice in its object: send each field once"
    assert error["details"] == [
        {
            "type": "duplicate_key",
            "loc": ["body", key],
            "msg": "Named twice in its object: send each field once",
        }
    ]
    assert not Consumption.objects.exists()
    assert not Ticket.objects.exists()
    assert not Conversation.objects.exists()


def test_a_json_key_named_twice_in_an_optional_body_or_an_event_is_a_422(api_auth, tenant):
    from sessions_billing.tests.conftest import paid

    paid(tenant)
    client = Client()
    started = client.post(
        "/api/v1/sessions",
        '{"conversation_id": "c", "direction": "inbound"}',
        content_type="application/json",
        **api_auth,
    )
    assert started.status_code == 201
    event = client.post(
        "/api/v1/sessions/c/events",
        '{"type": "agent_message", "type": "end"}',
        content_type="application/json",
        **api_auth,
    )
    commit = client.post(
        "/api/v1/credits/holds/1/commit",
        '{"credits": "1", "credits": "2"}',
        content_type="application/json",
        **api_auth,
    )
    for response, key in ((event, "type"), (commit, "credits")):
        assert response.status_code == 422
        assert response.json()["error"] == {
            "code": "invalid_request",
            "message": f"{key}: Named twice in its object: send each field once",
            "details": [
                {
                    "type": "duplicate_key",
                    "loc": ["body", key],
                    "msg": "Named twice in its object: send each field once",
                }
            ],
        }
    assert client.get("/api/v1/sessions/c", **api_auth).json()["ended_at"] is None


def test_a_query_parameter_the_operation_does_not_take_is_a_422_naming_it(api_auth, tenant):
    """As a body field it does not take is (and as Stripe refuses an unknown parameter): a
    misspelled `per_page` for `page_size` is not answered as if nothing had been asked."""
    from credits.factories import grant, on_plus
    from credits.models import Consumption

    on_plus(tenant)
    grant(tenant, 10)
    client = Client()
    for path in ("/api/v1/clients?per_page=100000", "/api/v1/credits?per_page=1", "/api/v1/tenant?x="):
        response = client.get(path, **api_auth)
        name = path.partition("?")[2].partition("=")[0]
        assert response.status_code == 422, path
        assert response.json()["error"] == _query_error(name, "extra_forbidden", "Unknown query parameter")
    consume = client.post(
        "/api/v1/credits/consume?dry_run=1",
        {"feature": "smart_response", "quantity": 1, "idempotency_key": "q"},
        content_type="application/json",
        **api_auth,
    )
    assert consume.status_code == 422
    assert not Consumption.objects.exists()
    # The key first: without one it is the 401, whatever the query says.
    assert client.get("/api/v1/clients?per_page=1").status_code == 401
    # What it takes is taken.
    assert client.get("/api/v1/credits/ledger?limit=5", **api_auth).status_code == 200


def test_a_sessions_cursor_the_api_did_not_give_is_a_422(api_auth, tenant):
    from sessions_billing.tests.conftest import paid

    paid(tenant)
    for cursor in (
        "garbage",
        "-1.-1",
        "1.1e5",
        "9" * 30 + ".1",
        "\uff11\uff17\uff19\uff16.1",
        "01796004902930517.661",
        "1.0",
        "².1",
    ):
        response = Client().get(f"/api/v1/sessions?before={cursor}", **api_auth)
        assert response.status_code == 422, cursor
        assert response.json()["error"]["message"] == (
            "before: Not a cursor of this API: pass next_cursor of the previous page"
        )
    assert Client().get("/api/v1/sessions?before=1764460800000000.5", **api_auth).status_code == 200


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ('{"ticket_id": "X", "client_id": "c", "meta": {"a": 1, "a": 2}}', ["body", "meta", "a"]),
        (
            '{"ticket_id": "X", "client_id": "c", "meta": [{"b": 1}, {"a": 1, "a": 2}]}',
            ["body", "meta", 1, "a"],
        ),
        ('[{"a": 1, "a": 2}]', ["body", 0, "a"]),
        ('{"ticket_id": "X", "ticket_\\u0069d": "Y", "client_id": "c"}', ["body", "ticket_id"]),
    ],
)
def test_a_key_named_twice_is_located_where_it_is(body, loc, api_auth):
    response = Client().post("/api/v1/tickets", body, content_type="application/json", **api_auth)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"] == [
        {"type": "duplicate_key", "loc": loc, "msg": "Named twice in its object: send each field once"}
    ]
    assert (
        error["message"] == ".".join(map(str, loc[1:])) + ": Named twice in its object: send each field once"
    )


def test_a_query_parameter_given_twice_is_a_422(api_auth, tenant):
    from sessions_billing.tests.conftest import paid

    paid(tenant)
    for path, name in (
        ("/api/v1/sessions?limit=1&limit=2", "limit"),
        ("/api/v1/clients?page=1&page=1", "page"),
    ):
        response = Client().get(path, **api_auth)
        assert response.status_code == 422, path
        assert response.json()["error"] == _query_error(
            name, "repeated", "Given more than once: send it once"
        )


def _query_error(name: str, kind: str, msg: str) -> dict:
    """The 422 a refused query parameter answers: located in the query, its words in the message."""
    return {
        "code": "invalid_request",
        "message": f"{name}: {msg}",
        "details": [{"type": kind, "loc": ["query", name], "msg": msg}],
    }


def test_a_multipart_body_without_its_boundary_is_the_forms_422_without_a_traceback(tenant, api_auth, caplog):
    """`Content-Type: multipart/form-data` with no boundary cannot be parsed as a form: Django's
    parser raised before any handler (the NUL check reads a POST's form), a 400 `bad_request` with
    its traceback in the log. It is a form the API does not read, refused as any other form is,
    whatever the method; nothing is done."""
    import logging

    from credits.factories import grant, on_plus
    from credits.models import Consumption, Hold

    on_plus(tenant)
    grant(tenant, 50)
    client = Client()
    consume = '{"feature": "smart_response", "quantity": 1, "idempotency_key": "x"}'
    hold = client.post(
        "/api/v1/credits/holds", '{"credits": "1", "idempotency_key": "h"}',
        content_type="application/json", **api_auth,
    ).json()  # fmt: skip
    with caplog.at_level(logging.INFO):
        for method, path, body in (
            ("POST", "/api/v1/credits/consume", consume),
            ("POST", "/api/v1/credits/refund", '{"idempotency_key": "x"}'),
            ("POST", f"/api/v1/credits/holds/{hold['id']}/release", "{}"),
            ("POST", f"/api/v1/credits/holds/{hold['id']}/commit", '{"credits": "1"}'),
            ("DELETE", "/api/v1/usage/session-limit", "{}"),
        ):
            response = client.generic(method, path, body, content_type="multipart/form-data", **api_auth)
            assert (response.status_code, response.json()["error"]) == (422, FORM_REFUSED), path
    assert not [r for r in caplog.records if r.exc_info or "multipart" in r.getMessage().lower()]
    assert not Consumption.objects.exists()
    assert Hold.objects.get(pk=hold["id"]).status == "held"
    # The key is still checked first.
    assert client.post("/api/v1/credits/refund", "{}", content_type="multipart/form-data").status_code == 401
