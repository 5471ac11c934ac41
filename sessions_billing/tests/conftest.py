"""Fixtures of the sessions_billing tests: tenants on the trial and on paid plans, their API keys, and
`api`, a client that speaks JSON with a key."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from plans.factories import SubscriptionFactory, plan
from plans.models import Subscription
from plans.services import trial_start
from tenants.models import Tenant
from tenants.services import api_key_create


class Api:
    """The integration API as the AI product calls it."""

    def __init__(self, secret: str) -> None:
        self.client = Client()
        self.auth = f"Bearer {secret}"

    def _send(self, method: str, path: str, body: Any = None):
        data = json.dumps(body) if body is not None else ""  # no body (None would be sent as "None")
        return getattr(self.client, method)(
            f"/api/v1{path}", data=data, content_type="application/json", HTTP_AUTHORIZATION=self.auth
        )

    def get(self, path: str):
        return self._send("get", path)

    def post(self, path: str, body: Any = None):
        return self._send("post", path, body)

    def put(self, path: str, body: Any = None):
        return self._send("put", path, body)

    def delete(self, path: str):
        return self._send("delete", path)

    def start(self, conversation_id: str, direction: str = "inbound", **extra: Any):
        return self.post("/sessions", {"conversation_id": conversation_id, "direction": direction, **extra})

    def event(self, conversation_id: str, type: str, **extra: Any):
        return self.post(f"/sessions/{conversation_id}/events", {"type": type, **extra})


def paid(tenant: Tenant, code: str = "agents-growth", **fields: Any) -> Subscription:
    """A paid AI Agents subscription whose current period started a day ago."""
    now = timezone.now()
    defaults = {
        "current_period_start": now - timedelta(days=1),
        "current_period_end": now + timedelta(days=29),
    }
    return SubscriptionFactory(tenant=tenant, plan=plan(code), **(defaults | fields))


@pytest.fixture
def api_for(admin) -> Callable[[Tenant], Api]:
    def make(tenant: Tenant) -> Api:
        return Api(api_key_create(tenant=tenant, name="agent runtime", actor=admin).secret)

    return make


@pytest.fixture
def growth(tenant) -> Subscription:
    return paid(tenant)


@pytest.fixture
def trial(tenant) -> Subscription:
    return trial_start(tenant=tenant, plan=plan("agents-trial"))
