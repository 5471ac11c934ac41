"""What each plan card offers a tenant's member, and why not: the one rule. Every page that shows
plan cards renders from `plan_offers` (the Billing tab; the AI Credits and Plans & Licenses pages),
and every service that starts a checkout, a plan change, a resume or a sales request refuses
through `offer_require` — with the very sentence the card shows. Reads only.

The rules, for a tenant, a product and a member's role:
- Roles: only admins buy, change or resume (S15, S18, C09, C17). Members and finance see "Ask your
  account administrator to subscribe." and may Register interest in a self-serve plan (C18, C21).
  On AI Credits every profile may register interest in Plus (FAQ 1): an admin's card offers it
  beside Subscribe Now (`also`) wherever Plus is not the current plan (C18, C24).
- Contact-sales plans offer what their `lead_kind` names (Book a demo, Speak with Specialist) to
  every role in every state, and Request received while the tenant has an open lead (S16, C16).
- Free plans (AI Free) and trials are never bought: Current plan while the tenant is on one,
  otherwise no button, only the sentence saying so.
- No subscription, or the trial, free plan or paid plan ended: admins Subscribe (the hosted
  checkout) on self-serve plans (C22: Plus is offered after AI Free expired).
- Trialing (Trial subscription, Trial ending soon) or on AI Free: admins Subscribe; the paid
  subscription replaces the trial or the free plan.
- On the free trial (a trialing subscription on any product and no live paid subscription on any
  product), AI Credits' paid plans offer only Register interest, to every role (C19).
- Active paid: Current plan on its card; every other self-serve plan offers Change (the Apply
  subscription updates dialog): Immediately, End of the current period, On custom date (S18).
- A change already scheduled: Change still offers Immediately (it supersedes the schedule), and
  the dialog says "A plan change is already scheduled. Cancel it first." of the later two up
  front; the Upcoming subscription card keeps its Cancel (S19, S20).
- Payment issue (past due, grace running): no plan change until the payment is fixed. Stripe
  applies a change whether or not its proration invoice is paid, and rolling it back is manual
  (https://docs.stripe.com/billing/subscriptions/pending-updates): an upgrade would charge the card
  that just failed, a downgrade would step around the open invoice. The card says to update the
  payment method (Manage) first (S26, S27).
- Overdue (suspended, or past the grace period before the sweeper ran): nothing can be bought or
  changed: "Your payment is overdue and the grace period has expired. Click Manage to settle the
  failed payment." (S28, S34).
- Canceled at period end, still running: its card offers Resume to admins (the others are told to
  ask their administrator); other self-serve plans: "Your subscription is canceled. Resume it to
  change plans." (S29).
- On a contact-sales plan (a contract): other plans show no button; sales changes the contract.
- The subscription cards' own actions (`card_action_refusal`): Cancel subscription, for admins on
  an active paid plan, at the end of the period, a scheduled change released first (Stripe's portal
  refuses to cancel while a schedule holds the subscription); the Upcoming card's Cancel, for
  admins, until the change's date — after it the change has applied at the gateway, webhook or not
  (S20, S29).
- Buttons read as the spec spells them: Subscribe (S15; on another plan too, where it opens the
  dialog, S18), Subscribe Now on AI Credits (C09), Book a demo, Speak with Specialist, Register
  interest, Request received, Current plan, Resume.
- An action the card does not offer is refused with the card's reason when it shows one, else with
  a sentence naming what the card offers instead. Statuses: 403 the role, 402 a payment, 409 the
  subscription's state, 422 a plan that is never bought here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from django.conf import settings
from django.utils import timezone
from django.utils.dateformat import format as date_format

from plans import selectors
from plans.models import LeadKind, Plan, Product
from plans.selectors import MSG_OVERDUE, Entitlements, ProductEntitlement
from tenants.errors import BusinessError
from tenants.models import Membership, Role, Tenant, User


class OfferAction(StrEnum):
    SUBSCRIBE = "subscribe"  # the gateway's hosted checkout (a first paid subscription)
    CHANGE = "change"  # the Apply subscription updates dialog (an existing paid subscription)
    CURRENT = "current"
    RESUME = "resume"  # undo a cancellation at period end
    CONTACT = "contact"  # a Lead for sales: Book a demo / Speak with Specialist
    INTEREST = "interest"  # a Lead: Register interest in a self-serve plan, for those who may not buy
    REQUESTED = "requested"  # an open Lead: Request received
    ASK_ADMIN = "ask_admin"  # only an administrator could act here
    NONE = "none"


LEAD_ACTIONS = frozenset({OfferAction.CONTACT, OfferAction.INTEREST})


class CardAction(StrEnum):
    """The subscription cards' own actions (beside Manage and Resume)."""

    # Cancel subscription on the Billing tab: at the end of the period, releasing a scheduled
    # change first (Stripe refuses the portal's cancel while a schedule holds the subscription).
    CANCEL = "cancel"
    CANCEL_UPCOMING = "cancel_upcoming"  # the Upcoming subscription card's Cancel (S20)


