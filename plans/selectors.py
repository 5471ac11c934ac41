"""Reads of the plans app. `entitlements(tenant=...)` is the single answer to "what may this tenant
do, per product": every page, the API and every job ask it; none re-derives a plan rule."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from plans.models import Contract, Lead, Plan, Product, ScheduledChange, Subscription
from tenants.cache import VersionedCache, Versions
from tenants.models import Tenant

State = Subscription.State

MSG_ENDED = "Your subscription has ended. Please upgrade your plan to continue."
MSG_OVERDUE = "Your payment is overdue and the grace period has expired."

BADGES = {
    "trial": "Trial subscription",
    "trial_ending": "Trial ending soon",
    "active": "Active subscription",
    "upcoming": "Upcoming subscription",
    "payment_issue": "Payment issue",
    "canceled": "Canceled subscription",
    "expired": "Expired subscription",
    "none": "Not subscribed",
}


@dataclass(frozen=True)
class Limits:
    session_limit: int | None  # billable sessions a period (the plan's base limit)
    answered_only: bool
    included_credits: int  # thousandths of a credit
    credit_renewal: str
    extra_packs_allowed: bool
    ai_licenses: int
    chat_licenses: int
    ticket_credits_per_license: int
    # (ai_licenses + chat_licenses) * ticket_credits_per_license, granted each cycle: "three ticket
    # credits for every license included in their plan" (L17), AI and Chat licenses both.
    ticket_credits: int
    unlimited_ai: bool


@dataclass(frozen=True)
class Upcoming:
    change_id: int
    plan_code: str
    plan_name: str
    starts_on: datetime
    price_amount: int
    currency: str
    interval: str


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str


@dataclass(frozen=True)
class ProductEntitlement:
    product: str
    product_name: str
    subscription_id: int | None
    plan_code: str | None
    plan_name: str | None
    plan_kind: str | None
    price_amount: int
    currency: str
    interval: str
    state: str  # trialing, active, past_due, suspended, canceled, expired, none
    badge: str
    badge_tone: str  # success, warning, danger, info, neutral
    period_start: datetime | None
    period_end: datetime | None
    next_billing_date: datetime | None
    trial_ends_at: datetime | None
    trial_days_left: int | None
    grace_until: datetime | None
    ends_at: datetime | None  # when a canceled plan, a free plan or a contract stops
    ended_at: datetime | None  # when an expired subscription actually ended (not its period end)
    limits: Limits
    upcoming: Upcoming | None
    refusal: Refusal | None  # why new work is refused, or None

    @property
    def active(self) -> bool:
        """May the product accept new work (sessions, credits, tickets)?"""
        return self.refusal is None

    @property
    def is_paid(self) -> bool:
        return self.plan_kind == Plan.Kind.SELF_SERVE and self.state != State.EXPIRED

    @property
    def next_credit_renewal(self) -> datetime | None:
        """When the plan's credits are granted again: the next billing date of a paid plan, or the
        end of a contracted plan's period while another month of its contract follows (the sweep
        renews it, no bill: C07); None otherwise."""
        if self.next_billing_date is not None:
            return self.next_billing_date
        contract_continues = (
            self.plan_kind == Plan.Kind.CONTACT_SALES
            and self.state == State.ACTIVE
            and self.active
            and self.period_end is not None
            and (self.ends_at is None or self.period_end < self.ends_at)
        )
        return self.period_end if contract_continues else None

    @property
    def shown_state(self) -> str:
        """The state an answer gives: the database decides before a sweeper runs, so a plan past its
        end reads `expired`, and one past its grace period `suspended`, the moment its refusal says
        so (`state` stays the row's, which the sweeper moves)."""
        code = self.refusal.code if self.refusal is not None else None
        if code == "subscription_ended" and self.state != "none":
            return "expired"
        if code == "payment_overdue":
            return "suspended"
        return self.state

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self) | {"active": self.active, "state": self.shown_state}


@dataclass(frozen=True)
class Entitlements:
    tenant_slug: str
    products: dict[str, ProductEntitlement]
    # The first instant after which an answer changes by time alone (a trial's or a grace period's
    # end, the "Trial ending soon" badge, a day of the trial gone, a period's end): until then, and
    # as long as nothing is written, every figure here stays true. None: nothing ever changes alone.
    valid_until: datetime | None = None

    def __getitem__(self, code: str) -> ProductEntitlement:
        return self.products[code]

    def get(self, code: str) -> ProductEntitlement | None:
        return self.products.get(code)


NO_LIMITS = Limits(None, False, 0, Plan.CreditRenewal.NONE, False, 0, 0, 0, 0, False)


