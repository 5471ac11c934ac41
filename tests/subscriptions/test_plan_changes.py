"""Apply subscription updates: Immediately (prorated, limits recalculated at once), End of the
current period, or On custom date (an Upcoming subscription until then), undo, and the refusals —
through billing_portal.services.plan_change and the local gateway's subscription schedules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from billing_portal import services as billing
from billing_portal.gateway.base import GatewayError
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.models import Invoice
from plans.factories import plan
from plans.models import ScheduledChange, Subscription
from plans.selectors import MSG_OVERDUE, entitlements
from plans.services import When
from tenants.errors import BusinessError
from tenants.factories import MembershipFactory, UserFactory
from tenants.models import AuditEvent, Role
from tests.subscriptions.helpers import START, assert_webhooks_applied, customer_id, gateway, live, subscribe

pytestmark = pytest.mark.django_db

PERIOD_END = datetime(2021, 4, 10, 9, 0, tzinfo=UTC)  # Growth bought at START renews here


@pytest.fixture
def paid(org, capture):
    return subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-growth", capture=capture)


def change(org, capture, code: str, when: str, custom_date: datetime | None = None) -> billing.ChangeResult:
    with capture(execute=True):
        return billing.plan_change(
            tenant=org.tenant, to_plan=plan(code), when=when, custom_date=custom_date, actor=org.founder
        )


def world(tenant) -> dict[str, object]:
    """Everything a refused change must leave alone (at the gateway: the customer's objects and the
    idempotency records of this subscription's calls)."""
    customer = customer_id(tenant)
    return {
        "subscriptions": list(Subscription.objects.filter(tenant=tenant).order_by("pk").values()),
        "changes": list(ScheduledChange.objects.filter(tenant=tenant).order_by("pk").values()),
        "gateway_objects": list(
            LocalGatewayObject.objects.filter(customer_id=customer).order_by("pk").values()
        ),
        "gateway_calls": LocalGatewayObject.objects.filter(object_type="idempotency").count(),
        "schedules": LocalGatewayObject.objects.filter(
            object_type="subscription_schedule", customer_id=customer
        ).count(),
        "audit": AuditEvent.objects.filter(tenant=tenant).count(),
        "invoices": Invoice.objects.filter(tenant=tenant).count(),
    }


def gateway_subscription(sub: Subscription) -> dict:
    return LocalGatewayObject.objects.get(object_id=sub.gateway_subscription_id).data


def test_immediate_upgrade_switches_the_plan_and_limits_at_once_and_prorates(org, paid, clock, capture):
    """S18, S21"""
    clock.move_to(START + timedelta(days=10))  # 21 of the period's 31 days are left
    result = change(org, capture, "agents-scale", When.IMMEDIATELY)

    assert result.applied_now is True
    assert result.scheduled is None
    sub = live(org.tenant)
    assert (sub.pk, sub.plan.code, sub.state) == (paid.pk, "agents-scale", "active")
    assert (sub.current_period_start, sub.current_period_end) == (START, PERIOD_END)  # same cycle
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.plan_code, ent.limits.session_limit, ent.badge, ent.upcoming) == (
        "agents-scale",
        5000,
        "Active subscription",
        None,
    )
    # The prorated difference for the 21 days left: (49900 - 19900) * 21/31 cents, rounded once.
    invoice = Invoice.objects.get(tenant=org.tenant, billing_reason="subscription_update")
    assert (invoice.status, invoice.total, invoice.amount_paid) == ("paid", 20323, 20323)
    assert list(invoice.lines.values_list("amount", flat=True)) == [-13481, 33804]
    assert AuditEvent.objects.filter(tenant=org.tenant, action="subscription.plan_changed").latest(
        "id"
    ).data == {"to_plan": "agents-scale"}