class When:
    """When a plan change applies (the Apply subscription updates dialog, S18)."""

    IMMEDIATELY = "immediately"
    PERIOD_END = "period_end"
    CUSTOM_DATE = "custom_date"
    CHOICES = (
        (IMMEDIATELY, "Immediately"),
        (PERIOD_END, "End of the current period"),
        (CUSTOM_DATE, "On custom date"),
    )


MSG_ASK_ADMIN = "Ask your account administrator to subscribe."
MSG_ASK_RESUME = "Your subscription is canceled. Ask your account administrator to resume it."
MSG_SCHEDULED = "A plan change is already scheduled. Cancel it first."
MSG_CANCELED = "Your subscription is canceled. Resume it to change plans."
MSG_PAYMENT_FAILED = "Your last payment failed. Update your payment method (Manage) before changing plans."
MSG_OVERDUE_MANAGE = f"{MSG_OVERDUE} Click Manage to settle the failed payment."
MSG_CONTRACT = "Your plan is contracted with our sales team: ask them to change it."
MSG_NOT_CANCELED = "Your subscription is not canceled: there is nothing to resume."
MSG_NOT_A_MEMBER = "Your role does not allow this."
# BILLING_TAB_ENABLED off (S03): billing happens outside Allowance, so nothing is bought here.
MSG_BILLING_OUTSIDE = "Purchases are handled outside Allowance on this deployment: ask your account team."
MSG_CANCEL_ASK = "Ask your account administrator to cancel the subscription."
# C20 (spec 001, FAQ 6): an AI Credits package is deactivated by Customer Success only.
MSG_PACKAGE_DEACTIVATION = (
    "Package deactivation is not available via self-service. To request deactivation, please contact "
    "the Customer Success team."
)
MSG_CANCEL_NOTHING = "There is no paid subscription to cancel."
MSG_CANCEL_PAYMENT = "Your last payment failed. Update your payment method (Manage) before canceling."
MSG_CANCEL_UPCOMING_ASK = "Ask your account administrator to cancel the scheduled change."
MSG_NO_UPCOMING = "There is no scheduled change to cancel."

LABELS = {
    OfferAction.SUBSCRIBE: "Subscribe",
    # S18: "click Subscribe on the plan you want to switch to" opens Apply subscription updates.
    OfferAction.CHANGE: "Subscribe",
    OfferAction.CURRENT: "Current plan",
    OfferAction.RESUME: "Resume",
    OfferAction.INTEREST: "Register interest",
    OfferAction.REQUESTED: "Request received",
    OfferAction.ASK_ADMIN: "",
    OfferAction.NONE: "",
}
# C09, C22: the AI Credits page's Plus card says "Subscribe Now".
SUBSCRIBE_LABELS: dict[str, str] = {Product.Code.AI_CREDITS.value: "Subscribe Now"}
# C09, C10: these products' plans are subscribed with Subscribe Now, confirmed with a security code
# emailed to the admin (billing_portal.services.subscribe_now), never through the plain checkout.
CONFIRMED_BY_CODE = frozenset({Product.Code.AI_CREDITS.value})


def confirmed_by_code(plan: Plan) -> bool:
    """Is a subscription to `plan` confirmed with the emailed security code?"""
    return plan.product.code in CONFIRMED_BY_CODE


