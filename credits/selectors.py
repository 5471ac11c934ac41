"""Every read of the credit ledger that a page, the API, a job or another app needs.

Figures are integer thousandths; `plans.money.credits_string` turns them into "49.9"."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from credits.models import (
    PLAN_SOURCES,
    TICKET_CYCLE_WITHDRAWAL,
    Consumption,
    Entry,
    ExtraPack,
    FeatureCost,
    Grant,
    Hold,
    Source,
    Unit,
    Wallet,
)
from plans.models import Plan, Product
from plans.money import CREDIT, credits_string, format_credits
from plans.offers import PackOffer, PlanOffer, extra_pack_offer, plan_offers
from plans.selectors import Entitlements, ProductEntitlement, entitlements
from tenants.models import Tenant


def live_q(now: datetime, prefix: str = "") -> Q:
    """Grants that count at `now`: started, and not yet expired (the instant of expiry is expired)."""
    return Q(**{f"{prefix}valid_from__lte": now}) & (
        Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": now})
    )


def open_hold_q(now: datetime, prefix: str = "") -> Q:
    """Holds that still reserve credit: held and not past their expiry (even before the sweeper)."""
    return Q(**{f"{prefix}status": Hold.Status.HELD, f"{prefix}expires_at__gt": now})


@dataclass(frozen=True)
class Figures:
    """Thousandths. `balance` = unexpired credit not yet consumed (held credit included); `held` =
    reserved by open holds; `available` = balance - held, what a consumption or a new hold may
    take (never shown below 0: grants that expired under an open hold leave it short)."""

    balance: int
    held: int

    @property
    def available(self) -> int:
        return max(0, self.balance - self.held)

    def as_strings(self) -> dict[str, str]:
        return {
            "balance": credits_string(self.balance),
            "held": credits_string(self.held),
            "available": credits_string(self.available),
        }


ZERO = Figures(balance=0, held=0)


@dataclass(frozen=True)
class EndingCredits:
    """The credits of another plan still left, which end when a new plan's period starts (AI Free's
    when AI Plus starts: `credits_grant_plan_period` replaces them), as the subscriber is told."""

    plan_name: str
    remaining: int  # thousandths of a credit

    def _what(self) -> str:
        number, _, noun = format_credits(self.remaining).partition(" ")  # "27.5 credits", "1 credit"
        return f"{number} remaining {self.plan_name} {noun}"

    def notice(self, new_plan: str) -> str:
        """Before subscribing: "Your 27.5 remaining AI Free credits end when AI Plus starts." """
        return f"Your {self._what()} {'ends' if self.remaining == CREDIT else 'end'} when {new_plan} starts."

    def ended(self, new_plan: str) -> str:
        """After: "Your 27.5 remaining AI Free credits ended when AI Plus started." """
        return f"Your {self._what()} ended when {new_plan} started."


def plan_credits_ending(*, tenant: Tenant, plan: Plan, now: datetime | None = None) -> EndingCredits | None:
    """The plan credits of another plan (AI Free) left now, which a period of `plan` (AI Plus) would
    end; None when none are left."""
    now = now or timezone.now()
    rows = list(
        Grant.objects.filter(wallet__tenant=tenant, wallet__unit=Unit.AI_CREDIT, source__in=PLAN_SOURCES)
        .filter(live_q(now), remaining__gt=0)
        .exclude(plan=plan)
        .values_list("plan__name", "remaining")
    )
    if not rows:
        return None
    return EndingCredits(plan_name=rows[0][0] or "plan", remaining=sum(r for _, r in rows))


def held_in(wallet: Wallet, now: datetime) -> int:
    return Hold.objects.filter(open_hold_q(now), wallet=wallet).aggregate(s=Sum("amount"))["s"] or 0


def wallet_figures(wallet: Wallet, now: datetime) -> Figures:
    return figures(tenant_id=wallet.tenant_id, unit=wallet.unit, now=now)


def figures(*, tenant_id: int, unit: str = Unit.AI_CREDIT, now: datetime | None = None) -> Figures:
    """Balance and held of a tenant's wallet, in one query."""
    now = now or timezone.now()
    balance = (
        Grant.objects.filter(live_q(now), wallet=OuterRef("pk"))
        .values("wallet")
        .annotate(s=Sum("remaining"))
        .values("s")
    )
    held = (
        Hold.objects.filter(open_hold_q(now), wallet=OuterRef("pk"))
        .values("wallet")
        .annotate(s=Sum("amount"))
        .values("s")
    )
    row = (
        Wallet.objects.filter(tenant_id=tenant_id, unit=unit)
        .annotate(balance=Coalesce(Subquery(balance), 0), held=Coalesce(Subquery(held), 0))
        .values("balance", "held")
        .first()
    )
    return Figures(balance=row["balance"], held=row["held"]) if row else ZERO


