"""Every write of sessions_billing: starting a session (admission), reporting its events, setting
the session limit, and the usage emails.

The hot path (`session_start`, `session_event`) is one short transaction of a few hand-written
statements (no ORM compilation per request, no Stripe, nothing that scans history):
- the conversation is inserted with `ON CONFLICT DO NOTHING` (the same id twice is one session);
- a billed window is inserted with `ON CONFLICT DO NOTHING` on (conversation, k) (never twice);
- the period counter moves by a conditional `UPDATE … RETURNING` whose row count decides: for a
  new conversation `billable_sessions < limit`, so N parallel starts against a limit L admit exactly
  L; a window opened by a running conversation counts unconditionally (never cut off).
A refusal raises inside the transaction, so a refused request stores nothing."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from plans.models import Subscription
from plans.selectors import Refusal, entitlements
from plans.services import trial_end, trial_sessions_ending
from sessions_billing import db_functions
from sessions_billing.models import Agent, BillableWindow, Conversation, SessionLimit, UsagePeriod
from sessions_billing.terms import PRODUCT, Terms, tenant_limit, terms_for
from tenants.audit import Actor, audit
from tenants.cache import Versions
from tenants.errors import BusinessError
from tenants.models import ApiKey, Membership, Role, Tenant, User
from tenants.notifications import notify

WINDOW = timedelta(hours=24)
# How late and how early a report may be (`at`): Stripe's meter events accept 35 days back.
MAX_LATE = timedelta(days=35)
MAX_EARLY = timedelta(minutes=5)
# The clock skew allowed between the reporters of a conversation's start and of its events: an
# event dated up to this much before the start belongs to its first window; earlier is refused.
MAX_SKEW = MAX_EARLY

CONVERSATION = Conversation._meta.db_table
WINDOWS = BillableWindow._meta.db_table
PERIODS = UsagePeriod._meta.db_table
AGENTS = Agent._meta.db_table
LIMITS = SessionLimit._meta.db_table


class EventType:
    CUSTOMER_MESSAGE = "customer_message"
    AGENT_MESSAGE = "agent_message"
    END = "end"
    ALL = (CUSTOMER_MESSAGE, AGENT_MESSAGE, END)


@dataclass(frozen=True)
class Session:
    """A conversation as the API and the pages show it."""

    conversation_id: str
    agent: str | None
    direction: str
    started_at: datetime
    last_activity_at: datetime
    ended_at: datetime | None
    billable_sessions: int
    answered: bool

    @property
    def ended(self) -> bool:
        return self.ended_at is not None


# --- SQL helpers: one path for PostgreSQL and the embedded SQLite --------------------------------


def _db(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _aware(value: object) -> datetime:
    """A timestamp read back by a raw query: aware on PostgreSQL; a naive UTC value (or its text) on
    SQLite."""
    if isinstance(value, str):
        parsed = parse_datetime(value)
        assert parsed is not None
        value = parsed
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _greatest() -> str:
    return "GREATEST" if connection.vendor == "postgresql" else "MAX"


def window_index(*, started_at: datetime, at: datetime) -> int:
    """k of the window [start + k·24 h, start + (k+1)·24 h) that holds `at`; a report dated before
    the start (clock skew) belongs to the first window."""
    return max(0, (at - started_at) // WINDOW)


def check_time(*, at: datetime, now: datetime, field: str = "at") -> None:
    if at.tzinfo is None:
        raise BusinessError("invalid_request", f"{field}: give a time zone (ISO 8601).", status=422)
    if at < now - MAX_LATE:
        raise BusinessError("invalid_request", f"{field}: reports may be at most 35 days late.", status=422)
    if at > now + MAX_EARLY:
        raise BusinessError(
            "invalid_request", f"{field}: may be at most 5 minutes in the future.", status=422
        )


# --- periods -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counted:
    period_id: int
    billable_sessions: int  # the period's count after this window
    first_warning_at: object
    second_warning_at: object


def _period_ensure(tenant_id: int, start: datetime, end: datetime) -> None:
    """The period's counter row exists; an older row that overlaps it ends where it begins (a trial
    converted before its end, a plan change that restarted the period)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {PERIODS} (tenant_id, period_start, period_end, billable_sessions) "
            "VALUES (%s, %s, %s, 0) ON CONFLICT (tenant_id, period_start) DO NOTHING",
            [tenant_id, _db(start), _db(end)],
        )
        cursor.execute(
            f"UPDATE {PERIODS} SET period_end = %s WHERE tenant_id = %s AND period_start < %s AND period_end > %s",
            [_db(start), tenant_id, _db(start), _db(start)],
        )