class Standing(StrEnum):
    """A product's subscription as the offers see it (entitlements' state, with its dates applied)."""

    NONE = "none"  # never subscribed, or the trial, free plan or paid plan has ended
    TRIAL = "trial"
    FREE = "free"
    PAID = "paid"
    PAYMENT_FAILED = "payment_failed"  # past due, grace period running
    OVERDUE = "overdue"  # suspended, or past the grace period
    CANCELED = "canceled"  # canceled at period end, still running
    CONTRACT = "contract"  # on a contact-sales plan


# A live subscription that someone pays for (or owes): the tenant is not "on the free trial".
PAYING = frozenset(
    {Standing.PAID, Standing.PAYMENT_FAILED, Standing.OVERDUE, Standing.CANCELED, Standing.CONTRACT}
)


@dataclass(frozen=True)
class OfferRefusal:
    code: str
    message: str
    status: int

    def error(self) -> BusinessError:
        return BusinessError(self.code, self.message, status=self.status)


@dataclass(frozen=True)
class WhenChoice:
    value: str
    label: str
    available: bool
    reason: str | None = None  # why it is not available, shown beside it in the dialog
    on: datetime | None = None  # the moment it applies, when known (the end of the period)


@dataclass(frozen=True)
class PlanOffer:
    plan: Plan
    action: OfferAction
    label: str  # the button exactly as the spec spells it; "" when there is no button
    available: bool  # the button is live
    reason: str | None  # the card's sentence when something is not possible; a refusal's message
    refusal: OfferRefusal  # how an action this card does not offer is refused
    is_current: bool = False
    when_choices: tuple[WhenChoice, ...] = ()  # for CHANGE: the dialog's choices, in its order
    # Beside the card's action, for an admin on AI Credits: Register interest (INTEREST), or Request
    # received (REQUESTED) while one is open; None when the card offers no second action (C18, C24).
    also: OfferAction | None = None

    @property
    def confirmed_by_code(self) -> bool:
        """Subscribe opens the security-code dialog, not the plain checkout (C09, C10)."""
        return confirmed_by_code(self.plan)

    def refused(self, action: str, *, when: str | None = None) -> OfferRefusal | None:
        """None when `action` (and `when`, for a change) is what this card offers; else why not."""
        action = OfferAction(action)
        if action == self.action and self.available:
            if action != OfferAction.CHANGE or when is None:
                return None
            choice = next((c for c in self.when_choices if c.value == when), None)
            if choice is None:
                return OfferRefusal("when_invalid", "Choose when the change applies.", 422)
            if choice.available:
                return None
            return OfferRefusal("change_already_scheduled", choice.reason or MSG_SCHEDULED, 409)
        if action in LEAD_ACTIONS and (
            self.action == OfferAction.REQUESTED
            or (self.action in LEAD_ACTIONS and self.available)
            or self.also is not None
        ):
            return None  # one open request per plan: sending it again keeps the one there is
        if self.reason is None:
            if action == OfferAction.RESUME:
                return OfferRefusal("not_canceled", MSG_NOT_CANCELED, 409)
            if action in LEAD_ACTIONS and self.action in (OfferAction.SUBSCRIBE, OfferAction.CHANGE):
                return OfferRefusal(
                    "self_serve", f"You can subscribe to {self.plan.name} yourself: click {self.label}.", 409
                )
        return self.refusal


@dataclass(frozen=True)
class SubscriptionActions:
    """The subscription card's own actions: Manage (the gateway's portal), Resume, Cancel
    subscription, the Upcoming card's Cancel, and a sentence saying what is possible in this state
    (and, for the Upcoming card, why its Cancel is gone)."""

    manage: bool
    resume: bool
    hint: str
    cancel: bool = False
    cancel_upcoming: bool = False
    upcoming_note: str = ""


