"""Fixtures of the plans tests: a frozen, movable clock and a tenant that signed up at START."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import time_machine

from billing_portal import services as billing
from tenants.factories import MembershipFactory, UserFactory
from tenants.models import Role
from tests.subscriptions.helpers import START, Org


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    """Time stands still at START until a test moves it (`clock.move_to(...)`): the services, the
    local gateway's clock and the webhook signatures all read it."""
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def capture(django_capture_on_commit_callbacks):
    """Run what the local gateway and the notifications queue on commit: webhooks and emails."""
    return django_capture_on_commit_callbacks


@pytest.fixture
def org(db, clock, capture) -> Org:
    """A tenant that signed up at START (so it is on the AI Agents trial and AI Free), with a second
    admin and a member: reminders go to every admin and to no one else."""
    with capture(execute=True):
        founder, tenant = billing.organization_signup(
            email="founder@initech.test", password="Correct-horse-battery-42", organization="Initech"
        )
    cofounder = MembershipFactory(
        tenant=tenant, role=Role.ADMIN, user=UserFactory(email="cofounder@initech.test")
    ).user
    member = MembershipFactory(
        tenant=tenant, role=Role.MEMBER, user=UserFactory(email="staff@initech.test")
    ).user
    return Org(tenant=tenant, founder=founder, cofounder=cofounder, member=member)
