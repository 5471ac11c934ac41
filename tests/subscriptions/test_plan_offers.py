"""One rule for what a plan card offers (plans.offers), held against the services that act on it.

The table: every subscription state x role (admin; member and finance) x plan kind (self-serve
other, self-serve current, contact sales, free, trial) pins the card's action, whether its button
is live and the sentence it shows. Then, in the same state, every service is called as each
persona on each plan — checkout, plan change (each choice of the dialog), sales request, resume:
what the card offers and shows live is accepted; everything else is refused with exactly the
card's reason (or, where the card shows none, the sentence naming what it offers instead) and
changes nothing. States are built through the real services and the local gateway.

S14-S16, S18-S20, S26-S29, S34, C09, C16-C19, C21, C22."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from billing_portal import services as billing
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.models import CheckoutSession
from plans import services as plan_services
from plans.factories import plan
from plans.models import Lead, ScheduledChange, Subscription
from plans.offers import (
    CardAction,
    OfferAction,
    When,
    card_action_refusal,
    plan_offer,
    plan_offers,
    subscription_actions,
)
from plans.selectors import MSG_OVERDUE, entitlements
from tenants import services as tenant_services
from tenants.errors import BusinessError
from tenants.factories import MembershipFactory, UserFactory
from tenants.models import AuditEvent, Role, Tenant, User
from tests.subscriptions.helpers import START, gateway, subscribe

pytestmark = pytest.mark.django_db

ASK = "Ask your account administrator to subscribe."
ASK_RESUME = "Your subscription is canceled. Ask your account administrator to resume it."
FREE_NEVER = "AI Free is included for new organizations and cannot be bought."
TRIAL_NEVER = "The free trial is available once per tenant and cannot be bought."
SCHEDULED = "A plan change is already scheduled. Cancel it first."
PAYMENT_FAILED = "Your last payment failed. Update your payment method (Manage) before changing plans."
OVERDUE = f"{MSG_OVERDUE} Click Manage to settle the failed payment."
CANCELED = "Your subscription is canceled. Resume it to change plans."
TRIAL_INTEREST = "During the free trial you can only register interest in AI Plus."

# (action, button live, the card's sentence)
Expect = tuple[str, bool, str | None]
SUBSCRIBE: Expect = ("subscribe", True, None)
CHANGE: Expect = ("change", True, None)
CURRENT: Expect = ("current", False, None)
CONTACT: Expect = ("contact", True, None)
INTEREST: Expect = ("interest", True, ASK)
NEVER_FREE: Expect = ("none", False, FREE_NEVER)
NEVER_TRIAL: Expect = ("none", False, TRIAL_NEVER)

# What a card that shows no sentence answers an action it does not offer (offered, asked).
REASONLESS = {
    ("subscribe", "change"): "Subscribe to a paid plan first.",
    ("subscribe", "lead"): "You can subscribe to {plan} yourself: click {label}.",
    ("change", "subscribe"): "You already have a paid subscription: choose when the change applies in "
    "Apply subscription updates.",
    ("change", "lead"): "You can subscribe to {plan} yourself: click {label}.",
    ("current", "subscribe"): "You are already on {plan}.",
    ("current", "change"): "You are already on {plan}.",
    ("current", "lead"): "You are already on {plan}.",
    ("resume", "subscribe"): "Your {plan} subscription is canceled: click Resume to keep it.",
    ("resume", "change"): "Your {plan} subscription is canceled: click Resume to keep it.",
    ("resume", "lead"): "Your {plan} subscription is canceled: click Resume to keep it.",
    ("contact", "subscribe"): "{plan} is contracted through our sales team.",
    ("contact", "change"): "{plan} is contracted through our sales team.",
}
LABELS = {
    ("subscribe", "ai_agents"): "Subscribe",
    ("subscribe", "ai_credits"): "Subscribe Now",  # C09
    ("change", "ai_agents"): "Subscribe",  # S18: Subscribe on another plan opens the dialog
    ("current", ""): "Current plan",
    ("resume", ""): "Resume",
    ("interest", ""): "Register interest",
    ("requested", ""): "Request received",
    ("ask_admin", ""): "",
    ("none", ""): "",
}
CONTACT_LABELS = {"agents-enterprise": "Book a demo", "credits-ultra": "Speak with Specialist"}


@dataclass
class World:
    tenant: Tenant
    admin: User
    member: User
    finance: User
    clock: Any
    capture: Any

    def tick(self, days: float) -> None:
        self.clock.move_to(START + timedelta(days=days))
        with self.capture(execute=True):
            billing.billing_tick(now=timezone.now())

    def provision(self) -> None:
        with self.capture(execute=True):
            plan_services.tenant_provision(tenant=self.tenant, actor=self.admin)

    def pay(self, code: str = "agents-growth") -> Subscription:
        return subscribe(tenant=self.tenant, actor=self.admin, plan_code=code, capture=self.capture)


@pytest.fixture
def world(db, clock, capture) -> World:
    admin = UserFactory(email="founder@initech.test")
    tenant = tenant_services.tenant_create(name="Initech", admin=admin)
    member = MembershipFactory(tenant=tenant, role=Role.MEMBER, user=UserFactory(email="staff@initech.test"))
    finance = MembershipFactory(
        tenant=tenant, role=Role.FINANCE, user=UserFactory(email="books@initech.test")
    )
    return World(tenant, admin, member.user, finance.user, clock, capture)


# --- the states, built as users and the clock would build them --------------------------------------


def _trial_ending(w: World) -> None:
    w.provision()
    w.clock.move_to(START + timedelta(days=12))


def _trial_expired(w: World) -> None:
    w.provision()
    w.tick(15)


def _paid(w: World) -> None:
    w.provision()
    w.pay()


def _scheduled(w: World) -> None:
    _paid(w)
    with w.capture(execute=True):
        billing.plan_change(
            tenant=w.tenant,
            to_plan=plan("agents-scale"),
            when=When.PERIOD_END,
            custom_date=None,
            actor=w.admin,
        )


def _past_due(w: World) -> None:
    sub = (w.provision(), w.pay())[1]
    w.clock.move_to(START + timedelta(days=3))
    with w.capture(execute=True):
        gateway().fail_next_payment(sub.gateway_subscription_id)


def _suspended(w: World) -> None:
    _past_due(w)
    w.tick(11)


def _canceled(w: World) -> None:
    sub = (w.provision(), w.pay())[1]
    with w.capture(execute=True):
        gateway().cancel_subscription(
            subscription_id=sub.gateway_subscription_id, at_period_end=True, idempotency_key="test-cancel"
        )


def _expired_paid(w: World) -> None:
    _canceled(w)
    w.tick(32)


def _free_only(w: World) -> None:
    with w.capture(execute=True):
        plan_services.free_plan_start(tenant=w.tenant, plan=plan("credits-free"), actor=w.admin)


def _free_expired(w: World) -> None:
    _free_only(w)
    w.tick(93)  # AI Free: 3 calendar months (C05), 92 days from the world's start


AGENTS = {"other": "agents-starter", "current": "agents-growth", "contact": "agents-enterprise"}
CREDITS = {"other": "credits-plus", "contact": "credits-ultra"}
COMMON = {"free": "credits-free", "trial": "agents-trial"}


@dataclass(frozen=True)
class Case:
    build: Callable[[World], None]
    product: str
    badge: str
    # plan kind -> (what the admin's card offers, what member's and finance's offer)
    expected: dict[str, tuple[Expect, Expect]]


CASES: dict[str, Case] = {
    "no subscription": Case(
        lambda w: None,
        "ai_agents",
        "Not subscribed",
        {
            "other": (SUBSCRIBE, INTEREST),
            "contact": (CONTACT, CONTACT),
            "free": (NEVER_FREE, NEVER_FREE),
            "trial": (NEVER_TRIAL, NEVER_TRIAL),
        },
    ),
    "trialing": Case(
        World.provision,
        "ai_agents",
        "Trial subscription",
        {
            "other": (SUBSCRIBE, INTEREST),
            "contact": (CONTACT, CONTACT),
            "free": (CURRENT, CURRENT),
            "trial": (CURRENT, CURRENT),
        },
    ),
    "trial ending soon": Case(
        _trial_ending,
        "ai_agents",
        "Trial ending soon",
        {
            "other": (SUBSCRIBE, INTEREST),
            "contact": (CONTACT, CONTACT),
            "free": (CURRENT, CURRENT),
            "trial": (CURRENT, CURRENT),
        },
    ),
    "trialing, on the AI Credits page": Case(  # C19: the free trial can only register interest
        World.provision,
        "ai_credits",
        "Active subscription",
        {
            "other": (("interest", True, TRIAL_INTEREST), ("interest", True, TRIAL_INTEREST)),
            "contact": (CONTACT, CONTACT),
            "free": (CURRENT, CURRENT),
            "trial": (CURRENT, CURRENT),
        },
    ),
    "expired trial": Case(
        _trial_expired,
        "ai_agents",
        "Expired subscription",
        {
            "other": (SUBSCRIBE, INTEREST),
            "contact": (CONTACT, CONTACT),
            "free": (CURRENT, CURRENT),
            "trial": (NEVER_TRIAL, NEVER_TRIAL),
        },
    ),
    "active paid": Case(
        _paid,
        "ai_agents",
        "Active subscription",
        {
            "other": (CHANGE, INTEREST),
            "current": (CURRENT, CURRENT),
            "contact": (CONTACT, CONTACT),
            "free": (CURRENT, CURRENT),
            "trial": (NEVER_TRIAL, NEVER_TRIAL),
        },
    ),
    "active paid with a scheduled change": Case(
        _scheduled,
        "ai_agents",
        "Active subscription",
        {
            "other": (CHANGE, INTEREST),
            "current": (CURRENT, CURRENT),
            "contact": (CONTACT, CONTACT),
            "free": (CURRENT, CURRENT),
            "trial": (NEVER_TRIAL, NEVER_TRIAL),
        },
    ),
    "past due": Case(
        _past_due,
        "ai_agents",
        "Payment issue",
        {
            "other": (("change", False, PAYMENT_FAILED), INTEREST),
            "current": (CURRENT, CURRENT),
            "contact": (CONTACT, CONTACT),
            "free": (CURRENT, CURRENT),
            "trial": (NEVER_TRIAL, NEVER_TRIAL),
        },
    ),
    "suspended": Case(
        _suspended,
        "ai_agents",
        "Payment issue",
        {
            "other": (("change", False, OVERDUE), INTEREST),
            "current": (CURRENT, CURRENT),
            "contact": (CONTACT, CONTACT),
            "free": (CURRENT, CURRENT),
            "trial": (NEVER_TRIAL, NEVER_TRIAL),
        },
    ),
    "canceled at period end": Case(
        _canceled,
        "ai_agents",
        "Canceled subscription",
        {
            "other": (("change", False, CANCELED), INTEREST),
            "current": (("resume", True, None), ("ask_admin", False, ASK_RESUME)),
            "contact": (CONTACT, CONTACT),
            "free": (CURRENT, CURRENT),
            "trial": (NEVER_TRIAL, NEVER_TRIAL),
        },
    ),
    "expired paid": Case(
        _expired_paid,
        "ai_agents",
        "Expired subscription",
        {
            "other": (SUBSCRIBE, INTEREST),
            "current": (SUBSCRIBE, INTEREST),  # the plan that ended is bought again at the checkout
            "contact": (CONTACT, CONTACT),
            "free": (CURRENT, CURRENT),
            "trial": (NEVER_TRIAL, NEVER_TRIAL),
        },
    ),
    "AI Free active": Case(
        _free_only,
        "ai_credits",
        "Active subscription",
        {
            "other": (SUBSCRIBE, INTEREST),
            "contact": (CONTACT, CONTACT),
            "free": (CURRENT, CURRENT),
            "trial": (NEVER_TRIAL, NEVER_TRIAL),
        },
    ),
    "AI Free expired": Case(  # C22: Plus is still offered
        _free_expired,
        "ai_credits",
        "Expired subscription",
        {
            "other": (SUBSCRIBE, INTEREST),
            "contact": (CONTACT, CONTACT),
            "free": (NEVER_FREE, NEVER_FREE),
            "trial": (NEVER_TRIAL, NEVER_TRIAL),
        },
    ),
}


# The subscription cards' own actions, per state: (admin, member and finance) x (Cancel subscription,
# the Upcoming card's Cancel), each True when offered, else the sentence that refuses it.
CANCEL_ASK = "Ask your account administrator to cancel the subscription."
UPCOMING_ASK = "Ask your account administrator to cancel the scheduled change."
NOTHING = "There is no paid subscription to cancel."
NO_UPCOMING = "There is no scheduled change to cancel."
CANCEL_PAYMENT = "Your last payment failed. Update your payment method (Manage) before canceling."
# C20: an AI Credits package is deactivated by Customer Success, for every role and state.
DEACTIVATION = (
    "Package deactivation is not available via self-service. To request deactivation, please contact "
    "the Customer Success team."
)
CardExpect = tuple[bool | str, bool | str]
CARD: dict[str, tuple[CardExpect, CardExpect]] = {
    "no subscription": ((NOTHING, NO_UPCOMING), (CANCEL_ASK, UPCOMING_ASK)),
    "trialing": ((NOTHING, NO_UPCOMING), (CANCEL_ASK, UPCOMING_ASK)),
    "trial ending soon": ((NOTHING, NO_UPCOMING), (CANCEL_ASK, UPCOMING_ASK)),
    "trialing, on the AI Credits page": ((DEACTIVATION, NO_UPCOMING), (DEACTIVATION, UPCOMING_ASK)),
    "expired trial": ((NOTHING, NO_UPCOMING), (CANCEL_ASK, UPCOMING_ASK)),
    "active paid": ((True, NO_UPCOMING), (CANCEL_ASK, UPCOMING_ASK)),
    "active paid with a scheduled change": ((True, True), (CANCEL_ASK, UPCOMING_ASK)),
    "past due": ((CANCEL_PAYMENT, NO_UPCOMING), (CANCEL_ASK, UPCOMING_ASK)),
    "suspended": ((OVERDUE, NO_UPCOMING), (CANCEL_ASK, UPCOMING_ASK)),
    "canceled at period end": (
        ("Your subscription is already canceled: it ends on 10 Apr 2021.", NO_UPCOMING),
        (CANCEL_ASK, UPCOMING_ASK),
    ),
    "expired paid": ((NOTHING, NO_UPCOMING), (CANCEL_ASK, UPCOMING_ASK)),
    "AI Free active": ((DEACTIVATION, NO_UPCOMING), (DEACTIVATION, UPCOMING_ASK)),
    "AI Free expired": ((DEACTIVATION, NO_UPCOMING), (DEACTIVATION, UPCOMING_ASK)),
}


def test_the_card_actions_table_covers_every_state():
    assert set(CARD) == set(CASES)


def plans_of(case: Case) -> dict[str, str]:
    codes = AGENTS if case.product == "ai_agents" else CREDITS
    return {kind: {**codes, **COMMON}[kind] for kind in case.expected}


# --- calling the services -----------------------------------------------------------------------------


class _Undo(Exception):
    """Raised to roll an accepted call back, so every call starts from the same state."""


def attempt(call: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", result) for an accepted call — rolled back, with whatever it queued on commit — or
    ("refused", the BusinessError)."""
    try:
        with transaction.atomic():
            result = call()
            raise _Undo(result)
    except _Undo as undo:
        return "ok", undo.args[0]
    except BusinessError as exc:
        return "refused", exc