def standing(ent: ProductEntitlement) -> Standing:
    refusal = ent.refusal.code if ent.refusal else ""
    if ent.state in ("none", "expired") or refusal == "subscription_ended":
        return Standing.NONE
    if refusal == "payment_overdue":
        return Standing.OVERDUE
    if ent.state == "trialing":
        return Standing.TRIAL
    if ent.plan_kind == Plan.Kind.FREE:
        return Standing.FREE
    if ent.plan_kind == Plan.Kind.CONTACT_SALES:
        return Standing.CONTRACT
    return {
        "active": Standing.PAID,
        "past_due": Standing.PAYMENT_FAILED,
        "suspended": Standing.OVERDUE,
        "canceled": Standing.CANCELED,
    }[ent.state]


def on_free_trial(ents: Entitlements) -> bool:
    """C19: a trialing subscription on any product and no live paid subscription on any product."""
    standings = {standing(ent) for ent in ents.products.values()}
    return Standing.TRIAL in standings and not standings & PAYING


def _day(moment: datetime) -> str:
    return date_format(timezone.localtime(moment), "j M Y")


def _subscribe_label(product_code: str) -> str:
    return SUBSCRIBE_LABELS.get(product_code, LABELS[OfferAction.SUBSCRIBE])


def _offer(
    plan: Plan,
    action: OfferAction,
    refusal: OfferRefusal,
    *,
    available: bool = False,
    reason: str | None = None,
    label: str | None = None,
    is_current: bool = False,
    when_choices: tuple[WhenChoice, ...] = (),
) -> PlanOffer:
    if reason is not None:
        refusal = OfferRefusal(refusal.code, reason, refusal.status)
    return PlanOffer(
        plan=plan,
        action=action,
        label=LABELS.get(action, "") if label is None else label,
        available=available,
        reason=reason,
        refusal=refusal,
        is_current=is_current,
        when_choices=when_choices,
    )


def _when_choices(ent: ProductEntitlement) -> tuple[WhenChoice, ...]:
    scheduled = ent.upcoming is not None
    reason = MSG_SCHEDULED if scheduled else None
    return (
        WhenChoice(When.IMMEDIATELY, "Immediately", available=True),
        WhenChoice(When.PERIOD_END, "End of the current period", not scheduled, reason, on=ent.period_end),
        WhenChoice(When.CUSTOM_DATE, "On custom date", not scheduled, reason),
    )


def _plan_offer(
    plan: Plan, *, ent: ProductEntitlement, role: str, free_trial: bool, requested: bool
) -> PlanOffer:
    offer = _card_offer(plan, ent=ent, role=role, free_trial=free_trial, requested=requested)
    # C18, C24 (FAQ 1: "all profiles can register interest in both the Plus and Ultra plans"): on AI
    # Credits an admin may register interest in a paid plan that is not theirs, beside what the card
    # offers (Subscribe Now, or the reason it cannot); the others' cards offer it already.
    if (
        ent.product == Product.Code.AI_CREDITS
        and plan.kind == Plan.Kind.SELF_SERVE
        and not offer.is_current
        and offer.action not in (OfferAction.INTEREST, OfferAction.REQUESTED)
    ):
        return replace(offer, also=OfferAction.REQUESTED if requested else OfferAction.INTEREST)
    return offer


