"""Integration API of sessions_billing: the AI product reports every conversation (a start, its
messages, its end) and reads its usage; the session limit can be set with the key as actor.

Writes refused for a billing reason answer 402 with the code and message the admission check gives
(`GET /api/v1/entitlements/ai_agents/admission`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import ValidationError
from pydantic import AwareDatetime, StrictInt, StringConstraints, field_validator
from pydantic import ValidationError as PydanticValidationError

from sessions_billing import selectors, services
from sessions_billing.models import MAX_ID_LENGTH
from sessions_billing.services import MAX_EARLY, MAX_LATE, Session
from sessions_billing.terms import PRODUCT
from tenants.errors import BusinessError

router = Router(tags=["sessions"])

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]


def _no_nul(value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL bytes")
    return value


def _in_window(value: datetime | None) -> datetime | None:
    """`at` may be up to 35 days late and at most 5 minutes early (Stripe's meter events allow 35
    days: https://docs.stripe.com/api/billing/meter-event/create)."""
    if value is None:
        return value
    now = timezone.now()
    if value < now - MAX_LATE:
        raise ValueError("must be at most 35 days in the past")
    if value > now + MAX_EARLY:
        raise ValueError("must be at most 5 minutes in the future")
    return value


class ErrorBody(Schema):
    code: str
    message: str


class ErrorOut(Schema):
    error: ErrorBody


class SessionIn(Schema):
    conversation_id: Id = Field(..., examples=["conv_8f2c1"])
    agent: Id | None = Field(None, examples=["support-bot"])
    direction: Literal["inbound", "outbound"]
    at: AwareDatetime | None = Field(
        None, description="When it started (ISO 8601 with zone); now if left out."
    )

    _nul = field_validator("conversation_id", "agent")(_no_nul)
    _at = field_validator("at")(_in_window)


class EventIn(Schema):
    type: Literal["customer_message", "agent_message", "end"]
    at: AwareDatetime | None = Field(
        None, description="When it happened (ISO 8601 with zone); now if left out."
    )

    _at = field_validator("at")(_in_window)


class SessionOut(Schema):
    conversation_id: str
    agent: str | None
    direction: str
    started_at: datetime
    last_activity_at: datetime
    ended_at: datetime | None
    billable_sessions: int
    answered: bool
    ended: bool


def _out(session: Session) -> dict[str, Any]:
    return {
        "conversation_id": session.conversation_id,
        "agent": session.agent,
        "direction": session.direction,
        "started_at": session.started_at,
        "last_activity_at": session.last_activity_at,
        "ended_at": session.ended_at,
        "billable_sessions": session.billable_sessions,
        "answered": session.answered,
        "ended": session.ended,
    }


SESSION_EXAMPLE = {
    "conversation_id": "conv_8f2c1",
    "agent": "support-bot",
    "direction": "inbound",
    "started_at": "2026-07-01T09:00:00Z",
    "last_activity_at": "2026-07-02T21:00:00Z",
    "ended_at": None,
    "billable_sessions": 2,
    "answered": True,
    "ended": False,
}


def _examples(**named: dict) -> dict:
    return {"application/json": {"examples": {k: {"value": v} for k, v in named.items()}}}


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


REFUSALS = _examples(
    subscription_ended=_error(
        "subscription_ended", "Your subscription has ended. Please upgrade your plan to continue."
    ),
    payment_overdue=_error("payment_overdue", "Your payment is overdue and the grace period has expired."),
    session_limit_reached=_error(
        "session_limit_reached",
        "Session limit has been reached: AI agents accept no new sessions until the limit is increased on the "
        "Session limit card or the next billing period starts on 1 Aug 2026.",
    ),
)
INVALID = _examples(
    invalid=_error("invalid_request", "at: Value error, must be at most 5 minutes in the future")
)


def _conversation_id(value: str) -> str:
    if not value or len(value) > MAX_ID_LENGTH or "\x00" in value:
        raise BusinessError(
            "invalid_request", "conversation_id: 1 to 200 characters, no NUL bytes.", status=422
        )
    return value


@router.post(
    "/sessions/{path:conversation_id}/events",
    response={200: SessionOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    summary="Report a message or the end of a conversation",
    description="A message in a 24-hour window not billed yet bills that window (with Answered only, only a "
    "customer message does), even past the session limit: a running conversation is never cut off. "
    "`end` ends the conversation; any event after it is a 409.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": EventIn.model_json_schema(),
                    "examples": {
                        "customer_message": {
                            "value": {"type": "customer_message", "at": "2026-07-02T21:00:00Z"}
                        },
                        "end": {"value": {"type": "end"}},
                    },
                }
            },
        },
        "responses": {
            "200": {"description": "The session", "content": _examples(session=SESSION_EXAMPLE)},
            "404": {
                "description": "No such session",
                "content": _examples(not_found=_error("not_found", "No session with this conversation id.")),
            },
            "409": {
                "description": "The conversation has ended",
                "content": _examples(
                    ended=_error("conversation_ended", "This conversation has ended: start a new session.")
                ),
            },
            "422": {"description": "Bad input", "content": INVALID},
        },
    },
)
def session_event(request: HttpRequest, conversation_id: str) -> dict:
    tenant = request.auth.tenant  # type: ignore[attr-defined]
    conversation_id = _conversation_id(conversation_id)
    # The body is read here, after the id: an unknown conversation is a 404 whatever the body says.
    try:
        payload = EventIn.model_validate_json(request.body or b"null")
    except PydanticValidationError as exc:
        services.session_find(tenant=tenant, conversation_id=conversation_id)
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise ValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None
    session = services.session_event(
        tenant=tenant, conversation_id=conversation_id, type=payload.type, at=payload.at
    )
    return _out(session)


