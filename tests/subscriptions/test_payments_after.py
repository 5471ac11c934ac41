"""What a real deployment meets after the first payment (issue 7): a payment the bank asks the
customer to confirm (SCA), retries that run out, a customer deleted at the gateway, refunds and
credit notes, disputes. Each through the local gateway, which does what Stripe does, and the real
webhook endpoint. S26-S28, S33, S34."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import stripe
from django.core import mail
from django.test import Client
from django.utils import timezone

from billing_portal import selectors as billing_selectors
from billing_portal import services as billing
from billing_portal.gateway import factory
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.models import BillingCustomer, Invoice, WebhookEvent
from plans.factories import plan
from plans.selectors import MSG_ENDED, MSG_OVERDUE, entitlements
from tenants.factories import UserFactory
from tenants.models import AuditEvent
from tests.subscriptions.helpers import assert_webhooks_applied, customer_id, gateway, live, subscribe

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid(org, capture):
    return subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-growth", capture=capture)


def _card_behaviour(org, behaviour: str) -> None:
    """The customer's default card (Checkout's, moved to the customer) starts to behave so."""
    customer = LocalGatewayObject.objects.get(object_id=customer_id(org.tenant)).data
    card = LocalGatewayObject.objects.get(object_id=customer["invoice_settings"]["default_payment_method"])
    card.data["metadata"]["local_card_behaviour"] = behaviour
    card.save()


# --- SCA ------------------------------------------------------------------------------------------------


def test_a_renewal_the_bank_asks_to_confirm_shows_on_the_billing_tab_until_it_is_confirmed(
    org, paid, clock, capture, client_for
):
    """invoice.payment_action_required: the card says the payment needs the customer's
    confirmation, with the invoice's hosted page; confirmed there, it is paid and the notice goes."""
    _card_behaviour(org, "requires_action")
    renewal_at = paid.current_period_end
    clock.move_to(renewal_at + timedelta(minutes=1))
    with capture(execute=True):
        gateway().advance(timezone.now())
    assert_webhooks_applied(org.tenant)

    renewal = Invoice.objects.get(tenant=org.tenant, billing_reason="subscription_cycle")
    assert (renewal.status, renewal.needs_confirmation) == ("open", True)
    [notice] = billing_selectors.payment_notices(tenant=org.tenant)
    assert notice.confirm is True
    assert (
        notice.message == f"Your bank asks you to confirm the payment of $199.00 (invoice {renewal.number})."
    )
    assert live(org.tenant).state == "past_due"
    page = client_for(org.founder).get(f"/t/{org.tenant.slug}/billing/").content.decode()
    assert notice.message in page
    assert f'href="{renewal.hosted_invoice_url}"' in page
    assert renewal.hosted_invoice_url == f"/dev/billing/invoices/{renewal.gateway_invoice_id}/"
    member_page = client_for(org.member).get(f"/t/{org.tenant.slug}/billing/").content.decode()
    assert "Ask your administrator to confirm it." in member_page

    with capture(execute=True):
        gateway().confirm_payment(renewal.gateway_invoice_id)

    renewal.refresh_from_db()
    assert (renewal.status, renewal.needs_confirmation) == ("paid", False)
    assert billing_selectors.payment_notices(tenant=org.tenant) == []
    assert live(org.tenant).state == "active"


def test_the_local_hosted_invoice_page_opens_for_admins_and_finance_who_see_its_link(
    org, paid, clock, capture, client_for, settings
):
    """The invoice page shows finance its "Hosted invoice" link: the local stand-in of Stripe's
    hosted invoice page (which opens for whoever holds the link) opens for them too, and still for
    no member without a billing role, nor anyone outside the tenant."""
    from tenants.factories import MembershipFactory
    from tenants.models import Role

    settings.DEBUG = True  # the stand-in's pages exist only then
    _card_behaviour(org, "requires_action")
    clock.move_to(paid.current_period_end + timedelta(minutes=1))
    with capture(execute=True):
        gateway().advance(timezone.now())
    renewal = Invoice.objects.get(tenant=org.tenant, billing_reason="subscription_cycle")
    finance = MembershipFactory(tenant=org.tenant, role=Role.FINANCE, user=UserFactory()).user
    detail = client_for(finance).get(f"/t/{org.tenant.slug}/invoices/{renewal.pk}/").content.decode()
    assert f'href="{renewal.hosted_invoice_url}"' in detail

    assert client_for(org.founder).get(renewal.hosted_invoice_url).status_code == 200
    assert client_for(finance).get(renewal.hosted_invoice_url).status_code == 200
    assert client_for(org.member).get(renewal.hosted_invoice_url).status_code == 404
    assert client_for(UserFactory()).get(renewal.hosted_invoice_url).status_code == 404


# --- dunning exhausted ----------------------------------------------------------------------------------


@pytest.fixture
def exhausted(settings):
    def configure(setting: str) -> None:
        settings.LOCAL_GATEWAY_WHEN_RETRIES_EXHAUSTED = setting
        factory.reset()

    yield configure
    factory.reset()