def _card_offer(
    plan: Plan, *, ent: ProductEntitlement, role: str, free_trial: bool, requested: bool
) -> PlanOffer:
    admin = role == Role.ADMIN
    now_on = standing(ent)
    is_current = now_on != Standing.NONE and ent.plan_code == plan.code
    same_plan = OfferRefusal("same_plan", f"You are already on {plan.name}.", 409)

    if plan.kind == Plan.Kind.CONTACT_SALES:
        sales = OfferRefusal("contact_sales", f"{plan.name} is contracted through our sales team.", 422)
        if is_current:
            return _offer(plan, OfferAction.CURRENT, same_plan, is_current=True)
        if requested:
            return _offer(plan, OfferAction.REQUESTED, sales)
        label = LeadKind(plan.lead_kind or LeadKind.BOOK_DEMO).label
        return _offer(plan, OfferAction.CONTACT, sales, available=True, label=label)

    if plan.kind in (Plan.Kind.TRIAL, Plan.Kind.FREE):
        if is_current:
            return _offer(plan, OfferAction.CURRENT, same_plan, is_current=True)
        never = (
            "The free trial is available once per tenant and cannot be bought."
            if plan.kind == Plan.Kind.TRIAL
            else f"{plan.name} is included for new organizations and cannot be bought."
        )
        return _offer(plan, OfferAction.NONE, OfferRefusal("plan_not_self_serve", never, 422), reason=never)

    # A self-serve (paid) plan.
    if is_current:
        if now_on == Standing.CANCELED:
            if admin:
                refusal = OfferRefusal(
                    "subscription_canceled",
                    f"Your {plan.name} subscription is canceled: click Resume to keep it.",
                    409,
                )
                return _offer(plan, OfferAction.RESUME, refusal, available=True, is_current=True)
            return _offer(
                plan,
                OfferAction.ASK_ADMIN,
                OfferRefusal("role_not_allowed", MSG_ASK_RESUME, 403),
                reason=MSG_ASK_RESUME,
                is_current=True,
            )
        return _offer(plan, OfferAction.CURRENT, same_plan, is_current=True)

    interest = OfferAction.REQUESTED if requested else OfferAction.INTEREST
    if free_trial and ent.product == Product.Code.AI_CREDITS:
        reason = f"During the free trial you can only register interest in {plan.name}."
        refusal = OfferRefusal("free_trial", reason, 409)
        return _offer(plan, interest, refusal, available=not requested, reason=reason)
    if not admin:
        # On a contract no administrator can subscribe either: say what the administrator is told.
        ask = MSG_CONTRACT if now_on == Standing.CONTRACT else MSG_ASK_ADMIN
        refusal = OfferRefusal("role_not_allowed", ask, 403)
        return _offer(plan, interest, refusal, available=not requested, reason=ask)
    if not settings.BILLING_TAB_ENABLED:
        refusal = OfferRefusal("billing_outside", MSG_BILLING_OUTSIDE, 409)
        return _offer(plan, interest, refusal, available=not requested, reason=MSG_BILLING_OUTSIDE)

    match now_on:
        case Standing.NONE | Standing.TRIAL | Standing.FREE:
            refusal = OfferRefusal("no_paid_subscription", "Subscribe to a paid plan first.", 409)
            label = _subscribe_label(ent.product)
            return _offer(plan, OfferAction.SUBSCRIBE, refusal, available=True, label=label)
        case Standing.PAID:
            refusal = OfferRefusal(
                "already_subscribed",
                "You already have a paid subscription: choose when the change applies in Apply "
                "subscription updates.",
                409,
            )
            return _offer(
                plan,
                OfferAction.CHANGE,
                refusal,
                available=True,
                label=_subscribe_label(ent.product),
                when_choices=_when_choices(ent),
            )
        case Standing.PAYMENT_FAILED:
            refusal = OfferRefusal("payment_failed", MSG_PAYMENT_FAILED, 402)
            return _offer(plan, OfferAction.CHANGE, refusal, reason=MSG_PAYMENT_FAILED)
        case Standing.OVERDUE:
            refusal = OfferRefusal("payment_overdue", MSG_OVERDUE_MANAGE, 402)
            return _offer(plan, OfferAction.CHANGE, refusal, reason=MSG_OVERDUE_MANAGE)
        case Standing.CANCELED:
            refusal = OfferRefusal("subscription_canceled", MSG_CANCELED, 409)
            return _offer(plan, OfferAction.CHANGE, refusal, reason=MSG_CANCELED)
        case Standing.CONTRACT:
            refusal = OfferRefusal("contracted", MSG_CONTRACT, 409)
            return _offer(plan, OfferAction.NONE, refusal, reason=MSG_CONTRACT)
    raise AssertionError(f"no offer for {now_on!r}")


# --- the selectors ------------------------------------------------------------------------------


def plan_offers(
    *,
    tenant: Tenant,
    product: Product,
    role: str,
    now: datetime | None = None,
    ents: Entitlements | None = None,
) -> list[PlanOffer]:
    """Every public plan of `product`, in catalog order, with what its card offers a member of
    `role`. Three queries whatever the catalog (two when the caller passes the tenant's
    entitlements, `ents`, which it has read already)."""
    ents = ents or selectors.entitlements(tenant=tenant, now=now)
    requested = selectors.open_leads(tenant=tenant)
    free_trial = on_free_trial(ents)
    ent = ents[product.code]
    return [
        _plan_offer(plan, ent=ent, role=role, free_trial=free_trial, requested=plan.pk in requested)
        for plan in selectors.catalog(product=product)
    ]