def _period_for(
    tenant_id: int, terms: Terms, starts_at: datetime, current_id: int | None = None
) -> int | None:
    """The id of the period a window starting at `starts_at` counts in: the current period; for a
    late window the recorded period that contains it; a window older than every period counts in
    the first one. A late window that falls where no period was recorded (the tenant reported
    nothing then) gets a row of its own covering that gap, never an earlier period's. None when the
    tenant never had a period."""
    current = terms.period_start
    with connection.cursor() as cursor:
        if current is None or starts_at < current:
            cursor.execute(
                f"SELECT id, period_end FROM {PERIODS} WHERE tenant_id = %s AND period_start <= %s "
                "ORDER BY period_start DESC LIMIT 1",
                [tenant_id, _db(starts_at)],
            )
            row = cursor.fetchone()
            if row is None:
                cursor.execute(
                    f"SELECT id FROM {PERIODS} WHERE tenant_id = %s ORDER BY period_start LIMIT 1",
                    [tenant_id],
                )
                first = cursor.fetchone()
                if first is not None or current is None:
                    return first[0] if first else None
            elif _aware(row[1]) > starts_at:
                return row[0]
            else:
                gap = _gap_for(cursor, tenant_id, after=_aware(row[1]), starts_at=starts_at, current=current)
                if gap is not None:
                    return gap
                return row[0]  # after every period and no current one: the latest period
        if current_id is not None:  # already looked up with the conversation
            return current_id
        assert terms.period_start is not None
        assert terms.period_end is not None
        select = f"SELECT id FROM {PERIODS} WHERE tenant_id = %s AND period_start = %s"
        cursor.execute(select, [tenant_id, _db(terms.period_start)])
        found = cursor.fetchone()
        if found is None:  # the period's first window
            _period_ensure(tenant_id, terms.period_start, terms.period_end)
            cursor.execute(select, [tenant_id, _db(terms.period_start)])
            found = cursor.fetchone()
        return found[0]


def _gap_for(
    cursor: Any, tenant_id: int, *, after: datetime, starts_at: datetime, current: datetime | None
) -> int | None:
    """The row for the unrecorded stretch [after, next period's start) that holds `starts_at`,
    created if missing; None when nothing is known to come after it."""
    cursor.execute(
        f"SELECT MIN(period_start) FROM {PERIODS} WHERE tenant_id = %s AND period_start > %s",
        [tenant_id, _db(starts_at)],
    )
    following = cursor.fetchone()[0]
    ends = _aware(following) if following is not None else current
    if ends is None or ends <= starts_at:
        return None
    cursor.execute(
        f"INSERT INTO {PERIODS} (tenant_id, period_start, period_end, billable_sessions) "
        "VALUES (%s, %s, %s, 0) ON CONFLICT (tenant_id, period_start) DO NOTHING",
        [tenant_id, _db(after), _db(ends)],
    )
    cursor.execute(
        f"SELECT id FROM {PERIODS} WHERE tenant_id = %s AND period_start = %s", [tenant_id, _db(after)]
    )
    return cursor.fetchone()[0]


_COUNT_RETURNING = "RETURNING id, billable_sessions, first_warning_at, second_warning_at"


def _count_new(tenant_id: int, terms: Terms, starts_at: datetime) -> Counted | None:
    """Count the first billed window of a conversation (a new billable session), only while the
    current period is under its limit. Returns None when the limit is reached (nothing counted).

    A new billable session always counts in the current period, against the current limit, also
    when it is reported late and dated in an earlier period: a period that is no longer current (an
    ended trial, last month) is closed to new sessions, so it never goes past its own cap, and late
    usage is billed in the period in which it is admitted (as Stripe refuses usage records dated
    before the current period)."""
    limit = terms.limit
    cond, params = ("", []) if limit is None else (" AND billable_sessions < %s", [limit])
    current = terms.period_start
    with connection.cursor() as cursor:
        if current is not None:
            sql = (
                f"UPDATE {PERIODS} SET billable_sessions = billable_sessions + 1 "
                f"WHERE tenant_id = %s AND period_start = %s{cond} {_COUNT_RETURNING}"
            )
            cursor.execute(sql, [tenant_id, _db(current), *params])
            row = cursor.fetchone()
            if row is None:  # no counter yet this period, or the limit is reached
                assert terms.period_end is not None
                _period_ensure(tenant_id, current, terms.period_end)
                cursor.execute(sql, [tenant_id, _db(current), *params])
                row = cursor.fetchone()
        else:
            period_id = _period_for(tenant_id, terms, starts_at)
            if period_id is None:
                return None
            cursor.execute(
                f"UPDATE {PERIODS} SET billable_sessions = billable_sessions + 1 "
                f"WHERE id = %s{cond} {_COUNT_RETURNING}",
                [period_id, *params],
            )
            row = cursor.fetchone()
    return Counted(*row) if row else None