@router.post(
    "/sessions",
    response={201: SessionOut, 200: SessionOut, 402: ErrorOut, 422: ErrorOut},
    summary="Start a session (admission): call before an agent takes a new conversation",
    description="201 with the session when the conversation is admitted (its first 24-hour window is billed; "
    "with Answered only an outbound conversation is billed only once the customer replies); 200 with the "
    "same body when this conversation id was already started (nothing is counted again). Refused with 402, "
    "checked in this order: `subscription_ended`, `payment_overdue`, `session_limit_reached`; a refused "
    "start stores nothing.",
    openapi_extra={
        "requestBody": {
            "content": _examples(
                inbound={"conversation_id": "conv_8f2c1", "agent": "support-bot", "direction": "inbound"},
                late_outbound={
                    "conversation_id": "call-2291",
                    "agent": "outreach",
                    "direction": "outbound",
                    "at": "2026-07-01T09:00:00+02:00",
                },
            )
        },
        "responses": {
            "201": {
                "description": "Admitted",
                "content": _examples(session=SESSION_EXAMPLE | {"billable_sessions": 1}),
            },
            "200": {
                "description": "Already started (a retry)",
                "content": _examples(session=SESSION_EXAMPLE),
            },
            "402": {"description": "Refused for a billing reason", "content": REFUSALS},
            "422": {"description": "Bad input", "content": INVALID},
        },
    },
)
def session_start(request: HttpRequest, payload: SessionIn) -> Status:
    session, created = services.session_start(
        tenant=request.auth.tenant,  # type: ignore[attr-defined]
        conversation_id=payload.conversation_id,
        agent=payload.agent,
        direction=payload.direction,
        at=payload.at,
    )
    return Status(201 if created else 200, _out(session))


class SessionList(Schema):
    items: list[SessionOut]
    next_cursor: str | None = Field(None, description="Pass as `before` for the next (older) page.")


class ListQuery(Schema):
    q: Annotated[str, StringConstraints(max_length=MAX_ID_LENGTH)] = Field(
        "", description="Part of a conversation id"
    )
    agent: Annotated[str, StringConstraints(max_length=MAX_ID_LENGTH)] = ""
    since: date | None = Field(None, description="Started on or after this day (UTC)")
    until: date | None = Field(None, description="Started on or before this day (UTC)")
    answered: bool | None = None
    before: Annotated[str, StringConstraints(max_length=60)] = Field(
        "", description="The cursor of the previous page"
    )
    limit: int = Field(50, ge=1, le=200)

    _nul = field_validator("q", "agent", "before")(_no_nul)


@router.get(
    "/sessions",
    response=SessionList,
    summary="The tenant's sessions, newest first (filters as on the Sessions screen)",
)
def session_list(request: HttpRequest, query: Query[ListQuery]) -> dict:
    filters = selectors.SessionFilters(
        q=query.q, agent=query.agent, since=query.since, until=query.until, answered=query.answered
    )
    page = selectors.conversations_page(
        tenant=request.auth.tenant,  # type: ignore[attr-defined]
        filters=filters,
        before=query.before,
        size=query.limit,
    )
    return {
        "items": [
            _out(
                Session(
                    c.conversation_id,
                    c.agent.key if c.agent else None,
                    c.direction,
                    c.started_at,
                    c.last_activity_at,
                    c.ended_at,
                    c.billable_sessions,
                    c.answered,
                )
            )
            for c in page.rows
        ],
        "next_cursor": page.older,
    }