def plan_offer(
    *,
    tenant: Tenant,
    plan: Plan,
    role: str,
    now: datetime | None = None,
    ents: Entitlements | None = None,
) -> PlanOffer:
    """What `plan`'s card offers a member of `role` (public or not: the trial's card is never
    listed, but a service may still be asked to buy it)."""
    ents = ents or selectors.entitlements(tenant=tenant, now=now)
    requested = plan.pk in selectors.open_leads(tenant=tenant)
    return _plan_offer(
        plan, ent=ents[plan.product.code], role=role, free_trial=on_free_trial(ents), requested=requested
    )


def offer_require(
    *,
    tenant: Tenant,
    plan: Plan,
    role: str,
    action: str,
    when: str | None = None,
    now: datetime | None = None,
) -> PlanOffer:
    """The card's offer when it is `action` (and `when` is one of its choices, for a change);
    otherwise raise the BusinessError whose message the card shows. Changes nothing."""
    offer = plan_offer(tenant=tenant, plan=plan, role=role, now=now)
    refusal = offer.refused(action, when=when)
    if refusal is not None:
        raise refusal.error()
    return offer


# --- extra credit packs (C12 to C15, C17 to C19, C24, FAQ 3 and 7) ---------------------------------

MSG_PACK_ASK_ADMIN = "Ask your account administrator to buy extra credits."
MSG_PACK_TRIAL = "During the free trial you can only register interest."
MSG_PACK_PLUS_ONLY = "Extra credits are available on AI Plus: subscribe to AI Plus first."
MSG_PACK_CONTRACT = "Your AI credits are contracted with our sales team: ask them for more."
MSG_PACK_CANCELED = "Your subscription is canceled. Resume it to buy extra credits."
MSG_PACK_PAYMENT_FAILED = (
    "Your last payment failed. Update your payment method (Manage) before buying credits."
)


def msg_extra_pack_active(until: datetime, *, admin: bool = True) -> str:
    """C14: one extra package at a time; the sentence the card, the sidebar and the service say. A
    member who is not an admin cannot buy (C18, C21): they are told who can, once it expires."""
    who = "you" if admin else "your account administrator"
    return (
        f"You already have an active extra credit package (valid until {_day(until)}). "
        f"Only one extra package can be active at a time; {who} can buy a new one once it expires."
    )


@dataclass(frozen=True)
class PackOffer:
    """Whether "Buy extra credits" is offered to this member now, and why not."""

    available: bool
    refusal: OfferRefusal | None = None

    @property
    def reason(self) -> str | None:
        return None if self.refusal is None else self.refusal.message


def extra_pack_offer(
    *, ents: Entitlements, role: str, pack_active_until: datetime | None, balance_low: bool
) -> PackOffer:
    """Buy extra credits: an admin, on an active paid AI Credits plan (AI Plus), with no extra pack
    active (`pack_active_until`: when the active one expires, None when there is none), when the
    balance runs low (`balance_low`: C12 "if the current balance is insufficient", FAQ 7's
    "consumption level" — the caller asks the credits app's one rule, the sidebar's C03 rule).
    Never on AI Ultra (a contract), AI Free, the free trial, a canceled or unpaid subscription.
    A member who is not an admin is refused (403) with the reason an admin would be refused, when
    there is one (asking the administrator would not help then), else told to ask their
    administrator. One rule for the AI Credits page, the sidebar and the purchase service."""

    def refuse(code: str, message: str, status: int) -> PackOffer:
        return PackOffer(False, OfferRefusal(code, message, status))

    if on_free_trial(ents):
        return refuse("free_trial", MSG_PACK_TRIAL, 409)
    tenant_refusal = _pack_tenant_refusal(
        ents=ents, pack_active_until=pack_active_until, balance_low=balance_low
    )
    if role != Role.ADMIN:
        if tenant_refusal is None:
            return refuse("role_not_allowed", MSG_PACK_ASK_ADMIN, 403)
        if tenant_refusal.code == "extra_pack_active" and pack_active_until is not None:
            message = msg_extra_pack_active(pack_active_until, admin=False)
        else:
            message = _PACK_MEMBER_MESSAGES.get(tenant_refusal.code, tenant_refusal.message)
        return refuse("role_not_allowed", message, 403)
    if tenant_refusal is not None:
        return PackOffer(False, tenant_refusal)
    return PackOffer(True)