def _count_more(period_id: int) -> Counted:
    """Count a window a running conversation opened: unconditionally (never cut off)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {PERIODS} SET billable_sessions = billable_sessions + 1 WHERE id = %s {_COUNT_RETURNING}",
            [period_id],
        )
        return Counted(*cursor.fetchone())


def _period_count(tenant_id: int, period_start: datetime | None) -> int:
    if period_start is None:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT billable_sessions FROM {PERIODS} WHERE tenant_id = %s AND period_start = %s",
            [tenant_id, _db(period_start)],
        )
        row = cursor.fetchone()
    return row[0] if row else 0


# --- usage emails and the trial's end ----------------------------------------------------------


def _admins_emails(tenant: Tenant) -> list[str]:
    return list(
        Membership.objects.filter(tenant=tenant, role=Role.ADMIN)
        .values_list("user__email", flat=True)
        .order_by("pk")
    )


def _warn(*, tenant: Tenant, terms: Terms, period_id: int, which: int, percent: int, count: int) -> None:
    """Send the period's `which` (1 or 2) usage email once: the conditional update claims it."""
    column = "first_warning_at" if which == 1 else "second_warning_at"
    claimed = UsagePeriod.objects.filter(pk=period_id, **{f"{column}__isnull": True}).update(
        **{column: timezone.now()}
    )
    if claimed != 1:
        return  # already sent this period
    template = "trial_sessions_used" if terms.trial else "session_limit_warning"
    for email in _admins_emails(tenant):
        notify(
            key=f"sessions-usage:{period_id}:{which}:{email}",
            tenant=tenant,
            to=email,
            template=template,
            context={
                "tenant": tenant,
                "percent": percent,
                "billable_sessions": count,
                "limit": terms.limit,
                "reached": which == 2 and not terms.trial,
                "period_end": terms.resets_on,  # None in the plan's last period: nothing resets
                "sessions_left": max(0, (terms.limit or 0) - count),
            },
        )


def _after_count(*, tenant: Tenant, terms: Terms, counted: Counted) -> None:
    """What a new count may set off: the usage emails, and the end of a trial out of sessions."""
    limit = terms.limit
    if not limit:
        return
    count = counted.billable_sessions
    first, second = terms.thresholds()
    if counted.first_warning_at is None and count * 100 >= first * limit:
        _warn(tenant=tenant, terms=terms, period_id=counted.period_id, which=1, percent=first, count=count)
    if counted.second_warning_at is None and count * 100 >= second * limit:
        _warn(tenant=tenant, terms=terms, period_id=counted.period_id, which=2, percent=second, count=count)
    trialing = terms.trial and terms.ent.state == "trialing" and terms.ent.subscription_id
    if trialing and count * 100 >= settings.TRIAL_ENDING_SOON_PERCENT * limit:
        # The badge everywhere (S10), not only on this app's card: the plans app keeps it.
        trial_sessions_ending(subscription_id=terms.ent.subscription_id)  # type: ignore[arg-type]
    if terms.trial and terms.ent.state == "trialing" and count >= limit and terms.ent.subscription_id:
        # The trial's sessions are used up: it ends at once (S12), in this transaction.
        trial_end(subscription=Subscription(pk=terms.ent.subscription_id), reason="sessions")


# --- sessions ------------------------------------------------------------------------------------


def _session_row(tenant: Tenant, conversation_id: str) -> Session | None:
    row = (
        Conversation.objects.filter(tenant=tenant, conversation_id=conversation_id)
        .values_list(
            "conversation_id",
            "agent__key",
            "direction",
            "started_at",
            "last_activity_at",
            "ended_at",
            "billable_sessions",
            "answered",
        )
        .first()
    )
    return Session(*row) if row else None