# --- the tenant's summary: the sidebar nudge, the Overview tile, the low-balance email ----------


def _share(used: int, amount: int) -> str:
    if amount <= 0:
        return ""
    if 0 < used * 100 < amount:
        return "<1%"
    return f"{used * 100 // amount}%"


class PeriodUse:
    """What a period's plan credits (`period_amount`, `period_remaining`, thousandths) say used."""

    period_amount: int
    period_remaining: int

    @property
    def period_used(self) -> int:
        return self.period_amount - self.period_remaining

    @property
    def period_used_percent(self) -> int:
        return self.period_used * 100 // self.period_amount if self.period_amount else 0

    @property
    def period_used_share(self) -> str:
        """The period's used share as the pages say it: "" without period credits (nothing to
        share), "<1%" for a little use that would round to 0, else whole percent, rounded down."""
        return _share(self.period_used, self.period_amount)


def balance_runs_low(*, period_amount: int, period_used: int, available: int) -> bool:
    """The one rule of "the balance runs low" (thousandths): at least CREDITS_NUDGE_USED_PERCENT of
    the period's plan credits used, or fewer than CREDITS_LOW_BALANCE credits available (balance
    minus open holds: held credit cannot be spent). The sidebar's quick access (C03) appears then,
    and only then can extra credits be bought (C12, C24 / FAQ 7)."""
    if period_amount and period_used * 100 >= period_amount * settings.CREDITS_NUDGE_USED_PERCENT:
        return True
    return available < settings.CREDITS_LOW_BALANCE * CREDIT


@dataclass(frozen=True)
class Summary(PeriodUse):
    """Thousandths. `period_amount`/`period_used`: the live plan credits of the current period;
    `held`: reserved by open holds."""

    has_credits: bool  # the tenant has ever had an AI-credit grant
    balance: int
    period_amount: int
    period_remaining: int
    held: int = 0

    @property
    def available(self) -> int:
        return max(0, self.balance - self.held)

    @property
    def runs_low(self) -> bool:
        return balance_runs_low(
            period_amount=self.period_amount, period_used=self.period_used, available=self.available
        )

    @property
    def low(self) -> bool:
        """C03: the sidebar's quick access, for a tenant that has ever had credits."""
        return self.has_credits and self.runs_low


# live_q in SQL, on the grant `g` at %(now)s (the plain queries below).
_LIVE = "(g.valid_from <= %(now)s AND (g.expires_at IS NULL OR g.expires_at > %(now)s))"


@functools.cache
def _summary_sql() -> str:
    grant, wallet, hold = Grant._meta.db_table, Wallet._meta.db_table, Hold._meta.db_table
    plan = "g.source IN (" + ", ".join(f"'{source.value}'" for source in PLAN_SOURCES) + ")"
    # open_hold_q in SQL: held, and not past its expiry (even before the sweeper).
    held = (
        f"(SELECT SUM(h.amount) FROM {hold} h WHERE h.wallet_id = w.id "  # noqa: S608
        f"AND h.status = '{Hold.Status.HELD.value}' AND h.expires_at > %(now)s)"
    )
    return (
        f"SELECT COUNT(g.id), SUM(CASE WHEN {_LIVE} THEN g.remaining END), "  # noqa: S608
        f"SUM(CASE WHEN {_LIVE} AND {plan} THEN g.amount END), "
        f"SUM(CASE WHEN {_LIVE} AND {plan} THEN g.remaining END), {held} "
        f"FROM {wallet} w LEFT JOIN {grant} g ON g.wallet_id = w.id "
        f"WHERE w.tenant_id = %(tenant)s AND w.unit = '{Unit.AI_CREDIT.value}' GROUP BY w.id"
    )


