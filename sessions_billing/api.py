"""Integration API of sessions_billing: the AI product reports every conversation (a start, its
messages, its end) and reads its usage; the session limit can be set with the key as actor.

Writes refused for a billing reason answer 402 with the code and message the admission check gives
(`GET /api/v1/entitlements/ai_agents/admission`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, Path, Query, Router, Schema
from pydantic import StrictInt, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from sessions_billing import selectors, services
from sessions_billing.models import MAX_ID_LENGTH
from sessions_billing.services import MAX_EARLY, MAX_LATE, Session
from sessions_billing.terms import PRODUCT
from tenants.api_answer import json_answer
from tenants.api_auth import ApiKeyAuth
from tenants.api_docs import FORM_BODY, NOT_FOUND, ErrorCase, documented
from tenants.api_fields import (
    NO_CONTROL,
    PRINTABLE,
    Day,
    FieldErrors,
    Moment,
    RequestBody,
    json_body,
    no_body,
)
from tenants.errors import BusinessError

router = Router(tags=["sessions"])

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=PRINTABLE), NO_CONTROL]


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


# The path that reports a conversation's events: an id ending so could never be read back with
# GET /sessions/{conversation_id} (that path is the events route's), so it is refused at the start.
EVENTS_SUFFIX = "/events"


def _readable_id(value: str) -> str:
    if value.endswith(EVENTS_SUFFIX):
        raise ValueError(f'must not end in "{EVENTS_SUFFIX}" (the path of the events route)')
    if any(segment in (".", "..") for segment in value.split("/")):
        # RFC 3986 5.2.4: curl, HTTP libraries and browsers remove dot segments from a URL's path
        # before sending it, so GET /sessions/a/../b would ask for /sessions/b.
        raise ValueError('must not have "." or ".." between slashes (a URL would resolve them away)')
    return value


class SessionIn(RequestBody):
    conversation_id: Id = Field(
        ...,
        description="Your id of the conversation (1 to 200 characters; it may contain slashes but not end "
        'in "/events", the events route\'s path, nor have "." or ".." between slashes): a retry with the same '
        "id counts nothing again.",
        examples=["conv_8f2c1"],
    )
    agent: Id | None = Field(
        None, description="The AI agent handling it (its key, 1 to 200 characters).", examples=["support-bot"]
    )
    direction: Literal["inbound", "outbound"] = Field(
        description="`inbound`: the customer started it; `outbound`: the agent reached out."
    )
    at: Moment | None = Field(
        None,
        description="When it started (ISO 8601 with zone); now if left out. Up to 35 days in the past, "
        "at most 5 minutes in the future.",
    )

    _at = field_validator("at")(_in_window)
    _id = field_validator("conversation_id")(_readable_id)


class EventIn(RequestBody):
    type: Literal["customer_message", "agent_message", "end"] = Field(
        description="`customer_message`, `agent_message`, or `end` (the conversation is over)."
    )
    at: Moment | None = Field(
        None,
        description="When it happened (ISO 8601 with zone); now if left out. Up to 35 days in the past, "
        "at most 5 minutes in the future.",
    )

    _at = field_validator("at")(_in_window)


class SessionOut(Schema):
    conversation_id: str = Field(description="Your id of the conversation.")
    agent: str | None = Field(description="The agent's key; null when none was given.")
    direction: str = Field(description="`inbound` or `outbound`.")
    started_at: datetime = Field(description="When the conversation started.")
    last_activity_at: datetime = Field(description="The latest start or event reported.")
    ended_at: datetime | None = Field(description="When `end` was reported; null while it runs.")
    billable_sessions: int = Field(
        description="24-hour windows of this conversation billed so far (a 36-hour conversation is 2)."
    )
    answered: bool = Field(description="Did the customer speak (started it inbound, or replied)?")
    ended: bool = Field(description="True once `end` was reported: later events are refused (409).")


def _out(session: Session) -> dict[str, Any]:
    """SessionOut's fields, in its order and with its types: the answer is encoded without validating
    it again (tenants.api_answer; the tests compare the bytes with the schema's rendering)."""
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

ENDED = ErrorCase(
    402,
    "subscription_ended",
    "Your subscription has ended. Please upgrade your plan to continue.",
    "The trial or plan has expired (days or sessions), or there is no subscription.",
)
OVERDUE = ErrorCase(
    402,
    "payment_overdue",
    "Your payment is overdue and the grace period has expired.",
    "A payment failed and the grace period is over.",
)
LIMIT_REACHED = ErrorCase(
    402,
    "session_limit_reached",
    "Session limit has been reached: AI agents accept no new sessions until the limit is increased on the "
    "Session limit card or the next billing period starts on 1 Aug 2026.",
    "The period's billable sessions have reached the session limit.",
)
BAD_AT = ErrorCase(
    422,
    "invalid_request",
    "at: Value error, must be at most 5 minutes in the future",
    "A field is missing, of the wrong type or out of range (`at` more than 35 days late or 5 minutes early).",
)
EVENT_BEFORE_START = ErrorCase(
    422,
    "invalid_request",
    "at: an event cannot be dated before the conversation started (2026-07-01T09:00:00Z).",
    "The event is dated more than 5 minutes before the conversation's start; nothing is stored.",
    source=None,
)
BAD_ID = ErrorCase(
    422,
    "invalid_request",
    'conversation_id: Value error, must not end in "/events" (the path of the events route)',
    'The conversation id ends in "/events", or has "." or ".." between slashes: it could not be read back, '
    "so it is refused.",
)
NO_SESSION = ErrorCase(404, "not_found", "No session with this conversation id.", NOT_FOUND.when)
CONVERSATION_ENDED = ErrorCase(
    409,
    "conversation_ended",
    "This conversation has ended: start a new session.",
    "`end` was already reported for this conversation.",
)
LIMIT_NOT_AVAILABLE = ErrorCase(
    409,
    "limit_not_available",
    "The session limit is available on active paid plans, not on the free trial.",
    "The tenant is on the free trial, or has no active paid plan (none yet, or one that has ended).",
)
LIMIT_ABOVE_PLAN = ErrorCase(
    422,
    "limit_above_plan",
    "The session limit cannot be above your plan's base limit of 1,500 sessions. Upgrade your plan for more "
    "sessions.",
    "The limit is above the plan's base limit.",
)
NOT_POSITIVE = ErrorCase(
    422,
    "invalid_request",
    "session_limit: Input should be greater than 0",
    "The limit is not a whole number greater than zero.",
    detail_type="greater_than",
)


def _conversation_id(value: str) -> str:
    if not value or len(value) > MAX_ID_LENGTH or "\x00" in value:
        raise BusinessError(
            "invalid_request", "conversation_id: 1 to 200 characters, no NUL bytes.", status=422
        )
    return value


_event_docs = documented(
    SessionOut,
    NO_SESSION,
    CONVERSATION_ENDED,
    BAD_AT,
    EVENT_BEFORE_START,
    ENDED,
    OVERDUE,
    LIMIT_REACHED,
    FORM_BODY,
    ok_examples={200: {"session": SESSION_EXAMPLE}},
    ok_descriptions={200: "The session"},
)
# The body is read by the view (after the id: an unknown conversation is a 404 whatever the body says),
# so ninja does not see it: it is described here.
_event_docs["openapi_extra"]["requestBody"] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": EventIn.model_json_schema(),
            "examples": {
                "customer_message": {"value": {"type": "customer_message", "at": "2026-07-02T21:00:00Z"}},
                "end": {"value": {"type": "end"}},
            },
        }
    },
}