def _agent_id(tenant: Tenant, key: str) -> int:
    agent, _ = Agent.objects.get_or_create(tenant=tenant, key=key, defaults={"name": key})
    return agent.pk


def session_start(
    *,
    tenant: Tenant,
    conversation_id: str,
    direction: str,
    agent: str | None = None,
    at: datetime | None = None,
    now: datetime | None = None,
    terms: Terms | None = None,
    versions: Versions | None = None,
) -> tuple[Session, bool]:
    """Admit a new conversation, or return the one already started under this id (created False;
    nothing counted again). Refusals, in order: `subscription_ended`, `payment_overdue`,
    `session_limit_reached` (402); a refused start stores nothing. `versions`: the API request's
    cache versions (its entitlements and the tenant's limit may come from the cache)."""
    now = now or timezone.now()
    at = at or now
    check_time(at=at, now=now)
    if direction not in Conversation.Direction.values:
        raise BusinessError("invalid_request", "direction: inbound or outbound.", status=422)
    one_statement = terms is None and connection.vendor == "postgresql"
    if one_statement:
        terms = terms_for(tenant=tenant, now=now, versions=versions)
    # Otherwise the tenant's own limit is read with the insert below (one round trip less).
    terms = terms or Terms(ent=entitlements(tenant=tenant, now=now)[PRODUCT], tenant_limit=None)
    refusal = terms.refusal
    if refusal is not None:
        existing = _session_row(tenant, conversation_id)
        if existing is not None:
            return existing, False  # a retry of a session admitted earlier: its first answer
        raise BusinessError(refusal.code, refusal.message, status=402)
    # With Answered only an outbound conversation bills nothing until the customer replies (S07).
    billed_at_start = not (terms.answered_only and direction == Conversation.Direction.OUTBOUND)
    answered = direction == Conversation.Direction.INBOUND
    if one_statement and billed_at_start and terms.period_start is not None and at >= terms.period_start:
        started = _start_in_one_statement(
            tenant=tenant, conversation_id=conversation_id, direction=direction, agent=agent or "",
            at=at, now=now, terms=terms, answered=answered,
        )  # fmt: skip
        if started is not None:
            return started
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {CONVERSATION} (tenant_id, conversation_id, agent_id, direction, started_at, "
                    "last_activity_at, answered, billable_sessions, last_billed_window, created_at) VALUES (%s, %s, "
                    f"(SELECT id FROM {AGENTS} WHERE tenant_id = %s AND {_q('key')} = %s), %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (tenant_id, conversation_id) DO NOTHING RETURNING id, agent_id, "
                    f"(SELECT session_limit FROM {LIMITS} WHERE tenant_id = %s)",
                    [
                        tenant.pk,
                        conversation_id,
                        tenant.pk,
                        agent or "",
                        direction,
                        _db(at),
                        _db(at),
                        answered,
                        1 if billed_at_start else 0,
                        0 if billed_at_start else None,
                        _db(now),
                        tenant.pk,
                    ],
                )
                row = cursor.fetchone()
                if row is None:
                    raise _Exists
                pk, agent_id, own_limit = row
                terms = replace(terms, tenant_limit=own_limit)
                if agent and agent_id is None:  # the agent's first session: register it
                    cursor.execute(
                        f"UPDATE {CONVERSATION} SET agent_id = %s WHERE id = %s",
                        [_agent_id(tenant, agent), pk],
                    )
            if billed_at_start:
                counted = _count_new(tenant.pk, terms, at)
                if counted is None:
                    refused = terms.usage_refusal(terms.limit or 0)
                    assert refused is not None
                    raise BusinessError(refused.code, refused.message, status=402)
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"INSERT INTO {WINDOWS} (tenant_id, conversation_id, {_q('index')}, "
                        "starts_at, usage_period_id, counted_at) VALUES (%s, %s, 0, %s, %s, %s)",
                        [tenant.pk, pk, _db(at), counted.period_id, _db(now)],
                    )
                _after_count(tenant=tenant, terms=terms, counted=counted)
            else:
                # Nothing is billed now, but a new conversation is still refused at the limit: under
                # Answered only, admission counts the billed windows (the period's counter).
                refused = terms.usage_refusal(_period_count(tenant.pk, terms.period_start))
                if refused is not None:
                    raise BusinessError(refused.code, refused.message, status=402)
    except _Exists:
        existing = _session_row(tenant, conversation_id)
        assert existing is not None
        return existing, False
    return (
        Session(
            conversation_id=conversation_id,
            agent=agent or None,
            direction=direction,
            started_at=at,
            last_activity_at=at,
            ended_at=None,
            billable_sessions=1 if billed_at_start else 0,
            answered=answered,
        ),
        True,
    )


