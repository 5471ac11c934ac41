"""The ledger's rules, one by one, through the services (C08, C13 to C15 and the issue's Ledger
section). Each test ends by checking the invariants from the rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from credits import services
from credits.factories import grant, on_plus
from credits.models import Consumption, Entry, FeatureCost, Grant, Hold, Source
from credits.selectors import extra_pack_expiry, figures, pack_offer
from credits.tests.conftest import START
from credits.tests.helpers import K, balance, check_invariants, consume, entries, refused
from plans.models import Subscription
from plans.selectors import MSG_ENDED, MSG_OVERDUE
from tenants.audit import sentence
from tenants.factories import insert_copy
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db


# --- costs (C08) ---------------------------------------------------------------------------------


def test_c08_one_credit_is_one_smart_response_or_ten_ai_reviews(plus):
    grant(plus, 2)
    assert consume(plus, "sr", feature="smart_response")["consumed"] == "1"
    answer = consume(plus, "reviews", feature="ai_review", quantity=10)
    assert (answer["consumed"], answer["balance"], answer["available"]) == ("1", "0", "0")
    check_invariants(plus)


def test_c08_one_ai_review_costs_a_tenth_of_a_credit_as_a_decimal_string(plus):
    grant(plus, 50)
    answer = consume(plus, "r1", feature="ai_review")
    assert (answer["consumed"], answer["balance"], answer["available"], answer["held"]) == (
        "0.1",
        "49.9",
        "49.9",
        "0",
    )


def test_feature_costs_are_a_staff_editable_table_applied_to_the_next_consumption(plus):
    grant(plus, 10)
    FeatureCost.objects.filter(feature="smart_response").update(cost=2500)
    assert consume(plus, "k", feature="smart_response")["consumed"] == "2.5"
    exc = refused(consume, plus, "k2", feature="no_such_feature")
    assert (exc.status, exc.code) == (422, "unknown_feature")
    assert exc.message == "Unknown feature 'no_such_feature'. Use one of: ai_review, smart_response."


# --- draw order ------------------------------------------------------------------------------------


def test_consumption_draws_plan_credits_before_extra_packs_each_soonest_expiring_first(plus):
    pack_soon = grant(plus, 5, source=Source.EXTRA_PACK, days=2)
    plan_late = grant(plus, 3, source=Source.PLAN_RENEWAL, days=20)
    plan_soon = grant(plus, 2, source=Source.PLAN_INCLUDED, days=10)
    staff = grant(plus, 1, source=Source.STAFF_ADJUSTMENT, days=None)
    answer = consume(plus, "big", quantity=9)
    assert answer["grants"] == [
        {"grant_id": plan_soon.pk, "source": "plan_included", "credits": "2"},
        {"grant_id": plan_late.pk, "source": "plan_renewal", "credits": "3"},
        {"grant_id": staff.pk, "source": "staff_adjustment", "credits": "1"},
        {"grant_id": pack_soon.pk, "source": "extra_pack", "credits": "3"},
    ]
    assert dict(Grant.objects.values_list("pk", "remaining")) == {
        pack_soon.pk: 2 * K,
        plan_late.pk: 0,
        plan_soon.pk: 0,
        staff.pk: 0,
    }
    assert answer["balance"] == "2"
    check_invariants(plus)


def test_consumption_takes_all_it_needs_or_nothing_and_stores_no_key(plus):
    grant(plus, 2)
    consume(plus, "first", quantity=1)
    before = (entries(plus), list(Grant.objects.values_list("pk", "remaining")))
    exc = refused(consume, plus, "too-much", quantity=2)
    assert (exc.status, exc.code, exc.message) == (
        402,
        "insufficient_credits",
        "Not enough AI credits: 2 needed, 1 available.",
    )
    assert (entries(plus), list(Grant.objects.values_list("pk", "remaining"))) == before
    assert not Consumption.objects.filter(idempotency_key="too-much").exists()
    # The failed attempt stored no key: once there is credit, the same key goes through.
    grant(plus, 5)
    assert consume(plus, "too-much", quantity=2)["balance"] == "4"
    check_invariants(plus)


# --- idempotency -------------------------------------------------------------------------------------


def test_same_key_again_answers_the_first_answer_and_takes_nothing(plus):
    grant(plus, 10)
    first = services.credits_consume(tenant=plus, feature="ai_review", quantity=3, idempotency_key="k")
    again = services.credits_consume(tenant=plus, feature="ai_review", quantity=3, idempotency_key="k")
    assert (first.created, again.created) == (True, False)
    assert again.answer == first.answer
    assert first.answer["balance"] == "9.7"
    assert balance(plus) == "9.7"
    assert Consumption.objects.count() == 1
    check_invariants(plus)


@pytest.mark.parametrize(
    ("feature", "quantity", "client_id"),
    [("smart_response", 3, ""), ("ai_review", 4, ""), ("ai_review", 3, "client-b")],
)
def test_same_key_with_another_request_is_a_conflict(plus, feature, quantity, client_id):
    grant(plus, 10)
    consume(plus, "k", feature="ai_review", quantity=3)
    exc = refused(consume, plus, "k", feature=feature, quantity=quantity, client_id=client_id)
    assert (exc.status, exc.code) == (409, "idempotency_conflict")
    assert exc.message == "This idempotency key was already used with a different request."
    assert balance(plus) == "9.7"


def test_a_key_names_either_a_consumption_or_a_hold(plus):
    grant(plus, 10)
    consume(plus, "shared")
    assert refused(services.credits_hold, tenant=plus, idempotency_key="shared", amount=K).status == 409
    services.credits_hold(tenant=plus, idempotency_key="held", amount=K)
    assert refused(consume, plus, "held").status == 409


def test_the_database_refuses_a_second_consumption_with_the_same_key(plus):
    grant(plus, 10)
    consume(plus, "k")
    first = Consumption.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Consumption.objects.create(
            wallet=first.wallet, tenant=plus, idempotency_key="k", feature="smart_response", amount=K
        )


# --- expiry ------------------------------------------------------------------------------------


def test_expired_credit_leaves_the_balance_at_the_moment_it_expires_before_any_sweeper(plus, clock):
    grant(plus, 5, source=Source.EXTRA_PACK, days=30)
    grant(plus, 2, days=60)
    expiry = START + timedelta(days=30)
    clock.move_to(expiry - timedelta(microseconds=1))
    assert balance(plus) == "7"
    clock.move_to(expiry)
    assert balance(plus) == "2"
    assert Entry.objects.filter(kind=Entry.Kind.EXPIRE).count() == 0  # no sweeper ran
    check_invariants(plus)


def test_consumption_at_the_instant_of_expiry_never_uses_expired_credit(plus, clock):
    soon = grant(plus, 5, days=1)
    later = grant(plus, 1, source=Source.EXTRA_PACK, days=30)
    clock.move_to(START + timedelta(days=1))  # exactly soon.expires_at
    answer = consume(plus, "at-expiry")
    assert answer["grants"] == [{"grant_id": later.pk, "source": "extra_pack", "credits": "1"}]
    exc = refused(consume, plus, "more")
    assert (exc.code, exc.message) == (
        "insufficient_credits",
        "Not enough AI credits: 1 needed, 0 available.",
    )
    assert Grant.objects.get(pk=soon.pk).remaining == 5 * K  # untouched until the sweeper writes it off
    check_invariants(plus)


def test_the_expiry_sweeper_writes_what_expired_once(plus, clock):
    pack = grant(plus, 5, source=Source.EXTRA_PACK, days=30)
    consume(plus, "k", quantity=2)
    clock.move_to(START + timedelta(days=31))
    assert services.grants_expire_due(now=timezone.now()) == 1
    assert services.grants_expire_due(now=timezone.now()) == 0
    assert list(Entry.objects.filter(grant=pack).order_by("pk").values_list("kind", "quantity")) == [
        ("grant", 5 * K),
        ("consume", -2 * K),
        ("expire", -3 * K),
    ]
    assert Grant.objects.get(pk=pack.pk).remaining == 0
    check_invariants(plus)


def test_the_sweeper_marks_every_grant_past_its_expiry_swept_and_reads_only_the_unswept(plus, clock):
    """A grant used up before it expired gets no entry but is marked swept too, so no later run
    reads it again: the sweeper's index holds only grants still to sweep, and it names no column a
    consumption writes (a grant's row is then updated in place, a HOT update)."""
    used_up = grant(plus, 1, days=5)
    left = grant(plus, 5, source=Source.EXTRA_PACK, days=5)
    forever = grant(plus, 2, source=Source.STAFF_ADJUSTMENT, days=None)
    consume(plus, "k", quantity=1)  # takes the plan grant first: used up
    clock.move_to(START + timedelta(days=6))
    now = timezone.now()
    assert services.grants_expire_due(now=now) == 1
    swept = dict(Grant.objects.values_list("pk", "swept_at"))
    assert swept == {used_up.pk: now, left.pk: now, forever.pk: None}
    assert not Grant.objects.filter(swept_at__isnull=True, expires_at__lte=now).exists()
    assert list(Entry.objects.filter(grant=used_up, kind="expire")) == []
    check_invariants(plus)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'credits_grant'")
            definitions = [row[0] for row in cursor.fetchall()]
        assert not any("remaining" in d for d in definitions), definitions
        assert any("(expires_at)" in d and "swept_at IS NULL" in d for d in definitions), definitions


def test_a_grant_not_yet_started_does_not_count(plus, clock):
    grant(plus, 4, valid_from=START + timedelta(days=1))
    assert balance(plus) == "0"
    clock.move_to(START + timedelta(days=1))
    assert balance(plus) == "4"


# --- refunds -----------------------------------------------------------------------------------


def test_refund_returns_the_credits_to_the_grants_they_came_from(plus):
    a = grant(plus, 1, days=5)
    b = grant(plus, 5, source=Source.EXTRA_PACK, days=30)
    consume(plus, "k", quantity=3)
    answer = services.credits_refund(tenant=plus, idempotency_key="k").answer
    assert (answer["refunded"], answer["expired"], answer["balance"]) == ("3", "0", "6")
    assert dict(Grant.objects.values_list("pk", "remaining")) == {a.pk: 1 * K, b.pk: 5 * K}
    check_invariants(plus)


def test_refund_leaves_what_came_from_an_expired_grant_expired(plus, clock):
    a = grant(plus, 1, days=5)
    b = grant(plus, 5, source=Source.EXTRA_PACK, days=30)
    consume(plus, "k", quantity=3)
    clock.move_to(START + timedelta(days=5))
    answer = services.credits_refund(tenant=plus, idempotency_key="k").answer
    assert (answer["refunded"], answer["expired"], answer["balance"]) == ("2", "1", "5")
    assert dict(Grant.objects.values_list("pk", "remaining")) == {a.pk: 0, b.pk: 5 * K}
    check_invariants(plus)


def test_a_second_refund_answers_the_first_and_changes_nothing(plus):
    grant(plus, 5)
    consume(plus, "k", quantity=2)
    first = services.credits_refund(tenant=plus, idempotency_key="k")
    before = entries(plus)
    second = services.credits_refund(tenant=plus, idempotency_key="k")
    assert (first.created, second.created, second.answer) == (True, False, first.answer)
    assert entries(plus) == before
    assert balance(plus) == "5"


def test_refund_of_an_unknown_key_is_not_found(plus):
    grant(plus, 5)
    exc = refused(services.credits_refund, tenant=plus, idempotency_key="nope")
    assert (exc.status, exc.code, exc.message) == (
        404,
        "not_found",
        "No consumption has this idempotency key.",
    )


# --- holds -------------------------------------------------------------------------------------


def test_a_hold_reserves_available_credit_but_stays_in_the_balance(plus):
    grant(plus, 10)
    answer = services.credits_hold(tenant=plus, idempotency_key="h", amount=2500).answer
    assert (answer["credits"], answer["status"], answer["balance"], answer["held"], answer["available"]) == (
        "2.5",
        "held",
        "10",
        "2.5",
        "7.5",
    )
    assert answer["expires_at"] == (START + timedelta(seconds=900)).isoformat()
    exc = refused(consume, plus, "k", quantity=8)
    assert exc.message == "Not enough AI credits: 8 needed, 7.5 available."
    check_invariants(plus)


def test_a_hold_is_all_or_nothing(plus):
    grant(plus, 1)
    exc = refused(
        services.credits_hold, tenant=plus, idempotency_key="h", feature="smart_response", quantity=2
    )
    assert (exc.status, exc.code) == (402, "insufficient_credits")
    assert not Hold.objects.exists()


def test_commit_consumes_the_actual_amount_and_releases_the_rest(plus):
    plan_grant = grant(plus, 10)
    hold = services.credits_hold(tenant=plus, idempotency_key="h", amount=2500).answer
    answer = services.credits_hold_commit(tenant=plus, hold_id=hold["id"], amount=1200).answer
    assert (answer["status"], answer["committed"], answer["released"]) == ("committed", "1.2", "1.3")
    assert (answer["balance"], answer["held"], answer["available"]) == ("8.8", "0", "8.8")
    assert answer["grants"] == [{"grant_id": plan_grant.pk, "source": "plan_included", "credits": "1.2"}]
    assert Consumption.objects.get(hold_id=hold["id"]).amount == 1200
    check_invariants(plus)


def test_commit_without_an_amount_takes_the_whole_hold(plus):
    grant(plus, 10)
    hold = services.credits_hold(
        tenant=plus, idempotency_key="h", feature="smart_response", quantity=3
    ).answer
    answer = services.credits_hold_commit(tenant=plus, hold_id=hold["id"]).answer
    assert (answer["committed"], answer["released"], answer["balance"]) == ("3", "0", "7")


def test_commit_of_more_than_the_hold_is_refused(plus):
    grant(plus, 10)
    hold = services.credits_hold(tenant=plus, idempotency_key="h", amount=2000).answer
    exc = refused(services.credits_hold_commit, tenant=plus, hold_id=hold["id"], amount=2001)
    assert (exc.status, exc.code, exc.message) == (
        422,
        "commit_exceeds_hold",
        "Commit at most the 2 credits held.",
    )
    assert Hold.objects.get().status == "held"


def test_a_repeated_commit_answers_the_first_commit(plus):
    grant(plus, 10)
    hold = services.credits_hold(tenant=plus, idempotency_key="h", amount=2000).answer
    first = services.credits_hold_commit(tenant=plus, hold_id=hold["id"], amount=1500)
    same = services.credits_hold_commit(tenant=plus, hold_id=hold["id"], amount=1500)
    assert (same.created, same.answer) == (False, first.answer)
    assert refused(services.credits_hold_commit, tenant=plus, hold_id=hold["id"], amount=1000).status == 409
    # Without an amount a commit asks for the whole hold (2): after a commit of 1.5 that is another
    # request, refused as an explicit 2 is, not answered as if it were the first.
    for whole in (None, 2000):
        exc = refused(services.credits_hold_commit, tenant=plus, hold_id=hold["id"], amount=whole)
        assert (exc.status, exc.code, exc.message) == (
            409,
            "hold_committed",
            "This hold was already committed for 1.5 credits.",
        )
    assert balance(plus) == "8.5"
    check_invariants(plus)


def test_a_commit_without_an_amount_repeated_answers_its_first_answer(plus):
    grant(plus, 10)
    hold = services.credits_hold(tenant=plus, idempotency_key="h", amount=2000).answer
    first = services.credits_hold_commit(tenant=plus, hold_id=hold["id"])
    again = services.credits_hold_commit(tenant=plus, hold_id=hold["id"])
    explicit = services.credits_hold_commit(tenant=plus, hold_id=hold["id"], amount=2000)
    assert (again.created, again.answer) == (False, first.answer)
    assert explicit.answer == first.answer
    assert balance(plus) == "8"


def test_commit_after_release_or_expiry_and_release_after_commit_are_conflicts(plus, clock):
    grant(plus, 10)
    released = services.credits_hold(tenant=plus, idempotency_key="r", amount=K).answer
    services.credits_hold_release(tenant=plus, hold_id=released["id"])
    exc = refused(services.credits_hold_commit, tenant=plus, hold_id=released["id"])
    assert (exc.status, exc.code, exc.message) == (
        409,
        "hold_released",
        "This hold was released: it can no longer be committed.",
    )
    committed = services.credits_hold(tenant=plus, idempotency_key="c", amount=K).answer
    services.credits_hold_commit(tenant=plus, hold_id=committed["id"])
    exc = refused(services.credits_hold_release, tenant=plus, hold_id=committed["id"])
    assert (exc.status, exc.code, exc.message) == (
        409,
        "hold_committed",
        "This hold was committed: it can no longer be released.",
    )
    lapsing = services.credits_hold(tenant=plus, idempotency_key="e", amount=K, ttl_seconds=60).answer
    clock.move_to(START + timedelta(seconds=60))
    exc = refused(services.credits_hold_commit, tenant=plus, hold_id=lapsing["id"])
    assert (exc.status, exc.code, exc.message) == (
        409,
        "hold_expired",
        "This hold expired: its credits were released. Place a new hold.",
    )
    check_invariants(plus)


def test_release_twice_answers_the_same(plus):
    grant(plus, 10)
    hold = services.credits_hold(tenant=plus, idempotency_key="h", amount=3000).answer
    first = services.credits_hold_release(tenant=plus, hold_id=hold["id"])
    again = services.credits_hold_release(tenant=plus, hold_id=hold["id"])
    assert (first.created, again.created, again.answer) == (True, False, first.answer)
    assert (first.answer["status"], first.answer["available"], first.answer["held"]) == (
        "released",
        "10",
        "0",
    )
    check_invariants(plus)


def test_an_expired_hold_stops_counting_at_once_and_the_sweeper_releases_it(plus, clock):
    grant(plus, 10)
    hold = services.credits_hold(tenant=plus, idempotency_key="h", amount=4000, ttl_seconds=120).answer
    assert figures(tenant_id=plus.pk).available == 6 * K
    clock.move_to(START + timedelta(seconds=120))
    assert figures(tenant_id=plus.pk).available == 10 * K  # before any sweeper
    check_invariants(plus)
    assert services.holds_expire_due(now=timezone.now()) == 1
    assert services.holds_expire_due(now=timezone.now()) == 0
    assert Hold.objects.get().status == "expired"
    answer = services.credits_hold_release(tenant=plus, hold_id=hold["id"]).answer
    assert answer["status"] == "expired"
    check_invariants(plus)


def test_commit_draws_from_grants_valid_at_commit_time_and_never_from_expired_ones(plus, clock):
    grant(plus, 3, days=1)
    clock.move_to(START + timedelta(hours=12))
    hold = services.credits_hold(tenant=plus, idempotency_key="h", amount=2000, ttl_seconds=86_400).answer
    clock.move_to(START + timedelta(days=1))  # the only grant expired under the open hold
    exc = refused(services.credits_hold_commit, tenant=plus, hold_id=hold["id"])
    assert (exc.status, exc.code) == (402, "insufficient_credits")
    renewal = grant(plus, 2000, source=Source.PLAN_RENEWAL)
    answer = services.credits_hold_commit(tenant=plus, hold_id=hold["id"]).answer
    assert answer["grants"] == [{"grant_id": renewal.pk, "source": "plan_renewal", "credits": "2"}]
    check_invariants(plus)


def test_hold_ttl_is_one_second_to_a_day(plus):
    grant(plus, 10)
    for ttl in (0, 86_401):
        exc = refused(
            services.credits_hold, tenant=plus, idempotency_key=f"t{ttl}", amount=K, ttl_seconds=ttl
        )
        assert (exc.status, exc.code) == (422, "invalid_ttl")


def test_hold_idempotency(plus):
    grant(plus, 10)
    first = services.credits_hold(tenant=plus, idempotency_key="h", amount=K)
    again = services.credits_hold(tenant=plus, idempotency_key="h", amount=K)
    assert (again.created, again.answer) == (False, first.answer)
    assert refused(services.credits_hold, tenant=plus, idempotency_key="h", amount=2 * K).status == 409
    assert Hold.objects.count() == 1


def test_a_refund_of_a_committed_hold_returns_its_credits(plus):
    grant(plus, 10)
    hold = services.credits_hold(tenant=plus, idempotency_key="h", amount=2000).answer
    services.credits_hold_commit(tenant=plus, hold_id=hold["id"], amount=1500)
    answer = services.credits_refund(tenant=plus, idempotency_key="h").answer
    assert (answer["refunded"], answer["balance"]) == ("1.5", "10")
    check_invariants(plus)


# --- plan admission ---------------------------------------------------------------------------


def test_no_plan_is_refused_with_the_spec_message(tenant, clock):
    exc = refused(consume, tenant, "k")
    assert (exc.status, exc.code, exc.message) == (402, "subscription_ended", MSG_ENDED)


def test_an_ended_plan_is_refused_with_the_spec_message_even_with_credits_left(plus):
    grant(plus, 10)
    Subscription.objects.filter(tenant=plus).update(state="expired")
    exc = refused(consume, plus, "k")
    assert (exc.status, exc.code, exc.message) == (
        402,
        "subscription_ended",
        "Your subscription has ended. Please upgrade your plan to continue.",
    )
    assert (
        refused(services.credits_hold, tenant=plus, idempotency_key="h", amount=K).code
        == "subscription_ended"
    )
    assert balance(plus) == "10"


def test_an_overdue_plan_is_refused_as_payment_overdue(plus):
    grant(plus, 10)
    Subscription.objects.filter(tenant=plus).update(state="suspended")
    exc = refused(consume, plus, "k")
    assert (exc.status, exc.code, exc.message) == (402, "payment_overdue", MSG_OVERDUE)


def test_a_retry_of_a_consumption_answers_even_after_the_plan_ended(plus):
    grant(plus, 10)
    first = consume(plus, "k")
    Subscription.objects.filter(tenant=plus).update(state="expired")
    assert consume(plus, "k") == first


# --- extra packs (C13 to C15) ------------------------------------------------------------------------


def _pack(code: str = "extra-500"):
    from credits.models import ExtraPack

    return ExtraPack.objects.get(code=code)


def test_c13_an_extra_pack_is_valid_30_days_and_granted_once_per_payment(plus):
    g = services.credits_grant_extra_pack(tenant=plus, pack=_pack(), reference="payment:pi_1")
    again = services.credits_grant_extra_pack(tenant=plus, pack=_pack(), reference="payment:pi_1")
    assert again.pk == g.pk
    assert (g.source, g.amount, g.valid_from, g.expires_at) == (
        "extra_pack",
        500 * K,
        START,
        START + timedelta(days=30),
    )
    assert balance(plus) == "500"


def test_c14_only_one_extra_pack_at_a_time_even_when_it_is_spent(plus):
    services.credits_grant_extra_pack(tenant=plus, pack=_pack(), reference="payment:pi_1")
    consume(plus, "all", quantity=500)
    refusal = pack_offer(tenant=plus, role="admin").refusal
    assert refusal is not None
    assert (refusal.status, refusal.code) == (409, "extra_pack_active")
    assert refusal.message == (
        "You already have an active extra credit package (valid until 1 Jun 2022). Only one extra "
        "package can be active at a time; you can buy a new one once it expires."
    )


def test_c15_once_the_pack_expires_its_credits_stop_counting_and_a_new_one_can_be_bought(plus, clock):
    services.credits_grant_extra_pack(tenant=plus, pack=_pack(), reference="payment:pi_1")
    clock.move_to(START + timedelta(days=30))
    assert balance(plus) == "0"
    assert extra_pack_expiry(tenant_id=plus.pk) is None  # no pack in the way of a new one


# --- staff ---------------------------------------------------------------------------------------


def test_staff_adjustment_adds_a_grant_or_takes_credit_and_is_audited(plus, admin):
    grant(plus, 5)
    added = services.credits_adjust(tenant=plus, amount=3 * K, reason="Goodwill for the outage", actor=admin)
    assert isinstance(added, Grant)
    assert (added.source, added.expires_at, added.priority) == ("staff_adjustment", None, 20)
    services.credits_adjust(tenant=plus, amount=-6 * K, reason="Duplicate grant", actor=admin)
    assert balance(plus) == "2"
    assert list(
        AuditEvent.objects.filter(action="credits.adjusted").order_by("pk").values_list("data", flat=True)
    ) == [
        {"amount": "3", "reason": "Goodwill for the outage", "unit": "ai_credit"},
        {"amount": "-6", "reason": "Duplicate grant", "unit": "ai_credit"},
    ]
    who = sentence(AuditEvent.objects.filter(action="credits.adjusted").earliest("pk")).split(" added ")[0]
    assert [sentence(e) for e in AuditEvent.objects.filter(action="credits.adjusted").order_by("pk")] == [
        f"{who} added 3 AI credits: Goodwill for the outage",
        f"{who} took 6 AI credits: Duplicate grant",
    ]
    services.credits_adjust(tenant=plus, unit="ticket_credit", amount=4 * K, reason="Onboarding", actor=admin)
    latest = AuditEvent.objects.filter(action="credits.adjusted").latest("pk")
    assert sentence(latest) == f"{who} added 4 ticket credits: Onboarding"
    exc = refused(services.credits_adjust, tenant=plus, amount=-3 * K, reason="x", actor=admin)
    assert exc.code == "insufficient_credits"
    assert (
        refused(services.credits_adjust, tenant=plus, amount=K, reason=" ", actor=admin).code
        == "reason_required"
    )
    check_invariants(plus)


def test_c20_package_deactivation_by_staff_ends_the_pack_now_and_is_audited(plus, admin, clock):
    pack = services.credits_grant_extra_pack(tenant=plus, pack=_pack(), reference="payment:pi_1")
    consume(plus, "k", quantity=100)
    clock.move_to(START + timedelta(days=3))
    services.credits_grant_deactivate(grant=pack, actor=admin, reason="Customer asked Customer Success")
    services.credits_grant_deactivate(grant=pack, actor=admin, reason="again")  # idempotent
    pack.refresh_from_db()
    ended = START + timedelta(days=3)
    assert (pack.remaining, pack.expires_at, pack.deactivated_at) == (0, ended, ended)
    assert balance(plus) == "0"
    assert extra_pack_expiry(tenant_id=plus.pk) is None
    assert list(Entry.objects.filter(grant=pack).order_by("pk").values_list("kind", "quantity")) == [
        ("grant", 500 * K),
        ("consume", -100 * K),
        ("expire", -400 * K),
    ]
    assert AuditEvent.objects.filter(action="credits.package_deactivated").count() == 1
    check_invariants(plus)


# --- the database's own guards -------------------------------------------------------------------


def test_entries_are_append_only(plus):
    grant(plus, 1)
    entry = Entry.objects.get()
    with pytest.raises(TypeError):
        entry.save()
    with pytest.raises(TypeError):
        Entry.objects.filter(pk=entry.pk).update(quantity=5)
    with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE credits_entry SET quantity = 5 WHERE id = %s", [entry.pk])


def test_a_grant_can_never_go_below_zero_or_above_its_amount(plus):
    g = grant(plus, 1)
    for value in (-1, K + 1):
        with pytest.raises(IntegrityError), transaction.atomic():
            Grant.objects.filter(pk=g.pk).update(remaining=value)


def test_a_ledger_row_belongs_to_its_wallets_tenant(plus, other_tenant):
    """One foreign key holds a consumption's and an entry's wallet and tenant together (migration
    0009): a row naming another tenant's wallet, or a wallet that does not exist, is refused."""
    on_plus(other_tenant)
    grant(plus, 5)
    grant(other_tenant, 1)
    consume(plus, "k")
    theirs = Entry.objects.filter(tenant=other_tenant).first().wallet_id
    for row in (Consumption.objects.get(), Entry.objects.filter(kind="consume").get()):
        for changes in ({"tenant": other_tenant}, {"wallet_id": theirs}, {"wallet_id": 10**9}):
            with pytest.raises(IntegrityError, match="wallet_of_tenant"):
                insert_copy(type(row).objects.get(pk=row.pk), idempotency_key="copy", **changes)
    insert_copy(Entry.objects.filter(kind="consume").get())  # the same wallet and tenant: accepted
    assert Entry.objects.filter(kind="consume").count() == 2


def test_the_one_key_foreign_keys_hold_for_the_rows_there_before_them():
    """Added NOT VALID (no scan holding up the writes), then validated by a migration of its own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, convalidated FROM pg_constraint WHERE conname = ANY(%s) ORDER BY conname",
            [["consumption_wallet_of_tenant", "entry_wallet_of_tenant", "ticket_client_of_tenant"]],
        )
        assert cursor.fetchall() == [
            ("consumption_wallet_of_tenant", True),
            ("entry_wallet_of_tenant", True),
            ("ticket_client_of_tenant", True),
        ]


def test_a_grant_reference_is_granted_once(plus, other_tenant):
    first = grant(plus, 1, reference="invoice:in_1")
    assert grant(plus, 1, reference="invoice:in_1").pk == first.pk
    assert Grant.objects.count() == 1
    exc = refused(grant, other_tenant, 1, reference="invoice:in_1")
    assert (exc.status, exc.code) == (409, "reference_taken")


def test_a_second_tenant_has_its_own_wallet(plus, other_tenant):
    on_plus(other_tenant)
    grant(plus, 5)
    grant(other_tenant, 1)
    consume(other_tenant, "k")
    consume(plus, "k")  # the same key in another wallet is another consumption
    assert (balance(plus), balance(other_tenant)) == ("4", "0")


# --- plan periods replacing each other --------------------------------------------------------------


def test_a_plus_period_that_starts_a_moment_before_the_free_plan_still_replaces_it(plus, clock):
    """Gateway periods start on whole seconds: AI Plus bought within a second of signing up starts
    "before" AI Free. Plus keeps its whole period; what is left of Free ends."""
    from plans.factories import plan

    clock.move_to(START + timedelta(seconds=1))
    free = services.credits_grant_plan_period(
        tenant=plus,
        plan=plan("credits-free"),
        period_start=START + timedelta(milliseconds=500),
        period_end=START + timedelta(days=90),
        reference="subscription:1:free",
    )
    paid = services.credits_grant_plan_period(
        tenant=plus,
        plan=plan("credits-plus"),
        period_start=START,
        period_end=START + timedelta(days=30),
        reference="invoice:in_1",
    )
    free.refresh_from_db()
    paid.refresh_from_db()
    assert (paid.expires_at, paid.remaining) == (START + timedelta(days=30), 2000 * K)
    assert (free.expires_at, free.remaining) == (START + timedelta(seconds=1), 0)
    assert balance(plus) == "2000"
    check_invariants(plus)


def test_a_future_plan_period_shortens_the_current_one_to_its_start(plus, clock):
    from plans.factories import plan

    plus_plan = plan("credits-plus")
    now_period = services.credits_grant_plan_period(
        tenant=plus,
        plan=plus_plan,
        period_start=START,
        period_end=START + timedelta(days=31),
        reference="invoice:a",
    )
    services.credits_grant_plan_period(
        tenant=plus,
        plan=plus_plan,
        period_start=START + timedelta(days=30),
        period_end=START + timedelta(days=60),
        reference="invoice:b",
    )
    now_period.refresh_from_db()
    assert (now_period.expires_at, now_period.remaining) == (START + timedelta(days=30), 2000 * K)
    assert balance(plus) == "2000"
    clock.move_to(START + timedelta(days=30))
    assert balance(plus) == "2000"  # the next period's credits, the previous month's expired
    assert Grant.objects.get(reference="invoice:b").source == "plan_renewal"
    check_invariants(plus)


def test_a_retry_after_staff_changed_a_cost_still_answers_the_first_answer(plus):
    grant(plus, 10)
    first = consume(plus, "k", feature="smart_response", quantity=2)
    held = services.credits_hold(
        tenant=plus, idempotency_key="h", feature="smart_response", quantity=1
    ).answer
    FeatureCost.objects.filter(feature="smart_response").update(cost=3000)
    assert consume(plus, "k", feature="smart_response", quantity=2) == first
    again = services.credits_hold(tenant=plus, idempotency_key="h", feature="smart_response", quantity=1)
    assert (again.created, again.answer) == (False, held)