def test_immediate_downgrade_credits_the_customer_balance_and_the_next_invoice_uses_it(
    org, paid, clock, capture
):
    """S18, S21. As Stripe does with proration_behavior=always_invoice: the downgrade's prorations
    are invoiced now with a negative total, nothing is charged, the credit goes to the customer's
    balance, and the renewal is paid from it. Failed before the fix: no invoice, the balance stayed
    0 and the renewal charged the full price, while the preview had promised the credit."""
    clock.move_to(START + timedelta(days=10))  # 21 of the period's 31 days are left
    preview = billing.plan_change_preview(
        tenant=org.tenant, to_plan=plan("agents-starter"), actor=org.founder
    )
    change(org, capture, "agents-starter", When.IMMEDIATELY)
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.plan_code, ent.limits.session_limit, ent.limits.answered_only) == (
        "agents-starter",
        300,
        True,
    )
    # (4900 - 19900) * 21/31 cents: the credit the preview promised, to the cent.
    credit = Invoice.objects.get(tenant=org.tenant, billing_reason="subscription_update")
    assert list(credit.lines.values_list("amount", flat=True)) == [-13481, 3320]
    assert (credit.status, credit.total, credit.amount_due, credit.amount_paid) == ("paid", -10161, 0, 0)
    assert (credit.starting_balance, credit.ending_balance, credit.credit_added) == (0, -10161, 10161)
    assert preview.credit == 10161
    customer = LocalGatewayObject.objects.get(object_id=customer_id(org.tenant)).data
    assert customer["balance"] == -10161
    assert [
        (t.data["type"], t.data["amount"], t.data["ending_balance"], t.data["invoice"])
        for t in LocalGatewayObject.objects.filter(object_type="customer_balance_transaction")
    ] == [("applied_to_invoice", -10161, -10161, credit.gateway_invoice_id)]
    charges = LocalGatewayObject.objects.filter(object_type="charge", customer_id=customer_id(org.tenant))
    assert charges.count() == 1  # the first payment only

    clock.move_to(PERIOD_END + timedelta(minutes=1))
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    renewal = Invoice.objects.get(tenant=org.tenant, billing_reason="subscription_cycle")
    assert (renewal.status, renewal.total, renewal.amount_due, renewal.amount_paid) == ("paid", 4900, 0, 0)
    assert (renewal.starting_balance, renewal.ending_balance, renewal.credit_applied) == (-10161, -5261, 4900)
    assert LocalGatewayObject.objects.get(object_id=customer_id(org.tenant)).data["balance"] == -5261
    assert charges.count() == 1  # the renewal was paid from the credit, not the card


def _renewal_on_the_overview(client, org) -> str:
    page = client.get(f"/t/{org.tenant.slug}/").content.decode()
    found = re.search(r'data-testid="renewal">\s*<div>(.*?)</div>', page, re.S)
    assert found, "no renewal on the next-invoice tile"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()


def test_after_a_downgrade_the_next_invoice_tile_says_what_the_renewal_will_charge(
    org, paid, clock, capture, client_for
):
    """A finance tester on helix: after a downgrade the tile said "Next invoice $49.00" beside a
    credit balance that pays it. Now it gives the renewal's total and what is due after the
    credit, and the renewal the gateway then finalizes charges exactly that (its amount_due), each
    month until the credit is used up. Failed before the fix: no amount due on the tile."""
    finance = MembershipFactory(tenant=org.tenant, role=Role.FINANCE, user=UserFactory()).user
    clock.move_to(START + timedelta(days=10))
    change(org, capture, "agents-starter", When.IMMEDIATELY)  # $101.61 of credit
    expected = [
        # (the tile before the renewal, the renewal's amount_due at the gateway)
        ("$49.00 on 10 Apr 2021 · $0.00 due after your credit balance", 0),
        ("$49.00 on 10 May 2021 · $0.00 due after your credit balance", 0),  # $52.61 left
        ("$49.00 on 10 Jun 2021 · $45.39 due after your credit balance", 4539),  # $3.61 left
        ("$49.00 on 10 Jul 2021", 4900),  # used up
    ]
    for tile, due in expected:
        for user in (org.founder, finance):
            assert _renewal_on_the_overview(client_for(user), org) == tile
        clock.move_to(live(org.tenant).current_period_end + timedelta(minutes=1))
        with capture(execute=True):
            billing.billing_tick(now=timezone.now())
        renewal = Invoice.objects.filter(tenant=org.tenant, billing_reason="subscription_cycle").first()
        assert (renewal.total, renewal.amount_due) == (4900, due)


