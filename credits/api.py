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

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, Path, Query, Router, Schema, Status
from pydantic import StrictInt, StringConstraints

from credits import selectors, services
from plans.money import credits_string, parse_credits
from plans.selectors import MSG_ENDED, MSG_OVERDUE
from tenants.api_answer import json_answer
from tenants.api_auth import ApiKeyAuth
from tenants.api_docs import FORM_BODY, ErrorCase, documented
from tenants.api_fields import (
    NO_CONTROL,
    PRINTABLE,
    Moment,
    RequestBody,
    no_body,
    optional_body,
    pattern_says,
)

router = Router(tags=["credits"])

MAX_ID = 2**63 - 1
Key = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE), NO_CONTROL]
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE), NO_CONTROL]
Feature = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$"),
    pattern_says("feature_format", "String should hold only lower-case letters, digits, _ and -"),
]
Quantity = Annotated[StrictInt, Field(ge=1, le=1_000_000)]
# At most a billion credits (1,000,000,000 itself included), at most three decimals: exact
# thousandths, never a float. The pattern is the bound the message states: up to nine digits, or
# exactly a billion.
Credits = Annotated[
    str,
    StringConstraints(max_length=14, pattern=r"^(?:[0-9]{1,9}(?:\.[0-9]{1,3})?|1000000000(?:\.0{1,3})?)$"),
    pattern_says(
        "credits_format",
        "Credits should be a decimal string of at most a billion (1000000000), with up to three "
        'decimals, e.g. "2.5"',
    ),
]


# --- schemas -------------------------------------------------------------------------------------

CREDITS_TEXT = "credits as a decimal string with up to three decimals"


def _credits_field(what: str, **kwargs: Any) -> Any:
    return Field(description=f'{what}, in {CREDITS_TEXT} (e.g. "49.9").', **kwargs)


class GrantDrawOut(Schema):
    grant_id: int = Field(description="The grant the credits were taken from.")
    source: str = Field(
        description="That grant's source: plan_included, plan_renewal, extra_pack, staff_adjustment."
    )
    credits: str = _credits_field("What was taken from it")


class FiguresOut(Schema):
    balance: str = _credits_field("Unexpired credits not yet consumed, held ones included")
    held: str = _credits_field("Credits reserved by open holds")
    available: str = _credits_field("balance - held: what a consumption or a new hold may take")


class ConsumeIn(RequestBody):
    feature: Feature = Field(
        description="What was used: `smart_response` (1 credit) or `ai_review` (0.1 credit).",
        examples=["ai_review"],
    )
    quantity: Quantity = Field(description="How many uses (1 to 1,000,000).", examples=[1])
    idempotency_key: Key = Field(
        description="Your unique key for this consumption (1 to 200 printable characters): a retry "
        "with the same key answers the first answer."
    )
    client_id: ClientId | None = Field(
        default=None, description="Your client, for AI Statistics' top clients (optional)."
    )


class ConsumeOut(FiguresOut):
    consumed: str = _credits_field("What this consumption took")
    feature: str = Field(description="The feature consumed.")
    quantity: int = Field(description="How many uses.")
    idempotency_key: str = Field(description="The key of this consumption (give it to refund it).")
    client_id: str | None = Field(description="The client sent, if any.")
    grants: list[GrantDrawOut] = Field(description="Which grants gave the credits.")
    created_at: datetime = Field(description="When it was consumed (ISO 8601, UTC).")


class RefundIn(RequestBody):
    idempotency_key: Key = Field(
        description="The idempotency key of the consumption (or of the committed hold)."
    )


class RefundOut(FiguresOut):
    refunded: str = _credits_field("Credits returned to the grants they came from")
    expired: str = _credits_field("Credits that came from grants expired since: they stay expired")
    idempotency_key: str = Field(description="The key of the consumption refunded.")
    refunded_at: datetime = Field(description="When it was refunded (ISO 8601, UTC).")


class HoldIn(RequestBody):
    feature: Feature | None = Field(
        default=None, description="With `quantity`: hold the cost of these uses of this feature."
    )
    quantity: Quantity | None = Field(
        default=None, description="With `feature`: how many uses (1 to 1,000,000)."
    )
    credits: Credits | None = Field(
        default=None,
        description='Or hold this many credits, a decimal string with up to three decimals ("2.5").',
    )
    idempotency_key: Key = Field(description="Your unique key for this hold (1 to 200 printable characters).")
    ttl_seconds: Annotated[StrictInt, Field(ge=1, le=86_400)] = Field(
        default=900, description="How long the hold lasts, in seconds (1 to 86,400; default 900)."
    )
    client_id: ClientId | None = Field(default=None, description="Your client (optional).")