def _limits(plan: Plan) -> Limits:
    return Limits(
        session_limit=plan.session_limit,
        answered_only=plan.answered_only,
        included_credits=plan.included_credits,
        credit_renewal=plan.credit_renewal,
        extra_packs_allowed=plan.extra_packs_allowed,
        ai_licenses=plan.ai_licenses,
        chat_licenses=plan.chat_licenses,
        ticket_credits_per_license=plan.ticket_credits_per_license,
        ticket_credits=(plan.ai_licenses + plan.chat_licenses) * plan.ticket_credits_per_license,
        unlimited_ai=plan.unlimited_ai,
    )


def _badge(sub: Subscription, now: datetime) -> tuple[str, str]:
    if sub.state == State.TRIALING:
        assert sub.trial_ends_at is not None
        if (
            sub.trial_ends_at - now <= timedelta(days=settings.TRIAL_ENDING_SOON_DAYS)
            or sub.trial_sessions_ending_at is not None  # S10: most of the trial's sessions used
        ):
            return BADGES["trial_ending"], "warning"
        return BADGES["trial"], "info"
    return {
        State.ACTIVE: (BADGES["active"], "success"),
        State.PAST_DUE: (BADGES["payment_issue"], "danger"),
        State.SUSPENDED: (BADGES["payment_issue"], "danger"),
        State.CANCELED: (BADGES["canceled"], "warning"),
        State.EXPIRED: (BADGES["expired"], "neutral"),
    }[State(sub.state)]


# The plans that end at their `ends_at` with no payment rail to say so: a free plan's validity, a
# contract's end (contact-sales plans).
ENDS_UNPAID = (Plan.Kind.FREE, Plan.Kind.CONTACT_SALES)


def _refusal(sub: Subscription | None, now: datetime) -> Refusal | None:
    if sub is None:
        return Refusal(
            "no_subscription", "There is no subscription for this product. Subscribe to a plan to continue."
        )
    if sub.state == State.EXPIRED:
        return Refusal("subscription_ended", MSG_ENDED)
    if sub.state == State.SUSPENDED:
        return Refusal("payment_overdue", MSG_OVERDUE)
    # The database decides even before a sweeper runs: past the end is ended, past grace is overdue.
    if sub.state == State.TRIALING and sub.trial_ends_at and sub.trial_ends_at <= now:
        return Refusal("subscription_ended", MSG_ENDED)
    if sub.state == State.CANCELED and sub.ends_at and sub.ends_at <= now:
        return Refusal("subscription_ended", MSG_ENDED)
    if sub.state == State.ACTIVE and sub.plan.kind in ENDS_UNPAID and sub.ends_at and sub.ends_at <= now:
        return Refusal("subscription_ended", MSG_ENDED)
    if sub.state == State.PAST_DUE and sub.grace_until and sub.grace_until <= now:
        return Refusal("payment_overdue", MSG_OVERDUE)
    return None


def _ended_at(sub: Subscription, refusal: Refusal | None) -> datetime | None:
    """When the subscription ended: the moment recorded when it expired, or, past its end but not
    yet swept, the end that passed (the trial's end, the cancellation's, the free plan's or the
    contract's)."""
    if sub.ended_at is not None:
        return sub.ended_at
    if refusal is None or refusal.code != "subscription_ended":
        return None
    return sub.trial_ends_at if sub.state == State.TRIALING else sub.ends_at