def test_end_of_period_change_is_upcoming_until_the_period_ends(org, paid, clock, capture):
    """S18, S19, S21, S30"""
    clock.move_to(START + timedelta(days=10))
    result = change(org, capture, "agents-scale", When.PERIOD_END)

    assert result.applied_now is False
    scheduled = ScheduledChange.objects.get(tenant=org.tenant)
    assert scheduled == result.scheduled
    assert (scheduled.status, scheduled.effective_at, scheduled.to_plan.code, scheduled.created_by) == (
        "scheduled",
        PERIOD_END,
        "agents-scale",
        org.founder,
    )
    schedule = LocalGatewayObject.objects.get(object_id=scheduled.gateway_schedule_id)
    assert schedule.data["status"] == "active"
    assert gateway_subscription(paid)["schedule"] == scheduled.gateway_schedule_id

    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.plan_code, ent.limits.session_limit, ent.badge) == (
        "agents-growth",
        1500,
        "Active subscription",
    )
    assert ent.upcoming is not None
    assert (
        ent.upcoming.change_id,
        ent.upcoming.plan_code,
        ent.upcoming.plan_name,
        ent.upcoming.starts_on,
    ) == (
        scheduled.pk,
        "agents-scale",
        "Scale",
        PERIOD_END,
    )
    assert (ent.upcoming.price_amount, ent.upcoming.interval) == (49900, "month")

    clock.move_to(PERIOD_END - timedelta(minutes=1))
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    assert live(org.tenant).plan.code == "agents-growth"

    clock.move_to(PERIOD_END + timedelta(minutes=1))
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    sub = live(org.tenant)
    assert (sub.pk, sub.plan.code, sub.state) == (paid.pk, "agents-scale", "active")
    assert (sub.current_period_start, sub.current_period_end) == (
        PERIOD_END,
        datetime(2021, 5, 10, 9, 0, tzinfo=UTC),
    )
    scheduled.refresh_from_db()
    assert (scheduled.status, scheduled.resolved_at) == ("applied", PERIOD_END + timedelta(minutes=1))
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.plan_code, ent.limits.session_limit, ent.upcoming) == ("agents-scale", 5000, None)
    renewal = Invoice.objects.get(tenant=org.tenant, billing_reason="subscription_cycle")
    assert (renewal.status, renewal.total) == ("paid", 49900)  # the new period at the new price


def test_custom_date_change_takes_effect_when_the_clock_passes_the_date(org, paid, clock, capture):
    """S18, S19"""
    clock.move_to(START + timedelta(days=2))
    on = datetime(2021, 3, 25, tzinfo=UTC)  # mid-period: a date picked in the dialog is 00:00 UTC
    change(org, capture, "agents-scale", When.CUSTOM_DATE, custom_date=on)
    assert entitlements(tenant=org.tenant)["ai_agents"].upcoming.starts_on == on

    clock.move_to(on - timedelta(seconds=1))
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    assert live(org.tenant).plan.code == "agents-growth"

    clock.move_to(on + timedelta(minutes=1))
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    sub = live(org.tenant)
    assert (sub.plan.code, sub.current_period_end) == ("agents-scale", PERIOD_END)
    assert ScheduledChange.objects.get(tenant=org.tenant).status == "applied"
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.limits.session_limit, ent.upcoming) == (5000, None)


def tick(capture) -> None:
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())


def invoices(tenant) -> list[tuple[str, int, str]]:
    return list(
        Invoice.objects.filter(tenant=tenant)
        .order_by("issued_at", "pk")
        .values_list("billing_reason", "total", "status")
    )


MID = datetime(2021, 3, 25, tzinfo=UTC)  # a custom date: 00:00 UTC; 16 days 9 hours of the 31 left


def test_custom_date_upgrade_mid_period_invoices_the_prorated_difference_at_the_date_s18(
    org, paid, clock, capture
):
    """S18, outside tester's report (failed before the fix: the schedule's phase switched the price
    with proration_behavior none, so Scale ran from the date to the period's end for nothing). The
    switch prorates from that moment, as Immediately does from its own: the invoice is made and paid
    at the date, for exactly what the dialog's estimate said; the renewal then bills Scale."""
    clock.move_to(START + timedelta(days=2))
    outlook = billing.plan_change_custom_date_outlook(
        tenant=org.tenant, to_plan=plan("agents-scale"), custom_date=MID, actor=org.founder
    )
    change(org, capture, "agents-scale", When.CUSTOM_DATE, custom_date=MID)
    clock.move_to(MID + timedelta(hours=3))  # the sweep runs a little after the date
    tick(capture)

    sub = live(org.tenant)
    assert (sub.plan.code, sub.state, sub.current_period_end) == ("agents-scale", "active", PERIOD_END)
    # (49900 - 19900) * 1,414,800 s / 2,678,400 s, rounded once; the lines: Growth's unused time back,
    # Scale's remaining time charged, from the date (not from the sweep's moment) to the period's end.
    invoice = Invoice.objects.get(tenant=org.tenant, billing_reason="subscription_update")
    assert (invoice.status, invoice.total, invoice.amount_paid, invoice.issued_at) == (
        "paid",
        15847,
        15847,
        MID,
    )
    assert list(invoice.lines.values_list("amount", flat=True)) == [-10512, 26359]
    assert outlook.preview is not None
    assert (outlook.preview.amount_due, [line.amount for line in outlook.preview.lines]) == (
        15847,
        [-10512, 26359],
    )
    assert ScheduledChange.objects.get(tenant=org.tenant).status == "applied"

    clock.move_to(PERIOD_END + timedelta(minutes=1))
    tick(capture)
    assert invoices(org.tenant) == [
        ("subscription_create", 19900, "paid"),
        ("subscription_update", 15847, "paid"),
        ("subscription_cycle", 49900, "paid"),
    ]
    assert_webhooks_applied(org.tenant)


