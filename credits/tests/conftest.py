"""Fixtures of the credits tests: a frozen, movable clock and a tenant on AI Plus."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import time_machine

from credits.factories import on_plus
from tenants.models import Tenant

# A fixed start in the past: rows other suites commit to the shared test database (on the real
# clock) are never due for this clock's sweepers.
START = datetime(2022, 5, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def plus(tenant, clock) -> Tenant:
    """Acme on AI Plus (its subscription active, no credits yet)."""
    on_plus(tenant)
    return tenant