def _entitlement(product: Product, sub: Subscription | None, now: datetime) -> ProductEntitlement:
    if sub is None:
        return ProductEntitlement(
            product=product.code,
            product_name=product.name,
            subscription_id=None,
            plan_code=None,
            plan_name=None,
            plan_kind=None,
            price_amount=0,
            currency="usd",
            interval="",
            state="none",
            badge=BADGES["none"],
            badge_tone="neutral",
            period_start=None,
            period_end=None,
            next_billing_date=None,
            trial_ends_at=None,
            trial_days_left=None,
            grace_until=None,
            ends_at=None,
            ended_at=None,
            limits=NO_LIMITS,
            upcoming=None,
            refusal=_refusal(None, now),
        )
    plan = sub.plan
    refusal = _refusal(sub, now)
    badge, tone = _badge(sub, now)
    if refusal is not None and refusal.code == "subscription_ended":
        # Past its end but not yet swept: the card says what the refusal says, not "Trial ending soon".
        badge, tone = BADGES["expired"], "neutral"
    change = next(iter(getattr(sub, "upcoming_changes", [])), None)
    upcoming = (
        Upcoming(
            change.pk,
            change.to_plan.code,
            change.to_plan.name,
            change.effective_at,
            change.to_plan.price_amount,
            change.to_plan.currency,
            change.to_plan.interval,
        )
        if change
        else None
    )
    days_left = None
    if sub.state == State.TRIALING and sub.trial_ends_at:
        days_left = max(
            0, -(-int((sub.trial_ends_at - now).total_seconds()) // 86400)
        )  # whole days, rounded up
    renews = sub.state == State.ACTIVE and plan.is_paid
    return ProductEntitlement(
        product=product.code,
        product_name=product.name,
        subscription_id=sub.pk,
        plan_code=plan.code,
        plan_name=plan.name,
        plan_kind=plan.kind,
        price_amount=plan.price_amount,
        currency=plan.currency,
        interval=plan.interval,
        state=sub.state,
        badge=badge,
        badge_tone=tone,
        period_start=sub.current_period_start,
        period_end=sub.current_period_end,
        next_billing_date=sub.current_period_end if renews else None,
        trial_ends_at=sub.trial_ends_at,
        trial_days_left=days_left,
        grace_until=sub.grace_until,
        ends_at=sub.ends_at,
        ended_at=_ended_at(sub, refusal),
        limits=_limits(plan) if sub.state != State.EXPIRED else NO_LIMITS,
        upcoming=upcoming,
        refusal=refusal,
    )


# Every entitlement answer comes from this one query (the integration API asks it on every call, so
# the ORM's SQL compilation stays off the request): per product, the live subscription or else the
# most recent ended one, its plan, and its first scheduled change with that change's plan. Window
# functions rather than LATERAL, so the embedded SQLite default runs the same SQL.
_SUB_COLUMNS = (
    "id", "state", "started_at", "current_period_start", "current_period_end", "trial_ends_at",
    "trial_sessions_ending_at", "payment_failed_at", "grace_until", "canceled_at", "ends_at", "ended_at", "gateway_subscription_id",
)  # fmt: skip
_PLAN_COLUMNS = (
    "id", "code", "name", "kind", "price_amount", "currency", "interval", "session_limit", "answered_only",
    "included_credits", "credit_renewal", "extra_packs_allowed", "ai_licenses", "chat_licenses",
    "ticket_credits_per_license", "unlimited_ai",
)  # fmt: skip
_CHANGE_COLUMNS = ("id", "effective_at")
_BOOLEANS = {"answered_only", "extra_packs_allowed", "unlimited_ai"}
_UPCOMING_PLAN_COLUMNS = ("id", "code", "name", "price_amount", "currency", "interval")
_DATETIMES = {
    "started_at", "current_period_start", "current_period_end", "trial_ends_at", "trial_sessions_ending_at",
    "payment_failed_at",
    "grace_until", "canceled_at", "ends_at", "ended_at", "effective_at",
}  # fmt: skip


@functools.cache
def _entitlements_sql() -> str:
    def cols(alias: str, names: tuple[str, ...]) -> str:
        return ", ".join(f"{alias}.{connection.ops.quote_name(n)}" for n in names)

    sub, plan, change = Subscription._meta.db_table, Plan._meta.db_table, ScheduledChange._meta.db_table
    return (
        f"WITH s AS (SELECT x.*, ROW_NUMBER() OVER (PARTITION BY x.product_id ORDER BY "  # noqa: S608
        f"CASE WHEN x.state = 'expired' THEN 1 ELSE 0 END, x.started_at DESC, x.id DESC) AS rn "
        f"FROM {sub} x WHERE x.tenant_id = %s), "
        f"c AS (SELECT y.*, ROW_NUMBER() OVER (PARTITION BY y.subscription_id ORDER BY y.effective_at, y.id) AS rn "
        f"FROM {change} y WHERE y.tenant_id = %s AND y.status = 'scheduled') "
        f"SELECT pr.id, pr.code, pr.name, {cols('s', _SUB_COLUMNS)}, {cols('p', _PLAN_COLUMNS)}, "
        f"{cols('c', _CHANGE_COLUMNS)}, {cols('tp', _UPCOMING_PLAN_COLUMNS)}, k.credits_per_period "
        f"FROM {Product._meta.db_table} pr "
        f"LEFT JOIN s ON s.product_id = pr.id AND s.rn = 1 "
        f"LEFT JOIN {plan} p ON p.id = s.plan_id "
        f"LEFT JOIN {Contract._meta.db_table} k ON k.subscription_id = s.id "
        f"LEFT JOIN c ON c.subscription_id = s.id AND c.rn = 1 "
        f"LEFT JOIN {plan} tp ON tp.id = c.to_plan_id "
        f"ORDER BY pr.sort_order, pr.name"
    )


def _from_db(names: tuple[str, ...], values: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip(names, values, strict=True))
    for name in _DATETIMES.intersection(row):
        value = row[name]
        if isinstance(value, str):  # SQLite hands back text
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        row[name] = value
    for name in _BOOLEANS.intersection(row):
        if row[name] is not None:
            row[name] = bool(row[name])  # SQLite hands back 0 and 1
    return row


def _trial_day_turns(trial_ends_at: datetime, now: datetime) -> datetime | None:
    """The first instant at which `trial_days_left` (whole days, rounded up, of whole seconds left)
    is one less than at `now`; None once it is 0."""
    seconds = int((trial_ends_at - now).total_seconds())
    days = -(-seconds // 86400)
    if days <= 0:
        return None
    # It drops when fewer than (days - 1) days and one second are left, to the microsecond.
    return trial_ends_at - timedelta(seconds=(days - 1) * 86400 + 1) + timedelta(microseconds=1)


def _turns(sub: Subscription, now: datetime) -> list[datetime]:
    """Every instant at which this subscription's entitlement may change without a write."""
    found = [sub.trial_ends_at, sub.grace_until, sub.ends_at, sub.current_period_end]
    if sub.trial_ends_at is not None:
        found.append(sub.trial_ends_at - timedelta(days=settings.TRIAL_ENDING_SOON_DAYS))
        found.append(_trial_day_turns(sub.trial_ends_at, now))
    found += [change.effective_at for change in getattr(sub, "upcoming_changes", [])]
    return [moment for moment in found if moment is not None and moment > now]


def _load(tenant: Tenant, now: datetime) -> Entitlements:
    with connection.cursor() as cursor:
        cursor.execute(_entitlements_sql(), [tenant.pk, tenant.pk])
        rows = cursor.fetchall()
    products = {}
    turns: list[datetime] = []
    n_sub, n_plan, n_change = len(_SUB_COLUMNS), len(_PLAN_COLUMNS), len(_CHANGE_COLUMNS)
    for row in rows:
        product = Product(id=row[0], code=row[1], name=row[2])
        rest = row[3:]
        sub_values, rest = rest[:n_sub], rest[n_sub:]
        plan_values, rest = rest[:n_plan], rest[n_plan:]
        change_values, upcoming_values = rest[:n_change], rest[n_change:-1]
        contract_credits = rest[-1]
        sub = None
        if sub_values[0] is not None:
            plan = Plan(product=product, **_from_db(_PLAN_COLUMNS, plan_values))
            if contract_credits:
                # A contract's terms are its plan's (AI Ultra: the credits agreed, renewed monthly, C07).
                plan.included_credits = contract_credits
                plan.credit_renewal = Plan.CreditRenewal.MONTHLY
            sub = Subscription(
                tenant=tenant, product=product, plan=plan, **_from_db(_SUB_COLUMNS, sub_values)
            )
            sub.upcoming_changes = []  # type: ignore[attr-defined]
            if change_values[0] is not None:
                to_plan = Plan(product=product, **_from_db(_UPCOMING_PLAN_COLUMNS, upcoming_values))
                change = ScheduledChange(
                    subscription=sub, to_plan=to_plan, **_from_db(_CHANGE_COLUMNS, change_values)
                )
                sub.upcoming_changes = [change]  # type: ignore[attr-defined]
            turns += _turns(sub, now)
        products[product.code] = _entitlement(product, sub, now)
    return Entitlements(tenant_slug=tenant.slug, products=products, valid_until=min(turns, default=None))


# Per process: the answer per tenant, for the integration API (tenants.cache). A request that read
# its tenant's versions with its key passes them; nothing else is answered from here.
_CACHE = VersionedCache("entitlements")


def entitlements(
    *, tenant: Tenant, now: datetime | None = None, versions: Versions | None = None
) -> Entitlements:
    """Per product: the live subscription (or the latest ended one), its plan, state, badge, period,
    limits, flags and any upcoming change. One query whatever the catalog's size.

    `versions`: the cache versions the current API request read with its key (`key.versions`),
    before it wrote anything. With them the answer may come from this process's cache: the one
    computed under the same versions, still before its `valid_until` (tenants.cache)."""
    now = now or timezone.now()
    if versions is None:
        return _load(tenant, now)
    found = _CACHE.get(tenant.pk, versions, now)
    if found is not None and found.tenant_slug == tenant.slug:
        return found
    found = _load(tenant, now)
    _CACHE.put(tenant.pk, versions, found, valid_from=now, valid_until=found.valid_until)
    return found


def catalog(*, product: Product | None = None) -> QuerySet[Plan]:
    plans = Plan.objects.select_related("product").filter(is_public=True)
    if product is not None:
        plans = plans.filter(product=product)
    return plans.order_by("product__sort_order", "rank", "price_amount")


def trial_used(*, tenant: Tenant, product: Product) -> bool:
    from plans.models import TrialGrant

    return TrialGrant.objects.filter(tenant=tenant, product=product).exists()


def open_leads(*, tenant: Tenant) -> set[int]:
    """Plan ids the tenant has an open sales request for ("Request received")."""
    return set(Lead.objects.filter(tenant=tenant, status=Lead.Status.NEW).values_list("plan_id", flat=True))