def _start_in_one_statement(
    *,
    tenant: Tenant,
    conversation_id: str,
    direction: str,
    agent: str,
    at: datetime,
    now: datetime,
    terms: Terms,
    answered: bool,
) -> tuple[Session, bool] | None:
    """PostgreSQL: the common start — a known agent, the period's counter in place, under the limit,
    no usage email or trial end set off — in one statement (a function: migration 0003), which is
    its own transaction (its durable procedure outside a transaction). None when the plain path must
    decide (the function wrote nothing then)."""
    first, second = terms.thresholds()
    ends_trial = terms.trial and terms.ent.state == "trialing" and terms.ent.subscription_id is not None
    # Outside a transaction, its durable procedure: the period counter's lock is released before the
    # WAL flush, and the answer waits for the flush (tenants.durable_call).
    args = [tenant.pk, conversation_id, agent, direction, at, now, answered, terms.period_start, terms.limit,
            first, second, ends_trial]  # fmt: skip
    outcome, *row = db_functions.START.call(args)
    if outcome == "created":
        return Session(conversation_id, agent or None, direction, at, at, None, 1, answered), True
    if outcome == "exists":
        return Session(conversation_id, *row), False
    if outcome == "refused":
        refused = terms.usage_refusal(terms.limit or 0)
        assert refused is not None
        raise BusinessError(refused.code, refused.message, status=402)
    return None


class _Exists(Exception):
    """The conversation id is taken: leave the transaction and answer with the stored session."""


def session_event(
    *,
    tenant: Tenant,
    conversation_id: str,
    type: str,
    at: datetime | None = None,
    now: datetime | None = None,
    terms: Terms | None = None,
    versions: Versions | None = None,
) -> Session:
    """Record a message or the end of a running conversation. A message in a window not billed yet
    bills it (with Answered only, only a customer message does), in the period in which the window
    starts, even past the limit: a running conversation is never cut off. The message that bills a
    conversation's first window (Answered only: the customer's reply to an outbound start) opens a
    new billable session instead, admitted like a start: 402 at the limit, nothing stored. 404
    unknown, 409 ended, 422 dated before the conversation started (beyond the clock skew allowed).
    `versions`: the API request's cache versions (its entitlements may come from the cache).

    The conversation's update is one statement, its own transaction: an event in a window already
    billed needs nothing more. A new window is billed in a short transaction after it (the window's
    insert decides, once per window, with the conversation's and the period's counts)."""
    now = now or timezone.now()
    at = at or now
    check_time(at=at, now=now)
    if type not in EventType.ALL:
        raise BusinessError("invalid_request", "type: customer_message, agent_message or end.", status=422)
    # The tenant's own limit matters only to the usage emails of a new window: read it then.
    terms = terms or Terms(
        ent=entitlements(tenant=tenant, now=now, versions=versions)[PRODUCT], tenant_limit=None
    )
    customer = type == EventType.CUSTOMER_MESSAGE
    bills = type != EventType.END and (customer or not terms.answered_only)
    if bills and terms.refusal is not None:
        _refuse_new_window(tenant=tenant, conversation_id=conversation_id, at=at, refusal=terms.refusal)
    # An event in a window of a conversation never billed yet (Answered only: an outbound start the
    # customer now replies to) opens a new billable session: it is admitted like a start (below),
    # so this statement leaves such a conversation alone, as it does one the event predates.
    first_bill = " AND billable_sessions > 0" if bills else ""
    current = _db(terms.period_start) if terms.period_start else None
    with connection.cursor() as cursor:
        # The current period's counter id comes back with the conversation: one round trip for both.
        cursor.execute(
            f"UPDATE {CONVERSATION} SET {_event_assignments(type)} "
            f"WHERE tenant_id = %s AND conversation_id = %s AND ended_at IS NULL AND started_at <= %s{first_bill} "
            f"RETURNING {_EVENT_RETURNING}, "
            f"(SELECT id FROM {PERIODS} WHERE tenant_id = %s AND period_start = %s)",
            [*_event_params(type, at), tenant.pk, conversation_id, _db(at + MAX_SKEW), tenant.pk, current],
        )
        row = cursor.fetchone()
    if row is None:
        _event_refusal(tenant=tenant, conversation_id=conversation_id, at=at)
        opened = _event_opens_session(
            tenant=tenant, conversation_id=conversation_id, type=type, at=at, now=now, terms=terms
        )
        if opened is not None:
            return opened
        # A parallel event billed it (or ended it) first: this one is an event like any other now.
        return session_event(
            tenant=tenant, conversation_id=conversation_id, type=type, at=at, now=now, terms=terms
        )
    pk, direction, started, last, ended, billable, answered, agent_key, last_billed, current_id = row
    started = _aware(started)
    k = window_index(started_at=started, at=at)
    if bills and k != last_billed:  # an event in the last billed window needs nothing more
        billable = _bill_window(
            tenant=tenant, terms=terms, conversation=pk, k=k, starts_at=started + k * WINDOW,
            current_id=current_id, now=now, billable=billable,
        )  # fmt: skip
    return _event_session(conversation_id, direction, started, last, ended, billable, answered, agent_key)