def test_custom_date_downgrade_credits_the_customer_balance_s18(org, paid, clock, capture):
    """S18 (failed before the fix: the downgrade on a date lost the customer the difference they had
    paid for the rest of the period). As an immediate downgrade: a credit invoice at the date, the
    credit on the customer's balance, the renewal paid from it."""
    change(org, capture, "agents-starter", When.CUSTOM_DATE, custom_date=MID)
    clock.move_to(MID + timedelta(minutes=5))
    tick(capture)

    assert live(org.tenant).plan.code == "agents-starter"
    credit = Invoice.objects.get(tenant=org.tenant, billing_reason="subscription_update")
    # (4900 - 19900) * 1,414,800 / 2,678,400 cents, rounded once.
    assert list(credit.lines.values_list("amount", flat=True)) == [-10512, 2589]
    assert (credit.status, credit.total, credit.amount_due, credit.amount_paid) == ("paid", -7923, 0, 0)
    assert (credit.starting_balance, credit.ending_balance, credit.credit_added) == (0, -7923, 7923)
    assert LocalGatewayObject.objects.get(object_id=customer_id(org.tenant)).data["balance"] == -7923
    charges = LocalGatewayObject.objects.filter(object_type="charge", customer_id=customer_id(org.tenant))
    assert charges.count() == 1  # the first payment only: a credit is not refunded to the card

    clock.move_to(PERIOD_END + timedelta(minutes=1))
    tick(capture)
    renewal = Invoice.objects.get(tenant=org.tenant, billing_reason="subscription_cycle")
    assert (renewal.total, renewal.amount_due, renewal.credit_applied) == (4900, 0, 4900)
    assert LocalGatewayObject.objects.get(object_id=customer_id(org.tenant)).data["balance"] == -3023
    assert charges.count() == 1


def test_a_custom_date_at_the_period_end_prorates_nothing_s18(org, paid, clock, capture):
    """S18: a switch exactly at the period's end has no time left to prorate; the renewal bills the
    new plan, as End of the current period does. The dialog sends a day, which starts at 00:00 UTC,
    hours before the renewal (09:00 here): the renewal's own day is taken as the renewal itself, or
    those hours would be prorated and invoiced on their own."""
    picked = datetime(PERIOD_END.year, PERIOD_END.month, PERIOD_END.day, tzinfo=UTC)  # the form's day
    outlook = billing.plan_change_custom_date_outlook(
        tenant=org.tenant, to_plan=plan("agents-scale"), custom_date=picked, actor=org.founder
    )
    assert (outlook.starts_on, outlook.at_period_end, outlook.preview) == (PERIOD_END, True, None)
    change(org, capture, "agents-scale", When.CUSTOM_DATE, custom_date=picked)
    assert ScheduledChange.objects.get(tenant=org.tenant).effective_at == PERIOD_END
    clock.move_to(PERIOD_END + timedelta(minutes=1))
    tick(capture)
    assert live(org.tenant).plan.code == "agents-scale"
    assert invoices(org.tenant) == [
        ("subscription_create", 19900, "paid"),
        ("subscription_cycle", 49900, "paid"),
    ]


def test_a_custom_date_after_the_period_end_prorates_within_the_period_it_falls_in_s18(
    org, paid, clock, capture
):
    """S18 (failed before the fix: the renewal of 10 Apr billed Growth and Scale then ran from 20 Apr
    to 10 May uncharged). The renewal bills Growth; on 20 Apr the rest of the period 10 Apr -> 10 May
    (30 days) is prorated and invoiced; the renewal of 10 May bills Scale."""
    on = datetime(2021, 4, 20, tzinfo=UTC)  # 20 days 9 hours of the next period's 30 days left
    outlook = billing.plan_change_custom_date_outlook(
        tenant=org.tenant, to_plan=plan("agents-scale"), custom_date=on, actor=org.founder
    )
    assert (outlook.within_period, outlook.preview) == (
        False,
        None,
    )  # Stripe previews the current period only
    change(org, capture, "agents-scale", When.CUSTOM_DATE, custom_date=on)
    clock.move_to(PERIOD_END + timedelta(minutes=1))
    tick(capture)
    assert live(org.tenant).plan.code == "agents-growth"
    clock.move_to(on + timedelta(minutes=1))
    tick(capture)
    assert live(org.tenant).plan.code == "agents-scale"
    clock.move_to(datetime(2021, 5, 10, 9, 1, tzinfo=UTC))
    tick(capture)
    # (49900 - 19900) * 1,760,400 s / 2,592,000 s = 20375 exactly.
    assert invoices(org.tenant) == [
        ("subscription_create", 19900, "paid"),
        ("subscription_cycle", 19900, "paid"),
        ("subscription_update", 20375, "paid"),
        ("subscription_cycle", 49900, "paid"),
    ]
    update = Invoice.objects.get(tenant=org.tenant, billing_reason="subscription_update")
    assert list(update.lines.values_list("amount", flat=True)) == [-13515, 33890]


