"""Idempotent demo data for `make run`: an MSP partner (Helpdesk AI), a marketplace on AI credits,
an AI-agent platform, and one AI Agents tenant in each subscription state — each tenant with an
admin, a member and a finance user — plus one platform staff user. Paid plans are bought through
the local gateway's checkout, so subscriptions, invoices and webhook events are the real thing.
Every password is DEMO_PASSWORD; the README lists the logins."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from billing_portal import services as billing
from billing_portal.demo import start_plan
from billing_portal.gateway.factory import get_gateway
from billing_portal.gateway.local import LocalGateway
from billing_portal.models import PortalConfiguration
from credits.demo import demo_month, demo_pack
from licensing.demo import demo_partner
from plans import services as plan_services
from plans.models import Plan, Subscription
from sessions_billing.demo import demo_limit_near, demo_sessions
from tenants import services
from tenants.audit import SYSTEM
from tenants.models import Membership, Role, Tenant, User

DEMO_PASSWORD = "allowance-demo"

# (slug, name, plan code to buy or "", state to put the AI Agents subscription in)
DEMO_TENANTS = [
    ("northwind", "Northwind IT Partners", "helpdesk-essentials", ""),
    # Lumen's AI Agents trial ended before it bought AI Plus: on the free trial AI Credits' plans
    # offer only Register interest (C19).
    ("lumen", "Lumen Marketplace", "credits-plus", "expired"),
    ("helix", "Helix Agents", "agents-growth", ""),
    ("orbit", "Orbit Support", "", "trial"),
    ("nimbus", "Nimbus Care", "", "trial_ending"),
    ("tidewater", "Tidewater Travel", "agents-starter", "upcoming"),
    ("kestrel", "Kestrel Labs", "agents-growth", "payment_issue"),
    ("juniper", "Juniper Health", "agents-scale", "canceled"),
    ("quill", "Quill Analytics", "", "expired"),
]


def demo_api_key(slug: str) -> str:
    return f"alw_demo{slug[:4]}_{slug}-demo-key-not-secret"


class Command(BaseCommand):
    help = "Create (or bring up to date) the demo tenants and users. Safe to run any number of times."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="Seed even with DEBUG off (never in production)"
        )

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "seed_demo creates known passwords and keys: it runs only with DEBUG=true (or --force)."
            )
        staff = self._user("staff@allowance.test", "Platform Staff")
        if not (staff.is_staff and staff.is_superuser):
            staff.is_staff = staff.is_superuser = True
            staff.save(update_fields=["is_staff", "is_superuser"])
        created = 0
        for slug, name, plan_code, state in DEMO_TENANTS:
            if Tenant.objects.filter(slug=slug).exists():
                self._people(Tenant.objects.get(slug=slug), slug)
                continue
            with transaction.atomic():
                admin = self._user(f"admin@{slug}.test", f"{name.split()[0]} Admin")
                tenant = billing.organization_create(name=name, admin=admin, actor=SYSTEM)
                if tenant.slug != slug:
                    Tenant.objects.filter(pk=tenant.pk).update(slug=slug)
                    tenant.refresh_from_db()
                self._people(tenant, slug)
                key = services.api_key_create(
                    tenant=tenant, name="Demo integration", actor=SYSTEM, secret=demo_api_key(slug)
                ).api_key
            if state == "expired":
                self._shape(tenant, state, admin)  # a trial ends before any plan is bought
            if plan_code:
                start_plan(tenant=tenant, plan=Plan.objects.get(code=plan_code), actor=admin)
            if state != "expired":
                self._shape(tenant, state, admin)
            if slug == "helix":
                self._backdate_period(tenant, days=24)  # a month of usage shows in the current period
            # What the gateway did is applied here and now, not when a worker gets to the webhooks:
            # the demo is ready when this command returns.
            billing.tenant_reconcile(tenant=tenant)
            self._usage(tenant, slug)
            if plan_code.startswith("helpdesk-"):
                # Northwind: a few hundred client companies, licenses near the plan's total (some held
                # by inactive clients), tickets through licenses and ticket credits.
                demo_partner(tenant=tenant, admin=admin, api_key=key)
            if plan_code == "credits-plus":
                # Lumen: a month of AI-credit consumption (AI Statistics) and an active extra pack,
                # bought with the saved card at the local gateway as Buy extra credits buys one
                # (without the dialog's security code: nobody reads the demo admin's mail).
                demo_month(tenant=tenant, plan=Plan.objects.get(code=plan_code), api_key=key)
                pack = demo_pack()
                if pack is not None:
                    billing.extra_pack_charge_confirmed(tenant=tenant, pack=pack, actor=admin)
            created += 1
        # Manage opens the portal as configured for Allowance (as billing_portal_configure does).
        for purpose in PortalConfiguration.Purpose:
            billing.portal_configure(purpose=purpose)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready ({created} new tenants). Every demo password is {DEMO_PASSWORD!r}."
            )
        )

    def _people(self, tenant: Tenant, slug: str) -> None:
        for role in (Role.ADMIN, Role.MEMBER, Role.FINANCE):
            user = self._user(f"{role.value}@{slug}.test", f"{tenant.name.split()[0]} {role.label}")
            Membership.objects.get_or_create(tenant=tenant, user=user, defaults={"role": role})

    def _shape(self, tenant: Tenant, state: str, admin: User) -> None:
        """Put the AI Agents subscription in the demo state, through the same paths users take."""
        sub = (
            Subscription.objects.filter(tenant=tenant, product__code="ai_agents")
            .exclude(state="expired")
            .first()
        )
        now = timezone.now()
        gateway = get_gateway()
        assert isinstance(gateway, LocalGateway)
        if state == "trial_ending" and sub is not None:
            ends = now + timedelta(days=2)
            Subscription.objects.filter(pk=sub.pk).update(trial_ends_at=ends, current_period_end=ends)
        elif state == "expired" and sub is not None:
            plan_services.trial_end(subscription=sub, reason="days", now=now)
        elif state == "upcoming" and sub is not None:
            billing.plan_change(
                tenant=tenant,
                to_plan=Plan.objects.get(code="agents-growth"),
                when="period_end",
                custom_date=None,
                actor=admin,
            )
        elif state == "payment_issue" and sub is not None:
            gateway.fail_next_payment(sub.gateway_subscription_id)
        elif state == "canceled" and sub is not None:
            gateway.cancel_subscription(
                subscription_id=sub.gateway_subscription_id,
                at_period_end=True,
                idempotency_key=f"demo-cancel:{sub.pk}",
            )

    def _backdate_period(self, tenant: Tenant, *, days: int) -> None:
        """Move the local gateway's current period of the AI Agents subscription back `days` days."""
        from billing_portal.gateway.store import LocalGatewayObject

        sub = Subscription.objects.get(tenant=tenant, product__code="ai_agents", state="active")
        row = LocalGatewayObject.objects.get(
            object_type="subscription", object_id=sub.gateway_subscription_id
        )
        # The whole period moves back (its length kept: a calendar month), and its invoice with it,
        # issued, paid and billing the same period the card shows (the finance view's service period
        # comes from the invoice's lines).
        shift = int(timedelta(days=days).total_seconds())
        for item in row.data["items"]["data"]:
            item["current_period_start"] -= shift
            item["current_period_end"] -= shift
        row.data["billing_cycle_anchor"] -= shift
        for key in ("created", "start_date"):
            if row.data.get(key):
                row.data[key] -= shift
        row.save(update_fields=["data"])
        for invoice_row in LocalGatewayObject.objects.filter(
            object_type="invoice",
            data__parent__subscription_details__subscription=sub.gateway_subscription_id,
        ):
            invoice = invoice_row.data
            for key in ("created", "effective_at", "period_start", "period_end", "webhooks_delivered_at"):
                if invoice.get(key):
                    invoice[key] -= shift
            for key, value in list(invoice["status_transitions"].items()):
                if value:
                    invoice["status_transitions"][key] = value - shift
            for line in invoice["lines"]["data"]:
                line["period"] = {
                    "start": line["period"]["start"] - shift,
                    "end": line["period"]["end"] - shift,
                }
            invoice_row.save(update_fields=["data"])

    def _usage(self, tenant: Tenant, slug: str) -> None:
        """AI Agents usage: Helix a month of sessions near its own limit; the trials and Starter some."""
        usage = {
            "helix": (30, 30),
            "orbit": (3, 4),
            "nimbus": (8, 4),
            "tidewater": (12, 9),
            "kestrel": (6, 12),
        }
        if slug not in usage:
            return
        days, per_day = usage[slug]
        demo_sessions(tenant=tenant, days=days, per_day=per_day, seed=len(slug))
        if slug == "helix":
            demo_limit_near(tenant=tenant)

    def _user(self, email: str, full_name: str) -> User:
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            user = User.objects.create_user(email, DEMO_PASSWORD, full_name=full_name)
        return user