@router.post(
    "/sessions/{path:conversation_id}/events",
    summary="Report a message or the end of a conversation",
    description="A message in a 24-hour window not billed yet bills that window (with Answered only, only a "
    "customer message does), even past the session limit: a running conversation is never cut off. The "
    "message that bills a conversation's first window (with Answered only, the customer's reply to an "
    "outbound start) opens a new billable session: like a start it is refused with 402 "
    "(`session_limit_reached`, `subscription_ended`, `payment_overdue`) and stores nothing, so a reply "
    "never bills past the limit. While the subscription refuses new sessions (the trial ended, the grace "
    "period is over) a message in a window not billed yet is refused the same way (402 "
    "`subscription_ended` or `payment_overdue`, nothing stored); one in a window already billed, and "
    "`end`, still go through. `end` ends the conversation; any event after it is a 409. An event "
    "dated more than 5 minutes before the conversation's start is a 422.",
    **_event_docs,
)
def session_event(
    request: HttpRequest,
    conversation_id: str = Path(..., description="Your id of the conversation (it may contain slashes)."),
) -> HttpResponse:
    tenant = request.auth.tenant  # type: ignore[attr-defined]
    conversation_id = _conversation_id(conversation_id)
    # The body is read here, after the id: an unknown conversation is a 404 whatever the body says.
    try:
        payload = json_body(request, EventIn, example='{"type": "agent_message"}')
    except FieldErrors:
        services.session_find(tenant=tenant, conversation_id=conversation_id)
        raise
    session = services.session_event(
        tenant=tenant,
        conversation_id=conversation_id,
        type=payload.type,
        at=payload.at,
        versions=request.auth.versions,  # type: ignore[attr-defined]
    )
    return json_answer(_out(session))