def test_scale_between_two_custom_dates_is_paid_for_s18(org, clock, capture):
    """S18, the outside tester's repro (tidewater): Starter, Scale on a custom date, Starter again on a
    later one, the renewal on Starter. Before the fix the only invoices were Starter's, twice; now
    the days on Scale are charged: the upgrade's prorations less the downgrade's."""
    subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-starter", capture=capture)
    change(org, capture, "agents-scale", When.CUSTOM_DATE, custom_date=MID)
    clock.move_to(MID + timedelta(minutes=1))
    tick(capture)
    back = datetime(2021, 4, 9, tzinfo=UTC)  # 33 hours before the period's end
    change(org, capture, "agents-starter", When.CUSTOM_DATE, custom_date=back)
    clock.move_to(back + timedelta(minutes=1))
    tick(capture)
    clock.move_to(PERIOD_END + timedelta(minutes=1))
    tick(capture)
    assert live(org.tenant).plan.code == "agents-starter"
    # (49900 - 4900) * 1,414,800 / 2,678,400 up, then (4900 - 49900) * 118,800 / 2,678,400 back: the
    # 15 days on Scale cost 21774 = 45000 * 15/31 (rounded), the credit paying part of the renewal.
    assert invoices(org.tenant) == [
        ("subscription_create", 4900, "paid"),
        ("subscription_update", 23770, "paid"),
        ("subscription_update", -1996, "paid"),
        ("subscription_cycle", 4900, "paid"),
    ]
    renewal = Invoice.objects.get(tenant=org.tenant, billing_reason="subscription_cycle")
    assert (renewal.amount_due, renewal.credit_applied) == (2904, 1996)


@pytest.mark.parametrize(
    ("custom_date", "code", "message"),
    [
        (None, "date_required", "Pick the date the change applies on."),
        (START - timedelta(days=1), "date_in_past", "Pick a date in the future."),
        (START, "date_in_past", "Pick a date in the future."),
        (START + timedelta(days=367), "date_too_far", "Pick a date within the next year."),
        (START + timedelta(days=365, hours=1), "date_too_far", "Pick a date within the next year."),
    ],
    ids=["missing", "past", "now", "more-than-a-year", "a-year-and-an-hour"],
)
def test_invalid_custom_date_is_refused_and_changes_nothing(org, paid, capture, custom_date, code, message):
    """S18"""
    before = world(org.tenant)
    with pytest.raises(BusinessError) as exc:
        change(org, capture, "agents-scale", When.CUSTOM_DATE, custom_date=custom_date)
    assert (exc.value.code, exc.value.message, exc.value.status) == (code, message, 422)
    assert world(org.tenant) == before
    assert entitlements(tenant=org.tenant)["ai_agents"].upcoming is None


def test_a_second_scheduled_change_is_refused_while_one_is_pending(org, paid, capture):
    """S18, S19"""
    change(org, capture, "agents-scale", When.PERIOD_END)
    before = world(org.tenant)
    for when, date in [(When.PERIOD_END, None), (When.CUSTOM_DATE, START + timedelta(days=5))]:
        with pytest.raises(BusinessError) as exc:
            change(org, capture, "agents-starter", when, custom_date=date)
        assert (exc.value.code, exc.value.message) == (
            "change_already_scheduled",
            "A plan change is already scheduled. Cancel it first.",
        )
    assert world(org.tenant) == before
    assert entitlements(tenant=org.tenant)["ai_agents"].upcoming.plan_code == "agents-scale"


def test_undo_cancels_the_scheduled_change_and_releases_the_gateway_schedule(org, paid, clock, capture):
    """S19, S20"""
    scheduled = change(org, capture, "agents-scale", When.PERIOD_END).scheduled
    clock.move_to(START + timedelta(days=1))
    with capture(execute=True):
        undone = billing.scheduled_change_undo(tenant=org.tenant, change=scheduled, actor=org.founder)
    assert (undone.status, undone.resolved_at) == ("canceled", START + timedelta(days=1))
    assert entitlements(tenant=org.tenant)["ai_agents"].upcoming is None
    assert (
        LocalGatewayObject.objects.get(object_id=scheduled.gateway_schedule_id).data["status"] == "released"
    )
    assert gateway_subscription(paid)["schedule"] is None
    assert AuditEvent.objects.filter(tenant=org.tenant, action="subscription.change_canceled").count() == 1

    # Undoing again changes nothing.
    with capture(execute=True):
        billing.scheduled_change_undo(tenant=org.tenant, change=undone, actor=org.founder)
    assert AuditEvent.objects.filter(tenant=org.tenant, action="subscription.change_canceled").count() == 1

    # The period ends on the old plan.
    clock.move_to(PERIOD_END + timedelta(minutes=1))
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    assert live(org.tenant).plan.code == "agents-growth"
    assert ScheduledChange.objects.get(pk=scheduled.pk).status == "canceled"

    # A new change can be scheduled afterwards.
    again = change(org, capture, "agents-starter", When.PERIOD_END).scheduled
    assert (again.status, again.effective_at) == ("scheduled", datetime(2021, 5, 10, 9, 0, tzinfo=UTC))


