"""Every read of licensing that a page, the API, the admission check or a job needs. The Plans &
Licenses page costs the same few queries whatever the number of clients: the header is three
(entitlements, one aggregate over the clients, the ticket credits), the table two (count, page) and
one for the AI credits its rows used."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from credits import selectors as credit_selectors
from credits.selectors import TicketCredits
from licensing.models import Client, LicenseKind
from licensing.rules import KIND_LABEL, PRODUCT
from plans.admission import Admission, from_refusal
from plans.models import Plan
from plans.money import CREDIT
from plans.selectors import Entitlements, ProductEntitlement, entitlements
from tenants.models import Tenant

NEAR_PERCENT = 90  # L22: at 90% of the licenses or the ticket credits, suggest upgrading


@dataclass(frozen=True)
class Seats:
    """The licenses of one kind: what the plan includes and how many clients hold one."""

    kind: str
    total: int
    used: int

    @property
    def label(self) -> str:
        return KIND_LABEL[LicenseKind(self.kind)]

    @property
    def over(self) -> int:
        """Assigned beyond the plan's total (after a downgrade): kept, but new ones are blocked."""
        return max(0, self.used - self.total)

    @property
    def left(self) -> int:
        return max(0, self.total - self.used)

    @property
    def percent(self) -> int:
        if not self.total:
            return 100 if self.used else 0
        return min(100, self.used * 100 // self.total)

    @property
    def near(self) -> bool:
        return self.total > 0 and self.used * 100 >= self.total * NEAR_PERCENT

    @property
    def reached(self) -> bool:
        """Every license of the kind is assigned (none left to give)."""
        return self.total > 0 and self.used >= self.total


@dataclass(frozen=True)
class Header:
    """The top of the Plans & Licenses page (L02 to L06) and what it flags (L20, L22)."""

    ent: ProductEntitlement
    ai: Seats
    chat: Seats
    tickets: TicketCredits
    flagged_clients: int  # inactive clients holding a license (L20)
    flagged_licenses: int
    clients: int

    @property
    def subscribed(self) -> bool:
        return self.ent.subscription_id is not None and self.ent.refusal is None

    @property
    def refresh_date(self) -> datetime | None:
        """When the ticket credits refresh: the start of the next billing cycle (L05, L18). None
        when no cycle follows: the plan admits no new work, or it ends with this cycle (canceled)."""
        if self.ent.refusal is not None:
            return None
        if (
            self.ent.ends_at is not None
            and self.ent.period_end is not None
            and self.ent.ends_at <= self.ent.period_end
        ):
            return None
        return self.ent.next_billing_date or self.ent.period_end

    @property
    def next_billing(self) -> tuple[str, datetime | None]:
        """The header's next billing date (L03), or why there is none (S26, S28), as (why, day):
        ("date", the date); ("unpaid", the grace period's end or None): billed again once the
        failed payment is settled; ("ends", the plan's end): canceled, never billed again;
        ("none", None)."""
        ent = self.ent
        if ent.next_billing_date is not None:
            return "date", ent.next_billing_date
        if ent.state in ("past_due", "suspended"):
            return "unpaid", ent.grace_until if ent.state == "past_due" else None
        if ent.state == "canceled" and ent.ends_at is not None:
            return "ends", ent.ends_at
        return "none", None

    @property
    def ticket_total(self) -> int:
        return self.tickets.cycle_amount // CREDIT

    @property
    def ticket_used(self) -> int:
        return -(-self.tickets.cycle_used // CREDIT)  # a part of a credit used counts as used

    @property
    def ticket_extra(self) -> int:
        """Whole ticket credits left beyond the cycle's (a staff adjustment): spent after the cycle's,
        counted in the API's `ticket_credits_remaining`."""
        return max(0, self.tickets.balance - self.tickets.cycle_remaining) // CREDIT

    @property
    def ticket_percent(self) -> int:
        return min(100, self.ticket_used * 100 // self.ticket_total) if self.ticket_total else 0

    @property
    def tickets_near(self) -> bool:
        return self.ticket_total > 0 and self.ticket_used * 100 >= self.ticket_total * NEAR_PERCENT

    @property
    def tickets_reached(self) -> bool:
        """The cycle's are all used and no extra ones are left: no ticket credit to spend."""
        return self.ticket_total > 0 and self.ticket_used >= self.ticket_total and not self.ticket_extra

    @property
    def near_limits(self) -> list[str]:
        """What is at 90% or more (L22), as the prompt says it."""
        found = [f"{s.label} licenses" for s in (self.ai, self.chat) if s.near]
        if self.tickets_near:
            found.append("ticket credits")
        return found

    @property
    def reached_limits(self) -> list[str]:
        """What of `near_limits` is all used: the prompt says it is reached, not close."""
        found = [f"{s.label} licenses" for s in (self.ai, self.chat) if s.reached]
        if self.tickets_reached:
            found.append("ticket credits")
        return found

    @property
    def close_limits(self) -> list[str]:
        """What of `near_limits` still has some left."""
        return [limit for limit in self.near_limits if limit not in self.reached_limits]

    @property
    def overages(self) -> list[Seats]:
        return [s for s in (self.ai, self.chat) if s.over]


def _counts_sql() -> str:
    inactive = f"status = '{Client.Status.INACTIVE.value}'"
    ai, chat = "ai_license_since IS NOT NULL", "chat_license_since IS NOT NULL"
    counted = {
        "ai": ai,
        "chat": chat,
        "flagged": f"{inactive} AND ({ai} OR {chat})",
        "flagged_ai": f"{inactive} AND {ai}",
        "flagged_chat": f"{inactive} AND {chat}",
    }
    return (
        "SELECT COUNT(*), "  # noqa: S608
        + ", ".join(f"COUNT(CASE WHEN {condition} THEN 1 END)" for condition in counted.values())
        + f" FROM {Client._meta.db_table} WHERE tenant_id = %s"
    )


_COUNTS = ("clients", "ai", "chat", "flagged", "flagged_ai", "flagged_chat")
_COUNTS_SQL = _counts_sql()


def _counts(tenant: Tenant) -> dict[str, int]:
    """The tenant's clients, licenses and inactive clients holding them, in one plain query: the
    page's header and the admission check read it, and the ORM's compilation of these six filtered
    counts cost more than the query (about 4 ms)."""
    with connection.cursor() as cursor:
        cursor.execute(_COUNTS_SQL, [tenant.pk])
        row = cursor.fetchone()
    return dict(zip(_COUNTS, (int(n) for n in row), strict=True))


def licenses_used(*, tenant: Tenant) -> dict[str, int]:
    """How many clients hold an AI license and a Chat license (one query)."""
    counts = _counts(tenant)
    return {LicenseKind.AI.value: counts["ai"], LicenseKind.CHAT.value: counts["chat"]}


def overages_on(
    *, tenant: Tenant, ai_licenses: int, chat_licenses: int, used: Mapping[str, int] | None = None
) -> list[Seats]:
    """The licenses of each kind that a plan with these totals would leave assigned beyond them (a
    downgrade: kept, new ones blocked), so the partner admin hears it before the plan changes.
    `used`: the counts the caller has read (`licenses_used`); one query otherwise."""
    used = used if used is not None else _counts(tenant)
    seats = (
        Seats(LicenseKind.AI, ai_licenses, used["ai"]),
        Seats(LicenseKind.CHAT, chat_licenses, used["chat"]),
    )
    return [s for s in seats if s.over]


def upcoming_overage_warning(*, tenant: Tenant, top: Header) -> str:
    """When the tenant's Helpdesk AI plan is scheduled to change (an Upcoming subscription) to a plan
    whose totals are below the licenses assigned today, what that change will do, with its date ("" otherwise).
    One query, only when a change is scheduled."""
    upcoming = top.ent.upcoming
    if upcoming is None:
        return ""
    totals = Plan.objects.filter(code=upcoming.plan_code).values_list("ai_licenses", "chat_licenses").first()
    if totals is None:
        return ""
    used = {LicenseKind.AI.value: top.ai.used, LicenseKind.CHAT.value: top.chat.used}
    over = overages_on(tenant=tenant, ai_licenses=totals[0], chat_licenses=totals[1], used=used)
    if not over:
        return ""
    return overage_warning(plan_name=upcoming.plan_name, overages=over, on=upcoming.starts_on)


def overage_warning(*, plan_name: str, overages: list[Seats], on: datetime | None = None) -> str:
    """What a change to the plan `plan_name` (scheduled `on` that day, if given) does to the licenses
    assigned beyond its totals, in words ("" when none would be): "AI Essentials includes 10 AI
    licenses (12 are assigned). The clients that hold them keep them, but no new AI license can be
    assigned until you remove 2."."""
    if not overages:
        return ""
    subject = f"On {on:%-d %b %Y} your plan changes to {plan_name}, which" if on else plan_name
    included = " and ".join(
        f"{s.total:,} {s.label} license{_s(s.total)} ({s.used:,} are assigned)" for s in overages
    )
    kinds = " or ".join(s.label for s in overages)
    remove = (
        " and ".join(f"{s.over:,} {s.label}" for s in overages)
        if len(overages) > 1
        else f"{overages[0].over:,}"
    )
    return (
        f"{subject} includes {included}. The clients that hold them keep them, but no new {kinds} "
        f"license can be assigned until you remove {remove}."
    )


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def header(*, tenant: Tenant, now: datetime | None = None, ents: Entitlements | None = None) -> Header:
    """Three queries (two when the caller passes the entitlements it has read)."""
    now = now or timezone.now()
    ent = (ents or entitlements(tenant=tenant, now=now))[PRODUCT]
    counts = _counts(tenant)
    return Header(
        ent=ent,
        ai=Seats(LicenseKind.AI, ent.limits.ai_licenses, counts["ai"]),
        chat=Seats(LicenseKind.CHAT, ent.limits.chat_licenses, counts["chat"]),
        tickets=credit_selectors.ticket_credits(tenant_id=tenant.pk, now=now),
        flagged_clients=counts["flagged"],
        flagged_licenses=counts["flagged_ai"] + counts["flagged_chat"],
        clients=counts["clients"],
    )


def client_name(tenant_id: int, outer: str) -> Subquery:
    """The name of the tenant's client whose id (`external_id`) is in the field `outer` of the
    enclosing query, NULL when there is none (registered with credits for AI Statistics)."""
    return Subquery(
        Client.objects.filter(tenant_id=tenant_id, external_id=OuterRef(outer)).values("name")[:1]
    )


def admission_check(
    tenant: Tenant, ent: ProductEntitlement, now: datetime | None, companions: Mapping[str, Any]
) -> Admission:
    """Helpdesk AI's admission (registered with plans.admission): the plan's refusal, with the
    license and ticket-credit figures a ticket would be decided on."""
    if ent.subscription_id is None:
        return from_refusal(ent, ent.refusal)
    counts = _counts(tenant)
    tickets = credit_selectors.ticket_credits(tenant_id=tenant.pk, now=now)
    return from_refusal(
        ent,
        ent.refusal,
        ai_licenses=ent.limits.ai_licenses,
        ai_licenses_used=counts["ai"],
        chat_licenses=ent.limits.chat_licenses,
        chat_licenses_used=counts["chat"],
        ticket_credits_remaining=tickets.remaining,
        unlimited_ai=ent.limits.unlimited_ai,
    )


# --- the Manage Licenses table ---------------------------------------------------------------------

LICENSE_FILTERS = {
    "ai": Q(ai_license_since__isnull=False),
    "no_ai": Q(ai_license_since__isnull=True),
    "chat": Q(chat_license_since__isnull=False),
    "no_chat": Q(chat_license_since__isnull=True),
    "none": Q(ai_license_since__isnull=True, chat_license_since__isnull=True),
    "flagged": Q(status=Client.Status.INACTIVE)
    & (Q(ai_license_since__isnull=False) | Q(chat_license_since__isnull=False)),
}
# Sortable columns: the key in the URL → the column (the name, then the id, break ties).
SORTS = {
    "name": "name",
    "status": "status",
    "company_type": "company_type",
    "agreement_type": "agreement_type",
    "ai": "ai_license_since",
    "chat": "chat_license_since",
    "credits": "ai_credits_used",
}
DEFAULT_SORT = "name"
NULLABLE_SORTS = {"ai_license_since", "chat_license_since"}


@dataclass(frozen=True)
class ClientFilters:
    q: str = ""
    status: str = ""
    company_type: str = ""
    agreement_type: str = ""
    license: str = ""
    sort: str = DEFAULT_SORT  # a key of SORTS, "-" in front for descending

    @property
    def active(self) -> bool:
        return bool(self.q or self.status or self.company_type or self.agreement_type or self.license)

    @property
    def sort_key(self) -> str:
        return self.sort.removeprefix("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")


@dataclass(frozen=True)
class Period:
    """The stretch whose AI credits the table counts (L10): the Helpdesk AI billing period, or the
    calendar month without one."""

    start: datetime
    end: datetime


def usage_period(ent: ProductEntitlement, now: datetime) -> Period:
    if ent.period_start is not None and ent.period_end is not None and ent.period_start <= now:
        return Period(ent.period_start, ent.period_end)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return Period(start, end)


def clients(*, tenant: Tenant, filters: ClientFilters, period: Period | None = None) -> QuerySet[Client]:
    """The tenant's clients matching the filters, in the asked order (by name, then id, after it)."""
    rows = Client.objects.filter(tenant=tenant)
    if filters.q:
        rows = rows.filter(Q(name__icontains=filters.q) | Q(external_id__iexact=filters.q))
    if filters.status:
        rows = rows.filter(status=filters.status)
    if filters.company_type:
        rows = rows.filter(company_type=filters.company_type)
    if filters.agreement_type:
        rows = rows.filter(agreement_type=filters.agreement_type)
    if filters.license in LICENSE_FILTERS:
        rows = rows.filter(LICENSE_FILTERS[filters.license])
    key = filters.sort_key if filters.sort_key in SORTS else DEFAULT_SORT
    if key == "credits" and period is not None:
        rows = rows.annotate(
            ai_credits_used=credit_selectors.ai_credits_of_client(
                tenant_id=tenant.pk, start=period.start, end=period.end, outer="external_id"
            )
        )
    elif key == "credits":
        key = DEFAULT_SORT
    column = SORTS[key]
    # Descending puts the largest first and the empty last; ascending the other way round (no
    # license before a license, the oldest license first). Only the license dates can be empty: the
    # other columns keep PostgreSQL's plain order, which their indexes give without a sort (the
    # default, by name, reads 50 rows of (tenant, name, id) instead of sorting every client).
    if column in NULLABLE_SORTS:
        order = F(column).desc(nulls_last=True) if filters.descending else F(column).asc(nulls_first=True)
    else:
        order = F(column).desc() if filters.descending else F(column).asc()
    tie = ("-name", "-pk") if filters.descending else ("name", "pk")
    return rows.order_by(order, *(t for t in tie if t.lstrip("-") != column))


@dataclass
class ClientsPage:
    page: Page
    period: Period
    filters: ClientFilters
    rows: list[Client] = field(default_factory=list)


def clients_page(
    *,
    tenant: Tenant,
    filters: ClientFilters,
    number: str | int | None,
    size: int,
    ent: ProductEntitlement,
    now: datetime | None = None,
    past_last: bool = False,
) -> ClientsPage:
    """One page of the table with each row's AI credits used (L10): three queries (count, rows, the
    credits of the rows' clients) whatever the number of clients. The page shows the last page for a
    number past it (a link kept from a longer list); with `past_last` (the API) such a page is empty
    and keeps its number, so a client walking the pages never reads the last page's rows twice."""
    now = now or timezone.now()
    period = usage_period(ent, now)
    found = clients(tenant=tenant, filters=filters, period=period)
    paginator = Paginator(found, size)
    if past_last and isinstance(number, int) and number > paginator.num_pages:
        page = Page([], number, paginator)
    else:
        page = paginator.get_page(number)
    rows = list(page.object_list)
    used = credit_selectors.ai_credits_by_client(
        tenant_id=tenant.pk, start=period.start, end=period.end, client_ids=[c.external_id for c in rows]
    )
    for client in rows:
        client.ai_credits_used = used.get(client.external_id, 0)  # type: ignore[attr-defined]
    return ClientsPage(page=page, period=period, filters=filters, rows=rows)


def client_row(*, tenant: Tenant, pk: int, period: Period) -> Client | None:
    """One row of the table (after an action) with its AI credits used: two queries."""
    client = Client.objects.filter(tenant=tenant, pk=pk).first()
    if client is not None:
        used = credit_selectors.ai_credits_by_client(
            tenant_id=tenant.pk, start=period.start, end=period.end, client_ids=[client.external_id]
        )
        client.ai_credits_used = used.get(client.external_id, 0)  # type: ignore[attr-defined]
    return client


def type_choices(*, tenant: Tenant) -> tuple[list[str], list[str]]:
    """The company types and agreement types in use, for the filters (one query)."""
    pairs = Client.objects.filter(tenant=tenant).values_list("company_type", "agreement_type").distinct()
    companies, agreements = set(), set()
    for company, agreement in pairs:
        if company:
            companies.add(company)
        if agreement:
            agreements.add(agreement)
    return sorted(companies, key=str.lower), sorted(agreements, key=str.lower)


def client_by_external_id(*, tenant: Tenant, external_id: str) -> Client | None:
    return Client.objects.filter(tenant=tenant, external_id=external_id).first()


def ai_credits_used(
    *, tenant: Tenant, client: Client, ent: ProductEntitlement, now: datetime | None = None
) -> int:
    period = usage_period(ent, now or timezone.now())
    return credit_selectors.ai_credits_by_client(
        tenant_id=tenant.pk, start=period.start, end=period.end, client_ids=[client.external_id]
    ).get(client.external_id, 0)


def export_rows(*, tenant: Tenant, filters: ClientFilters, ent: ProductEntitlement) -> Iterator[list[str]]:
    """The table as CSV rows (every page), streamed: the header, then one row per client."""
    from plans.money import credits_string

    period = usage_period(ent, timezone.now())
    used = credit_selectors.ai_credits_by_client(tenant_id=tenant.pk, start=period.start, end=period.end)
    yield [
        "client_id",
        "name",
        "status",
        "company_type",
        "agreement_type",
        "ai_license",
        "chat_license",
        f"ai_credits_used ({period.start:%Y-%m-%d} to {period.end:%Y-%m-%d})",
    ]
    for client in clients(tenant=tenant, filters=filters, period=period).iterator(chunk_size=2000):
        yield [
            client.external_id,
            client.name,
            client.status,
            client.company_type,
            client.agreement_type,
            "yes" if client.ai_license else "no",
            "yes" if client.chat_license else "no",
            credits_string(used.get(client.external_id, 0)),
        ]


def pick_candidates(
    *, tenant: Tenant, q: str = "", kind: str = LicenseKind.AI, ids: list[int] | None = None, limit: int = 50
) -> list[Client]:
    """Active clients without a license of `kind` matching `q` (or among `ids`), by name: the
    Assign picker's list."""
    field_name = "ai_license_since" if kind == LicenseKind.AI else "chat_license_since"
    rows = Client.objects.filter(
        tenant=tenant, status=Client.Status.ACTIVE, **{f"{field_name}__isnull": True}
    )
    if ids is not None:
        rows = rows.filter(pk__in=ids)
    if q:
        rows = rows.filter(Q(name__icontains=q) | Q(external_id__iexact=q))
    return list(rows.order_by("name", "pk")[:limit])
