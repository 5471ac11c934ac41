"""Fixtures of the licensing tests: a frozen, movable clock and Acme on AI Essentials (10 AI and 10
Chat licenses, 60 ticket credits a cycle)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import time_machine

from licensing.factories import on_helpdesk
from tenants.models import Tenant

# A fixed start in the past: rows other suites commit to the shared test database (on the real
# clock) are never due for this clock's sweepers.
START = datetime(2022, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def essentials(tenant, clock) -> Tenant:
    """Acme on AI Essentials since START, this cycle's 60 ticket credits granted."""
    on_helpdesk(tenant)
    return tenant


@pytest.fixture
def pro(tenant, clock) -> Tenant:
    """Acme on AI Pro since START (25 + 25 licenses, 150 ticket credits, Unlimited AI access)."""
    on_helpdesk(tenant, "helpdesk-pro")
    return tenant
