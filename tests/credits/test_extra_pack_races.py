"""Two admins buy an extra pack at the same moment (C14): real PostgreSQL transactions, each in its
own thread and connection. One charge, one pack; the other is refused with the page's sentence."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from billing_portal import services as billing
from credits.models import ExtraPack, Grant, Source
from credits.tests.helpers import spend_through_api
from plans.factories import plan
from tenants.errors import BusinessError
from tenants.factories import MembershipFactory, UserFactory
from tenants.models import Role
from tenants.security_codes import security_code_send
from tests.subscriptions.test_plan_offer_races import counting, paid, race, slowly  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def code_for(user, tenant, purpose: str) -> str:
    security_code_send(user=user, tenant=tenant, purpose=purpose, action="confirm")
    found = re.search(r"\b(\d{6})\b", mail.outbox[-1].body)
    assert found is not None
    return found.group(1)


def test_c14_two_admins_buying_a_pack_at_once_make_one_charge_and_one_pack(paid):  # noqa: F811 (the fixture)
    tenant, admin, _ = paid
    plus = plan("credits-plus")
    code = code_for(admin, tenant, billing.subscribe_purpose(plus))
    done = billing.subscribe_now(
        tenant=tenant, plan=plus, actor=admin, code=code, success_url="/", cancel_url="/"
    )
    assert done.status == "done"
    spend_through_api(tenant, admin, 1600)  # C12: the balance runs low (80% used)
    second = UserFactory(email="cfo@initech.test")
    MembershipFactory(tenant=tenant, user=second, role=Role.ADMIN)
    pack = ExtraPack.objects.get(code="extra-500")
    purpose = billing.extra_pack_purpose(pack)
    codes = {admin.pk: code_for(admin, tenant, purpose), second.pk: code_for(second, tenant, purpose)}
    patch, charges = counting("charge_one_off")

    with patch, slowly(billing, "customer_ensure"):
        results = race(
            *[
                lambda u=u: billing.extra_pack_buy(tenant=tenant, pack=pack, actor=u, code=codes[u.pk])
                for u in (admin, second)
            ]
        )

    outcomes = sorted(type(r).__name__ for r in results)
    assert outcomes == ["BusinessError", "PurchaseOutcome"], results
    refusal = next(r for r in results if isinstance(r, BusinessError))
    assert refusal.code == "extra_pack_active"
    assert "Only one extra package can be active at a time" in refusal.message
    assert charges.count == 1
    assert Grant.objects.filter(tenant=tenant, source=Source.EXTRA_PACK).count() == 1


def test_c10_the_same_code_entered_twice_at_once_confirms_once(paid):  # noqa: F811 (the fixture)
    """Two requests carry the same right code at the same moment (a double click, two tabs): the
    member's codes are serialized, so one is accepted and the other finds it used."""
    from tenants.security_codes import security_code_use

    tenant, admin, _ = paid
    purpose = billing.subscribe_purpose(plan("credits-plus"))
    code = code_for(admin, tenant, purpose)

    from tenants import security_codes

    with slowly(security_codes, "_digest"):  # between reading the code and marking it used
        results = race(
            *[
                lambda: security_code_use(user=admin, tenant=tenant, purpose=purpose, code=code)
                for _ in range(2)
            ]
        )

    assert sorted(type(r).__name__ for r in results) == ["BusinessError", "NoneType"], results
    refusal = next(r for r in results if isinstance(r, BusinessError))
    assert refusal.code == "security_code_missing"
