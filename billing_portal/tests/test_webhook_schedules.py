"""Schedule webhooks act on the schedule as the gateway has it now, not as the event's body says
(issue 6): bodies arrive late, twice and out of order. A `released` body while the schedule is still
active voids nothing; an `updated` body that still says `active` about a schedule the gateway has
since released voids the change."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from billing_portal import services
from billing_portal.gateway.store import LocalGatewayObject
from billing_portal.models import WebhookEvent
from plans.factories import plan
from plans.models import ScheduledChange

from .conftest import local_gateway, post_webhook, sign


@pytest.fixture
def scheduled(subscribed, trial_tenant, admin) -> ScheduledChange:
    """Acme on Growth with a change to Scale at the end of the period: a schedule at the gateway."""
    change = services.plan_change(
        tenant=trial_tenant, to_plan=plan("agents-scale"), when="period_end", custom_date=None, actor=admin
    ).scheduled
    assert change is not None
    assert change.status == "scheduled"
    assert local_gateway().retrieve_schedule(change.gateway_schedule_id).status == "active"
    return change


def _schedule_event(event_type: str, schedule_id: str, *, says: str, n: int) -> bytes:
    """A signed-later body about the schedule, with the status it claims."""
    schedule: dict[str, Any] = dict(
        LocalGatewayObject.objects.get(object_type="subscription_schedule", object_id=schedule_id).data
    )
    schedule["status"] = says
    if says == "released":
        schedule["released_subscription"], schedule["subscription"] = schedule["subscription"], None
    return json.dumps(
        {
            "id": f"evt_schedule_test_{n}",
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": int(time.time()),
            "data": {"object": schedule},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
    ).encode()


def _deliver(payload: bytes, live) -> None:
    with live():
        response = post_webhook(payload, sign(payload))
    assert response.status_code == 200


def _status(change: ScheduledChange) -> str:
    change.refresh_from_db()
    return change.status


@pytest.mark.parametrize("event_type", ["subscription_schedule.released", "subscription_schedule.canceled"])
def test_a_body_saying_released_while_the_gateways_schedule_is_active_voids_nothing(
    event_type, scheduled, live
):
    status_in_body = "released" if event_type.endswith("released") else "canceled"
    payload = _schedule_event(event_type, scheduled.gateway_schedule_id, says=status_in_body, n=1)

    _deliver(payload, live)

    assert WebhookEvent.objects.get(event_id="evt_schedule_test_1").status == "processed"
    assert _status(scheduled) == "scheduled"
    assert scheduled.resolved_at is None


def test_a_body_saying_active_about_a_schedule_the_gateway_released_voids_the_change(scheduled, live):
    # Released at the gateway (say, from Stripe's dashboard); its own event is not delivered yet.
    local_gateway().release_schedule(scheduled.gateway_schedule_id, idempotency_key="released-elsewhere")
    assert local_gateway().retrieve_schedule(scheduled.gateway_schedule_id).status == "released"
    stale = _schedule_event(
        "subscription_schedule.updated", scheduled.gateway_schedule_id, says="active", n=2
    )

    _deliver(stale, live)

    assert WebhookEvent.objects.get(event_id="evt_schedule_test_2").status == "processed"
    assert _status(scheduled) == "canceled"
    assert scheduled.resolved_at is not None


def test_the_released_event_delivered_again_after_the_change_was_voided_changes_nothing(scheduled, live):
    local_gateway().release_schedule(scheduled.gateway_schedule_id, idempotency_key="released-elsewhere")
    _deliver(
        _schedule_event(
            "subscription_schedule.released", scheduled.gateway_schedule_id, says="released", n=3
        ),
        live,
    )
    resolved = ScheduledChange.objects.values_list("status", "resolved_at").get(pk=scheduled.pk)

    _deliver(
        _schedule_event("subscription_schedule.updated", scheduled.gateway_schedule_id, says="active", n=4),
        live,
    )

    assert resolved[0] == "canceled"
    assert ScheduledChange.objects.values_list("status", "resolved_at").get(pk=scheduled.pk) == resolved
