"""The tenant isolation sweep: every URL of the project, called as someone who must not see or
change the victim tenant's data.

The victim is `tenant` (Acme) with members, invitations, keys and activity. The attacker is
`outsider`, admin of `other_tenant` (Globex) and of nothing else, with a Globex API key.
For every URL pattern:
- tenant pages (`/t/<slug>/…`): every id is filled with a victim object, the slug with the victim's
  slug AND with the attacker's own slug; GET and POST, plain and htmx: the answer is 404 or 403,
  shows none of the victim's data, and the victim's rows are unchanged;
- API endpoints: called with the attacker's key, ids filled with victim objects: 404/403 and none
  of the victim's data; then every operation the API's schema documents (PUT and DELETE too) once
  more, with its documented example body whose ids and keys name the victim's objects: the victim's
  rows unchanged; without a key, or with a revoked one: 401;
- anonymous: tenant pages redirect to the login page, API endpoints answer 401.
A URL whose parameters the sweep cannot fill and that is not on the commented allow-list below
fails the test, so every URL added later is covered or consciously exempted.
The role sweep: the victim's own member and finance call every tenant URL: nothing answers 5xx, and
every POST is refused (403) or not a method of the URL (405) unless the URL is on the commented list
of what those roles may do, so a new admin-only form that forgets its role check fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from billing_portal.factories import InvoiceFactory, InvoiceLineFactory
from billing_portal.models import BillingCustomer, CheckoutSession, Invoice
from config.api import api
from credits import services as credit_services
from credits.factories import grant as credit_grant
from credits.factories import on_plus
from credits.models import Consumption, Entry, Grant, Hold
from licensing import services as licensing
from licensing.factories import ClientFactory, on_helpdesk
from licensing.models import Client as PartnerClient
from licensing.models import ClientImport, Ticket
from plans.factories import ScheduledChangeFactory, SubscriptionFactory, plan
from plans.models import Lead, ScheduledChange, Subscription
from sessions_billing import services as sessions
from sessions_billing.models import Agent, BillableWindow, Conversation, SessionLimit, UsagePeriod
from tenants import services
from tenants.factories import MembershipFactory, UserFactory
from tenants.models import ApiKey, AuditEvent, Invitation, Membership, Role, Tenant

# URLs that hold no tenant's data, by name, with why they are not swept as tenant URLs. They are
# still called as the outsider and anonymously, and must never show the victim's data.
NOT_TENANT_SCOPED = {
    "home": "redirects to the signed-in user's own tenant",
    "healthz": "load-balancer health check, no data",
    "signup": "public sign-up form",
    "login": "public login form",
    "logout": "ends the caller's own session",
    "password_reset": "public form; the email goes to the address's owner only",
    "password_reset_done": "static confirmation page",
    "password_reset_confirm": "bearer link: the signed token is the authorization; a forged one is refused",
    "password_reset_complete": "static confirmation page",
    "password_change": "the caller's own password",
    "password_change_done": "static confirmation page",
    "tenant_new": "creates a new tenant owned by the caller",
    "invitation_accept": "bearer link: the emailed token is the authorization (tested in test_team)",
    "api:openapi-json": "the API's schema, no data",
    "api:openapi-view": "the API's documentation page, no data",
    "api:api-root": "the API root, no data",
    "stripe_webhook": "the gateway's webhook: the signature is the authorization; an unsigned or "
    "forged body is a 400 and stores nothing (billing_portal/tests/test_webhooks.py)",
    "dev_checkout": "local gateway stand-in: 404 unless DEBUG, and then only for an admin of the "
    "customer's tenant (billing_portal/tests/test_billing_views.py sweeps it with DEBUG on)",
    "dev_portal": "local gateway stand-in: as dev_checkout",
    "dev_invoice": "local gateway stand-in (the hosted invoice page): its tenant's admins and finance only",
}
# Route prefixes exempt from the sweep, with why.
EXEMPT_PREFIXES = {
    "admin/": "Django admin: platform staff only; a non-staff user is sent to the admin login "
    "(asserted in test_admin_is_closed_to_tenant_users below).",
}
# Values for non-object parameters of the not-tenant-scoped URLs.
PUBLIC_FILLERS = {
    "uidb64": "MQ",
    "token": "not-a-real-token",
    "session_id": "cs_x",
    "customer_id": "cus_x",
    "gateway_invoice_id": "in_x",
}
# Parameters that name shared things, not the victim's objects (the catalog is the same for all).
SHARED_FILLERS = {"plan_code": "agents-scale", "product": "ai_agents", "kind": "ai"}
# Tenant URLs that a member or finance may POST to, by name, with why (the role sweep below refuses
# every other POST of theirs).
MEMBER_AND_FINANCE_WRITES = {
    "billing_contact": "all profiles can register interest in a plan (spec 001, Permission and Access Rules)",
}


@dataclass(frozen=True)
class Route:
    route: str
    name: str
    params: tuple[str, ...]

    @property
    def is_api(self) -> bool:
        return self.route.startswith("api/")

    @property
    def is_tenant(self) -> bool:
        return "<slug:slug>" in self.route


def _walk(patterns: list, prefix: str = "", namespace: str = "") -> Iterator[Route]:
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from _walk(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            route = prefix + str(p.pattern)
            params = tuple(re.findall(r"<(?:\w+:)?(\w+)>", route))
            yield Route(route, f"{namespace}{p.name}" if p.name else route, params)


def all_routes() -> list[Route]:
    return [r for r in _walk(get_resolver().url_patterns) if not r.route.startswith(tuple(EXEMPT_PREFIXES))]


def _fill(route: str, values: dict[str, Any]) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), route)


@dataclass(frozen=True)
class Operation:
    route: Route
    method: str  # lower case, as the test client names it
    example: dict[str, Any] | None  # the first documented example body, if the operation takes one


def api_operations() -> list[Operation]:
    """Every operation of the integration API, as its OpenAPI schema documents it: PUT and DELETE
    too, which the GET/POST calls of the sweep never reach."""
    schema = api.get_openapi_schema()
    by_path = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", "/" + r.route): r for r in all_routes() if r.is_api}
    found = []
    for path, item in schema["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            examples = [e["value"] for e in body.get("examples", {}).values()]
            found.append(
                Operation(by_path[path], method, examples[0] if examples else ({} if body else None))
            )
    return found


def _api_call(client: Client, url: str, op: Operation, body: dict[str, Any] | None, **headers: str):
    if body is None:
        return getattr(client, op.method)(url, **headers)
    return getattr(client, op.method)(url, data=body, content_type="application/json", **headers)


@pytest.fixture
def victim(tenant, admin, member, finance) -> dict[str, Any]:
    """The victim tenant's objects, one per kind of id a URL can take, and the strings that must
    never appear in an answer to the attacker."""
    extra = MembershipFactory(
        tenant=tenant, role=Role.MEMBER, user=UserFactory(email="victim-member@acme.test")
    )
    invitation = services.invitation_create(
        tenant=tenant, email="victim-invitee@acme.test", role=Role.FINANCE, actor=admin
    ).invitation
    key = services.api_key_create(tenant=tenant, name="Acme production key", actor=admin).api_key
    invoice = InvoiceFactory(
        tenant=tenant, number="ACME-VICTIM-0001", gateway_invoice_id="in_victim_acme_0001"
    )
    InvoiceLineFactory(invoice=invoice, description="Acme victim invoice line")
    subscription = SubscriptionFactory(
        tenant=tenant, plan=plan("agents-growth"), gateway_subscription_id="sub_victim_acme"
    )
    change = ScheduledChangeFactory(subscription=subscription, to_plan=plan("agents-starter"))
    on_plus(tenant)
    credit_grant(tenant, 50)
    credit_services.credits_consume(
        tenant=tenant,
        feature="ai_review",
        quantity=1,
        idempotency_key="victim-consume-key",
        client_id="acme-victim-client",
    )
    hold = credit_services.credits_hold(tenant=tenant, idempotency_key="victim-hold-key", amount=1000).answer
    conversation, _ = sessions.session_start(
        tenant=tenant, conversation_id="victim-conv-acme", direction="inbound", agent="victim-agent-acme"
    )
    SessionLimit.objects.create(tenant=tenant, session_limit=777)
    on_helpdesk(tenant)
    client = ClientFactory(
        tenant=tenant,
        external_id="victim-client-acme",
        name="Acme Victim Client Co",
        company_type="Acme victim company type",
        ai_license_since=timezone.now(),
    )
    licensing.ticket_qualify(tenant=tenant, ticket_id="victim-ticket-acme", client_id=client.external_id)
    upload = ClientImport.objects.create(
        tenant=tenant,
        created_by=admin,
        filename="acme-victim-import.csv",
        content="external_id,name\nacme-victim-imported,Acme Victim Imported\n",
        status=ClientImport.Status.READY,
        total=1,
        new=1,
    )
    return {
        "ids": {
            "slug": tenant.slug,
            "membership_id": extra.pk,
            "invitation_id": invitation.pk,
            "key_id": key.pk,
            "invoice_id": invoice.pk,
            "change_id": change.pk,
            "hold_id": hold["id"],
            "conversation_id": conversation.conversation_id,
            "client_pk": client.pk,
            "client_id": client.external_id,
            "import_id": upload.pk,
        },
        # Fields of an API request body that name the victim's objects (the key of a consumption to
        # refund, a client, a conversation, a ticket): the write pass sends them with the attacker's key.
        "body": {
            "idempotency_key": "victim-consume-key",
            "client_id": client.external_id,
            "conversation_id": conversation.conversation_id,
            "ticket_id": "victim-ticket-acme",
        },
        "markers": [
            tenant.name,
            "admin@acme.test",
            "member@acme.test",
            "finance@acme.test",
            "victim-member@acme.test",
            "victim-invitee@acme.test",
            "Acme production key",
            key.prefix,
            "ACME-VICTIM-0001",
            "in_victim_acme_0001",
            "Acme victim invoice line",
            "sub_victim_acme",
            "victim-consume-key",
            "victim-hold-key",
            "acme-victim-client",
            "victim-conv-acme",
            "victim-agent-acme",
            "victim-client-acme",
            "Acme Victim Client Co",
            "Acme victim company type",
            "acme-victim-import.csv",
            "acme-victim-imported",
        ],
    }


def _snapshot(tenant: Tenant) -> dict[str, Any]:
    return {
        "memberships": sorted(Membership.objects.filter(tenant=tenant).values_list("user_id", "role")),
        "invitations": sorted(Invitation.objects.filter(tenant=tenant).values_list("pk", "status")),
        "keys": sorted(ApiKey.objects.filter(tenant=tenant).values_list("pk", "revoked_at")),
        "audit": AuditEvent.objects.filter(tenant=tenant).count(),
        "invoices": sorted(
            Invoice.objects.filter(tenant=tenant).values_list("pk", "status", "amount_paid", "updated_at")
        ),
        "subscriptions": sorted(
            Subscription.objects.filter(tenant=tenant).values_list("pk", "plan_id", "state")
        ),
        "changes": sorted(ScheduledChange.objects.filter(tenant=tenant).values_list("pk", "status")),
        "leads": Lead.objects.filter(tenant=tenant).count(),
        "checkouts": CheckoutSession.objects.filter(tenant=tenant).count(),
        "customer": BillingCustomer.objects.filter(tenant=tenant).count(),
        "tenant": Tenant.objects.filter(pk=tenant.pk).values("name", "slug").get(),
        "credit_grants": sorted(
            Grant.objects.filter(tenant=tenant).values_list("pk", "remaining", "expires_at")
        ),
        "credit_holds": sorted(Hold.objects.filter(tenant=tenant).values_list("pk", "status")),
        "credit_consumptions": sorted(
            Consumption.objects.filter(tenant=tenant).values_list("pk", "refunded_at")
        ),
        "credit_entries": Entry.objects.filter(tenant=tenant).count(),
        "conversations": sorted(
            Conversation.objects.filter(tenant=tenant).values_list(
                "pk", "last_activity_at", "ended_at", "billable_sessions", "answered"
            )
        ),
        "windows": BillableWindow.objects.filter(tenant=tenant).count(),
        "usage": sorted(UsagePeriod.objects.filter(tenant=tenant).values_list("pk", "billable_sessions")),
        "limit": list(SessionLimit.objects.filter(tenant=tenant).values_list("session_limit", flat=True)),
        "agents": sorted(Agent.objects.filter(tenant=tenant).values_list("key", "name")),
        "clients": sorted(
            PartnerClient.objects.filter(tenant=tenant).values_list(
                "pk", "name", "status", "ai_license_since", "chat_license_since", "updated_at"
            )
        ),
        "client_imports": sorted(ClientImport.objects.filter(tenant=tenant).values_list("pk", "status")),
        "tickets": sorted(Ticket.objects.filter(tenant=tenant).values_list("ticket_id", "via")),
    }


def _calls(client: Client, url: str, **headers: str) -> Iterator[tuple[str, Any]]:
    for method in ("get", "post"):
        for htmx in (False, True):
            extra = {"HTTP_HX_REQUEST": "true"} if htmx else {}
            extra.update(headers)
            label = f"{method.upper()}{' (htmx)' if htmx else ''} {url}"
            yield label, getattr(client, method)(url, **extra)


def _assert_no_markers(label: str, response, markers: list[str]) -> None:
    body = response.content.decode(errors="replace")
    leaked = [m for m in markers if m in body]
    assert not leaked, f"{label} shows the victim's data: {leaked}"


def _unfillable(routes: list[Route], fillers: dict[str, Any]) -> list[str]:
    problems = []
    for r in routes:
        if r.name in NOT_TENANT_SCOPED:
            missing = [p for p in r.params if p not in PUBLIC_FILLERS]
        elif r.is_tenant or r.is_api:
            missing = [p for p in r.params if p not in fillers and p not in SHARED_FILLERS]
        else:
            missing = ["(neither a tenant page, an API endpoint, nor on the allow-list)"]
        if missing:
            problems.append(f"{r.route} [{r.name}]: cannot fill {missing}")
    return problems


@pytest.mark.django_db
def test_every_url_is_covered_by_the_sweep_or_allow_listed(victim):
    problems = _unfillable(all_routes(), victim["ids"])
    assert not problems, "Add a filler in `victim` or a commented allow-list entry:\n" + "\n".join(problems)


@pytest.mark.django_db
def test_allow_list_names_only_urls_that_exist():
    names = {r.name for r in all_routes()}
    stale = set(NOT_TENANT_SCOPED) - names
    assert not stale, f"allow-list entries for URLs that no longer exist: {stale}"


@pytest.mark.django_db
def test_outsider_cannot_see_or_change_another_tenants_data(
    victim, tenant, outsider, other_tenant, client_for
):
    client = client_for(outsider)
    attacker_key = services.api_key_create(tenant=other_tenant, name="Globex key", actor=outsider).secret
    before = _snapshot(tenant)
    swept = 0
    for r in all_routes():
        if r.name in NOT_TENANT_SCOPED:
            values = {p: PUBLIC_FILLERS[p] for p in r.params}
            url = _fill(r.route, values)
            if r.name == "logout":
                continue  # would end the attacker's session for the rest of the sweep; holds no data
            for label, response in _calls(client, url):
                _assert_no_markers(label, response, victim["markers"])
            continue
        if r.is_tenant:
            slugs = [tenant.slug]
            if any(p in victim["ids"] for p in r.params if p != "slug"):
                # The victim's object ids in the URL: also try them under the attacker's own tenant.
                slugs.append(other_tenant.slug)
            for slug in slugs:
                url = _fill(r.route, {**SHARED_FILLERS, **victim["ids"], "slug": slug})
                for label, response in _calls(client, url):
                    # 405: the method does not exist on this URL, so no view code ran.
                    assert response.status_code in (403, 404, 405), f"{label} answered {response.status_code}"
                    if slug == tenant.slug:
                        assert response.status_code == 404, f"{label}: a non-member must get 404"
                    _assert_no_markers(label, response, victim["markers"])
                    swept += 1
        elif r.is_api:
            url = _fill(r.route, {**SHARED_FILLERS, **victim["ids"]})
            for label, response in _calls(Client(), url, HTTP_AUTHORIZATION=f"Bearer {attacker_key}"):
                if any(p in victim["ids"] for p in r.params):  # the victim's objects by id
                    assert response.status_code in (403, 404, 405), f"{label} answered {response.status_code}"
                _assert_no_markers(label, response, victim["markers"])
                swept += 1
    # Every operation of the API once more, PUT and DELETE included, with its documented example
    # body naming the victim's objects: whatever it answers, nothing of the victim's changes and the
    # answer shows nothing of the victim's but what the attacker has sent (a client the attacker
    # created under the victim's client id is the attacker's own).
    sent = ""
    for op in api_operations():
        url = _fill(op.route.route, {**SHARED_FILLERS, **victim["ids"]})
        body = None if op.example is None else {**op.example, **_victim_fields(op.example, victim["body"])}
        label = f"{op.method.upper()} {url} {body}"
        response = _api_call(Client(), url, op, body, HTTP_AUTHORIZATION=f"Bearer {attacker_key}")
        assert response.status_code < 500, f"{label} answered {response.status_code}"
        sent += url + str(body)
        _assert_no_markers(label, response, [m for m in victim["markers"] if m not in sent])
        swept += 1
    assert swept > 0
    assert _snapshot(tenant) == before, "the outsider's requests changed the victim's data"


def _victim_fields(example: dict[str, Any], fields: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in fields.items() if name in example}


@pytest.mark.django_db
def test_anonymous_requests_are_sent_to_login_or_refused(victim, tenant):
    client = Client()
    before = _snapshot(tenant)
    for r in all_routes():
        if r.name in NOT_TENANT_SCOPED:
            url = _fill(r.route, {p: PUBLIC_FILLERS[p] for p in r.params})
            for label, response in _calls(client, url):
                _assert_no_markers(label, response, victim["markers"])
            continue
        url = _fill(r.route, {**SHARED_FILLERS, **victim["ids"]})
        for label, response in _calls(client, url):
            if r.is_api:
                if response.status_code == 405:
                    continue  # the method does not exist on this endpoint: nothing ran
                assert response.status_code == 401, f"{label} answered {response.status_code}"
                assert response.json()["error"]["code"] == "unauthorized"
            else:
                assert response.status_code == 302, f"{label} answered {response.status_code}"
                assert response["Location"].startswith("/accounts/login/"), (
                    f"{label} → {response['Location']}"
                )
            _assert_no_markers(label, response, victim["markers"])
    assert _snapshot(tenant) == before


@pytest.mark.django_db
def test_revoked_victim_key_cannot_reach_the_api(victim, tenant, admin):
    """A key the victim revoked is refused everywhere, at once: every operation, writes included."""
    issued = services.api_key_create(tenant=tenant, name="Soon revoked", actor=admin)
    services.api_key_revoke(tenant=tenant, api_key=issued.api_key, actor=admin)
    before = _snapshot(tenant)
    operations = [op for op in api_operations() if op.route.name not in NOT_TENANT_SCOPED]
    assert {op.method for op in operations} >= {"get", "post", "put", "delete"}
    for op in operations:
        url = _fill(op.route.route, {**SHARED_FILLERS, **victim["ids"]})
        response = _api_call(Client(), url, op, op.example, HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
        assert response.status_code == 401, f"{op.method.upper()} {url} answered {response.status_code}"
    assert _snapshot(tenant) == before


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["member", "finance"])
def test_member_and_finance_post_only_what_their_role_may_and_nothing_answers_5xx(
    request, role, victim, tenant, client_for
):
    """The role sweep: every tenant URL as the victim's own member or finance. A POST is refused
    (403) or not a method of the URL (405), unless the URL is in MEMBER_AND_FINANCE_WRITES; a refused
    request changes nothing."""
    client = client_for(request.getfixturevalue(role))
    routes = [r for r in all_routes() if r.is_tenant]
    values = {**SHARED_FILLERS, **victim["ids"]}
    before = _snapshot(tenant)
    for r in routes:
        if r.name in MEMBER_AND_FINANCE_WRITES:
            continue  # swept below, once the snapshot is compared
        for label, response in _calls(client, _fill(r.route, values)):
            assert response.status_code < 500, f"{label} answered {response.status_code} to {role}"
            if label.startswith("POST"):
                assert response.status_code in (403, 405), (
                    f"{label} answered {response.status_code} to {role}: refuse it with the role check "
                    "or, if this role may use it, add it to MEMBER_AND_FINANCE_WRITES with why"
                )
    assert _snapshot(tenant) == before, f"{role}'s refused requests changed the tenant's data"
    for r in routes:
        if r.name in MEMBER_AND_FINANCE_WRITES:
            for label, response in _calls(client, _fill(r.route, values)):
                assert response.status_code < 500, f"{label} answered {response.status_code} to {role}"


@pytest.mark.django_db
def test_the_member_and_finance_allow_list_names_only_urls_that_exist():
    names = {r.name for r in all_routes() if r.is_tenant}
    stale = set(MEMBER_AND_FINANCE_WRITES) - names
    assert not stale, f"allow-list entries for URLs that no longer exist: {stale}"


@pytest.mark.django_db
def test_admin_is_closed_to_tenant_users(outsider, client_for):
    response = client_for(outsider).get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
