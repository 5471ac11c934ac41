"""Every write of the plans app: the subscription state machine, trials, scheduled changes, leads.

Each transition locks the subscription row, returns early if the target state is already reached,
writes an audit event and queues its email once (the notification log's unique key). Writers that
start or change a subscription lock the tenant's row first, then the subscription's (the same order
everywhere, so two of them never wait on each other), and only then check and write. Payment
facts arrive as `PaidSubscriptionFacts` (billing_portal translates the gateway's objects) and are applied from the
object's current state, never from an event's position, so replays and reordering converge."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from plans.models import Contract, Lead, LeadKind, Plan, Product, ScheduledChange, Subscription, TrialGrant
from plans.money import MAX_CREDITS_AT_ONCE
from plans.offers import MSG_SCHEDULED, OfferAction, When, actor_role, offer_require
from plans.payments import RUNNING, PaidSubscriptionFacts, PaymentStatus
from tenants.audit import SYSTEM, Actor, audit
from tenants.errors import BusinessError
from tenants.models import Membership, Role, Tenant, User
from tenants.notifications import notify
from tenants.services import tenant_lock

State = Subscription.State


def _admins_emails(tenant: Tenant) -> list[str]:
    return list(
        Membership.objects.filter(tenant=tenant, role=Role.ADMIN)
        .values_list("user__email", flat=True)
        .order_by("pk")
    )


def _notify_admins(*, tenant: Tenant, key: str, template: str, context: dict) -> int:
    """One email per admin under `key:<email>`: a job that runs twice sends each once. Returns how
    many were queued now."""
    queued = 0
    for email in _admins_emails(tenant):
        if notify(
            key=f"{key}:{email}",
            tenant=tenant,
            to=email,
            template=template,
            context={"tenant": tenant, **context},
        ):
            queued += 1
    return queued


def _lock_live(tenant: Tenant, product: Product) -> Subscription | None:
    # of=("self",): the joined plan and product rows are every tenant's; locking them would
    # serialize all tenants on one catalog row.
    return (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("plan", "product")
        .filter(tenant=tenant, product=product)
        .exclude(state=State.EXPIRED)
        .first()
    )


def subscription_lock(*, tenant: Tenant, product: Product) -> Subscription | None:
    """Lock the tenant, then its live subscription to `product` (None when there is none), for a
    check-then-write that must not race: hold it (inside a transaction) until the write is done."""
    tenant_lock(tenant=tenant)
    return _lock_live(tenant, product)


def _transition(
    sub: Subscription, state: str, *, actor: User | Actor | None, action: str, **data: object
) -> None:
    old = sub.state
    sub.state = state
    sub.save()
    audit(
        tenant=sub.tenant,
        actor=actor or SYSTEM,
        action=action,
        target=sub,
        target_label=f"{sub.plan.name}",
        data={"from": old, "to": state, **{k: str(v) for k, v in data.items()}},
    )


# --- trials and free plans ---------------------------------------------------------------------


def _start_unpaid(
    *,
    tenant: Tenant,
    plan: Plan,
    now: datetime,
    ends: datetime,
    state: str,
    action: str,
    actor,
    **dates: datetime,
) -> Subscription:
    """Open a subscription that no payment backs (a trial, a free plan), if the product has none live.
    The caller holds the tenant's lock."""
    if _lock_live(tenant, plan.product) is not None:
        raise BusinessError(
            "already_subscribed", f"{tenant.name} already has a {plan.product.name} subscription.", status=409
        )
    sub = Subscription.objects.create(
        tenant=tenant,
        product=plan.product,
        plan=plan,
        state=state,
        started_at=now,
        current_period_start=now,
        current_period_end=ends,
        **dates,
    )
    audit(
        tenant=tenant,
        actor=actor or SYSTEM,
        action=action,
        target=sub,
        target_label=plan.name,
        data={"ends": ends.date().isoformat()},
    )
    return sub


@transaction.atomic
def trial_start(
    *, tenant: Tenant, plan: Plan, now: datetime | None = None, actor: User | Actor | None = None
) -> Subscription:
    """Start `plan` (a trial) for the tenant: once per tenant and product, ever."""
    now = now or timezone.now()
    if plan.kind != Plan.Kind.TRIAL:
        raise BusinessError("not_a_trial", f"{plan.name} is not a trial.")
    tenant_lock(tenant=tenant)
    try:
        with transaction.atomic():
            TrialGrant.objects.create(tenant=tenant, product=plan.product, granted_at=now)
    except IntegrityError as exc:
        raise BusinessError(
            "trial_used",
            "The free trial is available once per tenant. Subscribe to a plan to continue.",
            status=409,
        ) from exc
    ends = now + timedelta(days=plan.validity_days or settings.TRIAL_DAYS)
    return _start_unpaid(
        tenant=tenant,
        plan=plan,
        now=now,
        ends=ends,
        state=State.TRIALING,
        action="subscription.trial_started",
        actor=actor,
        trial_ends_at=ends,
    )