def snapshot(tenant: Tenant) -> dict[str, Any]:
    """Everything a refused call must leave as it was."""
    return {
        "subscriptions": list(Subscription.objects.filter(tenant=tenant).order_by("pk").values()),
        "changes": list(ScheduledChange.objects.filter(tenant=tenant).order_by("pk").values()),
        "leads": list(Lead.objects.filter(tenant=tenant).order_by("pk").values()),
        "checkouts": CheckoutSession.objects.filter(tenant=tenant).count(),
        "gateway": LocalGatewayObject.objects.count(),
        "audit": AuditEvent.objects.filter(tenant=tenant).count(),
    }


def expected_refusal(offer, asked: str) -> str:
    if offer.reason:
        return offer.reason
    return REASONLESS[(offer.action, asked)].format(plan=offer.plan.name, label=offer.label)


def services_for(
    w: World, user: User, code: str, when: str = When.PERIOD_END
) -> dict[str, tuple[OfferAction, Callable[..., Any]]]:
    to_plan = plan(code)

    def checkout() -> str:
        # The offer's rule is what this matrix checks; an AI Credits plan's security code is checked
        # by billing_portal's tests (and refused before the offer without it).
        return billing.checkout_start(
            tenant=w.tenant, plan=to_plan, actor=user, success_url="/ok/", cancel_url="/no/",
            without_security_code=True,
        )  # fmt: skip

    def change(when: str = when) -> billing.ChangeResult:
        with w.capture(execute=True):
            return billing.plan_change(
                tenant=w.tenant, to_plan=to_plan, when=when, custom_date=None, actor=user
            )

    def lead() -> tuple[Lead, bool]:
        return plan_services.lead_create(tenant=w.tenant, user=user, plan=to_plan, message="Hello")

    return {
        "subscribe": (OfferAction.SUBSCRIBE, checkout),
        "change": (OfferAction.CHANGE, change),
        "lead": (OfferAction.INTEREST, lead),
    }