def summary(*, tenant_id: int, now: datetime | None = None) -> Summary:
    """In one plain query: the sidebar asks it on every tenant page, and the ORM's compilation of
    these sums cost more than the query (about 4 ms a page)."""
    at = connection.ops.adapt_datetimefield_value(now or timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(_summary_sql(), {"tenant": tenant_id, "now": at})
        row = cursor.fetchone()
    count, balance, period_amount, period_remaining, held = row or (0, 0, 0, 0, 0)
    return Summary(
        has_credits=bool(count),
        balance=int(balance or 0),
        period_amount=int(period_amount or 0),
        period_remaining=int(period_remaining or 0),
        held=int(held or 0),
    )


def credits_nudge(*, tenant_id: int, now: datetime | None = None) -> bool:
    """Whether the sidebar shows the quick access to the AI Credits page (C03)."""
    return summary(tenant_id=tenant_id, now=now).low


@dataclass(frozen=True)
class LowBalance:
    tenant_id: int
    period_grant_id: int  # the current plan period: one email per period
    period_end: datetime | None


def low_balance_candidates(*, now: datetime, limit: int = 1000) -> list[LowBalance]:
    """Tenants whose current plan period's credits may run low, one row per tenant: C03's rule
    (`balance_runs_low`) in SQL, per plan grant, so it finds every tenant `summary(...).runs_low`
    finds (a period's grants used at 80% together have one used at 80%) and perhaps a few more;
    the email asks the summary before it is sent."""
    pct = settings.CREDITS_NUDGE_USED_PERCENT
    threshold = settings.CREDITS_LOW_BALANCE * CREDIT
    balance = (
        Grant.objects.filter(live_q(now), wallet=OuterRef("wallet"))
        .values("wallet")
        .annotate(s=Sum("remaining"))
        .values("s")
    )
    held = (
        Hold.objects.filter(open_hold_q(now), wallet=OuterRef("wallet"))
        .values("wallet")
        .annotate(s=Sum("amount"))
        .values("s")
    )
    rows = (
        Grant.objects.filter(live_q(now), source__in=PLAN_SOURCES, wallet__unit=Unit.AI_CREDIT)
        .alias(
            balance=Coalesce(Subquery(balance), 0),
            held=Coalesce(Subquery(held), 0),
            used100=(F("amount") - F("remaining")) * 100,
            limit100=F("amount") * pct,
        )
        # balance_runs_low: available (balance - held) under the setting.
        .filter(Q(used100__gte=F("limit100")) | Q(balance__lt=threshold + F("held")))
        .order_by("tenant_id", "-valid_from")
        .values("tenant_id", "pk", "expires_at")[:limit]
    )
    seen: dict[int, LowBalance] = {}
    for row in rows:
        seen.setdefault(row["tenant_id"], LowBalance(row["tenant_id"], row["pk"], row["expires_at"]))
    return list(seen.values())


# --- the AI Credits page and GET /credits -------------------------------------------------------


@dataclass(frozen=True)
class GrantRow:
    id: int
    source: str
    source_label: str
    amount: int
    remaining: int
    valid_from: datetime
    expires_at: datetime | None
    note: str

    def as_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "amount": credits_string(self.amount),
            "remaining": credits_string(self.remaining),
            "valid_from": self.valid_from,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True)
class Overview(PeriodUse):
    figures: Figures
    grants: list[GrantRow]  # unexpired (live or starting later), in the order consumption draws them
    extra_pack: GrantRow | None  # the active one (C14: at most one)
    plan: ProductEntitlement | None  # the AI Credits entitlement
    ents: Entitlements | None = None  # every product's (the plan offers ask them)
    period_amount: int = 0
    period_remaining: int = 0
    by_source: dict[str, int] = field(default_factory=dict)

    @property
    def next_renewal(self) -> datetime | None:
        """The API's `next_renewal` too: a paid plan's next billing date, or a contract's next month."""
        return self.plan.next_credit_renewal if self.plan is not None else None