class HoldOut(FiguresOut):
    id: int = Field(description="The hold's id: commit or release it by this id.")
    idempotency_key: str = Field(description="The key of this hold.")
    feature: str | None = Field(description="The feature held for, when the hold was placed by feature.")
    quantity: int | None = Field(description="The uses held for, when placed by feature.")
    client_id: str | None = Field(description="The client sent, if any.")
    credits: str = _credits_field("What is held")
    status: str = Field(description="`held` (open until expires_at).")
    expires_at: datetime = Field(description="When the hold lapses and releases itself (ISO 8601, UTC).")


class CommitIn(RequestBody):
    credits: Credits | None = Field(
        default=None, description="The actual cost, at most the hold; omitted (or no body): all of it."
    )


class CommitOut(FiguresOut):
    id: int = Field(description="The hold's id.")
    idempotency_key: str = Field(description="The hold's key (refund the commit with it).")
    status: str = Field(description="`committed`.")
    credits: str = _credits_field("What was held")
    committed: str = _credits_field("What was consumed")
    released: str = _credits_field("What was given back unused")
    grants: list[GrantDrawOut] = Field(description="Which grants gave the committed credits.")


class ReleaseOut(FiguresOut):
    id: int = Field(description="The hold's id.")
    idempotency_key: str = Field(description="The hold's key.")
    status: str = Field(description="`released`, or `expired` when the hold had already lapsed.")
    credits: str = _credits_field("What was held")
    released: str = _credits_field("What was given back")


class GrantOut(Schema):
    id: int = Field(description="The grant's id (ledger entries name it).")
    source: str = Field(
        description="Where it came from: plan_included, plan_renewal, extra_pack, staff_adjustment, ticket_cycle."
    )
    amount: str = _credits_field("What was granted")
    remaining: str = _credits_field("What is left of it")
    valid_from: datetime = Field(description="From when it counts (ISO 8601, UTC).")
    expires_at: datetime | None = Field(description="When it stops counting; null: never.")


class PlanOut(Schema):
    code: str | None = Field(
        description="The AI Credits plan's code (credits-free, credits-plus, credits-ultra)."
    )
    name: str | None = Field(description="Its display name.")
    state: str = Field(description="Subscription state, as GET /entitlements says it.")
    badge: str = Field(description="The badge the pages show.")
    included_credits: str = _credits_field("Credits the plan includes each period")
    renewal: str = Field(description="`monthly` (AI Plus) or `none`.")
    period_start: datetime | None = Field(description="Start of the current period or validity (UTC).")
    period_end: datetime | None = Field(description="End of the current period or validity (UTC).")
    next_renewal: datetime | None = Field(
        description="When the plan renews and grants again; null if it does not."
    )
    active: bool = Field(description="Whether the plan admits new consumptions.")


class CreditsOut(FiguresOut):
    plan: PlanOut | None = Field(description="The tenant's AI Credits plan.")
    grants: list[GrantOut] = Field(description="Unexpired grants, in the order consumption draws them.")
    extra_pack: GrantOut | None = Field(description="The active extra pack (one at a time), if any.")


class LedgerEntryOut(Schema):
    id: int = Field(description="The entry's id (entries are append-only, in id order).")
    created_at: datetime = Field(description="When it was written (ISO 8601, UTC).")
    kind: str = Field(description="grant, consume, commit, refund, expire or adjust.")
    credits: str = _credits_field("Signed change of the grant's remaining")
    grant_id: int | None = Field(description="The grant it changed.")
    feature: str | None = Field(description="The feature, for consumptions.")
    client_id: str | None = Field(description="The client, when one was sent.")
    idempotency_key: str | None = Field(description="The operation's key (or the grant's reference).")
    actor: str = Field(description="Who: an API key, a user, or system.")
    note: str | None = Field(description="Why, for grants, expiries and staff adjustments.")


class LedgerOut(Schema):
    as_of: datetime = Field(description="The moment replayed (ISO 8601, UTC).")
    balance: str = _credits_field("The balance at that moment")
    grants: list[GrantOut] = Field(
        description="Each grant live at as_of, with what it held then (`remaining`)."
    )
    entries: list[LedgerEntryOut] = Field(
        description="The entries of those grants up to as_of, oldest first."
    )
    next_after: int | None = Field(description="More entries: ask again with after=<this>; null: no more.")


# --- documentation: each status with an example --------------------------------------------------

