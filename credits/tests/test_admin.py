"""Platform staff in the Django admin: the ledger is read-only, the catalog editable, a staff
adjustment and a package deactivation (C20) go through the services and are audited."""

from __future__ import annotations

import pytest

from credits import services
from credits.factories import grant
from credits.models import Entry, ExtraPack, Grant, Source, Wallet
from credits.selectors import extra_pack_expiry, figures
from credits.tests.helpers import K, check_invariants, consume
from tenants.factories import UserFactory
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db

CHANGELISTS = ["wallet", "grant", "entry", "consumption", "hold", "featurecost", "extrapack"]


@pytest.fixture
def staff(db):
    return UserFactory(email="cs@platform.test", is_staff=True, is_superuser=True)


@pytest.fixture
def ledger(plus):
    pack = services.credits_grant_extra_pack(
        tenant=plus, pack=ExtraPack.objects.get(code="extra-500"), reference="payment:pi_1"
    )
    grant(plus, 100)
    consume(plus, "k", quantity=3, client_id="c1")
    services.credits_hold(tenant=plus, idempotency_key="h", amount=K)
    return pack


@pytest.mark.parametrize("model", CHANGELISTS)
def test_every_credits_changelist_opens(staff, ledger, client_for, model):
    assert client_for(staff).get(f"/admin/credits/{model}/").status_code == 200


def test_the_ledger_cannot_be_added_to_changed_or_deleted_in_the_admin(staff, ledger, client_for):
    client = client_for(staff)
    entry = Entry.objects.first()
    assert client.get("/admin/credits/entry/add/").status_code == 403
    assert client.get(f"/admin/credits/entry/{entry.pk}/delete/").status_code == 403
    response = client.post(f"/admin/credits/grant/{ledger.pk}/change/", {"remaining": 1})
    assert response.status_code == 403
    assert Grant.objects.get(pk=ledger.pk).remaining == 500 * K


def test_a_member_of_a_tenant_cannot_open_the_admin(admin, client_for):
    response = client_for(admin).get("/admin/credits/grant/")
    assert (response.status_code, response["Location"].split("?")[0]) == (302, "/admin/login/")


def test_staff_adjustment_action_asks_then_adjusts_and_audits(staff, plus, ledger, client_for):
    client = client_for(staff)
    wallet = Wallet.objects.get(tenant=plus)
    asked = client.post(
        "/admin/credits/wallet/", {"action": "adjust_credits", "_selected_action": [wallet.pk]}
    )
    assert asked.status_code == 200
    assert b'name="reason"' in asked.content
    done = client.post(
        "/admin/credits/wallet/",
        {
            "action": "adjust_credits",
            "_selected_action": [wallet.pk],
            "apply": "1",
            "credits": "-12.5",
            "reason": "Double grant on ticket 4411",
        },
    )
    assert done.status_code == 302
    assert figures(tenant_id=plus.pk).balance == 597 * K - 12_500
    event = AuditEvent.objects.get(action="credits.adjusted")
    assert (event.actor_label, event.data) == (
        "cs@platform.test",
        {"amount": "-12.5", "reason": "Double grant on ticket 4411", "unit": "ai_credit"},
    )
    assert Entry.objects.filter(kind="adjust").count() == 1
    check_invariants(plus)


def test_staff_debit_cannot_take_credit_held_by_open_holds(staff, plus, client_for):
    """A negative adjustment takes at most the available credit (balance - open holds): quill's 50
    credits with 45 held, a debit of 10 is refused naming available and held, and nothing is
    written (no entry, no audit, the hold's credit intact); a debit of 5 is taken."""
    grant(plus, 50)
    services.credits_hold(tenant=plus, idempotency_key="job", amount=45 * K)
    wallet = Wallet.objects.get(tenant=plus)
    before = list(Entry.objects.values_list("pk", flat=True))

    def adjust(credits: str):
        return client_for(staff).post(
            "/admin/credits/wallet/",
            {
                "action": "adjust_credits",
                "_selected_action": [wallet.pk],
                "apply": "1",
                "credits": credits,
                "reason": "Correction",
            },
            follow=True,
        )

    refused = adjust("-10").content.decode()
    assert "Cannot take 10 AI credits: only 5 available (balance 50, 45 held by open holds)." in refused
    assert list(Entry.objects.values_list("pk", flat=True)) == before
    assert not AuditEvent.objects.filter(action="credits.adjusted").exists()
    assert (figures(tenant_id=plus.pk).balance, figures(tenant_id=plus.pk).held) == (50 * K, 45 * K)

    adjust("-5")
    shown = figures(tenant_id=plus.pk)
    assert (shown.balance, shown.held, shown.available) == (45 * K, 45 * K, 0)
    check_invariants(plus)