def _grant_rows(queryset: Any) -> list[GrantRow]:
    labels = dict(Source.choices)
    return [
        GrantRow(
            id=row["pk"],
            source=row["source"],
            source_label=labels.get(row["source"], row["source"]),
            amount=row["amount"],
            remaining=row["remaining"],
            valid_from=row["valid_from"],
            expires_at=row["expires_at"],
            note=row["note"],
        )
        for row in queryset.values("pk", "source", "amount", "remaining", "valid_from", "expires_at", "note")
    ]


def overview(*, tenant: Tenant, now: datetime | None = None) -> Overview:
    """Figures, unexpired grants, the active extra pack and the plan: five queries whatever the
    number of grants."""
    now = now or timezone.now()
    unexpired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    grants = _grant_rows(
        Grant.objects.filter(unexpired, tenant=tenant, wallet__unit=Unit.AI_CREDIT).order_by(
            "priority", F("expires_at").asc(nulls_last=True), "valid_from", "pk"
        )
    )
    live = [g for g in grants if g.valid_from <= now]
    held = (
        Hold.objects.filter(open_hold_q(now), tenant=tenant, wallet__unit=Unit.AI_CREDIT).aggregate(
            s=Sum("amount")
        )["s"]
        or 0
    )
    packs = [g for g in live if g.source == Source.EXTRA_PACK]
    plan_grants = [g for g in live if g.source in PLAN_SOURCES]
    by_source: dict[str, int] = {}
    for g in live:
        by_source[g.source_label] = by_source.get(g.source_label, 0) + g.remaining
    ents = entitlements(tenant=tenant, now=now)
    return Overview(
        figures=Figures(balance=sum(g.remaining for g in live), held=held),
        grants=grants,
        extra_pack=max(packs, key=lambda g: g.expires_at or now, default=None),
        plan=ents.get("ai_credits"),
        ents=ents,
        period_amount=sum(g.amount for g in plan_grants),
        period_remaining=sum(g.remaining for g in plan_grants),
        by_source=by_source,
    )


# --- GET /credits/ledger?as_of= ------------------------------------------------------------------


@dataclass(frozen=True)
class Ledger:
    as_of: datetime
    balance: int
    grants: list[dict[str, Any]]  # each grant live at as_of, with what it held then
    entries: list[dict[str, Any]]
    next_after: int | None


