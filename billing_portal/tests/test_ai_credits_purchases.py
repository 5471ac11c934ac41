"""Subscribe Now and Buy extra credits on the AI Credits page, confirmed with the emailed security
code (C09 to C15, C17, C19, C22 to C24): through the views, the services and the local gateway, with
the webhooks the gateway sends run as a commit would run them (`live()`)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.core import mail
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from billing_portal import services
from billing_portal.gateway.base import GatewayError
from billing_portal.models import ExtraPackPurchase, GatewayAttempt, Invoice
from billing_portal.tests.conftest import customer_id_of, live_sub, local_gateway
from credits import selectors as credit_selectors
from credits.models import ExtraPack, Grant, Source
from credits.tests.helpers import spend_through_api
from plans.factories import SubscriptionFactory, plan
from plans.offers import (
    MSG_BILLING_OUTSIDE,
    MSG_PACK_ASK_ADMIN,
    MSG_PACK_CONTRACT,
    MSG_PACK_PLUS_ONLY,
    MSG_PACK_TRIAL,
    msg_extra_pack_active,
    msg_pack_balance_sufficient,
)
from tenants.errors import BusinessError
from tenants.services import api_key_create

pytestmark = pytest.mark.django_db

K = 1000
SUBSCRIBE = "/t/acme/ai-credits/plans/credits-plus/subscribe/"
PACK = "/t/acme/ai-credits/extra-pack/"
PAGE = "/t/acme/marketplace/ai-credits/"


def emailed_code() -> str:
    found = re.search(r"\b(\d{6})\b", mail.outbox[-1].body)
    assert found is not None
    return found.group(1)


def confirm(client, live, url: str, **data):
    """Ask for the code (the email goes out on commit), then confirm with it."""
    with live():
        sent = client.post(url, {"action": "send", **data}, HTTP_HX_REQUEST="true")
    assert 'data-testid="code-sent"' in sent.content.decode(), sent.content.decode()
    with live():
        return client.post(url, {"action": "confirm", "code": emailed_code(), **data}, HTTP_HX_REQUEST="true")


def set_card(tenant, card: str) -> None:
    local_gateway().set_card(customer_id_of(tenant), card=card, last4="4242")


def plus_grants(tenant) -> list[Grant]:
    return list(Grant.objects.filter(tenant=tenant, source__in=[Source.PLAN_INCLUDED, Source.PLAN_RENEWAL]))


def gateway_subscriptions(tenant, price: str = "price_local_credits_plus") -> list:
    return [
        s
        for s in local_gateway().list_subscriptions(customer_id=customer_id_of(tenant))
        if s.price_id == price
    ]


@pytest.fixture
def on_plus(subscribed, admin, client_for, live):
    """Acme (paying AI Agents, its card saved) subscribed to AI Plus with Subscribe Now."""
    tenant = subscribed.tenant
    answer = confirm(client_for(admin), live, SUBSCRIBE)
    assert answer.headers["HX-Redirect"] == PAGE
    return tenant


@pytest.fixture
def spent(on_plus, admin):
    """C12: extra credits are for a balance that runs low: 1,600 of the 2,000 credits (80%) used."""
    spend_through_api(on_plus, admin, 1600)
    return on_plus


# --- Subscribe Now ----------------------------------------------------------------------------------


def test_c09_c11_c23_subscribe_now_with_the_code_makes_plus_at_once_with_its_2000_credits(
    subscribed, admin, client_for, live
):
    tenant, client = subscribed.tenant, client_for(admin)
    dialog = client.get(SUBSCRIBE, HTTP_HX_REQUEST="true").content.decode()
    assert "Subscribe to AI Plus" in dialog
    assert 'data-testid="send-code"' in dialog

    answer = confirm(client, live, SUBSCRIBE)

    assert answer.headers["HX-Redirect"] == PAGE
    sub = live_sub(tenant, "ai_credits")
    assert (sub.plan.code, sub.state) == ("credits-plus", "active")
    [granted] = plus_grants(tenant)
    assert granted.amount == 2000 * K
    assert granted.reference == f"invoice:{gateway_subscriptions(tenant)[0].latest_invoice_id}"
    page = client.get(PAGE).content.decode()
    assert 'data-testid="plan-name">AI Plus<' in page
    assert credit_selectors.figures(tenant_id=tenant.pk).balance >= 2000 * K
    assert len(gateway_subscriptions(tenant)) == 1
    # The webhook that ran on commit applied the same facts: nothing twice.
    assert [g.pk for g in plus_grants(tenant)] == [granted.pk]


def test_c05_c11_the_subscriber_is_told_before_and_after_that_the_ai_free_credits_left_end(
    subscribed, admin, client_for, live
):
    """AI Plus replaces AI Free's credits (README): with 27.5 of AI Free's 50 credits left, the dialog
    says they end before the code is asked for and confirmed, and the success message says they
    ended; the balance is then AI Plus's 2,000 alone."""
    tenant, client = subscribed.tenant, client_for(admin)
    services.free_plan_credits_grant(subscription=live_sub(tenant, "ai_credits"))  # as at sign-up
    spend_through_api(tenant, admin, 22)
    secret = api_key_create(tenant=tenant, name="reviews", actor=admin).secret
    reviews = Client().post(
        "/api/v1/credits/consume",
        json.dumps({"feature": "ai_review", "quantity": 5, "idempotency_key": "reviews"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert reviews.status_code == 201, reviews.content
    assert credit_selectors.figures(tenant_id=tenant.pk).balance == 27500
    notice = "Your 27.5 remaining AI Free credits end when AI Plus starts."

    dialog = client.get(SUBSCRIBE, HTTP_HX_REQUEST="true").content.decode()
    assert f'<p class="flash warning" data-testid="credits-ending">{notice}</p>' in dialog
    with live():
        sent = client.post(SUBSCRIBE, {"action": "send"}, HTTP_HX_REQUEST="true").content.decode()
    assert notice in sent  # still there beside the code field
    with live():
        done = client.post(SUBSCRIBE, {"action": "confirm", "code": emailed_code()}, HTTP_HX_REQUEST="true")

    assert done.headers["HX-Redirect"] == PAGE
    assert [m.message for m in get_messages(done.wsgi_request)] == [
        "You are now on AI Plus. Your credits are ready to use. "
        "Your 27.5 remaining AI Free credits ended when AI Plus started."
    ]
    assert credit_selectors.figures(tenant_id=tenant.pk).balance == 2000 * K
    again = client.get(SUBSCRIBE, HTTP_HX_REQUEST="true").content.decode()
    assert 'data-testid="credits-ending"' not in again  # on AI Plus: nothing of another plan is left


def test_c10_a_wrong_code_subscribes_nothing_and_a_reused_code_is_refused(
    subscribed, admin, client_for, live
):
    client = client_for(admin)
    with live():
        client.post(SUBSCRIBE, {"action": "send"}, HTTP_HX_REQUEST="true")
    code = emailed_code()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    refused = client.post(SUBSCRIBE, {"action": "confirm", "code": wrong}, HTTP_HX_REQUEST="true")

    assert "That security code is not right. 4 tries left." in refused.content.decode()
    assert gateway_subscriptions(subscribed.tenant) == []
    with live():
        client.post(SUBSCRIBE, {"action": "confirm", "code": code}, HTTP_HX_REQUEST="true")
    again = client.post(SUBSCRIBE, {"action": "confirm", "code": code}, HTTP_HX_REQUEST="true")
    assert "You are already on AI Plus." in again.content.decode()  # a double submit: one subscription
    assert len(gateway_subscriptions(subscribed.tenant)) == 1


def test_c11_without_a_saved_card_subscribe_now_opens_the_hosted_checkout(
    subscribed, admin, client_for, live
):
    tenant = subscribed.tenant
    from billing_portal.gateway.store import LocalGatewayObject

    row = LocalGatewayObject.objects.get(object_id=customer_id_of(tenant))
    row.data["invoice_settings"]["default_payment_method"] = None
    row.save()

    answer = confirm(client_for(admin), live, SUBSCRIBE)

    assert answer.headers["HX-Redirect"].startswith("/dev/billing/checkout/cs_")
    assert gateway_subscriptions(tenant) == []


def test_a_declined_card_is_a_clear_error_and_grants_nothing(subscribed, admin, client_for, live):
    tenant = subscribed.tenant
    set_card(tenant, "declines")

    answer = confirm(client_for(admin), live, SUBSCRIBE)

    assert "Your card was declined." in answer.content.decode()
    assert live_sub(tenant, "ai_credits").plan.code == "credits-free"
    assert plus_grants(tenant) == [] or all(g.amount != 2000 * K for g in plus_grants(tenant))
    assert [s.status for s in gateway_subscriptions(tenant)] == ["canceled"]


def test_c10_after_a_declined_card_the_dialog_asks_for_a_new_code(subscribed, admin, client_for, live):
    """C10: the code confirmed the purchase and is spent even when the card is then declined. The
    dialog says why and offers to email a new code, instead of keeping the spent code's field whose
    next Confirm could only answer "Ask for a security code first"."""
    set_card(subscribed.tenant, "declines")
    answer = confirm(client_for(admin), live, SUBSCRIBE).content.decode()
    assert "Your card was declined." in answer
    assert 'data-testid="send-code"' in answer
    assert 'data-testid="security-code"' not in answer


def test_3d_secure_sends_the_admin_to_the_hosted_invoice_page_and_plus_starts_once_paid(
    subscribed, admin, client_for, live
):
    tenant = subscribed.tenant
    set_card(tenant, "requires_action")
    client = client_for(admin)

    answer = confirm(client, live, SUBSCRIBE)

    [pending] = gateway_subscriptions(tenant)
    assert answer.headers["HX-Redirect"] == f"/dev/billing/invoices/{pending.latest_invoice_id}/"
    assert live_sub(tenant, "ai_credits").plan.code == "credits-free"
    # A second click (a new code, a minute later) goes to the same page; no second subscription.
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        again = confirm(client, live, SUBSCRIBE)
    assert again.headers["HX-Redirect"] == answer.headers["HX-Redirect"]
    assert len(gateway_subscriptions(tenant)) == 1
    with live():
        local_gateway().confirm_payment(pending.latest_invoice_id)
    assert live_sub(tenant, "ai_credits").plan.code == "credits-plus"
    assert [g.amount for g in plus_grants(tenant)] == [2000 * K]


def test_c19_on_the_free_trial_subscribe_now_is_refused_with_the_cards_sentence(
    trial_tenant, admin, client_for
):
    page = client_for(admin).get(SUBSCRIBE, HTTP_HX_REQUEST="true").content.decode()
    assert "During the free trial you can only register interest in AI Plus." in page
    assert 'data-testid="send-code"' not in page


def test_c19_the_refused_dialog_shows_no_price_nor_card_sentence(trial_tenant, admin, client_for):
    """A refused or free plan's dialog (reachable only by its URL) shows the refusal, not a price:
    AI Free is not "$0.00 / none, 50 credits each month", and no card is charged."""
    client = client_for(admin)
    for code in ("credits-plus", "credits-free", "credits-ultra"):
        response = client.get(f"/t/acme/ai-credits/plans/{code}/subscribe/", HTTP_HX_REQUEST="true")
        page = response.content.decode()
        assert response.status_code == 200, code
        assert f'<h2 id="dialog-title">Subscribe to {plan(code).name}</h2>' in page, code
        assert 'data-testid="send-code"' not in page, code  # refused: nothing to confirm
        assert "Your saved card is charged now" not in page, code
        assert "$0.00" not in page, code
        assert "each month" not in page, code


@pytest.mark.parametrize("persona", ["member", "finance"])
def test_c17_only_administrators_reach_the_purchase_dialogs(subscribed, persona, request, client_for):
    client = client_for(request.getfixturevalue(persona))
    assert client.get(SUBSCRIBE).status_code == 403
    assert client.post(PACK, {"action": "send"}).status_code == 403
    assert mail.outbox == [] or all("security code" not in m.subject for m in mail.outbox)


def _refused_without_a_code(client, url: str, data: dict) -> None:
    sent_before = len(mail.outbox)
    dialog = client.post(url, data, HTTP_HX_REQUEST="true").content.decode()
    assert MSG_BILLING_OUTSIDE in dialog
    assert 'data-testid="send-code"' not in dialog
    assert len(mail.outbox) == sent_before  # no security code was emailed


def test_s03_with_billing_outside_allowance_subscribe_now_is_not_offered(
    subscribed, admin, client_for, settings
):
    """BILLING_TAB_ENABLED off: the plan-offer rule refuses Subscribe Now, so the page, the dialog
    and the service agree; interest can still be registered."""
    settings.BILLING_TAB_ENABLED = False
    client = client_for(admin)
    assert MSG_BILLING_OUTSIDE in client.get(PAGE).content.decode()
    _refused_without_a_code(client, SUBSCRIBE, {"action": "send"})
    assert gateway_subscriptions(subscribed.tenant) == []


def test_s03_with_billing_outside_allowance_no_extra_pack_is_sold(
    on_plus, spent, admin, client_for, settings
):
    settings.BILLING_TAB_ENABLED = False
    client = client_for(admin)
    page = client.get(PAGE).content.decode()
    assert 'data-testid="buy-extra-credits"' not in page
    _refused_without_a_code(client, PACK, {"action": "send", "pack": "extra-500"})
    assert not ExtraPackPurchase.objects.filter(tenant=on_plus).exists()


# --- extra packs --------------------------------------------------------------------------------


def test_a_pack_payment_accepted_but_not_settled_is_not_announced_as_added(
    on_plus, spent, admin, client_for, live, monkeypatch
):
    """A payment method that settles later answers the charge with an invoice still open: the buyer
    is not told credits were added; the pack is granted by invoice.paid when it settles (here the
    stand-in settles it at once, and its webhook runs on commit)."""
    from dataclasses import replace

    from billing_portal.gateway.local import LocalGateway

    charge = LocalGateway.charge_one_off

    def settles_later(self, **kwargs):
        return replace(charge(self, **kwargs), status="open")

    monkeypatch.setattr(LocalGateway, "charge_one_off", settles_later)
    answer = confirm(client_for(admin), live, PACK, pack="extra-500")

    assert answer.headers["HX-Redirect"] == PAGE
    shown = [m.message for m in get_messages(answer.wsgi_request)]
    assert shown == [services.MSG_PACK_PROCESSING]
    [pack] = Grant.objects.filter(tenant=on_plus, source=Source.EXTRA_PACK)  # by the webhook, once
    assert pack.amount == 500 * K


@pytest.fixture
def processing(monkeypatch):
    """The stand-in's charge as a payment method that settles later answers it (Stripe's
    `invoices.pay` with the payment processing): the invoice finalized and left open, not attempted.
    Returns a function that gives the charged purchase's invoice id."""
    from billing_portal.gateway.local import LocalGateway
    from billing_portal.gateway.local.invoices import Collected

    charge = LocalGateway.charge_one_off

    def charged_later(self, **kwargs):
        with monkeypatch.context() as m:
            m.setattr(LocalGateway, "_attempt", lambda *args, **kw: Collected.NOT_ATTEMPTED)
            with pytest.raises(GatewayError):  # the stand-in's answer to an unpaid charge
                charge(self, **kwargs)
        purchase = kwargs["metadata"]["extra_pack_purchase"]
        invoices = self.list_invoices(customer_id=kwargs["customer_id"])
        return next(inv for inv in invoices if inv.metadata.get("extra_pack_purchase") == purchase)

    monkeypatch.setattr(LocalGateway, "charge_one_off", charged_later)
    return lambda: ExtraPackPurchase.objects.get().gateway_invoice_id


def _in_flight_buy(client):
    """A second buy while the first payment processes (any code: the rule comes first)."""
    refused = client.post(PACK, {"action": "confirm", "pack": "extra-500", "code": "123456"})
    assert services.MSG_PACK_IN_FLIGHT in refused.content.decode()


def test_a_processing_pack_payment_blocks_a_second_buy_is_never_voided_and_is_granted_once_paid(
    on_plus, spent, admin, client_for, live, processing, monkeypatch
):
    client = client_for(admin)
    answer = confirm(client, live, PACK, pack="extra-500")
    assert [m.message for m in get_messages(answer.wsgi_request)] == [services.MSG_PACK_PROCESSING]
    invoice_id = processing()
    monkeypatch.undo()  # the stand-in charges as usual again

    _in_flight_buy(client)  # the next buy settles the open purchases first: this one is left alone

    assert local_gateway().retrieve_invoice(invoice_id).status == "open"
    assert ExtraPackPurchase.objects.get().status == ExtraPackPurchase.Status.PROCESSING
    assert not packs(on_plus)
    with live():
        local_gateway().pay_invoice(invoice_id, idempotency_key="settled")  # invoice.paid
    [pack] = packs(on_plus)
    assert (pack.amount, pack.reference) == (500 * K, f"invoice:{invoice_id}")
    assert ExtraPackPurchase.objects.get().status == ExtraPackPurchase.Status.PAID


def test_a_processing_pack_payment_that_fails_is_voided_and_frees_the_next_buy(
    on_plus, spent, admin, client_for, live, processing, monkeypatch
):
    client = client_for(admin)
    confirm(client, live, PACK, pack="extra-500")
    invoice_id = processing()
    monkeypatch.undo()
    set_card(on_plus, "declines")

    with live(), pytest.raises(GatewayError):
        local_gateway().pay_invoice(invoice_id, idempotency_key="failed")  # invoice.payment_failed

    assert local_gateway().retrieve_invoice(invoice_id).status == "void"
    assert ExtraPackPurchase.objects.get().status == ExtraPackPurchase.Status.FAILED
    assert not packs(on_plus)
    set_card(on_plus, "pays")
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):  # a new code may be sent
        confirm(client, live, PACK, pack="extra-500")
    assert len(packs(on_plus)) == 1


def test_c12_c13_buy_extra_credits_charges_once_and_grants_the_pack_for_30_days(
    on_plus, spent, admin, client_for, live
):
    client = client_for(admin)
    assert 'data-testid="buy-extra-credits"' in client.get(PAGE).content.decode()

    answer = confirm(client, live, PACK, pack="extra-500")

    assert answer.headers["HX-Redirect"] == PAGE
    [pack] = Grant.objects.filter(tenant=on_plus, source=Source.EXTRA_PACK)
    [purchase] = ExtraPackPurchase.objects.filter(tenant=on_plus)
    assert (pack.amount, pack.reference) == (500 * K, f"invoice:{purchase.gateway_invoice_id}")
    assert pack.expires_at - pack.valid_from == timedelta(days=30)
    assert purchase.status == ExtraPackPurchase.Status.PAID
    assert GatewayAttempt.objects.filter(tenant=on_plus, operation="charge_one_off").count() == 1


def test_c14_a_second_pack_is_refused_while_one_is_active_and_c15_offered_again_after_expiry(
    on_plus, spent, admin, client_for, live
):
    client = client_for(admin)
    confirm(client, live, PACK, pack="extra-500")

    page = client.get(PAGE).content.decode()
    assert 'data-testid="buy-extra-credits"' not in page
    assert "Only one extra package can be active at a time" in page
    dialog = client.get(PACK, HTTP_HX_REQUEST="true").content.decode()
    assert "You already have an active extra credit package" in dialog
    assert client.post(PACK, {"action": "send", "pack": "extra-500"}).status_code == 409

    # 30 days on, the pack has expired (the sweeper's entries are not needed for that, C15).
    Grant.objects.filter(tenant=on_plus, source=Source.EXTRA_PACK).update(
        valid_from=timezone.now() - timedelta(days=31), expires_at=timezone.now() - timedelta(days=1)
    )
    assert 'data-testid="buy-extra-credits"' in client.get(PAGE).content.decode()


def packs(tenant) -> list[Grant]:
    return list(Grant.objects.filter(tenant=tenant, source=Source.EXTRA_PACK))


def test_a_declined_pack_payment_is_voided_grants_nothing_and_is_never_collected_later(
    on_plus, spent, admin, client_for, live
):
    set_card(on_plus, "declines")

    answer = confirm(client_for(admin), live, PACK, pack="extra-1000")

    assert "Your card was declined." in answer.content.decode()
    assert packs(on_plus) == []
    [purchase] = ExtraPackPurchase.objects.filter(tenant=on_plus)
    assert (purchase.status, purchase.error_code) == (ExtraPackPurchase.Status.FAILED, "card_declined")
    gateway = local_gateway()
    assert gateway.retrieve_invoice(purchase.gateway_invoice_id).status == "void"
    assert Invoice.objects.get(gateway_invoice_id=purchase.gateway_invoice_id).status == "void"
    # A working card, then every retry the gateway's automatic collection would have made: nothing.
    set_card(on_plus, "pays")
    with live():
        gateway.advance(timezone.now() + timedelta(days=16))
    declined = gateway.retrieve_invoice(purchase.gateway_invoice_id)
    assert (declined.status, declined.amount_paid) == ("void", 0)
    assert packs(on_plus) == []


def test_a_buy_after_a_declined_one_works_and_makes_exactly_one_pack(on_plus, spent, admin, client_for, live):
    client = client_for(admin)
    set_card(on_plus, "declines")
    confirm(client, live, PACK, pack="extra-500")
    set_card(on_plus, "pays")

    with time_machine.travel(timezone.now() + timedelta(seconds=61)):  # past the resend pause
        answer = confirm(client, live, PACK, pack="extra-500")

    assert answer.headers["HX-Redirect"] == PAGE
    paid, failed = ExtraPackPurchase.objects.filter(tenant=on_plus).order_by("-pk")
    assert (paid.status, failed.status) == (ExtraPackPurchase.Status.PAID, ExtraPackPurchase.Status.FAILED)
    [pack] = packs(on_plus)
    assert (pack.amount, pack.reference) == (500 * K, f"invoice:{paid.gateway_invoice_id}")
    gateway = local_gateway()
    assert [gateway.retrieve_invoice(p.gateway_invoice_id).status for p in (paid, failed)] == ["paid", "void"]


def _void_unreachable(monkeypatch) -> None:
    def unreachable(invoice_id: str, *, idempotency_key: str):
        raise GatewayError("The payment provider could not be reached.", code="gateway_unavailable")

    monkeypatch.setattr(local_gateway(), "void_invoice", unreachable)


def test_a_decline_whose_void_fails_blocks_a_second_pack_until_the_next_buy_voids_it(
    on_plus, spent, admin, client_for, live, monkeypatch
):
    client = client_for(admin)
    set_card(on_plus, "declines")
    _void_unreachable(monkeypatch)

    answer = confirm(client, live, PACK, pack="extra-500")

    assert "Your card was declined." in answer.content.decode()
    [first] = ExtraPackPurchase.objects.filter(tenant=on_plus)
    assert (first.status, first.error_code) == (ExtraPackPurchase.Status.PENDING, "card_declined")
    assert local_gateway().retrieve_invoice(first.gateway_invoice_id).status == "open"
    monkeypatch.undo()
    set_card(on_plus, "pays")

    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        answer = confirm(client, live, PACK, pack="extra-500")

    assert answer.headers["HX-Redirect"] == PAGE
    first.refresh_from_db()
    assert first.status == ExtraPackPurchase.Status.FAILED
    assert local_gateway().retrieve_invoice(first.gateway_invoice_id).status == "void"
    [pack] = packs(on_plus)
    assert pack.reference != f"invoice:{first.gateway_invoice_id}"


def test_a_declined_invoice_collected_before_it_could_be_voided_is_credited_once_and_no_second_pack(
    on_plus, spent, admin, client_for, live, monkeypatch
):
    client = client_for(admin)
    set_card(on_plus, "declines")
    _void_unreachable(monkeypatch)
    confirm(client, live, PACK, pack="extra-500")
    [first] = ExtraPackPurchase.objects.filter(tenant=on_plus)
    monkeypatch.undo()
    set_card(on_plus, "pays")

    with live():  # the retry 3 days later takes the money: the invoice.paid webhook credits it
        local_gateway().advance(timezone.now() + timedelta(days=3, minutes=1))

    [pack] = packs(on_plus)
    assert (pack.amount, pack.reference) == (500 * K, f"invoice:{first.gateway_invoice_id}")
    first.refresh_from_db()
    assert first.status == ExtraPackPurchase.Status.PAID
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        again = client.post(PACK, {"action": "confirm", "pack": "extra-500", "code": "123456"})
    assert "You already have an active extra credit package" in again.content.decode()
    assert len(packs(on_plus)) == 1


def test_a_pack_awaiting_3d_secure_blocks_a_second_purchase_and_is_granted_once_when_paid(
    on_plus, spent, admin, client_for, live
):
    set_card(on_plus, "requires_action")
    client = client_for(admin)

    answer = confirm(client, live, PACK, pack="extra-500")

    [purchase] = ExtraPackPurchase.objects.filter(tenant=on_plus)
    assert purchase.status == ExtraPackPurchase.Status.AWAITING_CONFIRMATION
    assert answer.headers["HX-Redirect"].endswith(f"/dev/billing/invoices/{purchase.gateway_invoice_id}/")
    in_flight = client.post(PACK, {"action": "confirm", "pack": "extra-500", "code": "123456"})
    assert "A payment for extra credits is waiting for your bank" in in_flight.content.decode()
    with live():
        local_gateway().confirm_payment(purchase.gateway_invoice_id)
    [pack] = Grant.objects.filter(tenant=on_plus, source=Source.EXTRA_PACK)
    assert (pack.amount, pack.reference) == (500 * K, f"invoice:{purchase.gateway_invoice_id}")
    purchase.refresh_from_db()
    assert purchase.status == ExtraPackPurchase.Status.PAID


def test_a_pack_payment_nobody_confirms_is_voided_after_23_hours_and_frees_the_next_pack(
    on_plus, spent, admin, client_for, live
):
    set_card(on_plus, "requires_action")
    client = client_for(admin)
    confirm(client, live, PACK, pack="extra-500")
    [purchase] = ExtraPackPurchase.objects.filter(tenant=on_plus)
    refused = client.post(PACK, {"action": "confirm", "pack": "extra-500", "code": "123456"})
    assert "confirmation on its payment page" in refused.content.decode()

    # Before the window ends the sweeper leaves it alone: the buyer may still confirm.
    assert (
        services.billing_tick(now=purchase.created_at + timedelta(hours=22))[
            "extra_pack_confirmations_expired"
        ]
        == 0
    )
    purchase.refresh_from_db()
    assert purchase.status == ExtraPackPurchase.Status.AWAITING_CONFIRMATION

    with live():
        tick = services.billing_tick(now=purchase.created_at + timedelta(hours=23, minutes=1))
    assert tick["extra_pack_confirmations_expired"] == 1
    purchase.refresh_from_db()
    assert (purchase.status, purchase.error_code) == (ExtraPackPurchase.Status.FAILED, "confirmation_expired")
    assert local_gateway().retrieve_invoice(purchase.gateway_invoice_id).status == "void"
    # A confirmation that comes too late collects nothing and grants nothing.
    with live():
        local_gateway().confirm_payment(purchase.gateway_invoice_id)
    assert local_gateway().retrieve_invoice(purchase.gateway_invoice_id).status == "void"
    assert packs(on_plus) == []

    set_card(on_plus, "pays")
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        confirm(client, live, PACK, pack="extra-500")
    [pack] = packs(on_plus)
    assert pack.amount == 500 * K


# --- C24, FAQ 7: who is offered Buy extra credits ---------------------------------------------------


def test_faq7_buy_extra_credits_shows_only_for_an_admin_on_plus(on_plus, spent, admin, member, client_for):
    page = client_for(member).get(PAGE).content.decode()
    assert 'data-testid="buy-extra-credits"' not in page
    assert MSG_PACK_ASK_ADMIN in page
    # The button reads as FAQ 7 names it; its dialog names each pack's credits once.
    page = client_for(admin).get(PAGE).content.decode()
    assert re.search(r'data-testid="buy-extra-credits"[^>]*>Buy Credits</a>', page)
    dialog = client_for(admin).get(PACK).content.decode()
    assert "500 credits for $" in dialog
    assert "credits credits" not in dialog


def test_c14_c18_c21_a_member_is_not_told_they_can_buy_the_next_pack(spent, admin, member, client_for, live):
    """C18, C21: a Non-Administrator cannot purchase. While a pack is active (C14) the member is told
    when the next one can be bought and that their account administrator buys it, not "you can buy
    a new one"; the admin is still told they can."""
    confirm(client_for(admin), live, PACK, pack="extra-500")
    [pack] = packs(spent)
    member_page = client_for(member).get(PAGE).content.decode()
    assert "you can buy a new one" not in member_page
    assert escape(msg_extra_pack_active(pack.expires_at, admin=False)) in member_page
    assert msg_extra_pack_active(pack.expires_at, admin=False).endswith(
        "your account administrator can buy a new one once it expires."
    )
    assert client_for(member).get(PACK).status_code == 403
    assert escape(msg_extra_pack_active(pack.expires_at)) in client_for(admin).get(PAGE).content.decode()


def test_c12_c24_faq7_no_extra_credits_while_the_balance_is_sufficient_then_offered_once_it_runs_low(
    on_plus, admin, member, client_for, live
):
    """C12 "if the current balance is insufficient", FAQ 7 "consumption level": an admin who just
    subscribed (2,000 credits, nothing used) is not offered Buy Credits; the page, the dialog and the
    service refuse with when extra credits can be bought, and nothing is written. Once 80% of the
    period's credits are consumed (the sidebar's rule, C03) it is offered."""
    reason = msg_pack_balance_sufficient()
    assert reason == (
        "Extra credits can be bought when your balance runs low: once 80% of this period's plan "
        "credits are used or fewer than 10 credits are available."
    )
    client = client_for(admin)
    page = client.get(PAGE).content.decode()
    assert 'data-testid="buy-extra-credits"' not in page
    assert escape(reason) in page
    assert escape(reason) in client.get(PACK, HTTP_HX_REQUEST="true").content.decode()
    sent = len(mail.outbox)
    assert client.post(PACK, {"action": "send", "pack": "extra-500"}).status_code == 409
    assert len(mail.outbox) == sent  # no code sent for a purchase that would be refused
    with pytest.raises(BusinessError) as refused:
        services.extra_pack_charge_confirmed(
            tenant=on_plus, pack=ExtraPack.objects.get(code="extra-500"), actor=admin
        )
    assert (refused.value.code, refused.value.status, refused.value.message) == (
        "balance_sufficient",
        409,
        reason,
    )
    assert not ExtraPackPurchase.objects.exists()
    assert packs(on_plus) == []
    # FAQ 7 / 4a: the member is told the same reason, not to ask an administrator who could not buy.
    member_page = client_for(member).get(PAGE).content.decode()
    assert escape(reason) in member_page
    assert MSG_PACK_ASK_ADMIN not in member_page

    spend_through_api(on_plus, admin, 1599)  # 79.95% used: not yet
    assert 'data-testid="buy-extra-credits"' not in client.get(PAGE).content.decode()
    spend_through_api(on_plus, admin, 1, key="one-more")  # 80%
    assert 'data-testid="buy-extra-credits"' in client.get(PAGE).content.decode()
    answer = confirm(client, live, PACK, pack="extra-500")
    assert answer.headers["HX-Redirect"] == PAGE
    assert [p.amount for p in packs(on_plus)] == [500 * K]


def test_c03_c12_credits_held_by_open_holds_make_the_balance_run_low_for_extra_credits(
    on_plus, admin, client_for
):
    """Available = balance - open holds: 1,995 of the 2,000 credits held (nothing consumed) leave 5
    available, under CREDITS_LOW_BALANCE: extra credits are offered, as the sidebar's quick access."""
    client = client_for(admin)
    assert 'data-testid="buy-extra-credits"' not in client.get(PAGE).content.decode()
    secret = api_key_create(tenant=on_plus, name="runtime", actor=admin).secret
    held = Client().post(
        "/api/v1/credits/holds",
        json.dumps({"credits": "1995", "idempotency_key": "long-job"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert held.status_code == 201, held.content
    assert 'data-testid="buy-extra-credits"' in client.get(PAGE).content.decode()
    assert credit_selectors.pack_offer(tenant=on_plus, role="admin").available


def test_faq7_a_member_is_told_why_an_admin_could_not_buy_either_and_refused_403(
    on_plus, spent, admin, member, client_for, live
):
    """Point 4a: with a pack already active, the member is told so (not "ask your administrator",
    who could not buy one either); the member's POST stays a 403 and writes nothing."""
    confirm(client_for(admin), live, PACK, pack="extra-500")
    page = client_for(member).get(PAGE).content.decode()
    assert "You already have an active extra credit package" in page
    assert MSG_PACK_ASK_ADMIN not in page
    offer = credit_selectors.pack_offer(tenant=on_plus, role="member")
    assert (offer.refusal.code, offer.refusal.status) == ("role_not_allowed", 403)
    assert client_for(member).post(PACK, {"action": "send", "pack": "extra-500"}).status_code == 403
    assert ExtraPackPurchase.objects.count() == 1


def test_the_ai_credits_dialog_sells_ai_credits_plans_only(trial_tenant, subscribed, admin, client_for):
    client = client_for(admin)
    assert client.get("/t/acme/ai-credits/plans/agents-scale/subscribe/").status_code == 404
    assert (
        client.post("/t/acme/ai-credits/plans/agents-scale/subscribe/", {"action": "send"}).status_code == 404
    )
    assert not mail.outbox


def test_the_subscribe_dialog_says_what_plus_includes(trial_tenant, subscribed, admin, client_for):
    dialog = client_for(admin).get("/t/acme/ai-credits/plans/credits-plus/subscribe/").content.decode()
    assert "2,000 credits each month" in dialog


@pytest.mark.parametrize(
    ("setup", "reason"),
    [("free", MSG_PACK_PLUS_ONLY), ("trial", MSG_PACK_TRIAL), ("ultra", MSG_PACK_CONTRACT)],
)
def test_c24_no_buy_extra_credits_on_free_trial_or_ultra(
    trial_tenant, admin, client_for, live, setup, reason, request
):
    tenant = trial_tenant
    if setup != "trial":
        request.getfixturevalue("subscribed")
    if setup == "ultra":
        live_sub(tenant, "ai_credits").delete()
        SubscriptionFactory(tenant=tenant, plan=plan("credits-ultra"))
    page = client_for(admin).get(PAGE).content.decode()
    assert 'data-testid="buy-extra-credits"' not in page
    assert reason in page
    assert client_for(admin).post(PACK, {"action": "send", "pack": "extra-500"}).status_code in (
        402,
        403,
        409,
    )


def test_c03_the_sidebar_quick_access_never_offers_a_purchase(on_plus, member, client_for):
    page = client_for(member).get("/t/acme/").content.decode()
    nav = re.search(r'<nav class="sidebar".*?</nav>', page, re.S)
    assert nav is not None
    assert "/extra-pack/" not in nav.group(0)
    assert "/subscribe/" not in nav.group(0)


def test_c13_the_pack_grants_what_was_bought_even_if_staff_changed_the_pack_before_it_was_paid(
    on_plus, spent, admin, client_for, live
):
    set_card(on_plus, "requires_action")
    confirm(client_for(admin), live, PACK, pack="extra-500")
    [purchase] = ExtraPackPurchase.objects.filter(tenant=on_plus)
    assert (purchase.credits, purchase.validity_days) == (500 * K, 30)
    # Staff resize the pack while the buyer is still confirming the payment with the bank.
    ExtraPack.objects.filter(code="extra-500").update(credits=800 * K, validity_days=10)

    with live():
        local_gateway().confirm_payment(purchase.gateway_invoice_id)

    [pack] = packs(on_plus)
    assert pack.amount == 500 * K
    assert pack.expires_at - pack.valid_from == timedelta(days=30)
    assert pack.reference == f"invoice:{purchase.gateway_invoice_id}"
