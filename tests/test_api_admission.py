"""The integration API refuses new work once the grace period is over, with the spec's exact words,
and admits it again as soon as the payment succeeds. S26, S28, S34, S12, S33."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from billing_portal.demo import start_plan
from billing_portal.gateway.factory import get_gateway
from billing_portal.services import billing_tick, organization_create
from plans.factories import plan
from plans.models import Subscription
from tenants.services import api_key_create

pytestmark = pytest.mark.django_db(transaction=True)  # the local gateway's webhooks apply on commit

URL = "/api/v1/entitlements/ai_agents/admission"


def _get(client, secret):
    return client.get(URL, HTTP_AUTHORIZATION=f"Bearer {secret}")


def test_grace_period_then_refused_then_restored_through_the_api(client, admin):
    tenant = organization_create(name="Graceful", admin=admin)
    start_plan(tenant=tenant, plan=plan("agents-growth"), actor=admin)
    secret = api_key_create(tenant=tenant, name="agent runtime", actor=admin).secret
    sub = Subscription.objects.get(tenant=tenant, product__code="ai_agents", state="active")
    assert _get(client, secret).json() == {
        "product": "ai_agents",
        "allowed": True,
        "state": "active",
        "plan_code": "agents-growth",
    }

    failed_at = timezone.now()
    get_gateway().fail_next_payment(sub.gateway_subscription_id)  # type: ignore[attr-defined]
    assert _get(client, secret).json()["state"] == "past_due"

    with time_machine.travel(failed_at + timedelta(days=6), tick=False):
        billing_tick(now=timezone.now())
        assert _get(client, secret).status_code == 200  # still inside the grace period

    with time_machine.travel(failed_at + timedelta(days=8), tick=False):
        billing_tick(now=timezone.now())
        response = _get(client, secret)
        assert response.status_code == 402
        assert response.json() == {
            "error": {
                "code": "payment_overdue",
                "message": "Your payment is overdue and the grace period has expired.",
            }
        }
        get_gateway().set_card(sub.tenant.billing_customer.customer_id, failing=False, last4="4242")  # type: ignore[attr-defined]
        assert _get(client, secret).status_code == 200  # restored at once by the payment


def test_expired_trial_is_refused_with_the_ended_message(client, admin):
    tenant = organization_create(name="Trialist", admin=admin)
    secret = api_key_create(tenant=tenant, name="agent runtime", actor=admin).secret
    assert _get(client, secret).json()["state"] == "trialing"
    with time_machine.travel(timezone.now() + timedelta(days=14, minutes=1), tick=False):
        response = _get(client, secret)  # refused even before the sweeper has run
        assert response.status_code == 403
        assert response.json()["error"] == {
            "code": "subscription_ended",
            "message": "Your subscription has ended. Please upgrade your plan to continue.",
        }


def test_unknown_product_is_a_404_in_the_error_shape(client, admin):
    tenant = organization_create(name="Curious", admin=admin)
    secret = api_key_create(tenant=tenant, name="k", actor=admin).secret
    response = client.get("/api/v1/entitlements/nope/admission", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_product"