# What a member is told where the admin's refusal names an admin's own action (Manage, Resume,
# subscribe); the other reasons (a pack active, the balance not low, a contract) are the admin's.
_PACK_MEMBER_MESSAGES = {
    "not_on_plus": "Extra credits are available on AI Plus: ask your account administrator to subscribe.",
    "subscription_canceled": (
        "Your subscription is canceled: extra credits can be bought once your account administrator "
        "resumes it."
    ),
    "payment_failed": (
        "Your last payment failed: extra credits can be bought once your account administrator "
        "updates the payment method."
    ),
    "payment_overdue": (
        "Your payment is overdue: extra credits can be bought once your account administrator settles it."
    ),
}


def msg_pack_balance_sufficient() -> str:
    """C12: when extra credits can be bought, in the numbers of the sidebar's rule (C03)."""
    return (
        "Extra credits can be bought when your balance runs low: once "
        f"{settings.CREDITS_NUDGE_USED_PERCENT}% of this period's plan credits are used or fewer than "
        f"{settings.CREDITS_LOW_BALANCE} credits are available."
    )


def _pack_tenant_refusal(
    *, ents: Entitlements, pack_active_until: datetime | None, balance_low: bool
) -> OfferRefusal | None:
    """Why an administrator of this tenant could not buy an extra pack now; None when they could."""
    if not settings.BILLING_TAB_ENABLED:
        return OfferRefusal("billing_outside", MSG_BILLING_OUTSIDE, 409)
    match standing(ents[Product.Code.AI_CREDITS]):
        case Standing.PAID:
            if pack_active_until is not None:
                return OfferRefusal("extra_pack_active", msg_extra_pack_active(pack_active_until), 409)
            if not balance_low:
                return OfferRefusal("balance_sufficient", msg_pack_balance_sufficient(), 409)
            return None
        case Standing.CONTRACT:
            return OfferRefusal("contracted", MSG_PACK_CONTRACT, 409)
        case Standing.CANCELED:
            return OfferRefusal("subscription_canceled", MSG_PACK_CANCELED, 409)
        case Standing.PAYMENT_FAILED:
            return OfferRefusal("payment_failed", MSG_PACK_PAYMENT_FAILED, 402)
        case Standing.OVERDUE:
            return OfferRefusal("payment_overdue", MSG_OVERDUE_MANAGE, 402)
    return OfferRefusal("not_on_plus", MSG_PACK_PLUS_ONLY, 409)


def actor_role(*, tenant: Tenant, user: User) -> str:
    """The role `user` holds in `tenant`; a user who is not a member may do nothing (403)."""
    role = Membership.objects.filter(tenant=tenant, user=user).values_list("role", flat=True).first()
    if role is None:
        raise BusinessError("not_a_member", MSG_NOT_A_MEMBER, status=403)
    return role


def subscription_actions(
    *, ent: ProductEntitlement, role: str, now: datetime | None = None
) -> SubscriptionActions:
    """What the subscription card lets this member do, and the sentence beside Manage saying what
    is possible in its state (S17, S20, S26, S27, S29, S34)."""
    basics = _card_basics(ent=ent, role=role)
    upcoming_refusal = card_action_refusal(ent=ent, role=role, action=CardAction.CANCEL_UPCOMING, now=now)
    return SubscriptionActions(
        manage=basics.manage,
        resume=basics.resume,
        hint=basics.hint,
        cancel=card_action_refusal(ent=ent, role=role, action=CardAction.CANCEL, now=now) is None,
        cancel_upcoming=upcoming_refusal is None,
        upcoming_note=""
        if upcoming_refusal is None or ent.upcoming is None or upcoming_refusal.code == "role_not_allowed"
        else upcoming_refusal.message,
    )


