"""The tenant lock (tenants.services.tenant_lock) serializes its own lockers but not the tenant's
other writes: it is FOR NO KEY UPDATE, which the FOR KEY SHARE of a foreign-key check to the tenant
passes. Real PostgreSQL, a second connection, with a lock timeout to tell waiting from passing."""

from __future__ import annotations

import psycopg
import pytest
from django.db import transaction

from tenants.factories import second_connection
from tenants.services import tenant_lock

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("what", "waits"),
    [
        ("FOR KEY SHARE", False),  # what a foreign-key check to the tenant takes: an insert elsewhere
        ("FOR NO KEY UPDATE", True),  # another tenant_lock
        ("FOR UPDATE", True),
    ],
)
def test_the_tenant_lock_lets_foreign_key_checks_through_and_holds_other_lockers(tenant, what, waits):
    with second_connection() as other, transaction.atomic():
        tenant_lock(tenant=tenant)
        other.execute("SET lock_timeout = '300ms'")
        try:
            other.execute(f"SELECT 1 FROM tenants_tenant WHERE id = %s {what}", [tenant.pk])
            waited = False
        except psycopg.errors.LockNotAvailable:
            waited = True
    assert waited == waits