INSUFFICIENT = ErrorCase(
    402,
    "insufficient_credits",
    "Not enough AI credits: 1 needed, 0.4 available.",
    "Not enough available credit: nothing was taken and the key was not stored, so the same request may be retried.",
)
ENDED = ErrorCase(402, "subscription_ended", MSG_ENDED, "The AI Credits plan has ended, or there is none.")
OVERDUE = ErrorCase(402, "payment_overdue", MSG_OVERDUE, "A payment failed and the grace period is over.")
KEY_CONFLICT = ErrorCase(
    409,
    "idempotency_conflict",
    services.MSG_IDEMPOTENCY_CONFLICT,
    "The idempotency key was already used with a different request (or names a hold).",
)
UNKNOWN_FEATURE = ErrorCase(
    422,
    "unknown_feature",
    "Unknown feature 'image_gen'. Use one of: ai_review, smart_response.",
    "The feature has no cost in the table.",
)
NO_CONSUMPTION = ErrorCase(
    404, "not_found", "No consumption has this idempotency key.", "No consumption of yours has this key."
)
NO_HOLD = ErrorCase(404, "not_found", "No hold has this id.", "No hold of yours has this id.")
HOLD_RELEASED = ErrorCase(409, "hold_released", services.MSG_HOLD_RELEASED, "The hold was released.")
HOLD_EXPIRED = ErrorCase(
    409, "hold_expired", services.MSG_HOLD_EXPIRED, "The hold expired before the commit."
)
HOLD_COMMITTED = ErrorCase(
    409,
    "hold_committed",
    services.MSG_HOLD_COMMITTED,
    "The hold was committed (or, for a repeated commit, committed for another amount).",
)
EXCEEDS_HOLD = ErrorCase(
    422, "commit_exceeds_hold", "Commit at most the 2.5 credits held.", "The commit is more than the hold."
)
EXPIRED_UNDER_HOLD = ErrorCase(
    402,
    "insufficient_credits",
    "Not enough AI credits: 2.5 needed, 1 available.",
    "The grants behind the hold expired while it was open (expired credit is never consumed); the hold stays open.",
)


def _doc(
    ok: type[Schema],
    *cases: ErrorCase,
    example: dict[str, Any],
    when: str,
    repeat: str | None = None,
    request_body: dict[str, Any] | None = None,
    created: bool = False,
) -> dict[str, Any]:
    """`documented(...)` of tenants.api_docs, with the success answers described and exemplified:
    201 for a new write and 200 for a repeat of it when `created`, else 200."""
    kw = documented(ok, *cases, ok_status=201 if created else 200)
    extra = kw["openapi_extra"]["responses"]
    extra[201 if created else 200] = {
        "description": when,
        "content": {"application/json": {"example": example}},
    }
    if request_body is not None:
        kw["openapi_extra"]["requestBody"] = request_body
    if created:
        kw["response"][200] = ok
        extra[200] = {"description": repeat or when, "content": {"application/json": {"example": example}}}
    return kw


def _body_examples(**named: dict[str, Any]) -> dict[str, Any]:
    """The request body's examples (merged into the schema ninja generates for the body)."""
    return {"content": {"application/json": {"examples": {k: {"value": v} for k, v in named.items()}}}}


# --- endpoints -----------------------------------------------------------------------------------


def _credits(text: str | None) -> int | None:
    return parse_credits(text) if text is not None else None


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


@router.post(
    "/credits/consume",
    # The key may come from the process's memory: the write's procedure confirms it
    # (tenants.key_confirmation).
    auth=ApiKeyAuth(remembered=True),
    summary="Consume credits for uses of a feature, all or nothing",
    description="Takes the cost of `quantity` uses of `feature` (1 credit = 1 Smart Response = 10 AI "
    "Reviewer reviews) from the tenant's credits: plan credits before extra packs, each soonest-expiring "
    "first; expired credit is never used. The same `idempotency_key` again answers the first answer "
    "with 200, also when both requests arrive at the same moment (the second waits for the first).",
    **_doc(
        ConsumeOut,
        INSUFFICIENT,
        ENDED,
        OVERDUE,
        KEY_CONFLICT,
        ErrorCase(
            422,
            "invalid_request",
            "quantity: Input should be greater than or equal to 1",
            "A field is missing or invalid (a quantity under 1, an idempotency key over 200 characters, a NUL "
            "character, a field the request does not take).",
            detail_type="greater_than_equal",
        ),
        UNKNOWN_FEATURE,
        FORM_BODY,
        example=CONSUMED,
        request_body=_body_examples(
            review={
                "feature": "ai_review",
                "quantity": 1,
                "idempotency_key": "review-8f2c",
                "client_id": "acme-support",
            },
            smart_responses={"feature": "smart_response", "quantity": 3, "idempotency_key": "reply-5d1e"},
        ),
        created=True,
        when="Consumed: the credits were taken.",
        repeat="This idempotency key was already consumed: the first answer, nothing taken again.",
    ),
)
def consume(request: HttpRequest, data: ConsumeIn) -> HttpResponse:
    outcome = services.credits_consume(
        tenant=request.auth.tenant,  # type: ignore[attr-defined]
        feature=data.feature,
        quantity=data.quantity,
        idempotency_key=data.idempotency_key,
        client_id=data.client_id or "",
        actor=request.auth,  # type: ignore[attr-defined]
        versions=request.auth.versions,  # type: ignore[attr-defined]
    )
    return json_answer(_consume_out(outcome.answer), status=201 if outcome.created else 200)


