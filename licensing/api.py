"""Integration API of licensing: the partner's PSA upserts its client companies, assigns and removes
their AI and Chat licenses, and the AI product asks, for every new ticket, whether it gets AI.

`client_id` is the client's id in the PSA (1 to 100 printable characters, no "/"). License writes
are idempotent and refused exactly as on the Plans & Licenses page (402 `license_limit_reached`);
they are audited with the key as actor. A ticket is idempotent on its `ticket_id`: the same ticket
answers its first answer and never consumes a ticket credit twice."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from django.http import HttpRequest, HttpResponse
from ninja import Field, Path, Query, Router, Schema, Status
from pydantic import StrictStr, StringConstraints

from licensing import rules, selectors, services
from licensing.models import MAX_EXTERNAL_ID, MAX_NAME, MAX_TICKET_ID, MAX_TYPE, Client
from licensing.rules import PRODUCT
from licensing.selectors import ClientFilters
from plans.money import credits_string
from plans.selectors import MSG_ENDED, MSG_OVERDUE, ProductEntitlement, entitlements
from tenants.api_answer import json_answer
from tenants.api_auth import ApiKeyAuth
from tenants.api_docs import FORM_BODY, ErrorCase, documented
from tenants.api_fields import RequestBody, no_body
from tenants.errors import BusinessError
from tenants.models import Tenant

router = Router(tags=["licensing"])

Name = Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_NAME)]
TypeText = Annotated[StrictStr, StringConstraints(max_length=MAX_TYPE)]
ClientIdText = Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_EXTERNAL_ID)]
TicketIdText = Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_TICKET_ID)]
ClientIdPath = Annotated[
    str, Path(description="The client's id in your PSA (1 to 100 printable characters, no '/').")
]
KindPath = Annotated[
    Literal["ai", "chat"], Path(description="Which license: `ai` (AI license) or `chat` (Chat license).")
]


# --- schemas -------------------------------------------------------------------------------------


class ClientIn(RequestBody):
    name: Name = Field(description="The company's name (1 to 200 characters).", examples=["Contoso Ltd"])
    status: Literal["active", "inactive"] = Field(
        "active", description="`active` or `inactive` (an inactive client's tickets never get AI)."
    )
    company_type: TypeText = Field(
        "",
        description="Your PSA's company type (at most 80 characters), e.g. Customer.",
        examples=["Customer"],
    )
    agreement_type: TypeText = Field(
        "",
        description="Your PSA's agreement type (at most 80 characters), e.g. Managed services, Break-fix.",
        examples=["Managed services"],
    )


class ClientOut(Schema):
    client_id: str = Field(description="The client's id in your PSA.")
    name: str = Field(description="The company's name.")
    status: str = Field(description="`active` or `inactive`.")
    company_type: str = Field(description="The company type (empty when none).")
    agreement_type: str = Field(description="The agreement type (empty when none).")
    ai_license: bool = Field(description="Does the client hold an AI license (every ticket gets AI)?")
    chat_license: bool = Field(description="Does the client hold a Chat license?")
    ai_license_since: datetime | None = Field(description="When its AI license was assigned; null: none.")
    chat_license_since: datetime | None = Field(description="When its Chat license was assigned; null: none.")
    ai_credits_used: str = Field(
        description="AI credits its consumptions used in the current Helpdesk AI billing period (the "
        'consumptions sent with this `client_id`), as a decimal string with up to three decimals ("12.5").'
    )
    created_at: datetime = Field(description="When the client was added (ISO 8601, UTC).")
    updated_at: datetime = Field(description="When its name, status or types last changed (ISO 8601, UTC).")


class ClientList(Schema):
    items: list[ClientOut] = Field(description="The clients of this page, in the asked order.")
    total: int = Field(description="How many clients match the filters.")
    page: int = Field(description="This page's number (from 1).")
    pages: int = Field(description="How many pages there are at this page size.")
    next_page: int | None = Field(description="The next page's number; null on the last page.")


class ListQuery(Schema):
    q: Annotated[str, StringConstraints(max_length=MAX_NAME)] = Field(
        "", description="Part of the client's name, or its exact client_id."
    )
    status: Literal["active", "inactive"] | None = Field(
        None, description="Only `active` or `inactive` clients."
    )
    company_type: Annotated[str, StringConstraints(max_length=MAX_TYPE)] = Field(
        "", description="Only clients of this company type (exactly)."
    )
    agreement_type: Annotated[str, StringConstraints(max_length=MAX_TYPE)] = Field(
        "", description="Only clients of this agreement type (exactly)."
    )
    license: Literal["ai", "no_ai", "chat", "no_chat", "none", "flagged"] | None = Field(
        None,
        description="`ai`/`no_ai`: with/without an AI license; `chat`/`no_chat`: with/without a Chat license; "
        "`none`: no license at all; `flagged`: inactive clients that still hold a license.",
    )
    sort: Literal[
        "name", "-name", "status", "-status", "company_type", "-company_type", "agreement_type",
        "-agreement_type", "ai", "-ai", "chat", "-chat", "credits", "-credits",
    ] = Field("name", description="The order: a column, `-` in front for descending (`credits`: AI credits used).")  # fmt: skip
    page: int = Field(
        1, ge=1, le=1_000_000, description="The page's number (from 1). A page past the last has no items."
    )
    page_size: int = Field(50, ge=1, le=200, description="Clients per page (1 to 200).")


class TicketIn(RequestBody):
    ticket_id: TicketIdText = Field(
        description="Your ticket's id (1 to 190 printable characters, no '/'): the same id is answered once.",
        examples=["HD-10422"],
    )
    client_id: ClientIdText = Field(
        description="The ticket's client, its id in your PSA.", examples=["contoso"]
    )


class TicketOut(Schema):
    ticket_id: str = Field(description="The ticket asked about.")
    client_id: str = Field(description="Its client.")
    ai: bool = Field(description="Does the ticket get AI?")
    via: Literal["license", "unlimited", "ticket_credit"] | None = Field(
        description="Why it does: the client's AI `license`, the plan's `unlimited` AI access, or one "
        "`ticket_credit` consumed for it; null when it does not."
    )
    reason: str | None = Field(
        description="Why it does not (null when it does): `no_ticket_credits`, `client_inactive`, "
        "`subscription_ended`, `payment_overdue` or `no_subscription`."
    )
    message: str | None = Field(description="The reason in words, to show a person; null when it gets AI.")
    ticket_credits_remaining: int = Field(
        description="Whole ticket credits left this billing cycle (after this ticket's, when it took one)."
    )


# --- documentation -------------------------------------------------------------------------------

CLIENT_EXAMPLE = {
    "client_id": "contoso",
    "name": "Contoso Ltd",
    "status": "active",
    "company_type": "Customer",
    "agreement_type": "Managed services",
    "ai_license": True,
    "chat_license": False,
    "ai_license_since": "2026-07-02T10:00:00Z",
    "chat_license_since": None,
    "ai_credits_used": "12.5",
    "created_at": "2026-06-01T08:30:00Z",
    "updated_at": "2026-06-01T08:30:00Z",
}
UNKNOWN = ErrorCase(
    404, "unknown_client", rules.MSG_UNKNOWN_CLIENT, "No client of the key's tenant has this id."
)
BAD_ID = ErrorCase(
    422,
    "invalid_request",
    "client_id: Use printable characters, without '/'.",
    "The client_id in the path is over 100 characters or holds a character that is not printable.",
    source=None,
)
MISSING_NAME = ErrorCase(
    422,
    "invalid_request",
    "name: Field required",
    "A body field is missing or invalid (a name missing or over 200 characters, a status that does not exist, "
    "a NUL character).",
    detail_type="missing",
)
LIMIT = ErrorCase(
    402,
    "license_limit_reached",
    "All 10 AI licenses of your AI Essentials plan are assigned. Remove one from another client or upgrade "
    "your plan.",
    "Every license of this kind the plan includes is assigned (or more, after a downgrade): nothing changed.",
)
ENDED = ErrorCase(402, "subscription_ended", MSG_ENDED, "The Helpdesk AI plan has ended.")
OVERDUE = ErrorCase(402, "payment_overdue", MSG_OVERDUE, "A payment failed and the grace period is over.")
NO_SUBSCRIPTION = ErrorCase(
    402,
    "no_subscription",
    "There is no subscription for this product. Subscribe to a plan to continue.",
    "The tenant has no Helpdesk AI subscription.",
)
BAD_PATH = ErrorCase(
    422,
    "invalid_request",
    "client_id: Use printable characters, without '/'.",
    "A path parameter is invalid (a client_id over 100 characters, with a character that is not printable "
    "or with spaces at either end, a license kind other than ai or chat).",
    source=None,
)
INACTIVE = ErrorCase(
    409,
    "client_inactive",
    "Contoso Ltd is inactive: make it active before assigning it an AI license.",
    "The client is inactive: a license would never be used.",
)


def _client(client: Client, used: int) -> dict[str, Any]:
    return {
        "client_id": client.external_id,
        "name": client.name,
        "status": client.status,
        "company_type": client.company_type,
        "agreement_type": client.agreement_type,
        "ai_license": client.ai_license,
        "chat_license": client.chat_license,
        "ai_license_since": client.ai_license_since,
        "chat_license_since": client.chat_license_since,
        "ai_credits_used": credits_string(used),
        "created_at": client.created_at,
        "updated_at": client.updated_at,
    }


def _tenant(request: HttpRequest) -> Tenant:
    return request.auth.tenant  # type: ignore[attr-defined]


def _ent(tenant: Tenant) -> ProductEntitlement:
    return entitlements(tenant=tenant)[PRODUCT]


def _out(tenant: Tenant, client: Client) -> dict[str, Any]:
    return _client(client, selectors.ai_credits_used(tenant=tenant, client=client, ent=_ent(tenant)))


def _path_id(client_id: str) -> str:
    """The client_id a path names, exactly: the forms and the CSV import forgive spaces around an id
    typed or exported by hand, but a URL is the resource's own name (RFC 9110 9.3.4: a PUT stores
    the state at the target URI), so `PUT /clients/%20lead` may not write client `lead`."""
    if client_id.strip() and client_id != client_id.strip():
        raise BusinessError("invalid_request", "client_id: No spaces at either end of the id.", status=422)
    return rules.clean_external_id(client_id)


def _find(tenant: Tenant, client_id: str) -> Client:
    external_id = _path_id(client_id)
    client = selectors.client_by_external_id(tenant=tenant, external_id=external_id)
    if client is None:
        raise BusinessError("unknown_client", rules.MSG_UNKNOWN_CLIENT, status=404)
    return client


# --- clients -------------------------------------------------------------------------------------

_upsert_docs = documented(
    {201: ClientOut, 200: ClientOut},
    ErrorCase(
        404,
        "not_found",
        "Not found.",
        "Never for a client_id that is new (it is created): only for a path that does not exist.",
    ),
    BAD_ID,
    MISSING_NAME,
    FORM_BODY,
    ok_examples={
        201: {
            "created": CLIENT_EXAMPLE
            | {"ai_license": False, "ai_license_since": None, "ai_credits_used": "0"}
        },
        200: {"updated": CLIENT_EXAMPLE},
    },
    ok_descriptions={201: "Created", 200: "Updated (or already as sent: nothing changed)"},
)
_upsert_docs["openapi_extra"]["requestBody"] = {
    "content": {
        "application/json": {
            "examples": {
                "managed": {
                    "value": {
                        "name": "Contoso Ltd",
                        "status": "active",
                        "company_type": "Customer",
                        "agreement_type": "Managed services",
                    }
                },
                "break_fix": {"value": {"name": "Fabrikam", "agreement_type": "Break-fix"}},
            }
        }
    }
}


@router.put(
    "/clients/{client_id}",
    summary="Create or update a client (upsert by its id in your PSA)",
    description="201 with the client when this client_id is new; 200 when it existed (its name, status, "
    "company type and agreement type become those sent; leaving out an optional field sets it to its default). "
    "Its licenses are not touched: an inactive client that holds one is flagged on the Plans & Licenses page. "
    "Audited with the key as actor.",
    **_upsert_docs,
)
def client_put(request: HttpRequest, client_id: ClientIdPath, payload: ClientIn) -> Status:
    tenant = _tenant(request)
    client, created = services.client_upsert(
        tenant=tenant,
        external_id=_path_id(client_id),
        fields=rules.clean_fields(
            name=payload.name,
            status=payload.status,
            company_type=payload.company_type,
            agreement_type=payload.agreement_type,
        ),
        actor=request.auth,  # type: ignore[attr-defined]
    )
    return Status(201 if created else 200, _out(tenant, client))


@router.get(
    "/clients/{client_id}",
    summary="One client, with its license status and the AI credits it used this period",
    description="The client as the Plans & Licenses table shows it: name, status, company and agreement "
    "types, whether it holds an AI and a Chat license and since when, and `ai_credits_used`: the AI credits "
    "of the consumptions sent with its client_id (net of refunds) in the current Helpdesk AI billing period. "
    "404 for a client_id the tenant does not have.",
    **documented(
        ClientOut,
        UNKNOWN,
        BAD_PATH,
        ok_examples={200: {"client": CLIENT_EXAMPLE}},
        ok_descriptions={200: "The client"},
    ),
)
def client_get(request: HttpRequest, client_id: ClientIdPath) -> dict:
    tenant = _tenant(request)
    return _out(tenant, _find(tenant, client_id))


@router.get(
    "/clients",
    summary="The tenant's clients, paginated, with the Plans & Licenses page's search, filters and order",
    description="The filters combine as on the page: `q` (part of the name, or the exact client_id), "
    "`status`, `company_type`, `agreement_type` and `license` (`flagged`: inactive clients still holding a "
    "license); `sort` orders by a column. `total` counts every matching client; ask for `next_page` until it "
    "is null.",
    **documented(
        ClientList,
        ErrorCase(
            422,
            "invalid_request",
            "page_size: Input should be less than or equal to 200",
            "A filter is invalid (a status or license filter that does not exist, a page size out of range).",
            source="query",
            detail_type="less_than_equal",
        ),
        ok_examples={
            200: {"page": {"items": [CLIENT_EXAMPLE], "total": 1, "page": 1, "pages": 1, "next_page": None}}
        },
        ok_descriptions={200: "A page of clients"},
    ),
)
def client_list(request: HttpRequest, query: Query[ListQuery]) -> dict:
    tenant = _tenant(request)
    filters = ClientFilters(
        q=query.q.strip(),
        status=query.status or "",
        company_type=query.company_type,
        agreement_type=query.agreement_type,
        license=query.license or "",
        sort=query.sort,
    )
    found = selectors.clients_page(
        tenant=tenant,
        filters=filters,
        number=query.page,
        size=query.page_size,
        ent=_ent(tenant),
        past_last=True,
    )
    page = found.page
    return {
        "items": [_client(c, c.ai_credits_used) for c in found.rows],  # type: ignore[attr-defined]
        "total": page.paginator.count,
        "page": page.number,
        "pages": page.paginator.num_pages,
        "next_page": page.next_page_number() if page.has_next() else None,
    }


# --- licenses ------------------------------------------------------------------------------------


@router.put(
    "/clients/{client_id}/licenses/{kind}",
    summary="Add AI license / Add Chat license to a client",
    description="At once, audited with the key as actor. Idempotent: a client that holds the license already "
    "answers 200 and nothing changes. Refused, changing nothing, when the plan's total is used up or passed "
    "after a downgrade (402 `license_limit_reached`), when the plan has ended or is overdue or there is none "
    "(402), or for an "
    "inactive client (409) — as on the Plans & Licenses page.",
    **documented(
        ClientOut,
        UNKNOWN,
        LIMIT,
        ENDED,
        OVERDUE,
        NO_SUBSCRIPTION,
        INACTIVE,
        BAD_PATH,
        FORM_BODY,
        ok_examples={200: {"assigned": CLIENT_EXAMPLE}},
        ok_descriptions={200: "The client, holding the license"},
    ),
)
def license_put(request: HttpRequest, client_id: ClientIdPath, kind: KindPath) -> dict:
    no_body(request)
    tenant = _tenant(request)
    client = services.license_assign(
        tenant=tenant,
        client=_find(tenant, client_id),
        kind=kind,
        actor=request.auth,  # type: ignore[attr-defined]
    )
    return _out(tenant, client)


@router.delete(
    "/clients/{client_id}/licenses/{kind}",
    summary="Remove AI license / Remove Chat license from a client",
    description="At once, audited with the key as actor. Idempotent: a client without the license answers 200 "
    "and nothing changes. Always allowed (a removal resolves an overage after a downgrade).",
    **documented(
        ClientOut,
        UNKNOWN,
        BAD_PATH,
        FORM_BODY,
        ok_examples={200: {"removed": CLIENT_EXAMPLE | {"ai_license": False, "ai_license_since": None}}},
        ok_descriptions={200: "The client, without the license"},
    ),
)
def license_delete(request: HttpRequest, client_id: ClientIdPath, kind: KindPath) -> dict:
    no_body(request)
    tenant = _tenant(request)
    client = services.license_remove(
        tenant=tenant,
        client=_find(tenant, client_id),
        kind=kind,
        actor=request.auth,  # type: ignore[attr-defined]
    )
    return _out(tenant, client)


# --- tickets -------------------------------------------------------------------------------------

TICKET_EXAMPLES = {
    "via license": {
        "ticket_id": "HD-10422",
        "client_id": "contoso",
        "ai": True,
        "via": "license",
        "reason": None,
        "message": None,
        "ticket_credits_remaining": 41,
    },
    "via unlimited": {
        "ticket_id": "HD-10423",
        "client_id": "fabrikam",
        "ai": True,
        "via": "unlimited",
        "reason": None,
        "message": None,
        "ticket_credits_remaining": 150,
    },
    "via ticket credit": {
        "ticket_id": "HD-10424",
        "client_id": "fabrikam",
        "ai": True,
        "via": "ticket_credit",
        "reason": None,
        "message": None,
        "ticket_credits_remaining": 40,
    },
    "none left": {
        "ticket_id": "HD-10425",
        "client_id": "fabrikam",
        "ai": False,
        "via": None,
        "reason": "no_ticket_credits",
        "message": services.MSG_NO_CREDITS.format(name="Fabrikam"),
        "ticket_credits_remaining": 0,
    },
    "inactive client": {
        "ticket_id": "HD-10426",
        "client_id": "northwind-old",
        "ai": False,
        "via": None,
        "reason": "client_inactive",
        "message": services.MSG_NOT_ACTIVE.format(name="Northwind Old"),
        "ticket_credits_remaining": 40,
    },
    "plan ended": {
        "ticket_id": "HD-10427",
        "client_id": "contoso",
        "ai": False,
        "via": None,
        "reason": "subscription_ended",
        "message": MSG_ENDED,
        "ticket_credits_remaining": 0,
    },
}
_ticket_docs = documented(
    TicketOut,
    UNKNOWN,
    ErrorCase(
        409,
        "idempotency_conflict",
        rules.MSG_TICKET_OTHER_CLIENT.format(client="fabrikam"),
        "This ticket_id got its answer for another client: nothing changed.",
    ),
    ErrorCase(
        422,
        "invalid_request",
        "ticket_id: String should have at most 190 characters",
        "A field is missing or invalid (a ticket_id over 190 characters, a client_id with '/', a NUL character).",
        detail_type="string_too_long",
    ),
    FORM_BODY,
    ok_examples={200: TICKET_EXAMPLES},
    ok_descriptions={200: "The answer: whether the ticket gets AI, and why (or why not)"},
)
_ticket_docs["openapi_extra"]["requestBody"] = {
    "content": {
        "application/json": {
            "examples": {"ticket": {"value": {"ticket_id": "HD-10424", "client_id": "fabrikam"}}}
        }
    }
}


@router.post(
    "/tickets",
    # The key may come from the process's memory: the write's procedure confirms it
    # (tenants.key_confirmation).
    auth=ApiKeyAuth(remembered=True),
    summary="Does this ticket get AI? (a license, Unlimited AI access, or one ticket credit)",
    description="Call it when a ticket is created. A client with an AI license qualifies `via` `license`; with "
    "Unlimited AI access every active client qualifies `via` `unlimited`; otherwise one ticket credit is "
    "consumed (`via` `ticket_credit`), and with none left the ticket does not get AI (`ai` false, `reason` "
    "`no_ticket_credits`). An inactive client, or a plan that has ended or is overdue, answers `ai` false with "
    "the reason. A ticket that got AI answers its first answer again and never consumes twice, also when "
    "sent several times at once; one that did not is decided afresh when asked again (after a license is "
    "assigned, say). 404 for an unknown client.",
    **_ticket_docs,
)
def ticket(request: HttpRequest, payload: TicketIn) -> HttpResponse:
    answer = services.ticket_qualify(
        tenant=_tenant(request),
        ticket_id=payload.ticket_id,
        client_id=payload.client_id,
        actor=request.auth,  # type: ignore[attr-defined]
        versions=request.auth.versions,  # type: ignore[attr-defined]
    )
    return json_answer(_ticket_out(answer))


def _ticket_out(answer: dict[str, Any]) -> dict[str, Any]:
    """TicketOut's fields in its order (a kept answer comes back from jsonb in jsonb's key order),
    encoded without validating it again (tenants.api_answer; the tests compare the bytes with
    ninja's rendering)."""
    return {name: answer[name] for name in TicketOut.model_fields}