_start_docs = documented(
    {201: SessionOut, 200: SessionOut},
    ENDED,
    OVERDUE,
    LIMIT_REACHED,
    BAD_AT,
    BAD_ID,
    FORM_BODY,
    ok_examples={
        201: {"session": SESSION_EXAMPLE | {"billable_sessions": 1}},
        200: {"session": SESSION_EXAMPLE},
    },
    ok_descriptions={201: "Admitted", 200: "Already started (a retry): nothing is counted again"},
)
_start_docs["openapi_extra"]["requestBody"] = {
    "content": {
        "application/json": {
            "examples": {
                "inbound": {
                    "value": {"conversation_id": "conv_8f2c1", "agent": "support-bot", "direction": "inbound"}
                },
                "late_outbound": {
                    "value": {
                        "conversation_id": "call-2291",
                        "agent": "outreach",
                        "direction": "outbound",
                        "at": "2026-07-01T09:00:00+02:00",
                    }
                },
            }
        }
    }
}


@router.post(
    "/sessions",
    # The key may come from the process's memory: the start's procedure confirms it
    # (tenants.key_confirmation).
    auth=ApiKeyAuth(remembered=True),
    summary="Start a session (admission): call before an agent takes a new conversation",
    description="201 with the session when the conversation is admitted (its first 24-hour window is billed; "
    "with Answered only an outbound conversation is billed only once the customer replies); 200 with the "
    "same body when this conversation id was already started (nothing is counted again). Refused with 402, "
    "checked in this order: `subscription_ended`, `payment_overdue`, `session_limit_reached`; a refused "
    "start stores nothing. A start reported late and dated in an earlier period (a trial that has ended, "
    "last month) is a new session of the current period: it is admitted against the current period's "
    "limit and counted there; a period that is no longer current takes no new sessions. 422 when "
    '`conversation_id` ends in "/events" (it could not be read back: that is the events route).',
    **_start_docs,
)
def session_start(request: HttpRequest, payload: SessionIn) -> HttpResponse:
    session, created = services.session_start(
        tenant=request.auth.tenant,  # type: ignore[attr-defined]
        conversation_id=payload.conversation_id,
        agent=payload.agent,
        direction=payload.direction,
        at=payload.at,
        versions=request.auth.versions,  # type: ignore[attr-defined]
    )
    return json_answer(_out(session), status=201 if created else 200)


class SessionList(Schema):
    items: list[SessionOut] = Field(description="The sessions of this page, newest first.")
    next_cursor: str | None = Field(
        None, description="Pass as `before` for the next (older) page; null on the last page."
    )


class ListQuery(Schema):
    q: Annotated[str, StringConstraints(max_length=MAX_ID_LENGTH)] = Field(
        "", description="Part of a conversation id"
    )
    agent: Annotated[str, StringConstraints(max_length=MAX_ID_LENGTH)] = Field(
        "", description="Only this agent's sessions (its key)"
    )
    since: Day | None = Field(None, description="Started on or after this day (UTC), YYYY-MM-DD")
    until: Day | None = Field(None, description="Started on or before this day (UTC), YYYY-MM-DD")
    answered: bool | None = Field(None, description="Only answered (true) or unanswered (false) sessions")
    before: Annotated[str, StringConstraints(max_length=60)] = Field(
        "", description="The cursor of the previous page"
    )
    limit: int = Field(50, ge=1, le=200, description="Sessions per page (1 to 200)")

    _nul = field_validator("q", "agent", "before")(_no_nul)

    @field_validator("before")
    @classmethod
    def _a_cursor_we_gave(cls, value: str) -> str:
        # A cursor this API did not give would page from the newest session again: a client that
        # loops on next_cursor would never end. (The Sessions screen keeps forgiving a bad link.)
        if value and selectors.decode_cursor(value) is None:
            raise PydanticCustomError(
                "cursor", "Not a cursor of this API: pass next_cursor of the previous page"
            )
        return value