def months_after(moment: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months later; a day that month lacks is its last
    (31 January + 1 month = the last day of February). The local gateway's stand-in has its twin
    (billing_portal.gateway.local.periods.add_months): the gateway is a leaf that imports nothing of
    ours, and plans may not import from billing_portal."""
    years, month0 = divmod(moment.month - 1 + months, 12)
    year, month = moment.year + years, month0 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


@transaction.atomic
def free_plan_start(
    *, tenant: Tenant, plan: Plan, now: datetime | None = None, actor: User | Actor | None = None
) -> Subscription:
    """Start a free plan (no payment) valid for its validity period; once per tenant and product."""
    now = now or timezone.now()
    if plan.kind != Plan.Kind.FREE:
        raise BusinessError("not_free", f"{plan.name} is not a free plan.")
    tenant_lock(tenant=tenant)  # then check: a second start waits here and finds the first one's row
    if Subscription.objects.filter(tenant=tenant, plan=plan).exists():
        raise BusinessError("free_plan_used", f"{plan.name} was already used by {tenant.name}.", status=409)
    ends = (
        months_after(now, plan.validity_months)
        if plan.validity_months
        else now + timedelta(days=plan.validity_days or 0)
    )
    return _start_unpaid(
        tenant=tenant,
        plan=plan,
        now=now,
        ends=ends,
        state=State.ACTIVE,
        action="subscription.started",
        actor=actor,
        ends_at=ends,
    )


def tenant_provision(
    *, tenant: Tenant, now: datetime | None = None, actor: User | Actor | None = None
) -> list[Subscription]:
    """What a new tenant starts on: every plan code in settings.NEW_TENANT_PLANS (the AI Agents trial,
    AI Free)."""
    started = []
    for code in settings.NEW_TENANT_PLANS:
        plan = Plan.objects.select_related("product").filter(code=code).first()
        if plan is None:
            continue
        try:
            if plan.kind == Plan.Kind.TRIAL:
                started.append(trial_start(tenant=tenant, plan=plan, now=now, actor=actor))
            elif plan.kind == Plan.Kind.FREE:
                started.append(free_plan_start(tenant=tenant, plan=plan, now=now, actor=actor))
        except BusinessError:
            continue  # already has it (a re-run): nothing to do
    return started


def trial_sessions_ending(*, subscription_id: int, now: datetime | None = None) -> None:
    """S10: the trial's sessions reached TRIAL_ENDING_SOON_PERCENT of its cap: its badge says "Trial
    ending soon" from now on. Once (a trial already marked, or no longer trialing, is left alone);
    the row's change bumps the tenant's cache version, so /entitlements says so at once."""
    Subscription.objects.filter(
        pk=subscription_id, state=Subscription.State.TRIALING, trial_sessions_ending_at__isnull=True
    ).update(trial_sessions_ending_at=now or timezone.now())


@transaction.atomic
def trial_end(*, subscription: Subscription, reason: str, now: datetime | None = None) -> Subscription:
    """End a trial now (days or sessions ran out). Idempotent."""
    now = now or timezone.now()
    sub = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("plan", "tenant")
        .get(pk=subscription.pk)
    )
    if sub.state != State.TRIALING:
        return sub  # already ended, or converted to a paid plan
    sub.ended_at = now
    _transition(sub, State.EXPIRED, actor=SYSTEM, action="subscription.trial_ended", reason=reason)
    _notify_admins(
        tenant=sub.tenant,
        key=f"trial-ended:{sub.pk}",
        template="trial_ended",
        context={"subscription": sub, "reason": reason},
    )
    return sub


def trials_expire_due(*, now: datetime) -> int:
    """Sweeper: trials whose days have run out expire."""
    done = 0
    ids = list(
        Subscription.objects.filter(state=State.TRIALING, trial_ends_at__lte=now).values_list(
            "pk", flat=True
        )[:1000]
    )
    for pk in ids:
        with transaction.atomic():
            sub = (
                Subscription.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(pk=pk, state=State.TRIALING)
                .first()
            )
            if sub is not None:
                trial_end(subscription=sub, reason="days", now=now)
                done += 1
    return done


TRIAL_DAY_REMINDERS = (7, 2)


def trial_reminders_due(*, now: datetime) -> int:
    """Sweeper: the 7-days and 2-days-left emails, each once per trial."""
    sent = 0
    horizon = now + timedelta(days=max(TRIAL_DAY_REMINDERS))
    for sub in Subscription.objects.select_related("tenant", "plan").filter(
        state=State.TRIALING, trial_ends_at__gt=now, trial_ends_at__lte=horizon
    ):
        assert sub.trial_ends_at is not None
        left = sub.trial_ends_at - now
        # The smallest threshold reached is the one owed; a missed earlier one is not sent late.
        owed = min((d for d in TRIAL_DAY_REMINDERS if left <= timedelta(days=d)), default=None)
        if owed is None:
            continue
        with transaction.atomic():
            queued = _notify_admins(
                tenant=sub.tenant,
                key=f"trial-days-left:{sub.pk}:{owed}",
                template="trial_days_left",
                context={"subscription": sub, "days": owed},
            )
        if queued:  # already reminded (an earlier run): nothing sent, nothing counted
            sent += 1
    return sent


# --- paid subscriptions: applying the gateway's facts ------------------------------------------


def plan_for_price(price_id: str) -> Plan:
    plan = Plan.objects.select_related("product").filter(stripe_price_id=price_id).first()
    if plan is None:
        raise BusinessError(
            "unknown_price", f"No plan in the catalog has the price {price_id!r}.", status=422
        )
    return plan


@transaction.atomic
def subscription_apply_facts(
    *,
    tenant: Tenant,
    gw: PaidSubscriptionFacts,
    now: datetime | None = None,
    actor: User | Actor | None = None,
) -> Subscription | None:
    """Bring our subscription in line with what the payment rail says of it now. Idempotent:
    applying the same facts twice, or an older event's trigger after a newer one, ends in the same
    state because `gw` is always the subscription as it is now."""
    now = now or timezone.now()
    if gw.status == PaymentStatus.PENDING:
        return None  # checkout not finished: nothing is owed or granted yet
    plan = plan_for_price(gw.price_id)
    tenant_lock(tenant=tenant)  # serialize per tenant
    sub = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("plan", "product")
        .filter(tenant=tenant, gateway_subscription_id=gw.reference)
        .first()
    )
    if sub is None:
        if gw.status not in RUNNING:
            # A paid subscription that ended before we ever saw it (its webhooks were late or lost):
            # nothing to grant, but a trial it had converted does not come back (S13).
            live = _lock_live(tenant, plan.product)
            if live is not None and live.state == State.TRIALING:
                live.ended_at = now
                _transition(
                    live, State.EXPIRED, actor=SYSTEM, action="subscription.trial_ended", reason="converted"
                )
            return None
        sub = _lock_live(tenant, plan.product)
        if sub is not None and sub.gateway_subscription_id:
            # Another paid subscription is live: the newer one replaces it.
            sub.ended_at = now
            _transition(sub, State.EXPIRED, actor=SYSTEM, action="subscription.replaced")
            sub = None
        if sub is not None:
            # A trial or free plan becomes the paid subscription (same row: one live per product).
            audit(
                tenant=tenant,
                actor=actor or SYSTEM,
                action="subscription.converted",
                target=sub,
                target_label=plan.name,
                data={"from_plan": sub.plan.code, "to_plan": plan.code},
            )
            sub.trial_ends_at = None
            sub.ends_at = None
        else:
            sub = Subscription(tenant=tenant, product=plan.product, plan=plan, started_at=now, state="")
        sub.gateway_subscription_id = gw.reference

    old_plan_id, old_state = sub.plan_id, sub.state
    sub.plan = plan
    sub.current_period_start = gw.current_period_start
    sub.current_period_end = gw.current_period_end
    target = _target_state(sub, gw, now=now)

    if not old_state:
        sub.state = target
        sub.save()
        audit(
            tenant=tenant,
            actor=actor or SYSTEM,
            action="subscription.started",
            target=sub,
            target_label=plan.name,
            data={"state": target},
        )
        _on_entered(sub, target, now=now)
    elif target != old_state:
        _transition(sub, target, actor=actor, action=f"subscription.{_verb(target)}")
        _on_entered(sub, target, now=now)
    else:
        sub.save()
    if old_plan_id and old_plan_id != plan.pk:
        audit(
            tenant=tenant,
            actor=actor or SYSTEM,
            action="subscription.plan_changed",
            target=sub,
            target_label=plan.name,
            data={"to_plan": plan.code},
        )
    _settle_scheduled_changes(sub, now=now)
    return sub


def _target_state(sub: Subscription, gw: PaidSubscriptionFacts, *, now: datetime) -> str:
    """The state the payment facts imply, setting the dates that go with it on `sub`. Every
    PaymentStatus has its branch; a status without one is an error, never Active by default."""
    match gw.status:
        case PaymentStatus.ENDED | PaymentStatus.PENDING:
            sub.ended_at = sub.ended_at or gw.ended_at or now
            return State.EXPIRED
        case PaymentStatus.PAYMENT_OVERDUE | PaymentStatus.PAUSED:
            # The rail gave up retrying (or paused collection): no grace left, no access (S28).
            if sub.payment_failed_at is None:
                sub.payment_failed_at = now
            sub.grace_until = min(sub.grace_until or now, now)
            return State.SUSPENDED
        case PaymentStatus.PAYMENT_FAILED:
            if sub.payment_failed_at is None:  # the grace period starts at the first failure seen
                sub.payment_failed_at = now
                sub.grace_until = now + timedelta(days=settings.GRACE_PERIOD_DAYS)
            # Only the grace sweeper suspends; the rail reporting the failure again does not undo it.
            return State.SUSPENDED if sub.state == State.SUSPENDED else State.PAST_DUE
        case PaymentStatus.PAID:
            sub.payment_failed_at = sub.grace_until = None
            if gw.cancel_at_period_end or gw.cancel_at:
                sub.canceled_at = sub.canceled_at or gw.canceled_at or now
                sub.ends_at = gw.cancel_at or gw.current_period_end
                return State.CANCELED
            sub.canceled_at = sub.ends_at = None
            return State.ACTIVE
    raise ValueError(f"no subscription state for payment status {gw.status!r}")


def _verb(state: str) -> str:
    return {
        State.ACTIVE: "activated",
        State.PAST_DUE: "payment_failed",
        State.SUSPENDED: "suspended",
        State.CANCELED: "canceled",
        State.EXPIRED: "expired",
        State.TRIALING: "trialing",
    }[State(state)]


def _on_entered(sub: Subscription, state: str, *, now: datetime) -> None:
    if state == State.PAST_DUE and sub.payment_failed_at:
        _notify_admins(
            tenant=sub.tenant,
            key=f"payment-failed:{sub.pk}:{sub.payment_failed_at:%Y%m%d%H%M%S}",
            template="payment_failed",
            context={"subscription": sub, "grace_until": sub.grace_until},
        )
    if state in (State.CANCELED, State.EXPIRED):
        ScheduledChange.objects.filter(subscription=sub, status=ScheduledChange.Status.SCHEDULED).update(
            status=ScheduledChange.Status.CANCELED, resolved_at=now
        )


def _settle_scheduled_changes(sub: Subscription, *, now: datetime) -> None:
    """A scheduled change whose plan is now the subscription's plan has been applied."""
    ScheduledChange.objects.filter(
        subscription=sub, status=ScheduledChange.Status.SCHEDULED, to_plan=sub.plan
    ).update(status=ScheduledChange.Status.APPLIED, resolved_at=now)


def grace_periods_expire_due(*, now: datetime) -> int:
    """Sweeper: a payment issue still unpaid when the grace period ends suspends the subscription."""
    done = 0
    for pk in list(
        Subscription.objects.filter(state=State.PAST_DUE, grace_until__lte=now).values_list("pk", flat=True)[
            :1000
        ]
    ):
        with transaction.atomic():
            sub = (
                Subscription.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("tenant", "plan")
                .filter(pk=pk, state=State.PAST_DUE, grace_until__lte=now)
                .first()
            )
            if sub is None:
                continue  # paid meanwhile, or another worker has it
            _transition(sub, State.SUSPENDED, actor=SYSTEM, action="subscription.suspended")
            _notify_admins(
                tenant=sub.tenant,
                key=f"suspended:{sub.pk}:{sub.grace_until:%Y%m%d%H%M%S}",
                template="subscription_suspended",
                context={"subscription": sub},
            )
            done += 1
    return done


def subscriptions_end_due(*, now: datetime) -> int:
    """Sweeper: canceled subscriptions past their end date, and free plans past their validity,
    expire — our database decides, even if the gateway's final webhook is late or lost."""
    done = 0
    due = Subscription.objects.filter(
        Q(state=State.CANCELED, ends_at__lte=now)
        | Q(state=State.ACTIVE, plan__kind=Plan.Kind.FREE, ends_at__lte=now)
    ).values_list("pk", flat=True)[:1000]
    for pk in list(due):
        with transaction.atomic():
            sub = (
                Subscription.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("tenant", "plan")
                .filter(pk=pk, ends_at__lte=now)
                .exclude(state=State.EXPIRED)
                .first()
            )
            if sub is None:
                continue
            sub.ended_at = sub.ends_at
            _transition(sub, State.EXPIRED, actor=SYSTEM, action="subscription.expired")
            _on_entered(sub, State.EXPIRED, now=now)
            done += 1
    return done


# --- scheduled changes -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeRequest:
    subscription: Subscription
    to_plan: Plan
    when: str
    effective_at: datetime | None  # None for immediately


def _a_year_after(moment: datetime) -> datetime:
    """The same day and time a calendar year later (29 February: the 28th)."""
    try:
        return moment.replace(year=moment.year + 1)
    except ValueError:
        return moment.replace(year=moment.year + 1, day=28)


def plan_change_validate(
    *,
    tenant: Tenant,
    to_plan: Plan,
    role: str,
    when: str,
    custom_date: datetime | None,
    now: datetime | None = None,
) -> ChangeRequest:
    """Check a requested plan change against what the plan's card offers `role` (plans.offers) and
    the date asked for; raise the BusinessError the card or the dialog shows. Changes nothing.
    Call it under `subscription_lock`, so that what it checked still holds when the caller writes."""
    now = now or timezone.now()
    offer_require(tenant=tenant, plan=to_plan, role=role, action=OfferAction.CHANGE, when=when, now=now)
    sub = (
        Subscription.objects.select_related("plan", "product")
        .filter(tenant=tenant, product=to_plan.product)
        .exclude(state=State.EXPIRED)
        .first()
    )
    if sub is None or not sub.gateway_subscription_id:
        # The offer said Change, so the subscription is paid; one the gateway never made (set up
        # by hand) cannot be changed there.
        raise BusinessError("no_paid_subscription", "Subscribe to a paid plan first.", status=409)
    if when == When.IMMEDIATELY:
        return ChangeRequest(sub, to_plan, when, None)
    if when == When.PERIOD_END:
        return ChangeRequest(sub, to_plan, when, sub.current_period_end)
    if custom_date is None:
        raise BusinessError("date_required", "Pick the date the change applies on.", status=422)
    if custom_date <= now:
        raise BusinessError("date_in_past", "Pick a date in the future.", status=422)
    if custom_date > _a_year_after(now):
        raise BusinessError("date_too_far", "Pick a date within the next year.", status=422)
    end = sub.current_period_end
    if (
        end is not None
        and custom_date.astimezone(UTC).date() == end.astimezone(UTC).date()
        and custom_date < end
    ):
        # The renewal's own day, picked as a day (its start, UTC): the switch is the renewal itself,
        # which bills the new plan and prorates nothing — not a few hours before it, which would
        # invoice those hours' proration.
        custom_date = end
    return ChangeRequest(sub, to_plan, when, custom_date)


@transaction.atomic
def scheduled_change_record(
    *, request: ChangeRequest, gateway_schedule_id: str, actor: User | Actor
) -> ScheduledChange:
    assert request.effective_at is not None
    sub = Subscription.objects.select_for_update(of=("self",)).get(pk=request.subscription.pk)
    try:
        with transaction.atomic():
            change = ScheduledChange.objects.create(
                tenant=sub.tenant,
                subscription=sub,
                to_plan=request.to_plan,
                effective_at=request.effective_at,
                gateway_schedule_id=gateway_schedule_id,
                created_by=actor if isinstance(actor, User) else None,
            )
    except IntegrityError as exc:
        # Callers check under subscription_lock, so this is a caller that did not: still no 500.
        raise BusinessError("change_already_scheduled", MSG_SCHEDULED, status=409) from exc
    audit(
        tenant=sub.tenant,
        actor=actor,
        action="subscription.change_scheduled",
        target=sub,
        target_label=request.to_plan.name,
        data={"starts_on": request.effective_at.date().isoformat()},
    )
    return change


def scheduled_change_lock(*, tenant: Tenant, change: ScheduledChange) -> ScheduledChange:
    """Lock the tenant, then the change (Cancel scheduled plan checks its status under it)."""
    tenant_lock(tenant=tenant)
    return (
        ScheduledChange.objects.select_for_update(of=("self",))
        .select_related("to_plan", "subscription")
        .get(pk=change.pk, tenant=tenant)
    )


def scheduled_changes_void(*, gateway_schedule_id: str, now: datetime | None = None) -> int:
    """The gateway released or canceled a schedule: a change still scheduled on it will not happen."""
    return ScheduledChange.objects.filter(
        gateway_schedule_id=gateway_schedule_id, status=ScheduledChange.Status.SCHEDULED
    ).update(status=ScheduledChange.Status.CANCELED, resolved_at=now or timezone.now())


@transaction.atomic
def scheduled_change_cancel(
    *, tenant: Tenant, change: ScheduledChange, actor: User | Actor
) -> ScheduledChange:
    change = (
        ScheduledChange.objects.select_for_update(of=("self",))
        .select_related("to_plan")
        .get(pk=change.pk, tenant=tenant)
    )
    if change.status != ScheduledChange.Status.SCHEDULED:
        return change
    change.status = ScheduledChange.Status.CANCELED
    change.resolved_at = timezone.now()
    change.save(update_fields=["status", "resolved_at"])
    audit(
        tenant=tenant,
        actor=actor,
        action="subscription.change_canceled",
        target=change.subscription,
        target_label=change.to_plan.name,
    )
    return change


# --- leads ---------------------------------------------------------------------------------------

MAX_LEAD_MESSAGE = 2000  # characters: the lead form refuses a longer message (billing_portal.forms)


@transaction.atomic
def lead_create(*, tenant: Tenant, user: User, plan: Plan, message: str = "") -> tuple[Lead, bool]:
    """Book a demo / Speak with Specialist (a contact-sales plan: the kind its `lead_kind` names) or
    Register interest (a self-serve plan, for those who may not buy it), when the plan's card offers
    it to `user`'s role. Sending it again while one is open returns the open one: one CRM record."""
    sales = plan.kind == Plan.Kind.CONTACT_SALES
    offer_require(
        tenant=tenant,
        plan=plan,
        role=actor_role(tenant=tenant, user=user),
        action=OfferAction.CONTACT if sales else OfferAction.INTEREST,
    )
    kind = (plan.lead_kind or LeadKind.BOOK_DEMO) if sales else LeadKind.INTEREST
    existing = Lead.objects.filter(tenant=tenant, plan=plan, status=Lead.Status.NEW).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            lead = _lead_new(tenant=tenant, user=user, plan=plan, kind=kind, message=message, actor=user)
    except IntegrityError:
        return Lead.objects.get(tenant=tenant, plan=plan, status=Lead.Status.NEW), False
    return lead, True


def _lead_new(
    *,
    tenant: Tenant,
    user: User | None,
    plan: Plan,
    kind: str,
    message: str,
    actor: User | Actor,
    **data: str,
) -> Lead:
    """A new open lead, audited (`data`: what the audit adds to its kind)."""
    lead = Lead.objects.create(
        tenant=tenant, user=user, plan=plan, kind=kind, message=message.strip()[:MAX_LEAD_MESSAGE]
    )
    audit(
        tenant=tenant,
        actor=actor,
        action="lead.created",
        target=lead,
        target_label=plan.name,
        data={"kind": kind, **data},
    )
    return lead


def _contracted_only(plan: Plan) -> None:
    """Only a contact-sales plan is contracted (a lead recorded for it, a contract assigned)."""
    if plan.kind != Plan.Kind.CONTACT_SALES:
        raise BusinessError(
            "not_contact_sales",
            f"{plan.name} is not a contact-sales plan: it is bought, not contracted.",
            status=422,
        )


@transaction.atomic
def lead_record(*, tenant: Tenant, plan: Plan, message: str, actor: User | Actor) -> Lead:
    """The sales record of a contract agreed outside the product (an operator's `create_tenant
    --plan credits-ultra`): the lead a contract answers, as a member's "Speak with Specialist" or
    "Book a demo" would have made it (C16, S16), with no member behind it. Contact-sales plans only;
    the caller assigns its contract (`contract_start` marks it won)."""
    _contracted_only(plan)
    tenant_lock(tenant=tenant)
    if Lead.objects.filter(tenant=tenant, plan=plan, status=Lead.Status.NEW).exists():
        raise BusinessError(
            "lead_open",
            f"{tenant.name} has an open lead for {plan.name}: assign the contract from that lead.",
            status=409,
        )
    return _lead_new(
        tenant=tenant, user=None, plan=plan, kind=plan.lead_kind, message=message, actor=actor, by="operator"
    )


# "Won" says the contracted plan was assigned: only `contract_start` sets it (the lead admin's
# "Assign the contracted plan"), and a lead whose contract was assigned stays won. A lead marked won
# by hand, with no contract behind it, told staff a deal was done that no one had put in place.
MSG_LEAD_WON_BY_CONTRACT = (
    'A lead is won when its contracted plan is assigned: select the lead and use the action "Assign '
    'the contracted plan" (it marks the lead won).'
)
MSG_LEAD_WON_NOT_CONTRACTED = (
    "{plan} is bought, not contracted: its lead is never won here. Mark it Contacted or Lost; the "
    "tenant's admin subscribes on the AI Credits or Billing page."
)
MSG_LEAD_CONTRACTED = "This lead's contracted plan is assigned: the lead stays won."


def lead_status_refusal(*, lead: Lead, status: str, contracted: bool | None = None) -> BusinessError | None:
    """Why staff may not set `lead` to `status` by hand, or None. `contracted`: whether a contract
    answers the lead, when the caller knows it (the admin list reads it with the leads)."""
    if status == lead.status:
        return None
    if contracted is None:
        contracted = Contract.objects.filter(lead_id=lead.pk).exists()
    if contracted:
        return BusinessError("lead_contracted", MSG_LEAD_CONTRACTED, status=409)
    if status == Lead.Status.WON:
        if lead.plan.kind != Plan.Kind.CONTACT_SALES:
            return BusinessError(
                "lead_not_contracted", MSG_LEAD_WON_NOT_CONTRACTED.format(plan=lead.plan.name), status=409
            )
        return BusinessError("lead_won_by_contract", MSG_LEAD_WON_BY_CONTRACT, status=409)
    if (
        status == Lead.Status.NEW
        and Lead.objects.filter(tenant_id=lead.tenant_id, plan_id=lead.plan_id, status=Lead.Status.NEW)
        .exclude(pk=lead.pk)
        .exists()
    ):
        return BusinessError(
            "lead_open",
            f"{lead.tenant.name} has another open (New) lead for {lead.plan.name}: work that one instead.",
            status=409,
        )
    return None


@transaction.atomic
def lead_status_set(*, lead: Lead, status: str, actor: User) -> Lead:
    """Staff set a lead's status by hand (New, Contacted, Lost): refused, with nothing written, where
    `lead_status_refusal` says so — "won" is the contract's (`contract_start`). Audited."""
    if status not in Lead.Status.values:
        raise BusinessError("lead_status", f"{status!r} is not a lead status.", status=422)
    tenant_lock(tenant=lead.tenant)  # the lock contract_start takes first: a concurrent assign waits
    locked = Lead.objects.select_for_update(of=("self",)).select_related("tenant", "plan").get(pk=lead.pk)
    refusal = lead_status_refusal(lead=locked, status=status)
    if refusal is not None:
        raise refusal
    if locked.status == status:
        return locked
    old = locked.status
    locked.status = status
    locked.save(update_fields=["status"])
    audit(
        tenant=locked.tenant,
        actor=actor,
        action="lead.status_changed",
        target=locked,
        target_label=locked.plan.name,
        data={"from": old, "to": status},
    )
    return locked


# --- contracts (contact-sales plans assigned by staff) ------------------------------------------

CONTRACT_MAX_MONTHS = 120
CONTRACT_REASON_MAX = 200  # Contract.reason's length
# How long after its start a contract may still be assigned: within its first month.
CONTRACT_MAX_LATE = timedelta(days=31)


@dataclass(frozen=True)
class ContractPeriod:
    """Where a contract's subscription stands after a start or a sweep: its period `index` (0 the
    first month) and whether the contract has just ended."""

    contract: Contract
    index: int
    expired: bool = False


def contract_period_bounds(contract: Contract, index: int) -> tuple[datetime, datetime]:
    """Period `index` of a contract: one calendar month from the start's day (each counted from the
    start, so 31 January gives 28 February then 31 March), the last one cut at the contract's end."""
    return (
        months_after(contract.starts_at, index),
        min(months_after(contract.starts_at, index + 1), contract.ends_at),
    )


def contract_start(
    *,
    lead: Lead,
    starts_at: datetime,
    months: int,
    credits_per_period: int,
    reason: str,
    actor: User | Actor,
    now: datetime | None = None,
) -> tuple[ContractPeriod, bool]:
    """Put the lead's tenant on the lead's contact-sales plan under a contract (C07, S16): an active
    subscription with no payment behind it, its first period the contract's first month, and the
    lead marked won. The caller holds a transaction; this locks the tenant, then checks.

    Assigning the same lead again returns its contract (False: nothing written). Refused, with
    nothing written, while the product has a live paid subscription (the gateway bills it: cancel
    it first; a canceled one runs until its end) or another contract; a trial or a free plan of the
    product ends, as a paid subscription ends it."""
    now = now or timezone.now()
    tenant, plan = lead.tenant, lead.plan
    live = subscription_lock(tenant=tenant, product=plan.product)
    lead = Lead.objects.select_for_update().get(pk=lead.pk)
    existing = Contract.objects.select_related("subscription__plan").filter(lead=lead).first()
    if existing is not None:
        return ContractPeriod(existing, _contract_index(existing)), False
    _contracted_only(plan)
    if not 1 <= months <= CONTRACT_MAX_MONTHS:
        raise BusinessError(
            "contract_months", f"A contract lasts 1 to {CONTRACT_MAX_MONTHS} months.", status=422
        )
    reason = reason.strip()
    if not reason or len(reason) > CONTRACT_REASON_MAX:
        raise BusinessError(
            "contract_reason",
            f"Give the contract's reference and who agreed it, in at most {CONTRACT_REASON_MAX} characters.",
            status=422,
        )
    if starts_at > now:
        raise BusinessError(
            "contract_starts_later", "Assign the contract on its start date, not before.", status=422
        )
    if starts_at < now - CONTRACT_MAX_LATE:
        # Its first month would be over before it was assigned: its credits never usable, the free
        # plan it replaces left running (an outsider probe's contract of 2020).
        raise BusinessError(
            "contract_started_long_ago",
            "Assign the contract within a month of its start date; for an older contract, start it "
            "today with the months that remain.",
            status=422,
        )
    if plan.product.code == Product.Code.AI_CREDITS and credits_per_period <= 0:
        raise BusinessError(
            "contract_credits", f"{plan.name} needs the credits the contract grants each month.", status=422
        )
    if credits_per_period > MAX_CREDITS_AT_ONCE:  # a 20-digit amount was a 500 (the ledger's bigint)
        raise BusinessError(
            "contract_credits",
            "A contract grants at most a billion credits (1000000000) a month.",
            status=422,
        )
    if live is not None:
        if live.plan.kind == Plan.Kind.CONTACT_SALES:
            raise BusinessError(
                "already_contracted",
                f"{tenant.name} is already on {live.plan.name} under a contract: change that contract instead.",
                status=409,
            )
        if live.plan.kind == Plan.Kind.SELF_SERVE or live.gateway_subscription_id:
            if live.state == State.CANCELED and live.ends_at:
                raise BusinessError(
                    "paid_subscription_canceled",
                    f"The current {live.plan.name} subscription is canceled and runs until "
                    f"{live.ends_at:%-d %b %Y}: assign the contract once it has ended.",
                    status=409,
                )
            raise BusinessError(
                "paid_subscription_live",
                f"{tenant.name} has a live {live.plan.name} subscription paid through the payment gateway. "
                f"Cancel the current {live.plan.name} subscription first, and assign the contract once it has ended.",
                status=409,
            )
        # A trial or a free plan (AI Free) gives way, as it does to a paid subscription.
        live.ended_at = now
        action = (
            "subscription.trial_ended" if live.state == State.TRIALING else "subscription.ended_by_contract"
        )
        _transition(live, State.EXPIRED, actor=actor, action=action, reason="converted")
        _on_entered(live, State.EXPIRED, now=now)
    ends_at = months_after(starts_at, months)
    sub = Subscription.objects.create(
        tenant=tenant,
        product=plan.product,
        plan=plan,
        state=State.ACTIVE,
        started_at=starts_at,
        current_period_start=starts_at,
        current_period_end=min(months_after(starts_at, 1), ends_at),
        # The contract's end is the subscription's, as a free plan's validity is: the entitlements,
        # the Billing and AI Credits pages and the admin say when it ends, and that it has ended
        # once it has, even before the sweep expires it.
        ends_at=ends_at,
        gateway_subscription_id="",
    )
    contract = Contract.objects.create(
        tenant=tenant,
        subscription=sub,
        lead=lead,
        starts_at=starts_at,
        ends_at=ends_at,
        months=months,
        credits_per_period=credits_per_period if plan.product.code == Product.Code.AI_CREDITS else 0,
        reason=reason,
        created_by=actor if isinstance(actor, User) else None,  # an operator's command: SYSTEM
        created_at=now,
    )
    audit(
        tenant=tenant,
        actor=actor,
        action="subscription.contracted",
        target=sub,
        target_label=plan.name,
        data={
            "contract": str(contract.pk),
            "lead": str(lead.pk),
            "starts": starts_at.date().isoformat(),
            "ends": ends_at.date().isoformat(),
            "months": str(months),
            "credits_per_period": str(contract.credits_per_period),
            "reason": reason,
        },
    )
    if lead.status != Lead.Status.WON:
        old_status = lead.status
        lead.status = Lead.Status.WON
        lead.save(update_fields=["status"])
        audit(
            tenant=tenant,
            actor=actor,
            action="lead.won",
            target=lead,
            target_label=plan.name,
            data={"from": old_status, "contract": str(contract.pk)},
        )
    return ContractPeriod(contract, 0), True


def _contract_index(contract: Contract) -> int:
    """The period the subscription is in now, counted from the contract's start."""
    start = contract.subscription.current_period_start
    index = 0
    while months_after(contract.starts_at, index) < start:
        index += 1
    return index


def contract_periods_due(*, now: datetime, limit: int = 1000) -> list[int]:
    """Subscriptions under a contract whose current period has ended (the sweep's candidates)."""
    return list(
        Subscription.objects.filter(
            state=State.ACTIVE, contract__isnull=False, current_period_end__lte=now
        ).values_list("pk", flat=True)[:limit]
    )


def contract_period_advance(*, subscription_id: int, now: datetime) -> ContractPeriod | None:
    """Move a contracted subscription whose period has ended to the period that holds `now` (the
    contract's monthly renewal: no gateway does it), or expire it at the contract's end. Call it in a
    transaction. None when there is nothing to do (not due any more, or another worker has it), so a
    second sweep changes nothing."""
    sub = (
        Subscription.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("tenant", "plan")
        .filter(pk=subscription_id, state=State.ACTIVE, contract__isnull=False, current_period_end__lte=now)
        .first()
    )
    if sub is None:
        return None
    contract = Contract.objects.get(subscription=sub)
    contract.subscription = sub
    index = _contract_index(contract)
    start, end = contract_period_bounds(contract, index)
    while end <= now and end < contract.ends_at:  # a sweep that missed whole months catches up
        index += 1
        start, end = contract_period_bounds(contract, index)
    if end <= now:  # the contract's last period is over: it ends, as a canceled plan does
        sub.ended_at = contract.ends_at
        _transition(sub, State.EXPIRED, actor=SYSTEM, action="subscription.expired", reason="contract_ended")
        _on_entered(sub, State.EXPIRED, now=now)
        return ContractPeriod(contract, index, expired=True)
    sub.current_period_start, sub.current_period_end = start, end
    sub.save(update_fields=["current_period_start", "current_period_end", "updated_at"])
    return ContractPeriod(contract, index)