def card_action_refusal(
    *, ent: ProductEntitlement, role: str, action: str, now: datetime | None = None
) -> OfferRefusal | None:
    """None when the card offers `action` to this member; else why not, in the card's words.
    Cancel subscription: admins, on an active paid plan (a scheduled change is released first).
    The Upcoming card's Cancel: admins, until the change's date (after it the change has applied at
    the gateway, even if its webhook is late)."""
    now = now or timezone.now()
    admin = role == Role.ADMIN
    now_on = standing(ent)
    if action == CardAction.CANCEL:
        if ent.product == Product.Code.AI_CREDITS:
            return OfferRefusal("deactivation_by_customer_success", MSG_PACKAGE_DEACTIVATION, 409)
        if not admin:
            return OfferRefusal("role_not_allowed", MSG_CANCEL_ASK, 403)
        match now_on:
            case Standing.PAID:
                return None
            case Standing.CANCELED:
                ends = _day(ent.ends_at) if ent.ends_at else ""
                return OfferRefusal(
                    "subscription_canceled", f"Your subscription is already canceled: it ends on {ends}.", 409
                )
            case Standing.PAYMENT_FAILED:
                return OfferRefusal("payment_failed", MSG_CANCEL_PAYMENT, 402)
            case Standing.OVERDUE:
                return OfferRefusal("payment_overdue", MSG_OVERDUE_MANAGE, 402)
            case Standing.CONTRACT:
                return OfferRefusal("contracted", MSG_CONTRACT, 409)
        return OfferRefusal("no_paid_subscription", MSG_CANCEL_NOTHING, 409)
    if action == CardAction.CANCEL_UPCOMING:
        if not admin:
            return OfferRefusal("role_not_allowed", MSG_CANCEL_UPCOMING_ASK, 403)
        if ent.upcoming is None:
            return OfferRefusal("not_scheduled", MSG_NO_UPCOMING, 409)
        if ent.upcoming.starts_on <= now:
            return OfferRefusal(
                "change_applied",
                f"The change to {ent.upcoming.plan_name} applied on {_day(ent.upcoming.starts_on)}: "
                "it can no longer be canceled.",
                409,
            )
        return None
    raise ValueError(f"not a card action: {action!r}")


def card_action_require(
    *, tenant: Tenant, product: Product, role: str, action: str, now: datetime | None = None
) -> None:
    """Raise the card's refusal (BusinessError) unless it offers `action` to a member of `role`."""
    ent = selectors.entitlements(tenant=tenant, now=now)[product.code]
    refusal = card_action_refusal(ent=ent, role=role, action=action, now=now)
    if refusal is not None:
        raise refusal.error()


def _card_basics(*, ent: ProductEntitlement, role: str) -> SubscriptionActions:
    admin = role == Role.ADMIN
    now_on = standing(ent)
    if now_on == Standing.CANCELED and ent.ends_at is not None:
        ends = _day(ent.ends_at)
        if admin:
            return SubscriptionActions(True, True, f"Resume to keep your plan after {ends}, or let it end.")
        return SubscriptionActions(
            False, False, f"Your plan ends on {ends}. Ask your account administrator to resume it."
        )
    if now_on == Standing.PAYMENT_FAILED:
        if admin:
            return SubscriptionActions(True, False, "Update your payment method to fix the failed payment.")
        return SubscriptionActions(
            False, False, "Ask your account administrator to update the payment method."
        )
    if now_on == Standing.OVERDUE:
        if admin:
            return SubscriptionActions(True, False, "Settle the failed payment to restore access.")
        return SubscriptionActions(
            False, False, "Ask your account administrator to settle the failed payment."
        )
    if now_on == Standing.PAID and admin and ent.product == Product.Code.AI_CREDITS:
        # C20: the package is deactivated by Customer Success only; its portal has no cancel.
        return SubscriptionActions(True, False, "Payment methods and invoices")
    if now_on == Standing.PAID and admin:
        return SubscriptionActions(True, False, "Payment methods, invoices, cancel subscription")
    return SubscriptionActions(False, False, "")