def _consume_out(answer: dict[str, Any]) -> dict[str, Any]:
    """What ConsumeOut makes of a consumption's stored answer, built directly (tenants.api_answer; the
    tests compare the bytes with ninja's rendering): its fields in its order, each grant's in
    GrantDrawOut's, `created_at` the datetime its ISO text stores."""
    return {
        "balance": answer["balance"],
        "held": answer["held"],
        "available": answer["available"],
        "consumed": answer["consumed"],
        "feature": answer["feature"],
        "quantity": answer["quantity"],
        "idempotency_key": answer["idempotency_key"],
        "client_id": answer["client_id"],
        "grants": [
            {"grant_id": g["grant_id"], "source": g["source"], "credits": g["credits"]}
            for g in answer["grants"]
        ],
        "created_at": datetime.fromisoformat(answer["created_at"]),
    }


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
    summary="Refund a consumption by its idempotency key",
    description="Returns the credits to the grants they came from; what came from a grant that has "
    "expired since stays expired (reported as `expired`). Refunding again answers the same, changing nothing.",
    **_doc(
        RefundOut,
        NO_CONSUMPTION,
        ErrorCase(
            422,
            "invalid_request",
            "idempotency_key: Field required",
            "The idempotency key is missing or invalid.",
            detail_type="missing",
        ),
        FORM_BODY,
        example=REFUNDED,
        request_body=_body_examples(refund={"idempotency_key": "reply-1f9a"}),
        when="Refunded (or refunded before: the same answer, nothing changed).",
    ),
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
NEITHER_OR_BOTH = ErrorCase(
    422,
    "invalid_request",
    "Send either feature and quantity, or credits.",
    "Neither or both of feature+quantity and credits.",
    source=None,
)
QUANTITY_REQUIRED = ErrorCase(
    422,
    "quantity_required",
    "quantity is required with feature: how many uses to hold for.",
    "A feature without its quantity.",
)
BAD_TTL = ErrorCase(
    422,
    "invalid_request",
    "ttl_seconds: Input should be greater than or equal to 1",
    "A field is invalid: a ttl out of 1 to 86,400, credits with more than three decimals, a NUL character.",
    detail_type="greater_than_equal",
)


@router.post(
    "/credits/holds",
    summary="Hold credits for work whose cost is known only afterwards",
    description='Send `feature` and `quantity`, or `credits` ("2.5"). All or nothing against the available '
    "credits. The hold lapses after `ttl_seconds` (default 900); an expired hold releases itself and never "
    "counts as held after its expiry. Idempotent like a consumption.",
    **_doc(
        HoldOut,
        INSUFFICIENT,
        ENDED,
        OVERDUE,
        KEY_CONFLICT,
        NEITHER_OR_BOTH,
        QUANTITY_REQUIRED,
        BAD_TTL,
        UNKNOWN_FEATURE,
        FORM_BODY,
        example=HELD,
        request_body=_body_examples(
            by_credits={"credits": "2.5", "idempotency_key": "llm-call-77", "ttl_seconds": 600},
            by_feature={"feature": "smart_response", "quantity": 2, "idempotency_key": "reply-batch-9"},
        ),
        created=True,
        when="Held.",
        repeat="This idempotency key already placed this hold: the first answer.",
    ),
)
def hold(request: HttpRequest, data: HoldIn) -> Status:
    outcome = services.credits_hold(
        tenant=request.auth.tenant,  # type: ignore[attr-defined]
        idempotency_key=data.idempotency_key,
        feature=data.feature,
        quantity=data.quantity,
        amount=_credits(data.credits),
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
HoldIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="The id a hold was placed with.")]