def test_retries_exhausted_and_marked_unpaid_suspend_and_settling_the_balance_restores(
    org, exhausted, clock, capture
):
    """S28, S34: whatever the account's retry settings, the subscription ends in a state we map —
    unpaid: suspended, refused with the spec's words; a new card in the portal pays the open invoice
    (Stripe no longer retries an unpaid subscription) and restores access."""
    exhausted("unpaid")
    paid = subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-growth", capture=capture)
    _card_behaviour(org, "declines")
    renewal_at = paid.current_period_end
    for days in (0, 3, 8, 15):  # the first attempt, then the retries 3, 5 and 7 days apart
        clock.move_to(renewal_at + timedelta(days=days, minutes=1))
        with capture(execute=True):
            gateway().advance(timezone.now())
            billing.billing_tick(now=timezone.now())

    at_gateway = gateway().retrieve_subscription(paid.gateway_subscription_id)
    assert at_gateway.status == "unpaid"
    sub = live(org.tenant)
    assert sub.state == "suspended"
    assert entitlements(tenant=org.tenant)["ai_agents"].refusal.message == MSG_OVERDUE

    with capture(execute=True):
        gateway().set_card(customer_id(org.tenant), failing=False, last4="1881")

    assert gateway().retrieve_subscription(paid.gateway_subscription_id).status == "active"
    sub = live(org.tenant)
    assert (sub.state, sub.grace_until) == ("active", None)
    assert list(
        Invoice.objects.filter(tenant=org.tenant).order_by("issued_at").values_list("status", flat=True)
    ) == [
        "paid",
        "paid",
    ]


def test_retries_exhausted_and_canceled_end_the_subscription(org, exhausted, clock, capture):
    """S33: with the account set to cancel, the subscription ends: Expired subscription, the spec's
    words; the tenant subscribes again to come back."""
    exhausted("cancel")
    paid = subscribe(tenant=org.tenant, actor=org.founder, plan_code="agents-growth", capture=capture)
    _card_behaviour(org, "declines")
    for days in (0, 3, 8, 15):
        clock.move_to(paid.current_period_end + timedelta(days=days, minutes=1))
        with capture(execute=True):
            gateway().advance(timezone.now())

    assert gateway().retrieve_subscription(paid.gateway_subscription_id).status == "canceled"
    ent = entitlements(tenant=org.tenant)["ai_agents"]
    assert (ent.state, ent.badge, ent.refusal.message) == ("expired", "Expired subscription", MSG_ENDED)


# --- customer.deleted -----------------------------------------------------------------------------------


def test_a_customer_deleted_at_the_gateway_is_forgotten_and_the_next_checkout_makes_a_new_one(
    org, paid, capture
):
    old = customer_id(org.tenant)
    with capture(execute=True):
        gateway().delete_customer(old)

    assert not BillingCustomer.objects.filter(tenant=org.tenant).exists()
    assert WebhookEvent.objects.get(type="customer.deleted").status == "processed"
    assert entitlements(tenant=org.tenant)["ai_agents"].state == "expired"  # its subscription went with it
    assert AuditEvent.objects.filter(tenant=org.tenant, action="billing.customer_deleted").count() == 1

    url = billing.checkout_start(
        tenant=org.tenant, plan=plan("agents-starter"), actor=org.founder, success_url="/", cancel_url="/"
    )

    new = customer_id(org.tenant)
    assert new != old
    session = gateway().retrieve_checkout_session(url.rstrip("/").rsplit("/", 1)[-1])
    assert session.customer_id == new


# --- refunds, credit notes, disputes ------------------------------------------------------------------


def test_a_refund_and_a_credit_note_show_on_the_invoice_mirror(org, paid, capture, client_for):
    invoice = Invoice.objects.get(tenant=org.tenant)
    assert (invoice.amount_refunded, invoice.amount_credited, invoice.money_back) == (0, 0, "")

    with capture(execute=True):
        gateway().issue_credit_note(invoice.gateway_invoice_id, amount=5000, memo="Goodwill")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_credited, invoice.money_back) == ("paid", 5000, "Credited")

    with capture(execute=True):
        refunded = gateway().refund_invoice(invoice.gateway_invoice_id, idempotency_key="staff-refund-1")
    invoice.refresh_from_db()
    assert refunded == 19900
    assert (invoice.status, invoice.amount_refunded, invoice.money_back) == ("paid", 19900, "Refunded")
    # Again with the same key: the same answer. With a new key: nothing left to refund (Stripe's
    # charge_already_refunded, which the Stripe gateway skips), so 0 refunded now.
    assert gateway().refund_invoice(invoice.gateway_invoice_id, idempotency_key="staff-refund-1") == 19900
    with capture(execute=True):
        assert gateway().refund_invoice(invoice.gateway_invoice_id, idempotency_key="staff-refund-2") == 0
    assert gateway().invoice_refunded(invoice.gateway_invoice_id) == 19900
    assert WebhookEvent.objects.get(type="charge.refunded").status == "processed"

    client = client_for(org.founder)
    detail = client.get(f"/t/{org.tenant.slug}/invoices/{invoice.pk}/").content.decode()
    assert 'data-testid="amount-refunded">$199.00<' in detail
    assert 'data-testid="amount-credited">$50.00<' in detail
    listing = client.get(f"/t/{org.tenant.slug}/invoices/").content.decode()
    assert 'data-testid="money-back">Refunded $199.00<' in listing


