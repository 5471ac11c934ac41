"""Book a demo / Speak with Specialist / registered interest: one open sales request per tenant and
plan, whoever sends it and however often."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from plans import services as plan_services
from plans.factories import plan
from plans.models import Lead, LeadKind, Plan
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db


def contact_url(tenant, code: str) -> str:
    return reverse("billing_contact", kwargs={"slug": tenant.slug, "plan_code": code})


def test_book_a_demo_twice_keeps_one_open_lead(tenant, admin):
    """S16, C16"""
    first, created = plan_services.lead_create(
        tenant=tenant,
        user=admin,
        plan=plan("agents-enterprise"),
        message="  50 agents  ",
    )
    again, created_again = plan_services.lead_create(
        tenant=tenant, user=admin, plan=plan("agents-enterprise"), message="Hello?"
    )
    assert (created, created_again, again.pk) == (True, False, first.pk)
    lead = Lead.objects.get(tenant=tenant)
    assert (lead.kind, lead.status, lead.user, lead.message, lead.plan.code) == (
        "book_demo",
        "new",
        admin,
        "50 agents",
        "agents-enterprise",
    )
    assert AuditEvent.objects.filter(tenant=tenant, action="lead.created").count() == 1


def test_book_a_demo_from_the_plans_section_shows_request_received(tenant, admin, client_for):
    """S16: sending twice (a double click, or again later) is still one CRM record."""
    client = client_for(admin)
    for _ in range(2):
        response = client.post(
            contact_url(tenant, "agents-enterprise"), {"message": "SSO please"}, follow=True
        )
        assert response.status_code == 200
        assert "Request received. Our team will get in touch." in response.content.decode()
    lead = Lead.objects.get(tenant=tenant)
    assert (lead.kind, lead.message, lead.user) == ("book_demo", "SSO please", admin)
    # The Enterprise card now says so instead of offering Book a demo again.
    page = client.get(
        reverse("billing", kwargs={"slug": tenant.slug}) + "?product=ai_agents"
    ).content.decode()
    assert 'data-testid="request-received"' in page
    assert 'data-testid="contact-agents-enterprise"' not in page


def test_book_a_demo_with_htmx_answers_the_request_received_fragment(tenant, admin, client_for):
    """S16"""
    response = client_for(admin).post(contact_url(tenant, "agents-enterprise"), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="request-received">Request received</div>' in body
    assert "Our team will get in touch about Enterprise." in body
    assert Lead.objects.filter(tenant=tenant).count() == 1


def test_speak_with_specialist_creates_one_specialist_lead(tenant, admin, client_for):
    """C07, C16"""
    client = client_for(admin)
    client.post(contact_url(tenant, "credits-ultra"))
    client.post(contact_url(tenant, "credits-ultra"))
    assert list(Lead.objects.filter(tenant=tenant).values_list("kind", "plan__code")) == [
        ("specialist", "credits-ultra")
    ]


def test_members_may_register_interest_but_not_subscribe(tenant, member, finance, client_for):
    """C18, C21: a non-administrator registers interest in Plus or Ultra; only admins buy."""
    response = client_for(member).post(
        contact_url(tenant, "credits-plus"), {"message": "We need more credits"}
    )
    assert response.status_code == 302
    client_for(finance).post(contact_url(tenant, "credits-ultra"))
    assert list(
        Lead.objects.filter(tenant=tenant).order_by("plan__rank").values_list("kind", "plan__code", "user")
    ) == [
        ("interest", "credits-plus", member.pk),
        ("specialist", "credits-ultra", finance.pk),
    ]
    # The member sending again (or the admin after them) does not open a second request.
    client_for(member).post(contact_url(tenant, "credits-plus"))
    assert Lead.objects.filter(tenant=tenant, plan__code="credits-plus").count() == 1

    subscribe = reverse("billing_subscribe", kwargs={"slug": tenant.slug, "plan_code": "credits-plus"})
    assert client_for(member).post(subscribe).status_code == 403
    page = client_for(member).get(reverse("billing", kwargs={"slug": tenant.slug}) + "?product=ai_credits")
    assert "Ask your account administrator to subscribe." in page.content.decode()


def test_a_new_request_opens_a_new_lead_once_sales_worked_the_last_one(tenant, admin):
    """S16: one open request; a contacted one is closed for this rule."""
    lead, _ = plan_services.lead_create(tenant=tenant, user=admin, plan=plan("agents-enterprise"))
    Lead.objects.filter(pk=lead.pk).update(status=Lead.Status.CONTACTED)
    fresh, created = plan_services.lead_create(tenant=tenant, user=admin, plan=plan("agents-enterprise"))
    assert created is True
    assert fresh.pk != lead.pk
    assert Lead.objects.filter(tenant=tenant).count() == 2


def test_an_outsider_cannot_send_a_request_for_another_tenant(tenant, outsider, client_for):
    response = client_for(outsider).post(contact_url(tenant, "agents-enterprise"))
    assert response.status_code == 404
    assert Lead.objects.filter(tenant=tenant).count() == 0


def test_the_catalogs_contact_sales_plans_name_their_lead_kind():
    """S16, C16: set by the data migration from the catalog, not from a button label."""
    assert sorted(Plan.objects.exclude(lead_kind="").values_list("code", "kind", "lead_kind")) == [
        ("agents-enterprise", "contact_sales", "book_demo"),
        ("credits-ultra", "contact_sales", "specialist"),
    ]


def test_the_lead_kind_staff_choose_decides_the_button_and_the_lead(tenant, member, client_for):
    """Staff switch Enterprise to Speak with Specialist: the card and the CRM record follow."""
    Plan.objects.filter(code="agents-enterprise").update(lead_kind=LeadKind.SPECIALIST)
    client = client_for(member)
    page = client.get(reverse("billing", kwargs={"slug": tenant.slug})).content.decode()
    assert 'data-testid="contact-agents-enterprise">Speak with Specialist<' in page
    client.post(contact_url(tenant, "agents-enterprise"))
    assert list(Lead.objects.values_list("kind", flat=True)) == ["specialist"]


MSG_LEAD_KIND = (
    "A contact-sales plan needs a lead kind (Book a demo or Speak with Specialist); other plans have none."
)


@pytest.mark.parametrize(
    ("code", "lead_kind", "messages"),
    [
        ("agents-enterprise", "", [MSG_LEAD_KIND]),
        ("agents-enterprise", "interest", ["Value 'interest' is not a valid choice."]),
        ("agents-growth", "book_demo", [MSG_LEAD_KIND]),
    ],
)
def test_a_plan_has_a_lead_kind_exactly_when_it_is_contact_sales(code, lead_kind, messages):
    """The admin's form says so (full_clean), and the database refuses it too."""
    edited = plan(code)
    edited.lead_kind = lead_kind
    with pytest.raises(ValidationError) as exc:
        edited.full_clean()
    assert exc.value.messages == messages
    with pytest.raises(IntegrityError), transaction.atomic():
        edited.save(update_fields=["lead_kind"])