_EVENT_RETURNING = (
    "id, direction, started_at, last_activity_at, ended_at, billable_sessions, answered, "
    f"(SELECT {_q('key')} FROM {AGENTS} WHERE id = agent_id), last_billed_window"
)


def _event_assignments(type: str) -> str:
    if type == EventType.END:
        # An end reported late or out of order may be dated before activity already recorded (a
        # message, or the start within the clock skew allowed): a conversation never ends before
        # its last recorded activity (last_activity_at >= started_at always).
        return f"ended_at = {_greatest()}(last_activity_at, %s)"
    return f"last_activity_at = {_greatest()}(last_activity_at, %s), answered = (answered OR %s)"


def _event_params(type: str, at: datetime) -> list[Any]:
    return [_db(at)] if type == EventType.END else [_db(at), type == EventType.CUSTOMER_MESSAGE]


def _event_session(
    conversation_id: str,
    direction: str,
    started: object,
    last: object,
    ended: object,
    billable: int,
    answered: bool,
    agent_key: str | None,
) -> Session:
    return Session(
        conversation_id=conversation_id,
        agent=agent_key,
        direction=direction,
        started_at=_aware(started),
        last_activity_at=_aware(last),
        ended_at=_aware(ended) if ended is not None else None,
        billable_sessions=billable,
        answered=bool(answered),
    )


def _refuse_new_window(*, tenant: Tenant, conversation_id: str, at: datetime, refusal: Refusal) -> None:
    """While the subscription refuses new sessions (a trial that ended, a grace period over: S12,
    S28) a running conversation's next 24-hour window is a new billable session like any other: 402
    with the subscription's refusal, nothing stored. An event in a window already billed, and every
    end, still goes through; an unknown or ended conversation gets its own 404 or 409 after this.
    Only read when a refusal applies, so the hot path keeps its one statement."""
    found = (
        Conversation.objects.filter(tenant=tenant, conversation_id=conversation_id, ended_at__isnull=True)
        .values_list("started_at", "billable_sessions", "last_billed_window")
        .first()
    )
    if found is None:
        return
    started, billable, last_billed = found
    if billable == 0 or window_index(started_at=started, at=at) != last_billed:
        raise BusinessError(refusal.code, refusal.message, status=402)


def _event_refusal(*, tenant: Tenant, conversation_id: str, at: datetime) -> None:
    """Why the event's update found no conversation to change: unknown (404), ended (409) or dated
    before the conversation started (422). Returns when none applies: the event opens the
    conversation's first billable session."""
    found = (
        Conversation.objects.filter(tenant=tenant, conversation_id=conversation_id)
        .values_list("started_at", "ended_at")
        .first()
    )
    if found is None:
        raise BusinessError("not_found", "No session with this conversation id.", status=404)
    started, ended = found
    if ended is not None:
        raise BusinessError(
            "conversation_ended", "This conversation has ended: start a new session.", status=409
        )
    if at < started - MAX_SKEW:
        raise BusinessError(
            "invalid_request",
            # In UTC with "Z", as every moment of an answer (DjangoJSONEncoder, which ninja's extends).
            f"at: an event cannot be dated before the conversation started ({DjangoJSONEncoder().default(started)}).",
            status=422,
        )