@pytest.mark.parametrize("state", list(CASES))
def test_every_offer_is_accepted_by_its_service_and_everything_else_refused_with_the_cards_words(
    state, world, clock
):
    """S14-S16, S18-S20, S26-S29, S34, C09, C16-C19, C21, C22"""
    case = CASES[state]
    case.build(world)
    ents = entitlements(tenant=world.tenant)
    assert ents[case.product].badge == case.badge
    before = snapshot(world.tenant)
    personas = {"admin": world.admin, "member": world.member, "finance": world.finance}
    role = {"admin": Role.ADMIN, "member": Role.MEMBER, "finance": Role.FINANCE}

    for who, user in personas.items():
        for kind, code in plans_of(case).items():
            offer = plan_offer(tenant=world.tenant, plan=plan(code), role=role[who])
            expected = case.expected[kind][0 if who == "admin" else 1]
            assert (offer.action, offer.available, offer.reason) == expected, (state, who, kind)
            product = "" if offer.action not in ("subscribe", "change") else plan(code).product.code
            label = CONTACT_LABELS[code] if offer.action == "contact" else LABELS[(offer.action, product)]
            assert offer.label == label, (state, who, kind)

            # The dialog's first choice that is possible (End of the current period, unless a change
            # is scheduled already: then only Immediately).
            allowed = [c.value for c in offer.when_choices if c.available]
            when = When.PERIOD_END if not allowed or When.PERIOD_END in allowed else allowed[0]
            for asked, (action, call) in services_for(world, user, code, when).items():
                outcome, value = attempt(call)
                live = (
                    offer.available
                    and (
                        offer.action == action
                        or (asked == "lead" and offer.action in (OfferAction.CONTACT, OfferAction.INTEREST))
                    )
                ) or (asked == "lead" and offer.also == OfferAction.INTEREST)  # C18: an admin's too
                where = (state, who, kind, asked)
                if live:
                    assert outcome == "ok", (*where, value)
                    if asked == "lead":
                        lead, created = value
                        assert (lead.kind, created) == (plan(code).lead_kind or "interest", True), where
                    if asked == "change" and value.applied_now:
                        assert value.subscription.plan.code == code, where
                    elif asked == "change":
                        assert value.scheduled.to_plan.code == code, where
                else:
                    assert outcome == "refused", where
                    assert value.message == expected_refusal(offer, asked), where
                assert snapshot(world.tenant) == before, where

            if offer.action == OfferAction.CHANGE and offer.available:
                # Each choice of the dialog: what it offers is accepted, what it does not is refused
                # with the sentence the dialog shows beside it.
                change = services_for(world, user, code)["change"][1]
                for choice in offer.when_choices:
                    outcome, value = attempt(lambda choice=choice, change=change: change(choice.value))
                    if choice.available and choice.value != When.CUSTOM_DATE:
                        assert outcome == "ok", (state, who, choice.value, value)
                    elif choice.available:  # no date picked: the dialog's own 422
                        assert (outcome, value.code, value.status) == ("refused", "date_required", 422)
                    else:
                        assert (outcome, value.message, value.status) == ("refused", choice.reason, 409)
                    assert snapshot(world.tenant) == before

        # Resume concerns the product's subscription, whose card is the current plan's.
        live_sub = (
            Subscription.objects.select_related("plan")
            .exclude(state="expired")
            .filter(tenant=world.tenant, product__code=case.product)
            .first()
        )
        outcome, value = attempt(
            lambda user=user: billing.subscription_resume(
                tenant=world.tenant, product=plan(plans_of(case)["other"]).product, actor=user
            )
        )
        if live_sub is None:
            assert (outcome, value.message) == ("refused", "There is no subscription to resume."), (
                state,
                who,
            )
        else:
            offer = plan_offer(tenant=world.tenant, plan=live_sub.plan, role=role[who])
            if offer.action == OfferAction.RESUME and offer.available:
                assert outcome == "ok", (state, who, value)
                assert (value.state, value.ends_at) == ("active", None)
            else:
                assert outcome == "refused", (state, who)
                message = offer.reason or "Your subscription is not canceled: there is nothing to resume."
                assert value.message == message, (state, who)
        assert snapshot(world.tenant) == before

        # The cards' own actions: Cancel subscription, and the Upcoming card's Cancel.
        ent = entitlements(tenant=world.tenant)[case.product]
        actions = subscription_actions(ent=ent, role=role[who])
        expected_cancel, expected_upcoming = CARD[state][0 if who == "admin" else 1]
        for action, offered, expected, call in (
            (
                CardAction.CANCEL,
                actions.cancel,
                expected_cancel,
                lambda user=user: billing.subscription_cancel(
                    tenant=world.tenant, product=plan(plans_of(case)["other"]).product, actor=user
                ),
            ),
            (
                CardAction.CANCEL_UPCOMING,
                actions.cancel_upcoming,
                expected_upcoming,
                lambda user=user: billing.scheduled_change_undo(
                    tenant=world.tenant,
                    change=ScheduledChange.objects.get(tenant=world.tenant, status="scheduled"),
                    actor=user,
                ),
            ),
        ):
            refusal = card_action_refusal(ent=ent, role=role[who], action=action)
            assert offered is (refusal is None), (state, who, action)
            assert (True if refusal is None else refusal.message) == expected, (state, who, action)
            if action == CardAction.CANCEL_UPCOMING and ent.upcoming is None:
                continue  # no change to point the service at: there is no Upcoming card
            outcome, value = attempt(call)
            if offered:
                assert outcome == "ok", (state, who, action, value)
            else:
                assert (outcome, value.message) == ("refused", expected), (state, who, action)
            assert snapshot(world.tenant) == before