@router.get(
    "/sessions",
    summary="The tenant's sessions, newest first (filters as on the Sessions screen)",
    **documented(
        SessionList,
        ErrorCase(
            422,
            "invalid_request",
            "limit: Input should be less than or equal to 200",
            "A filter is invalid (a since or until that is not a YYYY-MM-DD day, a limit out of range, a parameter "
            "the list does not take).",
            source="query",
            detail_type="less_than_equal",
        ),
        ErrorCase(
            422,
            "invalid_request",
            "before: Not a cursor of this API: pass next_cursor of the previous page",
            "`before` is not a cursor this API gave (next_cursor of a page).",
            source="query",
            detail_type="cursor",
        ),
    ),
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
    summary="One session",
    **documented(
        SessionOut,
        NO_SESSION,
        ErrorCase(
            422,
            "invalid_request",
            "conversation_id: 1 to 200 characters, no NUL bytes.",
            "The id is too long.",
            source=None,
        ),
        ok_examples={200: {"session": SESSION_EXAMPLE}},
        ok_descriptions={200: "The session"},
    ),
)
def session_get(
    request: HttpRequest,
    conversation_id: str = Path(..., description="Your id of the conversation (it may contain slashes)."),
) -> dict:
    return _out(
        services.session_find(
            tenant=request.auth.tenant,  # type: ignore[attr-defined]
            conversation_id=_conversation_id(conversation_id),
        )
    )


class UsageOut(Schema):
    product: str = Field(description="Always `ai_agents`.")
    period_start: datetime | None = Field(description="Start of the current billing period (or the trial).")
    period_end: datetime | None = Field(description="End of the current billing period (or the trial).")
    billable_sessions: int = Field(description="Billable sessions counted in the current period (S06).")
    session_limit: int | None = Field(
        description="The limit in force this period: the tenant's own or the plan's base limit; the trial's "
        "sessions on the trial; null without a limit."
    )
    limit_source: Literal["plan", "tenant"] | None = Field(
        description="`tenant` when the tenant set its own limit, `plan` for the plan's base limit."
    )
    trial_sessions_left: int | None = Field(description="On the trial: sessions left; null otherwise.")
    trial_days_left: int | None = Field(description="On the trial: whole days left; null otherwise.")
    warnings: list[str] = Field(
        description='The card\'s warnings: "Session limit almost reached" (80%), "Session limit has been '
        'reached" (100%), "Trial ending soon".'
    )


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
    summary="Billable sessions of the current period, the session limit and the trial's figures",
    **documented(UsageOut, ok_examples={200: {"usage": USAGE_EXAMPLE}}, ok_descriptions={200: "Usage"}),
)
def usage(request: HttpRequest) -> dict:
    return _usage(selectors.usage_for(tenant=request.auth.tenant))  # type: ignore[attr-defined]


class LimitIn(RequestBody):
    session_limit: StrictInt = Field(
        ...,
        gt=0,
        le=services.MAX_LIMIT,
        examples=[1200],
        description="Billable sessions allowed this period: a whole number greater than zero, at most the "
        "plan's base limit.",
    )


@router.put(
    "/usage/session-limit",
    summary="Set limit: cap the billable sessions of the current period (paid plans only)",
    description="A whole number greater than zero, at most the plan's base limit. Audited with the key as actor.",
    **documented(UsageOut, LIMIT_NOT_AVAILABLE, LIMIT_ABOVE_PLAN, NOT_POSITIVE, FORM_BODY),
)
def session_limit_set(request: HttpRequest, payload: LimitIn) -> dict:
    tenant = request.auth.tenant  # type: ignore[attr-defined]
    terms = services.session_limit_set(tenant=tenant, session_limit=payload.session_limit, actor=request.auth)  # type: ignore[attr-defined]
    return _usage(selectors.usage_for(tenant=tenant, terms=terms))


@router.delete(
    "/usage/session-limit",
    summary="Reset limit: back to the plan's base limit",
    **documented(
        UsageOut,
        LIMIT_NOT_AVAILABLE,
        ErrorCase(
            422,
            "invalid_request",
            "session_limit: Extra inputs are not permitted",
            "A body with a field: a reset takes none.",
            detail_type="extra_forbidden",
        ),
        FORM_BODY,
    ),
)
def session_limit_reset(request: HttpRequest) -> dict:
    no_body(request)
    tenant = request.auth.tenant  # type: ignore[attr-defined]
    terms = services.session_limit_reset(tenant=tenant, actor=request.auth)  # type: ignore[attr-defined]
    return _usage(selectors.usage_for(tenant=tenant, terms=terms))