def ledger_as_of(*, tenant: Tenant, as_of: datetime, after: int = 0, limit: int = 500) -> Ledger:
    """The balance as it was at `as_of`, replayed from the entries: for each grant live then, the
    sum of its entries written up to then. Every credit explained: the entries are those of the
    grants live at `as_of` (paged by entry id)."""
    wallet = Wallet.objects.filter(tenant=tenant, unit=Unit.AI_CREDIT).first()
    if wallet is None:
        return Ledger(as_of, 0, [], [], None)
    sums = (
        Entry.objects.filter(wallet=wallet, grant__isnull=False, created_at__lte=as_of)
        .filter(live_q(as_of, "grant__"))
        .values("grant_id", "grant__source", "grant__amount", "grant__valid_from", "grant__expires_at")
        .annotate(held=Sum("quantity"))
        .order_by("grant_id")
    )
    grants = [
        {
            "id": row["grant_id"],
            "source": row["grant__source"],
            "amount": credits_string(row["grant__amount"]),
            "remaining": credits_string(row["held"]),
            "valid_from": row["grant__valid_from"],
            "expires_at": row["grant__expires_at"],
        }
        for row in sums
    ]
    balance = sum(row["held"] for row in sums)
    rows = list(
        Entry.objects.filter(
            wallet=wallet, created_at__lte=as_of, grant_id__in=[g["id"] for g in grants], pk__gt=after
        )
        .order_by("pk")
        .values(
            "pk",
            "created_at",
            "kind",
            "quantity",
            "grant_id",
            "feature",
            "client_id",
            "idempotency_key",
            "actor_label",
            "note",
        )[: limit + 1]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    entries = [
        {
            "id": row["pk"],
            "created_at": row["created_at"],
            "kind": row["kind"],
            "credits": credits_string(row["quantity"]),
            "grant_id": row["grant_id"],
            "feature": row["feature"] or None,
            "client_id": row["client_id"] or None,
            "idempotency_key": row["idempotency_key"] or None,
            "actor": row["actor_label"],
            "note": row["note"] or None,
        }
        for row in rows
    ]
    return Ledger(as_of, balance, grants, entries, rows[-1]["pk"] if more and rows else None)


# --- AI Statistics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statistics:
    start: date
    end: date  # inclusive
    days: list[date]
    features: list[tuple[str, str]]  # (feature, name), in the chart's order
    series: dict[str, list[int]]  # feature → net thousandths consumed per day
    totals: dict[str, int]  # feature → net thousandths over the range
    top_clients: list[dict[str, Any]]

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    @property
    def feature_totals(self) -> list[tuple[str, int]]:
        return [(name, self.totals[code]) for code, name in self.features]

    def chart(self) -> dict[str, Any]:
        """What the chart draws (credits as numbers with three decimals at most, exact strings)."""
        return {
            "labels": [f"{d.day} {d:%b}" for d in self.days],
            "datasets": [
                {"label": name, "data": [credits_string(v) for v in self.series[code]]}
                for code, name in self.features
            ],
        }

    def rows(self) -> list[dict[str, Any]]:
        """The chart as a table (no-JS fallback): one row per day."""
        return [
            {"day": day, "values": [self.series[code][i] for code, _ in self.features]}
            for i, day in enumerate(self.days)
        ]


CONSUMING = (Entry.Kind.CONSUME, Entry.Kind.COMMIT, Entry.Kind.REFUND)

# The name of the client a consumption names (its `client_id`), from the app that keeps the clients
# (licensing, a layer above, registers it from its AppConfig.ready): given the tenant's id and the
# field holding the client's id, an expression for the name (NULL when no client has that id). It
# joins the top clients' one query: the names cost no query of their own.
ClientName = Callable[[int, str], Any]
_CLIENT_NAME: list[ClientName] = []


def register_client_name(expression: ClientName) -> None:
    _CLIENT_NAME[:] = [expression]


def statistics(*, tenant: Tenant, days: int = 30, now: datetime | None = None) -> Statistics:
    """Consumption per feature per day over the last `days` days (UTC), net of refunds, and the top
    clients (with their names where the clients' app knows them). Three queries whatever the volume."""
    now = now or timezone.now()
    end = now.date()
    start = end - timedelta(days=days - 1)
    since = datetime.combine(start, datetime.min.time(), tzinfo=now.tzinfo)
    names = dict(FeatureCost.objects.values_list("feature", "name"))
    per_day = (
        Entry.objects.filter(
            tenant=tenant,
            wallet__unit=Unit.AI_CREDIT,
            kind__in=CONSUMING,
            created_at__gte=since,
            created_at__lte=now,
        )
        .annotate(day=TruncDate("created_at"))
        .values("day", "feature")
        .annotate(s=Sum("quantity"))
        .order_by()
    )
    day_list = [start + timedelta(days=i) for i in range(days)]
    index = {d: i for i, d in enumerate(day_list)}
    series: dict[str, list[int]] = {code: [0] * days for code in names}
    for row in per_day:
        code = row["feature"] or "other"
        series.setdefault(code, [0] * days)
        if row["day"] in index:
            series[code][index[row["day"]]] -= row["s"]
    names.setdefault("other", "Other")
    features = [(code, names.get(code, code)) for code in sorted(series)]
    top = (
        Consumption.objects.filter(
            tenant=tenant, wallet__unit=Unit.AI_CREDIT, created_at__gte=since, created_at__lte=now
        )
        .exclude(client_id="")
        .values("client_id")
    )
    if _CLIENT_NAME:  # L08, L10: the client's name, as Plans & Licenses shows it
        top = top.annotate(name=_CLIENT_NAME[0](tenant.pk, "client_id"))
    top = top.annotate(
        credits=Sum("amount") - Coalesce(Sum("refunded_amount"), 0), uses=Count("pk")
    ).order_by("-credits", "client_id")[:10]
    return Statistics(
        start=start,
        end=end,
        days=day_list,
        features=features,
        series=series,
        totals={code: sum(values) for code, values in series.items()},
        top_clients=[dict(row) for row in top],
    )


def consumption_rows(*, tenant: Tenant, start: datetime, end: datetime) -> Iterator[list[str]]:
    """The CSV export of AI Statistics: one row per consumption in [start, end), streamed."""
    names = dict(FeatureCost.objects.values_list("feature", "name"))
    yield [
        "time (UTC)",
        "feature",
        "quantity",
        "credits",
        "refunded credits",
        "client id",
        "idempotency key",
        "by",
    ]
    rows = (
        Consumption.objects.filter(
            tenant=tenant, wallet__unit=Unit.AI_CREDIT, created_at__gte=start, created_at__lt=end
        )
        .order_by("created_at", "pk")
        .values_list(
            "created_at",
            "feature",
            "quantity",
            "amount",
            "refunded_amount",
            "client_id",
            "idempotency_key",
            "actor_label",
        )
    )
    for created_at, feature, quantity, amount, refunded, client_id, key, actor in rows.iterator(
        chunk_size=2000
    ):
        yield [
            created_at.strftime("%Y-%m-%d %H:%M:%S"),
            names.get(feature, feature),
            "" if quantity is None else str(quantity),
            credits_string(amount),
            credits_string(refunded or 0),
            client_id,
            key,
            actor,
        ]


def feature_costs() -> list[FeatureCost]:
    return list(FeatureCost.objects.filter(active=True).order_by("cost", "feature"))


# --- pages ---------------------------------------------------------------------------------------


def plan_cards(*, tenant: Tenant, ents: Entitlements | None, role: str) -> list[PlanOffer]:
    """The AI Credits plans (AI Free, AI Plus, AI Ultra) in catalog order, each with what its card
    offers this member: the plan-offer rule decides (plans.offers), never this page."""
    product = Product.objects.get(code=Product.Code.AI_CREDITS)
    return plan_offers(tenant=tenant, product=product, role=role, ents=ents)


def extra_pack_expiry(*, tenant_id: int, now: datetime | None = None) -> datetime | None:
    """When the tenant's active extra pack expires (C14: bought, not expired nor deactivated, spent
    or not); None when it has none."""
    now = now or timezone.now()
    return (
        Grant.objects.filter(
            live_q(now), tenant_id=tenant_id, wallet__unit=Unit.AI_CREDIT, source=Source.EXTRA_PACK
        )
        .order_by("-expires_at")
        .values_list("expires_at", flat=True)
        .first()
    )


def pack_offer(
    *, tenant: Tenant, role: str, ents: Entitlements | None = None, now: datetime | None = None
) -> PackOffer:
    """Whether "Buy extra credits" is offered to this member: the plan-offer rule (plans.offers)
    asked with the tenant's active pack and whether its balance runs low (the sidebar's rule)."""
    ents = ents or entitlements(tenant=tenant, now=now)
    return extra_pack_offer(
        ents=ents,
        role=role,
        pack_active_until=extra_pack_expiry(tenant_id=tenant.pk, now=now),
        balance_low=summary(tenant_id=tenant.pk, now=now).runs_low,
    )


def page_pack_offer(*, ov: Overview, role: str) -> PackOffer:
    """The AI Credits page's "Buy extra credits", from what its overview has read (no query)."""
    assert ov.ents is not None
    until = ov.extra_pack.expires_at if ov.extra_pack is not None else None
    low = balance_runs_low(
        period_amount=ov.period_amount, period_used=ov.period_used, available=ov.figures.available
    )
    return extra_pack_offer(ents=ov.ents, role=role, pack_active_until=until, balance_low=low)


def extra_packs_on_sale() -> list[ExtraPack]:
    return list(ExtraPack.objects.filter(active=True).order_by("sort_order", "credits"))


@dataclass(frozen=True)
class MarketplaceProduct:
    code: str
    name: str
    description: str


def marketplace_products() -> list[MarketplaceProduct]:
    return [
        MarketplaceProduct(p.code, p.name, p.description)
        for p in Product.objects.order_by("sort_order", "name")
    ]


# --- ticket credits and AI credits per client (Helpdesk AI: the Plans & Licenses page) ----------


@dataclass(frozen=True)
class TicketCredits:
    """Thousandths. `cycle_amount`/`cycle_remaining`: the live ticket-cycle grants (this billing
    cycle's, L17); `balance`: every live ticket credit (staff adjustments included)."""

    cycle_amount: int
    cycle_remaining: int
    balance: int

    @property
    def cycle_used(self) -> int:
        return self.cycle_amount - self.cycle_remaining

    @property
    def remaining(self) -> int:
        """Whole ticket credits that can still be spent."""
        return self.balance // CREDIT


@functools.cache
def _ticket_credits_sql() -> str:
    grant, wallet, entry = Grant._meta.db_table, Wallet._meta.db_table, Entry._meta.db_table
    cycle = f"g.source = '{Source.TICKET_CYCLE.value}'"
    of_tenant = (
        f"(SELECT w.id FROM {wallet} w WHERE w.tenant_id = %(tenant)s "  # noqa: S608
        f"AND w.unit = '{Unit.TICKET_CREDIT.value}')"
    )
    # What a downgrade within the cycle withdrew (credits.services.ticket_credits_grant_cycle): not
    # part of the cycle's allowance, and not used. Only adjust entries are read (an index leads
    # with the wallet and the kind), never the cycle's consumption.
    withdrawn = (
        f"(SELECT COALESCE(SUM(e.quantity), 0) FROM {entry} e JOIN {grant} g ON g.id = e.grant_id "  # noqa: S608
        f"WHERE e.wallet_id = {of_tenant} AND e.kind = '{Entry.Kind.ADJUST.value}' "
        f"AND e.idempotency_key LIKE '{TICKET_CYCLE_WITHDRAWAL}%%' AND {cycle} AND {_LIVE})"
    )
    return (
        f"SELECT SUM(g.remaining), SUM(CASE WHEN {cycle} THEN g.amount ELSE 0 END) + {withdrawn}, "  # noqa: S608
        f"SUM(CASE WHEN {cycle} THEN g.remaining ELSE 0 END) FROM {grant} g "
        f"WHERE g.wallet_id = {of_tenant} AND {_LIVE}"
    )


def ticket_credits(*, tenant_id: int, now: datetime | None = None) -> TicketCredits:
    """In one plain query (the ticket API answers with it: the ORM's compilation stays off it)."""
    at = connection.ops.adapt_datetimefield_value(now or timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(_ticket_credits_sql(), {"tenant": tenant_id, "now": at})
        balance, cycle_amount, cycle_remaining = cursor.fetchone()
    return TicketCredits(
        cycle_amount=int(cycle_amount or 0),
        cycle_remaining=int(cycle_remaining or 0),
        balance=int(balance or 0),
    )


def ticket_cycles_granted(*, tenant_ids: list[int], now: datetime) -> set[tuple[int, datetime]]:
    """(tenant id, cycle start) of every ticket-cycle grant of these tenants that has not ended: the
    sweeper grants the cycles missing from it."""
    return set(
        Grant.objects.filter(
            tenant_id__in=tenant_ids, source=Source.TICKET_CYCLE, expires_at__gt=now
        ).values_list("tenant_id", "valid_from")
    )


def _client_consumption(tenant_id: int, start: datetime, end: datetime) -> Any:
    return Consumption.objects.filter(
        tenant_id=tenant_id, wallet__unit=Unit.AI_CREDIT, created_at__gte=start, created_at__lt=end
    ).exclude(client_id="")


def ai_credits_by_client(
    *, tenant_id: int, start: datetime, end: datetime, client_ids: list[str] | None = None
) -> dict[str, int]:
    """Thousandths of AI credits each client consumed in [start, end), net of refunds (the
    consumptions' `client_id`), for `client_ids` or every client. One query."""
    rows = _client_consumption(tenant_id, start, end)
    if client_ids is not None:
        rows = rows.filter(client_id__in=client_ids)
    return dict(
        rows.values("client_id")
        .annotate(net=Sum("amount") - Coalesce(Sum("refunded_amount"), 0))
        .order_by()
        .values_list("client_id", "net")
    )


def ai_credits_of_client(*, tenant_id: int, start: datetime, end: datetime, outer: str) -> Any:
    """The same figure as a subquery expression on the client named by `OuterRef(outer)` (0 when it
    consumed nothing): a page sorts its clients by it."""
    net = (
        _client_consumption(tenant_id, start, end)
        .filter(client_id=OuterRef(outer))
        .values("client_id")
        .annotate(net=Sum("amount") - Coalesce(Sum("refunded_amount"), 0))
        .values("net")
    )
    return Coalesce(Subquery(net), 0)