def _event_opens_session(
    *, tenant: Tenant, conversation_id: str, type: str, at: datetime, now: datetime, terms: Terms
) -> Session | None:
    """A billing event of a conversation with no billed window yet opens a new billable session: like
    a start it is refused (402, nothing stored) when the subscription refuses new sessions or the
    current period's count has reached the limit, so a reply never bills past the limit. None when
    the conversation was billed or ended meanwhile (nothing written)."""
    refusal = terms.refusal
    if refusal is not None:
        raise BusinessError(refusal.code, refusal.message, status=402)
    terms = replace(terms, tenant_limit=tenant_limit(tenant_id=tenant.pk))
    with transaction.atomic(), connection.cursor() as cursor:
        # The row lock of this update serializes the conversation's parallel events.
        cursor.execute(
            f"UPDATE {CONVERSATION} SET {_event_assignments(type)} "
            "WHERE tenant_id = %s AND conversation_id = %s AND ended_at IS NULL AND billable_sessions = 0 "
            f"RETURNING {_EVENT_RETURNING}",
            [*_event_params(type, at), tenant.pk, conversation_id],
        )
        row = cursor.fetchone()
        if row is None:
            return None
        pk, direction, started, last, ended, _, answered, agent_key, _ = row
        k = window_index(started_at=_aware(started), at=at)
        counted = _count_new(tenant.pk, terms, _aware(started) + k * WINDOW)
        if counted is None:
            refused = terms.usage_refusal(terms.limit or 0)
            assert refused is not None
            raise BusinessError(refused.code, refused.message, status=402)
        cursor.execute(
            f"INSERT INTO {WINDOWS} (tenant_id, conversation_id, {_q('index')}, "
            "starts_at, usage_period_id, counted_at) VALUES (%s, %s, %s, %s, %s, %s)",
            [tenant.pk, pk, k, _db(_aware(started) + k * WINDOW), counted.period_id, _db(now)],
        )
        cursor.execute(
            f"UPDATE {CONVERSATION} SET billable_sessions = 1, last_billed_window = %s WHERE id = %s",
            [k, pk],
        )
        _after_count(tenant=tenant, terms=terms, counted=counted)
    return _event_session(conversation_id, direction, started, last, ended, 1, answered, agent_key)


@transaction.atomic
def _bill_window(
    *,
    tenant: Tenant,
    terms: Terms,
    conversation: int,
    k: int,
    starts_at: datetime,
    current_id: int | None,
    now: datetime,
    billable: int,
) -> int:
    """Bill window k of a running conversation, once (the window's unique insert decides), in the
    period in which it starts, even past the limit. Returns the conversation's billable sessions
    once the window is billed (`billable`, read before, may predate a parallel event's billing)."""
    period_id = _period_for(tenant.pk, terms, starts_at, current_id)
    if period_id is None:
        return billable
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {WINDOWS} (tenant_id, conversation_id, {_q('index')}, "
            "starts_at, usage_period_id, counted_at) VALUES (%s, %s, %s, %s, %s, %s) "
            f"ON CONFLICT (conversation_id, {_q('index')}) DO NOTHING "
            "RETURNING id",
            [tenant.pk, conversation, k, _db(starts_at), period_id, _db(now)],
        )
        if cursor.fetchone() is None:
            # A parallel event billed it: the conflict waited for that event's transaction, which
            # counted the window on the conversation too, so this (READ COMMITTED) read sees its
            # count. The `billable` read before may not: it would answer a count one short.
            cursor.execute(f"SELECT billable_sessions FROM {CONVERSATION} WHERE id = %s", [conversation])
            return cursor.fetchone()[0]
        cursor.execute(
            f"UPDATE {CONVERSATION} SET billable_sessions = billable_sessions + 1, "
            f"last_billed_window = {_greatest()}(COALESCE(last_billed_window, -1), %s) "
            "WHERE id = %s RETURNING billable_sessions",
            [k, conversation],
        )
        billable = cursor.fetchone()[0]
    terms = replace(terms, tenant_limit=tenant_limit(tenant_id=tenant.pk))
    _after_count(tenant=tenant, terms=terms, counted=_count_more(period_id))
    return billable


def session_find(*, tenant: Tenant, conversation_id: str) -> Session:
    found = _session_row(tenant, conversation_id)
    if found is None:
        raise BusinessError("not_found", "No session with this conversation id.", status=404)
    return found


# --- the session limit -----------------------------------------------------------------------------

