"""The licensing integration API: clients (upsert, get, list), licenses (PUT/DELETE) and tickets,
every status with the exact bodies, and the documented examples are the real answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client as HttpClient

from credits.models import Consumption
from licensing.factories import ClientFactory, licensed
from licensing.models import Client, Ticket
from tenants.models import AuditEvent
from tenants.services import api_key_create

pytestmark = pytest.mark.django_db


class Api:
    def __init__(self, secret: str) -> None:
        self.client = HttpClient()
        self.auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}

    def _send(self, method: str, path: str, body: Any = None, raw: str | None = None):
        data = raw if raw is not None else ("" if body is None else json.dumps(body))
        return getattr(self.client, method)(
            "/api/v1" + path, data=data, content_type="application/json", **self.auth
        )

    def put(self, path: str, body: Any = None, raw: str | None = None):
        return self._send("put", path, body, raw)

    def post(self, path: str, body: Any = None, raw: str | None = None):
        return self._send("post", path, body, raw)

    def delete(self, path: str):
        return self._send("delete", path)

    def get(self, path: str, **params: Any):
        return self.client.get("/api/v1" + path, params, **self.auth)


@pytest.fixture
def api(essentials, admin) -> Api:
    return Api(api_key_create(tenant=essentials, name="psa sync", actor=admin).secret)


def error(response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


CONTOSO = {
    "name": "Contoso Ltd",
    "status": "active",
    "company_type": "Customer",
    "agreement_type": "Managed services",
}


# --- PUT /clients/{client_id} ---------------------------------------------------------------------


def test_put_creates_a_client_201_then_updates_it_200(api, essentials):
    created = api.put("/clients/contoso", CONTOSO)

    assert created.status_code == 201
    assert created.json() == {
        "client_id": "contoso",
        "name": "Contoso Ltd",
        "status": "active",
        "company_type": "Customer",
        "agreement_type": "Managed services",
        "ai_license": False,
        "chat_license": False,
        "ai_license_since": None,
        "chat_license_since": None,
        "ai_credits_used": "0",
        "created_at": "2022-06-01T09:00:00Z",
        "updated_at": "2022-06-01T09:00:00Z",
    }
    updated = api.put("/clients/contoso", CONTOSO | {"status": "inactive", "agreement_type": "Break-fix"})
    assert updated.status_code == 200
    assert (updated.json()["status"], updated.json()["agreement_type"]) == ("inactive", "Break-fix")
    again = api.put("/clients/contoso", CONTOSO | {"status": "inactive", "agreement_type": "Break-fix"})
    assert (again.status_code, again.json()) == (200, updated.json())
    events = list(
        AuditEvent.objects.filter(tenant=essentials)
        .order_by("pk")
        .values_list("action", "actor_type", "data")
    )
    assert events[-2:] == [
        ("client.created", "api_key", {"client_id": "contoso"}),
        ("client.updated", "api_key", {"fields": "status, agreement type"}),
    ]


def test_put_leaving_out_optional_fields_sets_their_defaults(api):
    api.put("/clients/contoso", CONTOSO)
    response = api.put("/clients/contoso", {"name": "Contoso"})
    assert (response.status_code, response.json()["status"], response.json()["company_type"]) == (
        200,
        "active",
        "",
    )


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/clients/contoso", {}, "name: Field required"),
        ("/clients/contoso", {"name": ""}, "name: String should have at least 1 character"),
        ("/clients/contoso", {"name": 12}, "name: Input should be a valid string"),
        ("/clients/contoso", {"name": "x" * 201}, "name: String should have at most 200 characters"),
        (
            "/clients/contoso",
            {"name": "A", "status": "gone"},
            "status: Input should be 'active' or 'inactive'",
        ),
        (
            "/clients/contoso",
            {"name": "A", "company_type": "x" * 81},
            "company_type: String should have at most 80 characters",
        ),
        ("/clients/contoso", {"name": "A\tB\u0007"}, "name: Remove the control characters."),
        ("/clients/contoso", {"name": "Contoso\u202eexe.fdp"}, "name: Remove the control characters."),
        ("/clients/contoso", {"name": "Fabrikam\u2066x\u2069"}, "name: Remove the control characters."),
        ("/clients/con\u202etoso", {"name": "A"}, "client_id: Use printable characters, without '/'."),
        ("/clients/" + "x" * 101, {"name": "A"}, "client_id: At most 100 characters."),
        ("/clients/%20", {"name": "A"}, "client_id: Enter the client's id."),
        # The URL names the resource exactly (RFC 9110 9.3.4): not stored as client "lead".
        ("/clients/%20lead", {"name": "A"}, "client_id: No spaces at either end of the id."),
        ("/clients/lead%09", {"name": "A"}, "client_id: No spaces at either end of the id."),
    ],
)
def test_put_bad_input_is_a_422_and_stores_nothing(api, path, body, message):
    response = api.put(path, body)
    assert error(response) == (422, "invalid_request", message)
    assert not Client.objects.exists()


def test_put_a_body_that_is_not_json_is_a_422(api):
    assert error(api.put("/clients/contoso", raw="{name")) == (
        422,
        "invalid_request",
        "The request body is not valid JSON.",
    )


def test_a_nul_in_the_client_id_or_the_body_is_a_422(api):
    assert api.put("/clients/con%00toso", {"name": "A"}).status_code == 422
    response = api.put("/clients/contoso", raw='{"name": "A\\u0000"}')
    assert error(response)[:2] == (422, "invalid_request")
    assert response.json()["error"]["details"][0]["loc"] == ["body", "name"]
    assert not Client.objects.exists()


# --- GET /clients/{client_id} and GET /clients ---------------------------------------------------


def test_get_one_client_with_its_licenses(api, essentials):
    licensed(essentials, 1, external_id="acme-1", name="Acme One")
    body = api.get("/clients/acme-1").json()
    assert (body["client_id"], body["name"], body["ai_license"], body["chat_license"]) == (
        "acme-1",
        "Acme One",
        True,
        False,
    )
    assert body["ai_license_since"] == "2022-06-01T09:00:00Z"


def test_an_unknown_client_is_a_404(api, other_tenant):
    ClientFactory(tenant=other_tenant, external_id="theirs")
    assert error(api.get("/clients/theirs")) == (404, "unknown_client", "No client has this client_id.")
    assert error(api.put("/clients/theirs/licenses/ai")) == (
        404,
        "unknown_client",
        "No client has this client_id.",
    )
    assert error(api.delete("/clients/theirs/licenses/chat"))[:2] == (404, "unknown_client")


def test_the_list_is_paginated_and_takes_the_pages_filters(api, essentials):
    for i in range(5):
        ClientFactory(tenant=essentials, name=f"Alpha {i}", external_id=f"a{i}")
    licensed(essentials, 2, name="Beta", company_type="Prospect")
    ClientFactory(tenant=essentials, name="Gamma", status=Client.Status.INACTIVE)

    first = api.get("/clients", page_size=3).json()
    assert ([c["name"] for c in first["items"]], first["total"], first["pages"], first["next_page"]) == (
        ["Alpha 0", "Alpha 1", "Alpha 2"],
        8,
        3,
        2,
    )
    last = api.get("/clients", page_size=3, page=3).json()
    assert ([c["name"] for c in last["items"]], last["next_page"]) == (["Beta", "Gamma"], None)
    # Past the last page: empty, with its own number (an outsider probe: it answered page 3's rows
    # again as "page 3", so a client walking the pages could process them twice).
    past = api.get("/clients", page_size=3, page=4).json()
    assert (past["items"], past["total"], past["page"], past["pages"], past["next_page"]) == (
        [],
        8,
        4,
        3,
        None,
    )
    assert api.get("/clients", q="nobody", page=2).json() | {"items": []} == {
        "items": [], "total": 0, "page": 2, "pages": 1, "next_page": None,
    }  # fmt: skip
    assert [c["name"] for c in api.get("/clients", q="alpha 3").json()["items"]] == ["Alpha 3"]
    assert [c["client_id"] for c in api.get("/clients", q="a4").json()["items"]] == ["a4"]
    assert api.get("/clients", license="ai").json()["total"] == 2
    assert api.get("/clients", license="none", status="active").json()["total"] == 5
    assert api.get("/clients", company_type="Prospect").json()["total"] == 2
    assert [c["name"] for c in api.get("/clients", sort="-name", page_size=1).json()["items"]] == ["Gamma"]
    assert [c["name"] for c in api.get("/clients", sort="-ai", page_size=2).json()["items"]] == [
        "Beta",
        "Beta",
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"page_size": 201}, "page_size: Input should be less than or equal to 200"),
        ({"page": 0}, "page: Input should be greater than or equal to 1"),
        (
            {"license": "gold"},
            "license: Input should be 'ai', 'no_ai', 'chat', 'no_chat', 'none' or 'flagged'",
        ),
        ({"page": "x"}, "page: Input should be a valid integer, unable to parse string as an integer"),
    ],
)
def test_bad_list_parameters_are_a_422(api, params, message):
    assert error(api.get("/clients", **params)) == (422, "invalid_request", message)


def test_a_page_past_the_last_is_empty_and_keeps_its_number(api, essentials):
    ClientFactory(tenant=essentials, name="Only")
    body = api.get("/clients", page=99).json()
    assert (body["items"], body["page"], body["pages"], body["next_page"]) == ([], 99, 1, None)


# --- PUT / DELETE /clients/{client_id}/licenses/{kind} --------------------------------------------


def test_put_and_delete_a_license_are_idempotent_and_audited_with_the_key(api, essentials):
    ClientFactory(tenant=essentials, external_id="contoso")

    added = api.put("/clients/contoso/licenses/ai")
    again = api.put("/clients/contoso/licenses/ai")
    removed = api.delete("/clients/contoso/licenses/ai")
    removed_again = api.delete("/clients/contoso/licenses/ai")

    assert (added.status_code, added.json()["ai_license"]) == (200, True)
    assert (again.status_code, again.json()) == (200, added.json())
    assert (removed.status_code, removed.json()["ai_license"]) == (200, False)
    assert (removed_again.status_code, removed_again.json()) == (200, removed.json())
    assert list(
        AuditEvent.objects.filter(tenant=essentials, action__startswith="license.")
        .order_by("pk")
        .values_list("action", "actor_type")
    ) == [("license.assigned", "api_key"), ("license.removed", "api_key")]


def test_put_a_license_past_the_total_is_a_402_license_limit_reached(api, essentials):
    """L04 and the documented example are the real answer."""
    licensed(essentials, 10)
    ClientFactory(tenant=essentials, external_id="contoso")

    response = api.put("/clients/contoso/licenses/ai")

    assert error(response) == (
        402,
        "license_limit_reached",
        "All 10 AI licenses of your AI Essentials plan are assigned. Remove one from another client or upgrade "
        "your plan.",
    )
    schema = HttpClient().get("/api/v1/openapi.json").json()
    documented = schema["paths"]["/api/v1/clients/{client_id}/licenses/{kind}"]["put"]["responses"]["402"]
    example = documented["content"]["application/json"]["examples"]["license_limit_reached"]["value"]
    assert example == response.json()
    assert api.put("/clients/contoso/licenses/chat").status_code == 200


def test_an_unknown_kind_is_a_422(api, essentials):
    ClientFactory(tenant=essentials, external_id="contoso")
    assert error(api.put("/clients/contoso/licenses/voice"))[:2] == (422, "invalid_request")


def test_an_inactive_client_cannot_get_a_license(api, essentials):
    ClientFactory(tenant=essentials, external_id="gone", name="Gone Ltd", status=Client.Status.INACTIVE)
    assert error(api.put("/clients/gone/licenses/chat")) == (
        409,
        "client_inactive",
        "Gone Ltd is inactive: make it active before assigning it a Chat license.",
    )


# --- POST /tickets ----------------------------------------------------------------------------------


def test_tickets_via_license_then_ticket_credit_and_a_retry_is_the_first_answer(api, essentials):
    licensed(essentials, 1, external_id="contoso")
    ClientFactory(tenant=essentials, external_id="fabrikam", name="Fabrikam")

    licensed_ticket = api.post("/tickets", {"ticket_id": "HD-1", "client_id": "contoso"})
    credit_ticket = api.post("/tickets", {"ticket_id": "HD-2", "client_id": "fabrikam"})
    retried = api.post("/tickets", {"ticket_id": "HD-2", "client_id": "fabrikam"})

    assert (licensed_ticket.status_code, licensed_ticket.json()) == (
        200,
        {
            "ticket_id": "HD-1",
            "client_id": "contoso",
            "ai": True,
            "via": "license",
            "reason": None,
            "message": None,
            "ticket_credits_remaining": 60,
        },
    )
    assert (
        credit_ticket.status_code,
        credit_ticket.json()["via"],
        credit_ticket.json()["ticket_credits_remaining"],
    ) == (
        200,
        "ticket_credit",
        59,
    )
    assert (retried.status_code, retried.json()) == (200, credit_ticket.json())
    assert Consumption.objects.filter(tenant=essentials).count() == 1
    consumption = Consumption.objects.get(tenant=essentials)
    assert (consumption.actor_type, consumption.client_id) == ("api_key", "fabrikam")


def test_a_ticket_of_an_unknown_client_is_a_404(api):
    assert error(api.post("/tickets", {"ticket_id": "HD-1", "client_id": "nobody"})) == (
        404,
        "unknown_client",
        "No client has this client_id.",
    )
    assert not Ticket.objects.exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"client_id": "contoso"}, "ticket_id: Field required"),
        ({"ticket_id": "HD-1"}, "client_id: Field required"),
        ({"ticket_id": 7, "client_id": "contoso"}, "ticket_id: Input should be a valid string"),
        (
            {"ticket_id": "x" * 191, "client_id": "contoso"},
            "ticket_id: String should have at most 190 characters",
        ),
        (
            {"ticket_id": "HD/1", "client_id": "contoso"},
            "ticket_id: 1 to 190 printable characters, without '/'.",
        ),
        ({"ticket_id": "HD-1", "client_id": ["contoso"]}, "client_id: Input should be a valid string"),
    ],
)
def test_bad_ticket_input_is_a_422_and_consumes_nothing(api, essentials, body, message):
    ClientFactory(tenant=essentials, external_id="contoso")
    assert error(api.post("/tickets", body)) == (422, "invalid_request", message)
    assert not Consumption.objects.exists()


def test_the_documented_ticket_answers_are_the_real_ones(api, essentials):
    ClientFactory(tenant=essentials, external_id="fabrikam", name="Fabrikam")
    ClientFactory(tenant=essentials, external_id="northwind-old", name="Northwind Old", status="inactive")
    schema = HttpClient().get("/api/v1/openapi.json").json()
    examples = schema["paths"]["/api/v1/tickets"]["post"]["responses"]["200"]["content"]["application/json"][
        "examples"
    ]
    inactive = api.post("/tickets", {"ticket_id": "HD-10426", "client_id": "northwind-old"}).json()
    assert inactive["message"] == examples["inactive client"]["value"]["message"]
    from credits.models import Grant

    Grant.objects.filter(tenant=essentials).update(remaining=0)
    none_left = api.post("/tickets", {"ticket_id": "HD-10425", "client_id": "fabrikam"}).json()
    assert none_left == examples["none left"]["value"]


def test_the_helpdesk_ai_admission_check_carries_the_license_and_ticket_credit_figures(api, essentials):
    licensed(essentials, 4)
    licensed(essentials, 2, kind="chat")

    body = api.get("/entitlements/helpdesk_ai/admission").json()

    assert body == {
        "product": "helpdesk_ai",
        "allowed": True,
        "code": None,
        "message": None,
        "state": "active",
        "plan_code": "helpdesk-essentials",
        "details": {
            "ai_licenses": 10,
            "ai_licenses_used": 4,
            "chat_licenses": 10,
            "chat_licenses_used": 2,
            "ticket_credits_remaining": 60,
            "unlimited_ai": False,
        },
    }


def test_a_ticket_costs_a_pinned_number_of_queries(api, essentials, django_assert_num_queries):
    """The hot path (README): the key with the cache versions (1), then one statement, its own
    transaction: PostgreSQL's function that finds the client and the ticket's first answer, takes the
    ticket credit (the wallet lock, the key, the live grants, the consumption, the grant's move and
    its entry) and keeps the ticket's row (1); the plan's entitlements come from the cache. Via a
    license: the same statement finds the client (1), then one transaction of the ticket credits
    left (1) and the ticket's row (1). A retried ticket: the key and the statement."""
    for i in range(3):
        ClientFactory(tenant=essentials, external_id=f"walk-in-{i}")
    licensed(essentials, 1, external_id="contoso")
    api.post("/tickets", {"ticket_id": "warm", "client_id": "walk-in-0"})
    with django_assert_num_queries(2):  # the key, the function (the client, the credit and the ticket)
        assert (
            api.post("/tickets", {"ticket_id": "T-1", "client_id": "walk-in-1"}).json()["via"]
            == "ticket_credit"
        )
    with django_assert_num_queries(6):  # the key, the function, BEGIN, the credits left, the ticket, COMMIT
        assert api.post("/tickets", {"ticket_id": "T-2", "client_id": "contoso"}).json()["via"] == "license"
    with django_assert_num_queries(2):
        assert (
            api.post("/tickets", {"ticket_id": "T-1", "client_id": "walk-in-1"}).json()["via"]
            == "ticket_credit"
        )