def test_staff_adjustment_refuses_a_malformed_quantity(staff, plus, ledger, client_for):
    wallet = Wallet.objects.get(tenant=plus)
    response = client_for(staff).post(
        "/admin/credits/wallet/",
        {
            "action": "adjust_credits",
            "_selected_action": [wallet.pk],
            "apply": "1",
            "credits": "1.2345",
            "reason": "x",
        },
    )
    assert response.status_code == 200
    assert b"at most three decimals" in response.content
    assert not AuditEvent.objects.filter(action="credits.adjusted").exists()


@pytest.mark.parametrize("credits", ["99999999999999999999", "-9999999999999999999", "1000000000.001"])
def test_staff_adjustment_beyond_a_billion_credits_is_a_form_error_not_a_500(
    staff, plus, ledger, client_for, credits
):
    wallet = Wallet.objects.get(tenant=plus)
    before = figures(tenant_id=plus.pk)
    response = client_for(staff).post(
        "/admin/credits/wallet/",
        {
            "action": "adjust_credits",
            "_selected_action": [wallet.pk],
            "apply": "1",
            "credits": credits,
            "reason": "x",
        },
    )
    assert response.status_code == 200
    assert b"at most a billion credits" in response.content
    assert figures(tenant_id=plus.pk) == before
    assert not AuditEvent.objects.filter(action="credits.adjusted").exists()


def test_c20_package_deactivation_is_a_staff_action_audited(staff, plus, ledger, client_for):
    response = client_for(staff).post(
        "/admin/credits/grant/",
        {
            "action": "deactivate",
            "_selected_action": [ledger.pk],
            "apply": "1",
            "reason": "Asked CS on 2 May",
        },
    )
    assert response.status_code == 302
    ledger.refresh_from_db()
    assert (ledger.remaining, ledger.deactivated_at is not None) == (0, True)
    assert extra_pack_expiry(tenant_id=plus.pk) is None
    event = AuditEvent.objects.get(action="credits.package_deactivated")
    assert (event.actor_label, event.data) == (
        "cs@platform.test",
        {"source": Source.EXTRA_PACK, "reason": "Asked CS on 2 May"},
    )
    check_invariants(plus)


@pytest.mark.parametrize(
    ("path", "action", "fields", "perm"),
    [
        ("/admin/credits/wallet/", "adjust_credits", {"credits": "100000", "reason": "x"}, "change_wallet"),
        ("/admin/credits/grant/", "deactivate", {"reason": "x"}, "change_grant"),
    ],
)
def test_c20_staff_without_the_credits_permission_can_neither_adjust_nor_deactivate(
    plus, ledger, client_for, path, action, fields, perm
):
    """Being staff is not enough (an outsider probe added 100,000 credits as a staff user holding
    no permission at all): the list and its action need the model's change permission."""
    from django.contrib.auth.models import Permission

    support = UserFactory(email="support@platform.test", is_staff=True)
    target = Wallet.objects.get(tenant=plus).pk if "wallet" in path else ledger.pk
    client = client_for(support)
    before = (figures(tenant_id=plus.pk), AuditEvent.objects.count(), Grant.objects.count())

    assert client.get(path).status_code == 403
    refused = client.post(path, {"action": action, "_selected_action": [target], "apply": "1", **fields})

    assert refused.status_code == 403
    assert (figures(tenant_id=plus.pk), AuditEvent.objects.count(), Grant.objects.count()) == before
    support.user_permissions.add(Permission.objects.get(codename=perm))
    assert client_for(support).get(path).status_code == 200