def test_immediate_change_supersedes_a_pending_scheduled_change(org, paid, capture):
    """S18, S20, S21"""
    scheduled = change(org, capture, "agents-scale", When.PERIOD_END).scheduled
    change(org, capture, "agents-starter", When.IMMEDIATELY)
    assert live(org.tenant).plan.code == "agents-starter"
    assert ScheduledChange.objects.get(pk=scheduled.pk).status == "canceled"
    assert (
        LocalGatewayObject.objects.get(object_id=scheduled.gateway_schedule_id).data["status"] == "released"
    )
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.limits.session_limit, ent.upcoming) == (300, None)


def test_changing_to_the_same_plan_is_refused(org, paid, capture):
    """S18"""
    before = world(org.tenant)
    for when in (When.IMMEDIATELY, When.PERIOD_END):
        with pytest.raises(BusinessError) as exc:
            change(org, capture, "agents-growth", when)
        assert (exc.value.code, exc.value.message) == ("same_plan", "You are already on Growth.")
    assert world(org.tenant) == before


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("agents-enterprise", ("contact_sales", "Enterprise is contracted through our sales team.")),
        (
            "agents-trial",
            ("plan_not_self_serve", "The free trial is available once per tenant and cannot be bought."),
        ),
    ],
)
def test_changing_to_a_plan_that_is_not_self_serve_is_refused(org, paid, capture, code, error):
    """S16, S18: Enterprise is a Book a demo card; the trial is never bought."""
    before = world(org.tenant)
    with pytest.raises(BusinessError) as exc:
        change(org, capture, code, When.IMMEDIATELY)
    assert (exc.value.code, exc.value.message, exc.value.status) == (*error, 422)
    assert world(org.tenant) == before


def test_changing_plans_without_a_paid_subscription_is_refused(org, capture):
    """S18: on the trial the tenant subscribes (checkout) instead."""
    with pytest.raises(BusinessError) as exc:
        change(org, capture, "agents-scale", When.IMMEDIATELY)
    assert (exc.value.code, exc.value.message) == ("no_paid_subscription", "Subscribe to a paid plan first.")
    assert live(org.tenant).plan.code == "agents-trial"


def test_changing_plans_while_suspended_is_refused_with_the_overdue_message(org, paid, clock, capture):
    """S18, S28, S34"""
    clock.move_to(START + timedelta(days=3))
    with capture(execute=True):
        gateway().fail_next_payment(paid.gateway_subscription_id)
    clock.move_to(START + timedelta(days=11))
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    assert live(org.tenant).state == "suspended"
    before = world(org.tenant)
    for when in (When.IMMEDIATELY, When.PERIOD_END):
        with pytest.raises(BusinessError) as exc:
            change(org, capture, "agents-scale", when)
        assert (exc.value.code, exc.value.message, exc.value.status) == (
            "payment_overdue",
            f"{MSG_OVERDUE} Click Manage to settle the failed payment.",
            402,
        )
    assert world(org.tenant) == before


def test_changing_plans_past_the_grace_period_is_refused_before_the_sweeper_runs(org, paid, clock, capture):
    """S28, S34: past grace_until the database decides, as entitlements do."""
    clock.move_to(START + timedelta(days=3))
    with capture(execute=True):
        gateway().fail_next_payment(paid.gateway_subscription_id)
    clock.move_to(START + timedelta(days=10, minutes=1))
    assert live(org.tenant).state == "past_due"  # no sweeper yet
    before = world(org.tenant)
    with pytest.raises(BusinessError) as exc:
        change(org, capture, "agents-scale", When.IMMEDIATELY)
    assert (exc.value.code, exc.value.message) == (
        "payment_overdue",
        f"{MSG_OVERDUE} Click Manage to settle the failed payment.",
    )
    assert world(org.tenant) == before