def test_a_credit_note_goes_to_the_customer_balance_and_the_renewal_is_paid_partly_from_it(
    org, paid, clock, capture, client_for
):
    """D05 (finance reviews invoices). issue_credit_note credits the customer's balance, as Stripe's
    credit_amount does (https://docs.stripe.com/api/credit_notes/create): the balance goes to -$50,
    and the renewal is finalized with that credit applied: $149.00 charged to the card, $50.00 paid
    from the credit balance, which the invoice pages show. Failed before the fix: the balance stayed
    0 and the renewal charged $199.00."""
    invoice = Invoice.objects.get(tenant=org.tenant)
    with capture(execute=True):
        note = gateway().issue_credit_note(invoice.gateway_invoice_id, amount=5000, memo="Goodwill")

    customer = LocalGatewayObject.objects.get(object_id=customer_id(org.tenant)).data
    assert customer["balance"] == -5000
    txn = LocalGatewayObject.objects.get(object_type="customer_balance_transaction").data
    assert (txn["type"], txn["amount"], txn["ending_balance"], txn["credit_note"]) == (
        "credit_note",
        -5000,
        -5000,
        note["id"],
    )
    invoice.refresh_from_db()
    assert (invoice.amount_paid, invoice.amount_credited, invoice.money_back) == (19900, 5000, "Credited")

    clock.move_to(paid.current_period_end + timedelta(minutes=1))
    with capture(execute=True):
        billing.billing_tick(now=timezone.now())
    assert_webhooks_applied(org.tenant)

    renewal = Invoice.objects.get(tenant=org.tenant, billing_reason="subscription_cycle")
    assert (renewal.status, renewal.total, renewal.amount_due, renewal.amount_paid) == (
        "paid",
        19900,
        14900,
        14900,
    )
    assert (renewal.starting_balance, renewal.ending_balance, renewal.credit_applied) == (-5000, 0, 5000)
    charges = LocalGatewayObject.objects.filter(object_type="charge", customer_id=customer_id(org.tenant))
    assert sorted(row.data["amount"] for row in charges) == [14900, 19900]
    assert LocalGatewayObject.objects.get(object_id=customer_id(org.tenant)).data["balance"] == 0
    client = client_for(org.founder)
    detail = client.get(f"/t/{org.tenant.slug}/invoices/{renewal.pk}/").content.decode()
    assert 'data-testid="credit-applied">$50.00<' in detail
    listing = client.get(f"/t/{org.tenant.slug}/invoices/").content.decode()
    assert 'data-testid="credit-applied">$50.00 paid from credit<' in listing


def test_a_dispute_is_audited_and_every_staff_member_is_emailed_once(org, paid, capture):
    UserFactory(email="ops@allowance.test", is_staff=True)
    UserFactory(email="gone@allowance.test", is_staff=True, is_active=False)
    invoice = Invoice.objects.get(tenant=org.tenant)
    charge = LocalGatewayObject.objects.get(object_type="charge", customer_id=customer_id(org.tenant))
    mail.outbox.clear()

    with capture(execute=True):
        dispute = gateway().dispute_charge(charge.object_id, reason="fraudulent")

    audit = AuditEvent.objects.get(tenant=org.tenant, action="payment.disputed")
    assert audit.data == {
        "dispute": dispute.id,
        "charge": charge.object_id,
        "invoice": invoice.gateway_invoice_id,
        "amount": 19900,
        "currency": "usd",
        "reason": "fraudulent",
    }
    staff_mail = [(m.to[0], m.subject) for m in mail.outbox if m.to[0].endswith("@allowance.test")]
    assert staff_mail == [("ops@allowance.test", "Payment disputed: Initech, $199.00")]
    assert WebhookEvent.objects.get(type="charge.dispute.created").status == "processed"
    # Delivered again (Stripe retries): a duplicate, nothing more.
    event = LocalGatewayObject.objects.get(object_type="event", data__type="charge.dispute.created").data
    assert event["data"]["object"]["id"] == dispute.id
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, "whsec_test_secret")
    with capture(execute=True):
        again = Client().post(
            "/billing/webhooks/stripe/",
            data=payload,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=header,
        )
    assert again.json()["duplicate"] is True
    assert AuditEvent.objects.filter(tenant=org.tenant, action="payment.disputed").count() == 1
    assert len([m for m in mail.outbox if m.to[0] == "ops@allowance.test"]) == 1