LICENSING_OPERATIONS = [
    ("put", "/api/v1/clients/{client_id}"),
    ("get", "/api/v1/clients/{client_id}"),
    ("get", "/api/v1/clients"),
    ("put", "/api/v1/clients/{client_id}/licenses/{kind}"),
    ("delete", "/api/v1/clients/{client_id}/licenses/{kind}"),
    ("post", "/api/v1/tickets"),
]


def test_every_operation_says_what_it_does_with_an_example_per_status_and_per_body():
    schema = HttpClient().get("/api/v1/openapi.json").json()
    for method, path in LICENSING_OPERATIONS:
        op = schema["paths"][path][method]
        assert op["summary"], (method, path)
        assert op["description"], (method, path)
        for status, answer in op["responses"].items():
            media = answer["content"]["application/json"]
            assert media.get("example") or media.get("examples"), (method, path, status)
        if "requestBody" in op:
            media = op["requestBody"]["content"]["application/json"]
            assert "$ref" in media["schema"], (method, path)
            assert media.get("examples"), (method, path)


def test_a_path_parameter_422_is_documented_without_a_body_field(api, essentials):
    """GET a client and the license PUT/DELETE take no body: their 422 speaks of the path."""
    schema = HttpClient().get("/api/v1/openapi.json").json()
    for method, path in LICENSING_OPERATIONS[1:5]:
        if path == "/api/v1/clients":
            continue
        assert "path parameter" in schema["paths"][path][method]["responses"]["422"]["description"], path
    response = api.get("/clients/a%01b")
    assert error(response) == (422, "invalid_request", "client_id: Use printable characters, without '/'.")
