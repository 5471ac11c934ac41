"""Activity reads as sentences ("Ana Admin changed the plan to Growth"), not action codes (issue 6,
part 5). Each app registers the sentences of the actions it writes; a test fails on an action the
code writes that has no sentence."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plans import services as plan_services
from plans.factories import SubscriptionFactory, plan
from plans.models import Subscription
from tenants import services
from tenants.audit import SYSTEM, action_label, audit, register_sentences, registered_actions, sentence
from tenants.factories import ApiKeyFactory, UserFactory
from tenants.models import AuditEvent, Role

ROOT = Path(__file__).resolve().parents[2]
APPS = ("tenants", "plans", "credits", "licensing", "sessions_billing", "billing_portal", "config")


def actions_the_code_writes() -> set[str]:
    """Every `action="…"` the apps pass to audit(), and the subscription transitions plans names by
    state (`f"subscription.{_verb(target)}"`)."""
    found: set[str] = set()
    for app in APPS:
        for path in (ROOT / app).rglob("*.py") if (ROOT / app).exists() else ():
            if "tests" in path.parts or "migrations" in path.parts:
                continue
            found |= set(re.findall(r"""\baction=["']([a-z_]+\.[a-z_]+)["']""", path.read_text()))
    found |= {f"subscription.{plan_services._verb(state)}" for state in Subscription.State.values}
    return found


def test_every_action_the_code_writes_has_a_sentence():
    written = actions_the_code_writes()
    assert {"subscription.plan_changed", "member.added", "checkout.started", "lead.created"} <= written
    missing = sorted(written - registered_actions())
    assert not missing, f"register a sentence (tenants.audit.register_sentences) for: {missing}"


@pytest.mark.django_db
def test_every_registered_sentence_reads_without_falling_back(tenant):
    """Each sentence filled with data like the services write reads as a sentence, not the fallback."""
    data = {
        "role": "finance",
        "from": "member",
        "to": "admin",
        "ends": "2026-12-13",
        "starts_on": "2026-12-29",
        "reason": "days",
        "kind": "book_demo",
    }
    for action in sorted(registered_actions()):
        event = AuditEvent(
            tenant=tenant,
            actor_type="system",
            actor_label="system",
            action=action,
            target_label="Growth",
            data=data,
        )
        text = sentence(event)
        assert not text.startswith("System: "), (action, text)
        assert "{" not in text, (action, text)


@pytest.mark.django_db
def test_sentences_name_people_plans_and_dates(tenant, admin, client_for):
    ana = admin
    ana.full_name = "Ana Admin"
    ana.save()
    ben = UserFactory(email="ben@acme.test", full_name="Ben Boss")
    services.invitation_create(tenant=tenant, email="carla@acme.test", role=Role.FINANCE, actor=ben)
    sub = SubscriptionFactory(tenant=tenant, plan=plan("agents-starter"))
    audit(tenant=tenant, actor=ana, action="subscription.plan_changed", target=sub, target_label="Growth")
    audit(tenant=tenant, actor=SYSTEM, action="subscription.suspended", target=sub, target_label="Growth")
    audit(
        tenant=tenant,
        actor=ana,
        action="subscription.change_scheduled",
        target=sub,
        target_label="Scale",
        data={"starts_on": "2026-12-29"},
    )
    key = ApiKeyFactory(tenant=tenant, name="Production")
    audit(tenant=tenant, actor=key, action="api_key.used", target=key)
    plan_services.lead_create(tenant=tenant, user=ana, plan=plan("agents-enterprise"))

    response = client_for(admin).get("/t/acme/activity/")
    sentences = re.findall(
        r'data-testid="event-sentence" title="[^"]+">([^<]+)</td>', response.content.decode()
    )
    assert sentences == [
        "Ana Admin booked a demo of Enterprise",
        f"API key Production ({key.prefix}) used the API",
        "Ana Admin scheduled a change to Scale on 29 Dec 2026",
        "System suspended Growth (payment overdue)",
        "Ana Admin changed the plan to Growth",
        "Ben Boss invited carla@acme.test as Finance",
    ]


@pytest.mark.django_db
def test_the_action_filter_shows_readable_names(tenant, admin, client_for):
    audit(tenant=tenant, actor=admin, action="subscription.plan_changed", target_label="Growth")
    audit(
        tenant=tenant, actor=admin, action="member.added", target_label="x@acme.test", data={"role": "member"}
    )
    page = client_for(admin).get("/t/acme/activity/").content.decode()
    assert '<option value="member.added" >Member added</option>' in page
    assert '<option value="subscription.plan_changed" >Plan changed</option>' in page


@pytest.mark.django_db
def test_an_unknown_action_falls_back_to_a_readable_sentence(tenant, admin):
    event = audit(tenant=tenant, actor=admin, action="widget.frobnicated", target_label="Gizmo")
    assert sentence(event) == f"{admin.display_name}: Widget frobnicated (Gizmo)"
    assert action_label("api_key.rotated") == "API key rotated"
    register_sentences({"widget.frobnicated": "{actor} frobnicated {target} with {missing}"})
    try:
        assert sentence(event) == f"{admin.display_name}: Widget frobnicated (Gizmo)"  # unfillable
    finally:
        from tenants import audit as audit_module

        audit_module._SENTENCES.pop("widget.frobnicated")


@pytest.mark.django_db
def test_activity_query_count_stays_flat_with_names_in_sentences(
    tenant, admin, client_for, django_assert_max_num_queries
):
    client = client_for(admin)
    for n in range(30):
        audit(
            tenant=tenant,
            actor=UserFactory(full_name=f"User {n}"),
            action="member.removed",
            target_label=f"u{n}@x.test",
        )
    client.get("/t/acme/activity/")
    with django_assert_max_num_queries(12):
        page = client.get("/t/acme/activity/").content.decode()
    assert "User 29 removed u29@x.test from the team" in page