@router.get(
    "/sessions/{path:conversation_id}",
    response={200: SessionOut, 404: ErrorOut},
    summary="One session",
    openapi_extra={
        "responses": {"200": {"description": "The session", "content": _examples(session=SESSION_EXAMPLE)}}
    },
)
def session_get(request: HttpRequest, conversation_id: str) -> dict:
    return _out(
        services.session_find(
            tenant=request.auth.tenant,  # type: ignore[attr-defined]
            conversation_id=_conversation_id(conversation_id),
        )
    )


class UsageOut(Schema):
    product: str
    period_start: datetime | None
    period_end: datetime | None
    billable_sessions: int
    session_limit: int | None
    limit_source: Literal["plan", "tenant"] | None
    trial_sessions_left: int | None
    trial_days_left: int | None
    warnings: list[str]


USAGE_EXAMPLE = {
    "product": "ai_agents",
    "period_start": "2026-07-01T00:00:00Z",
    "period_end": "2026-08-01T00:00:00Z",
    "billable_sessions": 1210,
    "session_limit": 1500,
    "limit_source": "plan",
    "trial_sessions_left": None,
    "trial_days_left": None,
    "warnings": ["Session limit almost reached"],
}


def _usage(usage: selectors.Usage) -> dict:
    return {
        "product": PRODUCT,
        "period_start": usage.terms.period_start,
        "period_end": usage.terms.period_end,
        "billable_sessions": usage.billable_sessions,
        "session_limit": usage.session_limit,
        "limit_source": usage.limit_source,
        "trial_sessions_left": usage.trial_sessions_left,
        "trial_days_left": usage.trial_days_left,
        "warnings": usage.warnings,
    }


@router.get(
    "/usage",
    response=UsageOut,
    summary="Billable sessions of the current period, the session limit and the trial's figures",
    openapi_extra={"responses": {"200": {"description": "Usage", "content": _examples(usage=USAGE_EXAMPLE)}}},
)
def usage(request: HttpRequest) -> dict:
    return _usage(selectors.usage_for(tenant=request.auth.tenant))  # type: ignore[attr-defined]


class LimitIn(Schema):
    session_limit: StrictInt = Field(..., gt=0, le=services.MAX_LIMIT, examples=[1200])


LIMIT_ERRORS = {
    "409": {
        "description": "Not on this plan",
        "content": _examples(
            trial=_error(
                "limit_not_available", "The session limit is available on paid plans, not on the free trial."
            )
        ),
    },
    "422": {
        "description": "Bad value",
        "content": _examples(
            above_plan=_error(
                "limit_above_plan",
                "The session limit cannot be above your plan's base limit of 1,500 sessions. Upgrade your plan "
                "for more sessions.",
            ),
            not_positive=_error("invalid_request", "session_limit: Input should be greater than 0"),
        ),
    },
}


@router.put(
    "/usage/session-limit",
    response={200: UsageOut, 409: ErrorOut, 422: ErrorOut},
    summary="Set limit: cap the billable sessions of the current period (paid plans only)",
    description="A whole number greater than zero, at most the plan's base limit. Audited with the key as actor.",
    openapi_extra={"responses": LIMIT_ERRORS},
)
def session_limit_set(request: HttpRequest, payload: LimitIn) -> dict:
    tenant = request.auth.tenant  # type: ignore[attr-defined]
    terms = services.session_limit_set(tenant=tenant, session_limit=payload.session_limit, actor=request.auth)  # type: ignore[attr-defined]
    return _usage(selectors.usage_for(tenant=tenant, terms=terms))


@router.delete(
    "/usage/session-limit",
    response={200: UsageOut, 409: ErrorOut},
    summary="Reset limit: back to the plan's base limit",
    openapi_extra={"responses": {"409": LIMIT_ERRORS["409"]}},
)
def session_limit_reset(request: HttpRequest) -> dict:
    tenant = request.auth.tenant  # type: ignore[attr-defined]
    terms = services.session_limit_reset(tenant=tenant, actor=request.auth)  # type: ignore[attr-defined]
    return _usage(selectors.usage_for(tenant=tenant, terms=terms))