def test_the_dialogs_choices_while_a_change_is_scheduled(world, clock):
    """S18, S19: only Immediately, and why not the others, before the dialog is filled in."""
    _scheduled(world)
    offer = plan_offer(tenant=world.tenant, plan=plan("agents-starter"), role=Role.ADMIN)
    period_end = Subscription.objects.get(tenant=world.tenant, state="active", product__code="ai_agents")
    assert [(c.value, c.label, c.available, c.reason, c.on) for c in offer.when_choices] == [
        ("immediately", "Immediately", True, None, None),
        ("period_end", "End of the current period", False, SCHEDULED, period_end.current_period_end),
        ("custom_date", "On custom date", False, SCHEDULED, None),
    ]


def test_offers_are_listed_in_catalog_order_in_three_queries(world, clock, django_assert_num_queries):
    """S14: every public plan of the product; entitlements (one joined query), open leads, the catalog."""
    _paid(world)
    product = plan("agents-growth").product
    with django_assert_num_queries(3):
        offers = plan_offers(tenant=world.tenant, product=product, role=Role.ADMIN)
    assert [(o.plan.code, o.action, o.is_current) for o in offers] == [
        ("agents-starter", "change", False),
        ("agents-growth", "current", True),
        ("agents-scale", "change", False),
        ("agents-enterprise", "contact", False),
    ]