MAX_LIMIT = 2_147_483_647  # the column's range
# True on the trial and without a paid plan running (none yet, or one that has ended): one code, one
# message, as the API documents it.
MSG_LIMIT_NOT_AVAILABLE = "The session limit is available on active paid plans, not on the free trial."


def _limit_check(terms: Terms, value: int) -> None:
    if not terms.limit_adjustable:
        raise BusinessError("limit_not_available", MSG_LIMIT_NOT_AVAILABLE, status=409)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BusinessError(
            "invalid_limit", "The session limit must be a whole number greater than zero.", status=422
        )
    base = terms.base_limit
    if base is not None and value > base:
        raise BusinessError(
            "limit_above_plan",
            f"The session limit cannot be above your plan's base limit of {base:,} sessions. "
            "Upgrade your plan for more sessions.",
            status=422,
        )


def _actor_label(actor: User | ApiKey | Actor) -> tuple[User | None, str]:
    who = Actor.of(actor)
    return who.user, who.label


@transaction.atomic
def session_limit_set(
    *, tenant: Tenant, session_limit: int, actor: User | ApiKey | Actor, now: datetime | None = None
) -> Terms:
    """Set the tenant's session limit (S23): a whole number greater than zero, at most the plan's base
    limit, paid plans only. Audited; the usage emails of the period follow the new limit."""
    now = now or timezone.now()
    Tenant.objects.select_for_update().filter(pk=tenant.pk).first()  # one limit change at a time
    terms = terms_for(tenant=tenant, now=now)
    _limit_check(terms, session_limit)
    row = SessionLimit.objects.filter(tenant=tenant).first()
    old = row.session_limit if row else None
    user, label = _actor_label(actor)
    SessionLimit.objects.update_or_create(
        tenant=tenant,
        defaults={"session_limit": session_limit, "set_by": user, "set_by_label": label, "set_at": now},
    )
    audit(
        tenant=tenant,
        actor=actor,
        action="session_limit.set",
        target_label="Session limit",
        data={"from": old if old is not None else f"plan ({terms.base_limit})", "to": session_limit},
    )
    terms = Terms(ent=terms.ent, tenant_limit=session_limit)
    _warn_at_current(tenant=tenant, terms=terms)
    return terms


@transaction.atomic
def session_limit_reset(
    *, tenant: Tenant, actor: User | ApiKey | Actor, now: datetime | None = None
) -> Terms:
    """Reset limit: back to the plan's base limit (S23). Audited; nothing to do when none is set."""
    now = now or timezone.now()
    Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
    terms = terms_for(tenant=tenant, now=now)
    if not terms.limit_adjustable:
        _limit_check(terms, 1)
    row = SessionLimit.objects.filter(tenant=tenant).first()
    if row is None:
        return terms
    row.delete()
    audit(
        tenant=tenant,
        actor=actor,
        action="session_limit.reset",
        target_label="Session limit",
        data={"from": row.session_limit, "to": f"plan ({terms.base_limit})"},
    )
    terms = Terms(ent=terms.ent, tenant_limit=None)
    _warn_at_current(tenant=tenant, terms=terms)
    return terms


def _warn_at_current(*, tenant: Tenant, terms: Terms) -> None:
    """A new limit may put the period past 80% or 100% at once: the emails go out then (once)."""
    if terms.period_start is None:
        return
    row = (
        UsagePeriod.objects.filter(tenant=tenant, period_start=terms.period_start)
        .values_list("pk", "billable_sessions", "first_warning_at", "second_warning_at")
        .first()
    )
    if row is not None:
        _after_count(tenant=tenant, terms=terms, counted=Counted(*row))


# --- agents --------------------------------------------------------------------------------------


@transaction.atomic
def agent_register(*, tenant: Tenant, key: str, name: str = "", actor: User) -> Agent:
    """Register an agent before its first session (the Agents screen); registering again renames it."""
    key = key.strip()
    if not key or len(key) > 200 or "\x00" in key:
        raise BusinessError("invalid_agent", "Give the agent an id of 1 to 200 characters.", status=422)
    agent, created = Agent.objects.get_or_create(
        tenant=tenant, key=key, defaults={"name": name.strip() or key}
    )
    if not created and name.strip() and agent.name != name.strip():
        agent.name = name.strip()[:200]
        agent.save(update_fields=["name"])
    audit(
        tenant=tenant,
        actor=actor,
        action="agent.registered" if created else "agent.renamed",
        target=agent,
        target_label=agent.label,
    )
    return agent