def test_changing_plans_after_cancelling_is_refused(org, paid, capture):
    """S29"""
    with capture(execute=True):
        gateway().cancel_subscription(
            subscription_id=paid.gateway_subscription_id, at_period_end=True, idempotency_key="test-cancel"
        )
    with pytest.raises(BusinessError) as exc:
        change(org, capture, "agents-scale", When.IMMEDIATELY)
    assert (exc.value.code, exc.value.message) == (
        "subscription_canceled",
        "Your subscription is canceled. Resume it to change plans.",
    )
    assert live(org.tenant).plan.code == "agents-growth"


def test_a_refused_change_is_not_replayed_when_it_is_asked_again(org, paid, capture, settings):
    """Issue 7, defect 5 (failed before the fix: the key was built from the subscription's id and a
    count that a refusal leaves as it was, so the gateway replayed the refusal for 24 hours). Each
    attempt is a pending row written before the call, keyed by its id and a hash of its parameters
    behind the installation's id: the retry is a new attempt with a new key, and succeeds."""
    from billing_portal.models import GatewayAttempt

    settings.BILLING_INSTALLATION_ID = "alw-test-install"
    # A schedule made at the gateway outside Allowance (say, in Stripe's Dashboard) holds the
    # subscription: a new one is refused, as Stripe refuses it.
    outside = gateway().schedule_subscription_change(
        subscription_id=paid.gateway_subscription_id,
        price_id=plan("agents-starter").stripe_price_id,
        at=paid.current_period_end,
        idempotency_key="made-in-the-dashboard",
    )
    with pytest.raises(BusinessError) as refused:
        change(org, capture, "agents-scale", When.PERIOD_END)
    assert refused.value.code == "subscription_schedule_exists"

    gateway().release_schedule(outside.id, idempotency_key="released-in-the-dashboard")
    result = change(org, capture, "agents-scale", When.PERIOD_END)

    assert result.scheduled is not None
    assert (result.scheduled.to_plan.code, result.scheduled.status) == ("agents-scale", "scheduled")
    attempts = list(
        GatewayAttempt.objects.filter(tenant=org.tenant, operation="schedule_change").order_by("pk")
    )
    assert [(a.status, a.error_code, a.result_id) for a in attempts] == [
        ("failed", "subscription_schedule_exists", ""),
        ("succeeded", "", result.scheduled.gateway_schedule_id),
    ]
    keys = [
        row.data["key"]
        for row in LocalGatewayObject.objects.filter(object_type="idempotency").order_by("pk")
        if row.data["key"].startswith("alw-test-install:schedule_change:")
    ]
    assert keys == [a.idempotency_key for a in attempts]
    assert (
        attempts[0].idempotency_key
        == f"alw-test-install:schedule_change:{attempts[0].pk}:{attempts[0].params_hash[:16]}"
    )
    assert attempts[0].params_hash == attempts[1].params_hash  # the same request, asked twice


def test_an_upgrade_whose_payment_fails_is_not_granted_until_it_is_paid(org, paid, clock, capture):
    """S18, S21, S26; issue 7, defect 3 (failed before the fix: no payment_behavior was sent, so the
    gateway applied Scale and left the subscription past due while Scale's limits were granted for
    the whole grace period). The change waits, pending, for its invoice: the admin is told why, the
    plan and limits stay Growth's, and Scale applies once the invoice is paid (here: a new card in
    the portal)."""
    clock.move_to(START + timedelta(days=10))
    gateway().expire_card(paid.gateway_subscription_id)

    result = change(org, capture, "agents-scale", When.IMMEDIATELY)

    sub = live(org.tenant)
    assert (result.applied_now, result.pending_until) == (False, START + timedelta(days=10, hours=23))
    assert result.message == (
        "The payment for Scale did not go through, so you are still on Growth. Update your payment "
        "method (Manage): Scale applies as soon as it is paid, until 21 Mar 2021."
    )
    assert (sub.plan.code, sub.state, sub.payment_failed_at) == ("agents-growth", "active", None)
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.plan_code, ent.badge, ent.limits.session_limit) == (
        "agents-growth",
        "Active subscription",
        1500,
    )
    assert (
        AuditEvent.objects.filter(
            tenant=org.tenant, action="subscription.change_pending", data__to_plan="agents-scale"
        ).count()
        == 1
    )
    upgrade = Invoice.objects.get(tenant=org.tenant, billing_reason="subscription_update")
    assert upgrade.status == "open"

    clock.move_to(START + timedelta(days=10, hours=2))
    with capture(execute=True):
        gateway().set_card(customer_id(org.tenant), failing=False, last4="1881")

    sub = live(org.tenant)
    assert (sub.plan.code, sub.state) == ("agents-scale", "active")
    assert (
        entitlements(tenant=org.tenant)["ai_agents"].limits.session_limit
        == plan("agents-scale").session_limit
    )
    assert Invoice.objects.get(pk=upgrade.pk).status == "paid"