@router.post(
    "/credits/holds/{hold_id}/commit",
    summary="Commit a hold: consume the actual cost, release the rest",
    description="Consumes `credits` (at most the hold; the whole hold when omitted or without a body) "
    "from the grants valid now and releases the rest. A repeated commit answers the first commit; one for "
    "another amount (no body after a partial commit included: it asks for the whole hold) is a 409.",
    **_doc(
        CommitOut,
        NO_HOLD,
        EXPIRED_UNDER_HOLD,
        HOLD_RELEASED,
        HOLD_EXPIRED,
        HOLD_COMMITTED,
        EXCEEDS_HOLD,
        ErrorCase(
            422,
            "invalid_request",
            "credits: Credits should be a decimal string of at most a billion (1000000000), with up to three "
            'decimals, e.g. "2.5"',
            "The credits are not a decimal string with up to three decimals, or the body holds another field.",
            detail_type="credits_format",
        ),
        FORM_BODY,
        example=COMMITTED,
        when="Committed (or committed before: the first answer).",
        # The optional body, read by hand (tenants.api_fields.optional_body), documented as ninja would have.
        request_body={
            "required": False,
            "content": {
                "application/json": {"schema": CommitIn.model_json_schema(), "example": {"credits": "1.2"}}
            },
        },
    ),
)
def commit(request: HttpRequest, hold_id: HoldIdPath) -> dict:
    data = optional_body(request, CommitIn, example='{"credits": "1.2"}')
    return services.credits_hold_commit(
        tenant=request.auth.tenant,  # type: ignore[attr-defined]
        hold_id=hold_id,
        amount=_credits(data.credits if data is not None else None),
        actor=request.auth,  # type: ignore[attr-defined]
    ).answer


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
    summary="Release a hold unused",
    description="Releasing again answers the same. A hold that already expired has released itself "
    "(status `expired`).",
    **_doc(
        ReleaseOut,
        NO_HOLD,
        HOLD_COMMITTED,
        ErrorCase(
            422,
            "invalid_request",
            "note: Extra inputs are not permitted",
            "A body with a field: a release takes none.",
            detail_type="extra_forbidden",
        ),
        FORM_BODY,
        example=RELEASED,
        when="Released (or released before, or expired: its credits are free).",
    ),
)
def release(request: HttpRequest, hold_id: HoldIdPath) -> dict:
    no_body(request)
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
        "state": ent.shown_state,
        "badge": ent.badge,
        "included_credits": credits_string(ent.limits.included_credits),
        "renewal": ent.limits.credit_renewal,
        "period_start": ent.period_start,
        "period_end": ent.period_end,
        "next_renewal": ent.next_credit_renewal,
        "active": ent.active,
    }


PACK = {
    "id": 14,
    "source": "extra_pack",
    "amount": "500",
    "remaining": "500",
    "valid_from": "2026-05-03T09:00:00Z",
    "expires_at": "2026-06-02T09:00:00Z",
}
CREDITS = {
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
        PACK,
    ],
    "extra_pack": PACK,
}


@router.get(
    "/credits",
    summary="The tenant's AI credits: balance, held, available, plan, grants, extra pack",
    description="What the AI Credits page shows: `balance` (unexpired credit not yet consumed, held credit "
    "included), `held` (what open holds reserve) and `available` (balance - held); the AI Credits plan with "
    "its state and next renewal; the unexpired grants in the order consumption draws them; and the active "
    "extra pack, if any. Reading changes nothing.",
    **_doc(CreditsOut, example=CREDITS, when="The figures now."),
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
    as_of: Moment | None = Field(
        default=None, description="The moment to replay, ISO 8601 with a zone; default: now."
    )
    after: Annotated[int, Field(ge=0, le=MAX_ID)] = Field(
        default=0, description="Only entries after this id (paging)."
    )
    limit: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=500, description="Entries per page (1 to 1,000)."
    )


LEDGER = {
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
NAIVE_AS_OF = ErrorCase(
    422,
    "invalid_request",
    "as_of: Input should have timezone info",
    "as_of without a time zone (e.g. 2026-05-07T12:00:00Z), or a parameter out of range.",
    source="query",
    detail_type="timezone_aware",
)


@router.get(
    "/credits/ledger",
    summary="The balance as it was at a moment, replayed from the ledger, every credit explained",
    description="For each grant live at `as_of`: what it held then (the sum of its entries written up to "
    "then); the balance is their sum. The entries are those of these grants, oldest first, paged by id.",
    **_doc(LedgerOut, NAIVE_AS_OF, example=LEDGER, when="The ledger at as_of."),
)
def ledger(request: HttpRequest, query: Query[LedgerQuery]) -> dict:
    as_of = query.as_of or timezone.now()  # a Moment: never naive
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