def test_an_open_request_shows_request_received_and_sending_again_keeps_one_lead(world, clock):
    """S16, C16, C18: the card says Request received; the service answers with the open lead."""
    world.provision()
    first, created = plan_services.lead_create(
        tenant=world.tenant, user=world.member, plan=plan("agents-growth"), message="More sessions"
    )
    assert (first.kind, created) == ("interest", True)
    for user, role in ((world.member, Role.MEMBER), (world.finance, Role.FINANCE)):
        offer = plan_offer(tenant=world.tenant, plan=plan("agents-growth"), role=role)
        assert (offer.action, offer.label, offer.available, offer.reason) == (
            "requested",
            "Request received",
            False,
            ASK,
        )
        again, created = plan_services.lead_create(tenant=world.tenant, user=user, plan=plan("agents-growth"))
        assert (again.pk, created) == (first.pk, False)
    # The admin may still buy it: their card is Subscribe.
    assert plan_offer(tenant=world.tenant, plan=plan("agents-growth"), role=Role.ADMIN).action == "subscribe"
    assert Lead.objects.filter(tenant=world.tenant).count() == 1


def test_someone_who_is_not_a_member_is_refused_by_every_service(world, clock, outsider):
    world.provision()
    before = snapshot(world.tenant)
    for asked, (_action, call) in services_for(world, outsider, "agents-growth").items():
        outcome, value = attempt(call)
        assert (outcome, value.code, value.status) == ("refused", "not_a_member", 403), asked
    assert snapshot(world.tenant) == before