def test_an_upgrade_left_unpaid_expires_and_the_plan_stays(org, paid, clock, capture):
    """Issue 7, defect 3: after 23 hours the pending upgrade expires at the gateway, its invoice is
    voided, and nothing changes here (pending_update_expired is applied like any other update)."""
    clock.move_to(START + timedelta(days=10))
    gateway().expire_card(paid.gateway_subscription_id)
    change(org, capture, "agents-scale", When.IMMEDIATELY)

    with capture(execute=True):
        gateway().advance(START + timedelta(days=11))

    sub = live(org.tenant)
    assert (sub.plan.code, sub.state) == ("agents-growth", "active")
    assert Invoice.objects.get(tenant=org.tenant, billing_reason="subscription_update").status == "void"
    assert gateway().retrieve_subscription(sub.gateway_subscription_id).pending_update is None


def test_cancel_subscription_on_the_billing_tab_releases_a_scheduled_change_first(org, paid, clock, capture):
    """S20, S29; issue 7, defect 4 (failed before the fix: there was no Cancel subscription besides the
    portal's, and Stripe's portal refuses to cancel while a schedule holds the subscription). The
    schedule is released, then the subscription is canceled at the end of the period."""
    scheduled = change(org, capture, "agents-scale", When.PERIOD_END).scheduled
    assert scheduled is not None
    with pytest.raises(GatewayError) as portal:  # what the portal (and the API) answer meanwhile
        gateway().cancel_subscription(
            subscription_id=paid.gateway_subscription_id, at_period_end=True, idempotency_key="portal"
        )
    assert portal.value.code == "subscription_schedule_managed"

    with capture(execute=True):
        canceled = billing.subscription_cancel(tenant=org.tenant, product=paid.product, actor=org.founder)

    assert (canceled.state, canceled.ends_at) == ("canceled", PERIOD_END)
    assert ScheduledChange.objects.get(pk=scheduled.pk).status == "canceled"
    at_gateway = gateway().retrieve_subscription(paid.gateway_subscription_id)
    assert (at_gateway.cancel_at_period_end, at_gateway.schedule_id) == (True, "")
    assert gateway().retrieve_schedule(scheduled.gateway_schedule_id).status == "released"
    assert entitlements(tenant=org.tenant)["ai_agents"].badge == "Canceled subscription"


def test_cancel_subscription_says_the_scheduled_change_is_canceled_too(org, paid, clock, capture, client_for):
    """S20, S29: the confirmation says a scheduled change will not happen; once canceled, the
    answer says it did not, beside until when the plan stays active."""
    from django.contrib.messages import get_messages

    change(org, capture, "agents-scale", When.PERIOD_END)
    with capture(execute=True):
        done = client_for(org.founder).post(f"/t/{org.tenant.slug}/billing/cancel/", {"product": "ai_agents"})
    assert done.status_code == 302
    assert [m.message for m in get_messages(done.wsgi_request)] == [
        f"Your Growth subscription is canceled. It stays active until {PERIOD_END:%-d %b %Y}. "
        f"The change to Scale on {PERIOD_END:%-d %b %Y} is canceled too."
    ]


def test_canceling_an_upcoming_change_after_its_date_is_refused_and_shows_what_applied(
    org, paid, clock, capture
):
    """S19, S20; issue 7, defect 8 (failed before the fix: Cancel tried to release a schedule whose
    new price had already applied at the gateway, and answered with the gateway's refusal). Past the
    date, with the webhook late, nothing is released: the subscription is re-read (Scale) and the
    click is refused with the Upcoming card's sentence."""
    on = START + timedelta(days=5)
    scheduled = change(org, capture, "agents-scale", When.CUSTOM_DATE, custom_date=on).scheduled
    assert scheduled is not None
    clock.move_to(on + timedelta(hours=1))
    gateway().advance(on + timedelta(hours=1))  # the schedule applied at the gateway; no webhook yet
    assert live(org.tenant).plan.code == "agents-growth"

    with capture(execute=True), pytest.raises(BusinessError) as refused:
        billing.scheduled_change_undo(tenant=org.tenant, change=scheduled, actor=org.founder)

    assert (refused.value.code, refused.value.status, refused.value.message) == (
        "change_applied",
        409,
        "The change to Scale applied on 15 Mar 2021: it can no longer be canceled.",
    )
    assert live(org.tenant).plan.code == "agents-scale"
    assert ScheduledChange.objects.get(pk=scheduled.pk).status == "applied"
    assert gateway().retrieve_schedule(scheduled.gateway_schedule_id).status == "completed"