def test_staff_edit_feature_costs_and_packs_in_credits_and_money_as_customers_read_them(staff, client_for):
    """C08, C12: the catalog (feature costs, extra packs) is kept in thousandths and minor units, but staff read and type credits
    ("0.2") and prices ("19.50"); a malformed or out-of-range figure is a form error that changes nothing."""
    from credits.models import FeatureCost

    client = client_for(staff)
    cost = FeatureCost.objects.get(feature="ai_review")
    page = client.get(f"/admin/credits/featurecost/{cost.pk}/change/").content.decode()
    assert 'name="credits_per_use" value="0.1"' in page
    fields = {"feature": "ai_review", "name": "AI Reviewer review", "unit": "ai_credit", "active": "on"}
    response = client.post(
        f"/admin/credits/featurecost/{cost.pk}/change/", {**fields, "credits_per_use": "0.2"}
    )
    assert response.status_code == 302
    assert FeatureCost.objects.get(pk=cost.pk).cost == 200
    for bad in ("0", "-1", "0.0001", "1e3", "abc", "2000000000"):
        refused = client.post(
            f"/admin/credits/featurecost/{cost.pk}/change/", {**fields, "credits_per_use": bad}
        )
        assert refused.status_code == 200, bad  # the form again, with its error
    assert FeatureCost.objects.get(pk=cost.pk).cost == 200

    pack = ExtraPack.objects.get(code="extra-500")
    page = client.get(f"/admin/credits/extrapack/{pack.pk}/change/").content.decode()
    assert 'name="pack_credits" value="500"' in page
    assert 'name="price" value="29.00"' in page
    pack_fields = {
        "code": pack.code, "name": pack.name, "currency": "usd", "validity_days": 30, "active": "on", "sort_order": 0,
    }  # fmt: skip
    response = client.post(
        f"/admin/credits/extrapack/{pack.pk}/change/",
        {**pack_fields, "pack_credits": "750.5", "price": "19.50"},
    )
    assert response.status_code == 302
    pack.refresh_from_db()
    assert (pack.credits, pack.price_amount) == (750_500, 1950)
    for bad in ("19.505", "-5", "1,000", "", "99999999999"):
        refused = client.post(
            f"/admin/credits/extrapack/{pack.pk}/change/",
            {**pack_fields, "pack_credits": "500", "price": bad},
        )
        assert refused.status_code == 200, bad
    pack.refresh_from_db()
    assert (pack.credits, pack.price_amount) == (750_500, 1950)
    for bad in ("zzz", "EURO", "", "us"):
        refused = client.post(
            f"/admin/credits/extrapack/{pack.pk}/change/",
            {**pack_fields, "currency": bad, "pack_credits": "500", "price": "29.00"},
        )
        assert refused.status_code == 200, bad
        if bad == "zzz":
            assert "A currency the plans are priced in: USD." in refused.content.decode()
    response = client.post(  # the code as typed, kept as Stripe takes it
        f"/admin/credits/extrapack/{pack.pk}/change/",
        {**pack_fields, "currency": " USD ", "pack_credits": "750.5", "price": "19.50"},
    )
    assert response.status_code == 302
    pack.refresh_from_db()
    assert (pack.credits, pack.price_amount, pack.currency) == (750_500, 1950, "usd")

    added = client.post(
        "/admin/credits/extrapack/add/",
        {**pack_fields, "code": "extra-2000", "name": "2,000 credits", "pack_credits": "2000", "price": "99"},
    )
    assert added.status_code == 302
    assert ExtraPack.objects.filter(code="extra-2000").values_list("credits", "price_amount").get() == (
        2_000_000,
        9900,
    )
    assert client.get("/admin/credits/featurecost/add/").status_code == 200


def test_the_activity_page_reads_credit_events_as_sentences(staff, plus, ledger, admin, client_for):
    from tenants.audit import sentence

    services.credits_adjust(tenant=plus, amount=3 * K, reason="Goodwill", actor=staff)
    services.credits_adjust(tenant=plus, amount=-2500, reason="Duplicate", actor=staff)
    services.credits_grant_deactivate(grant=ledger, actor=staff, reason="Asked CS")
    texts = [sentence(e) for e in AuditEvent.objects.filter(action__startswith="credits.").order_by("pk")]
    assert texts == [
        "System granted 500 AI credits (Extra pack)",
        "System granted 100 AI credits (Plan included)",
        f"{staff.display_name} granted 3 AI credits (Staff adjustment)",
        f"{staff.display_name} added 3 AI credits: Goodwill",
        f"{staff.display_name} took 2.5 AI credits: Duplicate",
        f"{staff.display_name} deactivated the package Extra pack #{ledger.pk}: Asked CS",
    ]
