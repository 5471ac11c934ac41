"""Integration API of the credit ledger: consume, refund, holds (place, commit, release), the
figures and the ledger replayed at a moment. Thin: validate, call one service or selector, answer.

Credits travel as decimal strings with up to three decimals ("49.9", "0.1"). `balance` =
unexpired credits not yet consumed (held ones included); `held` = reserved by open holds;
`available` = balance - held, what a consumption or a new hold may take. Writes are idempotent:
the same idempotency key answers the first answer with 200 (also when both arrive at the same
moment: the second waits for the first), the same key with another request is a 409, and a
refused attempt stores no key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.errors import ValidationError
from pydantic import StrictInt, StringConstraints
from pydantic import ValidationError as PydanticValidationError

from credits import selectors, services
from plans.money import credits_string, parse_credits
from plans.selectors import MSG_ENDED, MSG_OVERDUE
from tenants.errors import BusinessError

router = Router(tags=["credits"])

MAX_ID = 2**63 - 1
# Printable text without control characters (PostgreSQL refuses NUL; none belongs in a key).
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
Key = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE)]
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE)]
Feature = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")]
Quantity = Annotated[StrictInt, Field(ge=1, le=1_000_000)]
# At most a billion credits, at most three decimals: exact thousandths, never a float.
Credits = Annotated[str, StringConstraints(max_length=14, pattern=r"^[0-9]{1,10}(\.[0-9]{1,3})?$")]
HoldId = Annotated[int, Path(ge=1, le=MAX_ID)]


# --- schemas -------------------------------------------------------------------------------------


class ErrorDetail(Schema):
    code: str
    message: str
    details: Any = None


class ErrorOut(Schema):
    error: ErrorDetail


def _error(code: str, message: str) -> dict[str, Any]:
    return {"application/json": {"example": {"error": {"code": code, "message": message}}}}


def _ok(example: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"example": example}}


UNAUTHORIZED = {
    "description": "No API key, or a revoked or unknown one.",
    "content": _error(
        "unauthorized", "A valid API key is required: send it as 'Authorization: Bearer <key>'."
    ),
}
INVALID = {
    "description": "Bad input (a missing or malformed field, a number out of range); nothing changed.",
    "content": _error("invalid_request", "quantity: Input should be greater than or equal to 1"),
}
INSUFFICIENT = {
    "description": "Not enough available credit (`insufficient_credits`), or the plan does not admit "
    "new work: expired or no plan (`subscription_ended`, with the message shown here), payment "
    f"overdue (`payment_overdue`: '{MSG_OVERDUE}'). Nothing was taken and the key was not stored: "
    "the same request may be retried.",
    "content": {
        "application/json": {
            "examples": {
                "insufficient_credits": {
                    "value": {
                        "error": {
                            "code": "insufficient_credits",
                            "message": "Not enough AI credits: 1 needed, 0.4 available.",
                        }
                    }
                },
                "subscription_ended": {
                    "value": {"error": {"code": "subscription_ended", "message": MSG_ENDED}}
                },
                "payment_overdue": {"value": {"error": {"code": "payment_overdue", "message": MSG_OVERDUE}}},
            }
        }
    },
}
CONFLICT_KEY = {
    "description": "This idempotency key was already used with a different request.",
    "content": _error("idempotency_conflict", services.MSG_IDEMPOTENCY_CONFLICT),
}


class GrantDrawOut(Schema):
    grant_id: int
    source: str
    credits: str


class ConsumeIn(Schema):
    feature: Feature = Field(
        description="smart_response (1 credit) or ai_review (0.1 credit)", examples=["ai_review"]
    )
    quantity: Quantity = Field(description="How many uses (1 to 1,000,000).", examples=[1])
    idempotency_key: Key = Field(description="Your unique key for this consumption (1 to 200 characters).")
    client_id: ClientId | None = Field(default=None, description="Your client (shown in AI Statistics).")


class ConsumeOut(Schema):
    consumed: str
    feature: str
    quantity: int
    idempotency_key: str
    client_id: str | None
    balance: str
    held: str
    available: str
    grants: list[GrantDrawOut] = Field(description="Which grants gave the credits.")
    created_at: datetime


CONSUMED = {
    "consumed": "0.1",
    "feature": "ai_review",
    "quantity": 1,
    "idempotency_key": "review-8f2c",
    "client_id": "acme-support",
    "balance": "49.9",
    "held": "0",
    "available": "49.9",
    "grants": [{"grant_id": 12, "source": "plan_included", "credits": "0.1"}],
    "created_at": "2026-05-07T10:15:00Z",
}


class RefundIn(Schema):
    idempotency_key: Key = Field(description="The idempotency key of the consumption (or committed hold).")


class RefundOut(Schema):
    refunded: str = Field(description="Credits returned to the grants they came from.")
    expired: str = Field(description="Credits that came from grants expired since: they stay expired.")
    idempotency_key: str
    balance: str
    held: str
    available: str
    refunded_at: datetime


class HoldIn(Schema):
    feature: Feature | None = Field(default=None, description="With quantity: hold the cost of these uses.")
    quantity: Quantity | None = None
    credits: Credits | None = Field(default=None, description='Or hold this many credits, e.g. "2.5".')
    idempotency_key: Key
    ttl_seconds: Annotated[StrictInt, Field(ge=1, le=86_400)] = Field(
        default=900, description="How long the hold lasts (1 to 86,400 seconds, default 900)."
    )
    client_id: ClientId | None = None


class HoldOut(Schema):
    id: int
    idempotency_key: str
    feature: str | None
    quantity: int | None
    client_id: str | None
    credits: str
    status: str
    expires_at: datetime
    balance: str
    held: str
    available: str


class CommitIn(Schema):
    credits: Credits | None = Field(
        default=None, description="The actual cost; at most the hold. Omitted: all of it."
    )


class CommitOut(Schema):
    id: int
    idempotency_key: str
    status: str
    credits: str
    committed: str
    released: str
    balance: str
    held: str
    available: str
    grants: list[GrantDrawOut]


class ReleaseOut(Schema):
    id: int
    idempotency_key: str
    status: str = Field(description="released, or expired when the hold had already lapsed.")
    credits: str
    released: str
    balance: str
    held: str
    available: str


class GrantOut(Schema):
    id: int
    source: str
    amount: str
    remaining: str
    valid_from: datetime
    expires_at: datetime | None


class PlanOut(Schema):
    code: str | None
    name: str | None
    state: str
    badge: str
    included_credits: str
    renewal: str
    period_start: datetime | None
    period_end: datetime | None
    next_renewal: datetime | None
    active: bool


class CreditsOut(Schema):
    balance: str
    held: str
    available: str
    plan: PlanOut | None
    grants: list[GrantOut] = Field(description="Unexpired grants, in the order consumption draws them.")
    extra_pack: GrantOut | None = Field(description="The active extra pack (one at a time), if any.")


class LedgerEntryOut(Schema):
    id: int
    created_at: datetime
    kind: str
    credits: str
    grant_id: int | None
    feature: str | None
    client_id: str | None
    idempotency_key: str | None
    actor: str
    note: str | None


class LedgerOut(Schema):
    as_of: datetime
    balance: str
    grants: list[GrantOut] = Field(description="Each grant live at as_of, with what it held then.")
    entries: list[LedgerEntryOut] = Field(description="The entries of those grants up to as_of, by id.")
    next_after: int | None = Field(description="More entries: ask again with after=<this>.")


# --- endpoints -----------------------------------------------------------------------------------


def _credits(text: str | None) -> int | None:
    return parse_credits(text) if text is not None else None


@router.post(
    "/credits/consume",
    response={200: ConsumeOut, 201: ConsumeOut, 401: ErrorOut, 402: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    summary="Consume credits for uses of a feature, all or nothing",
    description="Takes the cost of `quantity` uses of `feature` (1 credit = 1 Smart Response = 10 AI "
    "Reviewer reviews) from the tenant's credits: plan credits before extra packs, each soonest-expiring "
    "first; expired credit is never used.",
    openapi_extra={
        "responses": {
            201: {"description": "Consumed.", "content": _ok(CONSUMED)},
            200: {
                "description": "This idempotency key was already consumed: the first answer, nothing taken again.",
                "content": _ok(CONSUMED),
            },
            401: UNAUTHORIZED,
            402: INSUFFICIENT,
            409: CONFLICT_KEY,
            422: INVALID,
        }
    },
)
def consume(request: HttpRequest, data: ConsumeIn) -> Status:
    outcome = services.credits_consume(
        tenant=request.auth.tenant,  # type: ignore[attr-defined]
        feature=data.feature,
        quantity=data.quantity,
        idempotency_key=data.idempotency_key,
        client_id=data.client_id or "",
        actor=request.auth,  # type: ignore[attr-defined]
    )
    return Status(201 if outcome.created else 200, outcome.answer)


REFUNDED = {
    "refunded": "1",
    "expired": "0",
    "idempotency_key": "reply-1f9a",
    "balance": "50",
    "held": "0",
    "available": "50",
    "refunded_at": "2026-05-07T10:16:00Z",
}


@router.post(
    "/credits/refund",
    response={200: RefundOut, 401: ErrorOut, 404: ErrorOut, 422: ErrorOut},
    summary="Refund a consumption by its idempotency key",
    description="Returns the credits to the grants they came from; what came from a grant that has "
    "expired since stays expired (reported as `expired`). Refunding again answers the same, changing nothing.",
    openapi_extra={
        "responses": {
            200: {
                "description": "Refunded (or already refunded: the same answer).",
                "content": _ok(REFUNDED),
            },
            401: UNAUTHORIZED,
            404: {
                "description": "No consumption has this idempotency key.",
                "content": _error("not_found", "No consumption has this idempotency key."),
            },
            422: INVALID,
        }
    },
)
def refund(request: HttpRequest, data: RefundIn) -> dict:
    return services.credits_refund(
        tenant=request.auth.tenant,  # type: ignore[attr-defined]
        idempotency_key=data.idempotency_key,
        actor=request.auth,  # type: ignore[attr-defined]
    ).answer


HELD = {
    "id": 981,
    "idempotency_key": "llm-call-77",
    "feature": None,
    "quantity": None,
    "client_id": None,
    "credits": "2.5",
    "status": "held",
    "expires_at": "2026-05-07T10:30:00Z",
    "balance": "50",
    "held": "2.5",
    "available": "47.5",
}


@router.post(
    "/credits/holds",
    response={200: HoldOut, 201: HoldOut, 401: ErrorOut, 402: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    summary="Hold credits for work whose cost is known only afterwards",
    description='Send `feature` and `quantity`, or `credits` ("2.5"). All or nothing against the available '
    "credits. The hold lapses after `ttl_seconds` (default 900); an expired hold releases itself and never "
    "counts as held after its expiry.",
    openapi_extra={
        "responses": {
            201: {"description": "Held.", "content": _ok(HELD)},
            200: {
                "description": "This idempotency key already placed this hold: the first answer.",
                "content": _ok(HELD),
            },
            401: UNAUTHORIZED,
            402: INSUFFICIENT,
            409: CONFLICT_KEY,
            422: {
                "description": "Bad input: neither or both of feature+quantity and credits, a ttl out of "
                "1 to 86,400, more than three decimals; nothing changed.",
                "content": _error("invalid_request", "Send either feature and quantity, or credits."),
            },
        }
    },
)
def hold(request: HttpRequest, data: HoldIn) -> Status:
    amount = _credits(data.credits)
    outcome = services.credits_hold(
        tenant=request.auth.tenant,  # type: ignore[attr-defined]
        idempotency_key=data.idempotency_key,
        feature=data.feature,
        quantity=data.quantity,
        amount=amount,
        ttl_seconds=data.ttl_seconds,
        client_id=data.client_id or "",
        actor=request.auth,  # type: ignore[attr-defined]
    )
    return Status(201 if outcome.created else 200, outcome.answer)


COMMITTED = {
    "id": 981,
    "idempotency_key": "llm-call-77",
    "status": "committed",
    "credits": "2.5",
    "committed": "1.2",
    "released": "1.3",
    "balance": "48.8",
    "held": "0",
    "available": "48.8",
    "grants": [{"grant_id": 12, "source": "plan_included", "credits": "1.2"}],
}
HOLD_404 = {
    "description": "No hold of yours has this id.",
    "content": _error("not_found", "No hold has this id."),
}


@router.post(
    "/credits/holds/{hold_id}/commit",
    response={200: CommitOut, 401: ErrorOut, 402: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    summary="Commit a hold: consume the actual cost, release the rest",
    description="Consumes `credits` (at most the hold; the whole hold when omitted) from the grants valid "
    "now and releases the rest. A repeated commit answers the first commit.",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {"schema": CommitIn.model_json_schema(), "example": {"credits": "1.2"}}
            },
        },
        "responses": {
            200: {
                "description": "Committed (or already committed: the first answer).",
                "content": _ok(COMMITTED),
            },
            401: UNAUTHORIZED,
            402: {
                "description": "The grants behind the hold expired while it was open: not enough credit "
                "left to commit (expired credit is never consumed). The hold stays open.",
                "content": _error("insufficient_credits", "Not enough AI credits: 2.5 needed, 1 available."),
            },
            404: HOLD_404,
            409: {
                "description": "The hold was released (`hold_released`) or expired (`hold_expired`), or "
                "was already committed for another amount (`hold_committed`).",
                "content": _error("hold_released", services.MSG_HOLD_RELEASED),
            },
            422: {
                "description": "More than the hold, or a malformed amount.",
                "content": _error("commit_exceeds_hold", "Commit at most the 2.5 credits held."),
            },
        },
    },
)
def commit(request: HttpRequest, hold_id: HoldId) -> dict:
    data = _optional_body(request, CommitIn)
    return services.credits_hold_commit(
        tenant=request.auth.tenant,  # type: ignore[attr-defined]
        hold_id=hold_id,
        amount=_credits(data.credits if data is not None else None),
        actor=request.auth,  # type: ignore[attr-defined]
    ).answer


def _optional_body(request: HttpRequest, schema: type[CommitIn]) -> CommitIn | None:
    """The body is optional here: none at all (or an empty one) means the defaults. Parsed by hand
    because ninja refuses an empty body of a body parameter."""
    if request.content_type != "application/json":
        try:
            form = bool(request.POST or request.FILES)
        except MultiPartParserError:
            form = True
        if form:
            raise ValidationError(
                [
                    {
                        "type": "content_type",
                        "loc": ("body",),
                        "msg": "Send the body as JSON (application/json).",
                    }
                ]
            )
        return None  # no body (a form post without fields)
    raw = request.body.strip()
    if not raw:
        return None
    try:
        return schema.model_validate_json(raw)
    except PydanticValidationError as exc:
        raise ValidationError(
            [
                {"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]}
                for e in exc.errors(include_url=False, include_context=False, include_input=False)
            ]
        ) from exc


RELEASED = {
    "id": 981,
    "idempotency_key": "llm-call-77",
    "status": "released",
    "credits": "2.5",
    "released": "2.5",
    "balance": "50",
    "held": "0",
    "available": "50",
}


@router.post(
    "/credits/holds/{hold_id}/release",
    response={200: ReleaseOut, 401: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    summary="Release a hold unused",
    description="Releasing again answers the same. A hold that already expired has released itself "
    "(status `expired`).",
    openapi_extra={
        "responses": {
            200: {"description": "Released (or already released or expired).", "content": _ok(RELEASED)},
            401: UNAUTHORIZED,
            404: HOLD_404,
            409: {
                "description": "The hold was committed: it can no longer be released.",
                "content": _error("hold_committed", services.MSG_HOLD_COMMITTED),
            },
            422: INVALID,
        }
    },
)
def release(request: HttpRequest, hold_id: HoldId) -> dict:
    return services.credits_hold_release(
        tenant=request.auth.tenant,  # type: ignore[attr-defined]
        hold_id=hold_id,
        actor=request.auth,  # type: ignore[attr-defined]
    ).answer


def _plan(ent: Any) -> dict[str, Any] | None:
    if ent is None:
        return None
    return {
        "code": ent.plan_code,
        "name": ent.plan_name,
        "state": ent.state,
        "badge": ent.badge,
        "included_credits": credits_string(ent.limits.included_credits),
        "renewal": ent.limits.credit_renewal,
        "period_start": ent.period_start,
        "period_end": ent.period_end,
        "next_renewal": ent.next_billing_date,
        "active": ent.active,
    }


@router.get(
    "/credits",
    response={200: CreditsOut, 401: ErrorOut},
    summary="The tenant's AI credits: balance, held, available, plan, grants, extra pack",
    openapi_extra={
        "responses": {
            200: {
                "description": "The figures now.",
                "content": _ok(
                    {
                        "balance": "2049.9",
                        "held": "2.5",
                        "available": "2047.4",
                        "plan": {
                            "code": "credits-plus",
                            "name": "AI Plus",
                            "state": "active",
                            "badge": "Active subscription",
                            "included_credits": "2000",
                            "renewal": "monthly",
                            "period_start": "2026-05-01T00:00:00Z",
                            "period_end": "2026-06-01T00:00:00Z",
                            "next_renewal": "2026-06-01T00:00:00Z",
                            "active": True,
                        },
                        "grants": [
                            {
                                "id": 12,
                                "source": "plan_renewal",
                                "amount": "2000",
                                "remaining": "1549.9",
                                "valid_from": "2026-05-01T00:00:00Z",
                                "expires_at": "2026-06-01T00:00:00Z",
                            },
                            {
                                "id": 14,
                                "source": "extra_pack",
                                "amount": "500",
                                "remaining": "500",
                                "valid_from": "2026-05-03T09:00:00Z",
                                "expires_at": "2026-06-02T09:00:00Z",
                            },
                        ],
                        "extra_pack": {
                            "id": 14,
                            "source": "extra_pack",
                            "amount": "500",
                            "remaining": "500",
                            "valid_from": "2026-05-03T09:00:00Z",
                            "expires_at": "2026-06-02T09:00:00Z",
                        },
                    }
                ),
            },
            401: UNAUTHORIZED,
        }
    },
)
def get_credits(request: HttpRequest) -> dict:
    ov = selectors.overview(tenant=request.auth.tenant)  # type: ignore[attr-defined]
    return {
        **ov.figures.as_strings(),
        "plan": _plan(ov.plan),
        "grants": [g.as_api() for g in ov.grants],
        "extra_pack": ov.extra_pack.as_api() if ov.extra_pack else None,
    }


class LedgerQuery(Schema):
    as_of: datetime | None = Field(default=None, description="ISO 8601 with a zone; default: now.")
    after: Annotated[int, Field(ge=0, le=MAX_ID)] = Field(default=0, description="Entries after this id.")
    limit: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=500, description="Entries per page (1 to 1,000)."
    )


@router.get(
    "/credits/ledger",
    response={200: LedgerOut, 401: ErrorOut, 422: ErrorOut},
    summary="The balance as it was at a moment, replayed from the ledger, every credit explained",
    description="For each grant live at `as_of`: what it held then (the sum of its entries written up to "
    "then); the balance is their sum. The entries are those of these grants, oldest first, paged by id.",
    openapi_extra={
        "responses": {
            200: {
                "description": "The ledger at as_of.",
                "content": _ok(
                    {
                        "as_of": "2026-05-07T12:00:00Z",
                        "balance": "49.9",
                        "grants": [
                            {
                                "id": 3,
                                "source": "plan_included",
                                "amount": "50",
                                "remaining": "49.9",
                                "valid_from": "2026-05-01T00:00:00Z",
                                "expires_at": "2026-07-30T00:00:00Z",
                            }
                        ],
                        "entries": [
                            {
                                "id": 7,
                                "created_at": "2026-05-01T00:00:00Z",
                                "kind": "grant",
                                "credits": "50",
                                "grant_id": 3,
                                "feature": None,
                                "client_id": None,
                                "idempotency_key": "subscription:5:free",
                                "actor": "system",
                                "note": "AI Free · 1 May 2026 to 30 Jul 2026",
                            },
                            {
                                "id": 9,
                                "created_at": "2026-05-07T10:15:00Z",
                                "kind": "consume",
                                "credits": "-0.1",
                                "grant_id": 3,
                                "feature": "ai_review",
                                "client_id": "acme-support",
                                "idempotency_key": "review-8f2c",
                                "actor": "API key runtime (alw_Ab12)",
                                "note": None,
                            },
                        ],
                        "next_after": None,
                    }
                ),
            },
            401: UNAUTHORIZED,
            422: {
                "description": "as_of without a time zone, or a malformed parameter.",
                "content": _error("invalid_request", "as_of needs a time zone, e.g. 2026-05-07T12:00:00Z."),
            },
        }
    },
)
def ledger(request: HttpRequest, query: Query[LedgerQuery]) -> dict:
    as_of = query.as_of or timezone.now()
    if timezone.is_naive(as_of):
        raise BusinessError(
            "invalid_request", "as_of needs a time zone, e.g. 2026-05-07T12:00:00Z.", status=422
        )
    result = selectors.ledger_as_of(
        tenant=request.auth.tenant,  # type: ignore[attr-defined]
        as_of=as_of,
        after=query.after,
        limit=query.limit,
    )
    return {
        "as_of": result.as_of,
        "balance": credits_string(result.balance),
        "grants": result.grants,
        "entries": result.entries,
        "next_after": result.next_after,
    }
