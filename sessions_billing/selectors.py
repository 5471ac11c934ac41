"""Reads of sessions_billing for the pages, the API, the Billing tab, the Overview tile and the
admission check. Every page's query count is constant in its rows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from plans.admission import Admission, from_refusal
from plans.selectors import ProductEntitlement, Refusal
from sessions_billing.models import Agent, BillableWindow, Conversation, SessionLimit, UsagePeriod
from sessions_billing.terms import Terms, terms_for, trial_ending_soon
from tenants.models import Tenant
from tenants.text import ascii_digits

MSG_ALMOST = "Session limit almost reached"
MSG_REACHED = "Session limit has been reached"
MSG_TRIAL_ENDING = "Trial ending soon"


_COUNT_SQL = (
    f"SELECT billable_sessions FROM {UsagePeriod._meta.db_table} WHERE tenant_id = %s AND period_start = %s"  # noqa: S608
)
_USAGE_SQL = (
    f"SELECT (SELECT session_limit FROM {SessionLimit._meta.db_table} WHERE tenant_id = %s), "  # noqa: S608
    f"(SELECT billable_sessions FROM {UsagePeriod._meta.db_table} WHERE tenant_id = %s AND period_start = %s)"
)

# The admission check's key companion (tenants.services.register_key_companion), read in the API key's
# own statement: the tenant's own limit and its two latest periods' counts, [[limit]] then
# [[start in microseconds since the epoch, count], ...] newest first.
USAGE_COMPANION = "sessions_billing.usage"
USAGE_COMPANION_SQL = (
    f"SELECT ARRAY[ARRAY[(SELECT session_limit FROM {SessionLimit._meta.db_table} "  # noqa: S608
    "WHERE tenant_id = k.tenant_id)::bigint, NULL::bigint]] || ARRAY(SELECT ARRAY[(extract(epoch FROM u.period_start) * 1000000)"
    f"::bigint, u.billable_sessions::bigint] FROM {UsagePeriod._meta.db_table} u WHERE u.tenant_id = k.tenant_id "
    "ORDER BY u.period_start DESC LIMIT 2)"
)


def _micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _usage_from_companion(found: Any, period_start: datetime | None) -> tuple[int | None, int] | None:
    """(the tenant's own limit, the period's count) from the key companion, or None when it was not
    read (SQLite, another endpoint) or cannot tell: its two latest periods are both later than this
    one (this one's row, if any, was not read)."""
    if not found:
        return None
    (own, _), *latest = found
    if period_start is None:
        return own, 0
    target = _micros(period_start)
    for start, count in latest:
        if start == target:
            return own, count
    # No row of this period among those read: conclusive when every row was read (fewer than two)
    # or one read is older than this period (a row of this period would have come before it).
    if len(latest) < 2 or min(start for start, _ in latest) < target:
        return own, 0
    return None


def period_count(*, tenant: Tenant, period_start: datetime | None) -> int:
    """The period's billable sessions (a plain query: the admission check asks it on every call)."""
    if period_start is None:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(_COUNT_SQL, [tenant.pk, connection.ops.adapt_datetimefield_value(period_start)])
        row = cursor.fetchone()
    return row[0] if row else 0


@dataclass(frozen=True)
class Usage:
    """The current period's usage of the tenant's AI Agents subscription, for every page and the API."""

    terms: Terms
    billable_sessions: int

    @property
    def ent(self) -> ProductEntitlement:
        return self.terms.ent

    @property
    def session_limit(self) -> int | None:
        return self.terms.limit

    @property
    def limit_source(self) -> str | None:
        return self.terms.limit_source

    @property
    def percent(self) -> int:
        """Share of the limit used, 0-100 (for the bar)."""
        limit = self.session_limit
        if not limit:
            return 0
        return min(100, self.billable_sessions * 100 // limit)

    @property
    def limit_warning(self) -> str | None:
        """The Session limit card's warning (S24): paid plans only."""
        limit = self.session_limit
        if not limit or not self.terms.paid:
            return None
        if self.billable_sessions >= limit:
            return MSG_REACHED
        if self.billable_sessions * 100 >= 80 * limit:
            return MSG_ALMOST
        return None

    @property
    def trial(self) -> bool:
        return self.terms.ent.state == "trialing" and self.terms.trial

    @property
    def trial_sessions_left(self) -> int | None:
        if not self.trial or self.terms.base_limit is None:
            return None
        return max(0, self.terms.base_limit - self.billable_sessions)

    @property
    def trial_days_left(self) -> int | None:
        return self.ent.trial_days_left if self.trial else None

    @property
    def trial_ending_soon(self) -> bool:
        return self.trial and trial_ending_soon(self.terms, billable_sessions=self.billable_sessions)

    @property
    def badge(self) -> str:
        """The subscription card's badge with the sessions rule of "Trial ending soon" added."""
        return MSG_TRIAL_ENDING if self.trial_ending_soon else self.ent.badge

    @property
    def badge_tone(self) -> str:
        return "warning" if self.trial_ending_soon else self.ent.badge_tone

    @property
    def warnings(self) -> list[str]:
        found = [w for w in (self.limit_warning,) if w]
        if self.trial_ending_soon:
            found.append(MSG_TRIAL_ENDING)
        return found

    @property
    def refusal(self) -> Refusal | None:
        """Why agents do not accept new sessions now, in the order the API refuses them."""
        return self.terms.refusal or self.terms.usage_refusal(self.billable_sessions)

    @property
    def accepting(self) -> bool:
        return self.refusal is None


def limit_stop_warning(*, usage: Usage, new_limit: int | None) -> str:
    """S25, said before or as a lower limit applies (Set limit, a plan changed Immediately): when this
    period's billable sessions already reach `new_limit`, every agent stops accepting new sessions
    at once; "" when they do not. The change is not refused: the admin may mean it."""
    used = usage.billable_sessions
    if new_limit is None or used < new_limit:
        return ""
    where = "above" if used > new_limit else "at"
    resets_on = usage.terms.resets_on
    until = f"the next period starts on {resets_on:%-d %b %Y}" if resets_on else "the limit is raised"
    return (
        f"{used:,} billable session{'s are' if used != 1 else ' is'} already used this period: {where} the "
        f"new limit of {new_limit:,}, all agents stop accepting new sessions until {until}."
    )


def limit_after_change(*, usage: Usage, plan_session_limit: int | None) -> int | None:
    """The limit that applies once a paid plan whose base limit is `plan_session_limit` starts: the
    tenant's own limit up to that base (as `Terms.limit`)."""
    own = usage.terms.tenant_limit
    if own is None or plan_session_limit is None:
        return plan_session_limit if own is None else own
    return min(own, plan_session_limit)


def usage_for(*, tenant: Tenant, now: datetime | None = None, terms: Terms | None = None) -> Usage:
    terms = terms or terms_for(tenant=tenant, now=now)
    return Usage(terms=terms, billable_sessions=period_count(tenant=tenant, period_start=terms.period_start))


def admission_check(
    tenant: Tenant, ent: ProductEntitlement, now: datetime | None, companions: Mapping[str, Any]
) -> Admission:
    """The AI Agents admission (registered with plans.admission): the subscription's refusal, then
    the trial's sessions or the session limit."""
    found = _usage_from_companion(companions.get(USAGE_COMPANION), ent.period_start)
    if found is not None:
        own, count = found
    else:
        # The tenant's limit and the period's count in one round trip: the AI product asks this often.
        start = connection.ops.adapt_datetimefield_value(ent.period_start) if ent.period_start else None
        with connection.cursor() as cursor:
            cursor.execute(_USAGE_SQL, [tenant.pk, tenant.pk, start])
            own, count = cursor.fetchone()
    usage = Usage(terms=Terms(ent=ent, tenant_limit=own), billable_sessions=count or 0)
    return from_refusal(
        ent,
        usage.refusal,
        reusable=found is not None,  # from the companions alone, not from the read above
        billable_sessions=usage.billable_sessions,
        session_limit=usage.session_limit,
        limit_source=usage.limit_source,
    )


# --- the Sessions screen and the API list -------------------------------------------------------


@dataclass(frozen=True)
class SessionFilters:
    q: str = ""
    agent: str = ""
    since: date | None = None
    until: date | None = None
    answered: bool | None = None

    @property
    def active(self) -> bool:
        return bool(self.q or self.agent or self.since or self.until or self.answered is not None)


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def conversations(*, tenant: Tenant, filters: SessionFilters) -> QuerySet[Conversation]:
    rows = Conversation.objects.filter(tenant=tenant).select_related("agent")
    if filters.q:
        rows = rows.filter(conversation_id__icontains=filters.q)
    if filters.agent:
        rows = rows.filter(agent__key=filters.agent)
    if filters.since:
        rows = rows.filter(started_at__gte=_start_of(filters.since))
    if filters.until and filters.until < date.max:  # the last day there is: no upper bound
        rows = rows.filter(started_at__lt=_start_of(filters.until + timedelta(days=1)))
    if filters.answered is not None:
        rows = rows.filter(answered=filters.answered)
    return rows


def encode_cursor(conv: Conversation) -> str:
    micros = int(conv.started_at.timestamp() * 1_000_000)
    return f"{micros}.{conv.pk}"


def decode_cursor(value: str) -> tuple[datetime, int] | None:
    """A cursor from `encode_cursor`, or None for anything else (never an error): ASCII digits
    as it writes them, no leading zero (`str.isdigit` also takes full-width digits and "²")."""
    micros, _, pk = value.partition(".")
    if not (ascii_digits(micros) and ascii_digits(pk)) or len(micros) > 18 or len(pk) > 18:
        return None
    if f"{int(micros)}.{int(pk)}" != value or int(pk) == 0:
        return None  # "01.5", "1.0": not how a cursor is written
    try:
        return datetime.fromtimestamp(int(micros) / 1_000_000, tz=UTC), int(pk)
    except (OverflowError, OSError, ValueError):
        return None


@dataclass(frozen=True)
class Page:
    rows: list[Conversation]
    older: str | None  # cursor of the next (older) page
    newer: str | None  # cursor of the previous (newer) page


def conversations_page(
    *, tenant: Tenant, filters: SessionFilters, before: str = "", after: str = "", size: int = 50
) -> Page:
    """Newest first, keyset pagination on (started_at, id): as fast on page 2,000 as on page 1."""
    rows = conversations(tenant=tenant, filters=filters)
    newer_side = decode_cursor(after) if after else None
    older_side = decode_cursor(before) if before and not newer_side else None
    if newer_side:
        at, pk = newer_side
        found = list(
            rows.filter(Q(started_at__gt=at) | Q(started_at=at, pk__gt=pk)).order_by("started_at", "pk")[
                : size + 1
            ]
        )
        more_newer = len(found) > size
        found = list(reversed(found[:size]))
        return Page(
            found,
            encode_cursor(found[-1]) if found else None,
            encode_cursor(found[0]) if more_newer and found else None,
        )
    if older_side:
        at, pk = older_side
        rows = rows.filter(Q(started_at__lt=at) | Q(started_at=at, pk__lt=pk))
    found = list(rows.order_by("-started_at", "-pk")[: size + 1])
    more_older = len(found) > size
    found = found[:size]
    return Page(
        found,
        encode_cursor(found[-1]) if more_older and found else None,
        encode_cursor(found[0]) if older_side and found else None,
    )


def conversations_export(*, tenant: Tenant, filters: SessionFilters) -> Iterator[Conversation]:
    return (
        conversations(tenant=tenant, filters=filters).order_by("-started_at", "-pk").iterator(chunk_size=2000)
    )


def agent_keys(*, tenant: Tenant) -> list[str]:
    return list(Agent.objects.filter(tenant=tenant).order_by("key").values_list("key", flat=True))


# --- the chart ------------------------------------------------------------------------------------


def daily_usage(*, tenant: Tenant, usage: Usage, today: date | None = None) -> dict[str, Any]:
    """Billable sessions per day of the current period (by the day their window starts), the running
    total and the limit: the data of the Sessions screen's chart, in one query."""
    terms = usage.terms
    if terms.period_start is None or terms.period_end is None:
        return {"labels": [], "daily": [], "total": [], "limit": usage.session_limit}
    first = terms.period_start.date()
    last = min(terms.period_end.date(), today or timezone.now().date())
    counts = dict(
        BillableWindow.objects.filter(
            usage_period__tenant=tenant, usage_period__period_start=terms.period_start
        )
        .annotate(day=TruncDate("starts_at", tzinfo=UTC))
        .values("day")
        .annotate(n=Count("id"))
        .values_list("day", "n")
    )
    early = sum(n for day, n in counts.items() if day < first)  # windows before the first period
    counts[first] = counts.get(first, 0) + early
    labels, daily, total, running = [], [], [], 0
    day = first
    while day <= last:
        n = counts.get(day, 0)
        running += n
        labels.append(day.isoformat())
        daily.append(n)
        total.append(running)
        day += timedelta(days=1)
    return {"labels": labels, "daily": daily, "total": total, "limit": usage.session_limit}


# --- the Agents screen ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentRow:
    agent: Agent
    sessions: int  # conversations started this period
    billable_sessions: int  # billed windows this period


def agents_with_usage(*, tenant: Tenant, usage: Usage) -> list[AgentRow]:
    """Every agent of the tenant with its sessions and billable sessions this period (three queries)."""
    start = usage.terms.period_start
    agents = list(Agent.objects.filter(tenant=tenant).order_by("name", "key"))
    sessions: dict[int, int] = {}
    billable: dict[int, int] = {}
    if start is not None:
        # A conversation belongs to the period it started in, or to the period that bills it (one
        # that started before the first period counts in the first period).
        sessions = dict(
            Conversation.objects.filter(tenant=tenant, agent__isnull=False)
            .filter(Q(started_at__gte=start) | Q(windows__usage_period__period_start=start))
            .values("agent")
            .annotate(n=Count("id", distinct=True))
            .values_list("agent", "n")
        )
        billable = dict(
            BillableWindow.objects.filter(
                usage_period__tenant=tenant,
                usage_period__period_start=start,
                conversation__agent__isnull=False,
            )
            .values("conversation__agent")
            .annotate(n=Count("id"))
            .values_list("conversation__agent", "n")
        )
    return [AgentRow(a, sessions.get(a.pk, 0), billable.get(a.pk, 0)) for a in agents]


def session_limit_row(*, tenant: Tenant) -> SessionLimit | None:
    return SessionLimit.objects.filter(tenant=tenant).first()


def trial_ending_percent() -> int:
    return settings.TRIAL_ENDING_SOON_PERCENT
