"""Idempotent demo data for `make run`: an MSP partner (Helpdesk AI), a marketplace on AI credits,
an AI-agent platform, and one AI Agents tenant in each subscription state — each tenant with an
admin, a member and a finance user — plus one platform staff user. Paid plans are bought through
the local gateway's checkout, so subscriptions, invoices and webhook events are the real thing.
Every password is DEMO_PASSWORD; the README lists the logins."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Max
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
from tenants.models import AuditEvent, Membership, Role, Tenant, User

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


# Each story happens before the seed runs, so that every period shown holds what was seeded in it:
# (days before now the tenant signed up, and its AI Agents trial began; days before now its paid
# plan was bought, or None to buy it as the seed runs). A trial lasts 14 days.
DEMO_DAYS_AGO: dict[str, tuple[int, int | None]] = {
    "orbit": (4, None),  # 10 days of trial left
    "nimbus": (12, None),  # 2 days left: Trial ending soon
    "quill": (14, None),  # the trial's days ran out as the seed runs
    # Its trial ran out before it bought AI Plus, a month ago (`_dates`; C19).
    "lumen": (46, None),
    "helix": (24, 24),  # a month of usage in the current period
    "tidewater": (13, 13),
}
KESTREL_RENEWAL_FAILED_DAYS_AGO = 2  # its grace period (7 days) is running


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
            now = timezone.now()
            signed_up, bought = self._dates(slug, now)
            # The tenant signs up, and its AI Agents trial and AI Free begin, at `signed_up`.
            with transaction.atomic(), self._dated(signed_up):
                admin = self._user(f"admin@{slug}.test", f"{name.split()[0]} Admin")
                tenant = billing.organization_create(name=name, admin=admin, actor=SYSTEM, now=signed_up)
                if tenant.slug != slug:
                    Tenant.objects.filter(pk=tenant.pk).update(slug=slug)
                    tenant.refresh_from_db()
                self._people(tenant, slug)
                key = services.api_key_create(
                    tenant=tenant, name="Demo integration", actor=SYSTEM, secret=demo_api_key(slug)
                ).api_key
                self._signed_up(tenant, at=signed_up)
            if state == "expired":
                self._trial_runs_out(tenant)  # a trial ends before any plan is bought
            if plan_code:
                self._buy(tenant, Plan.objects.get(code=plan_code), admin, at=bought)
            if plan_code == "credits-plus":
                # Lumen bought AI Plus a month ago: the gateway's clock runs on to now and renews it,
                # with the renewal's invoice (paid with the saved card) granting this period's credits.
                billing.gateway_advance(now=timezone.now())
            if state != "expired":
                self._shape(tenant, state, admin)
            # What the gateway did is applied here and now, not when a worker gets to the webhooks:
            # the demo is ready when this command returns.
            billing.tenant_reconcile(tenant=tenant, since_days=90)
            self._usage(tenant, slug)
            if plan_code.startswith("helpdesk-"):
                # Northwind: a few hundred client companies, licenses near the plan's total (some held
                # by inactive clients), tickets through licenses and ticket credits.
                demo_partner(tenant=tenant, admin=admin, api_key=key)
            if plan_code == "credits-plus":
                # Lumen: a month of AI-credit consumption (AI Statistics) and an active extra pack,
                # bought with the saved card at the local gateway as Buy extra credits buys one
                # (without the dialog's security code: nobody reads the demo admin's mail).
                demo_month(tenant=tenant, api_key=key, period_start=bought)
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

    def _dates(self, slug: str, now: datetime) -> tuple[datetime, datetime]:
        """When the tenant signed up (its trial began) and when it bought its paid plan."""
        if slug == "kestrel":
            # The paid period before the renewal that failed.
            paid_from = plan_services.months_after(now - timedelta(days=KESTREL_RENEWAL_FAILED_DAYS_AGO), -1)
            return paid_from, paid_from
        signed_up_days, bought_days = DEMO_DAYS_AGO.get(slug, (0, None))
        if slug == "lumen":
            # AI Plus bought a month ago: its first period ends, and renews, as the seed runs.
            return now - timedelta(days=signed_up_days), plan_services.months_after(now, -1)
        return now - timedelta(days=signed_up_days), now - timedelta(days=bought_days or 0)

    @contextmanager
    def _dated(self, at: datetime) -> Iterator[None]:
        """A step of a story that happened at `at`: what it logs is dated then, not when the seed
        runs (the services date what they take a clock for: a trial, a free plan, the credits a
        payment granted; the audit log is written at the real clock, so its rows of this step are
        moved back here)."""
        last_event = AuditEvent.objects.aggregate(last=Max("id"))["last"] or 0
        yield
        AuditEvent.objects.filter(id__gt=last_event).update(created_at=at)

    def _signed_up(self, tenant: Tenant, *, at: datetime) -> None:
        """The tenant and its team date from its sign-up (the Team page's "Joined")."""
        Tenant.objects.filter(pk=tenant.pk).update(created_at=at)
        Membership.objects.filter(tenant=tenant).update(created_at=at)

    def _trial_runs_out(self, tenant: Tenant) -> None:
        """The trial's days run out: it ends at its end, as the sweeper ends it."""
        sub = Subscription.objects.get(tenant=tenant, product__code="ai_agents", state="trialing")
        assert sub.trial_ends_at is not None
        ended = min(sub.trial_ends_at, timezone.now())
        with self._dated(ended):
            plan_services.trial_end(subscription=sub, reason="days", now=ended)

    def _buy(self, tenant: Tenant, plan: Plan, admin: User, *, at: datetime) -> None:
        """Buy `plan` through the local checkout, as of `at` (the gateway's clock), then let the
        gateway's clock run to now: renewals due since are invoiced and paid (or fail)."""
        gateway = get_gateway()
        assert isinstance(gateway, LocalGateway)
        with self._dated(at), gateway.frozen_at(at) if at < timezone.now() else nullcontext():
            start_plan(tenant=tenant, plan=plan, actor=admin)
            # The checkout's webhooks are applied in the step: what they log happened then too.
            billing.tenant_reconcile(tenant=tenant, since_days=90)

    def _shape(self, tenant: Tenant, state: str, admin: User) -> None:
        """Put the AI Agents subscription in the demo state, through the same paths users take."""
        sub = (
            Subscription.objects.filter(tenant=tenant, product__code="ai_agents")
            .exclude(state="expired")
            .first()
        )
        gateway = get_gateway()
        assert isinstance(gateway, LocalGateway)
        if state == "upcoming" and sub is not None:
            billing.plan_change(
                tenant=tenant,
                to_plan=Plan.objects.get(code="agents-growth"),
                when="period_end",
                custom_date=None,
                actor=admin,
            )
        elif state == "payment_issue" and sub is not None:
            # The card expired; the renewal at the end of the paid period declined (its invoice
            # stays open for the retries) and the grace period runs from that failure.
            assert sub.current_period_end is not None
            with self._dated(sub.current_period_end):  # the renewal, and its failure, happened then
                gateway.expire_card(sub.gateway_subscription_id)
                gateway.advance()
                billing.tenant_reconcile(tenant=tenant, since_days=90)
            sub.refresh_from_db()
            failed = sub.current_period_start
            Subscription.objects.filter(pk=sub.pk).update(
                payment_failed_at=failed, grace_until=failed + timedelta(days=settings.GRACE_PERIOD_DAYS)
            )
        elif state == "canceled" and sub is not None:
            gateway.cancel_subscription(
                subscription_id=sub.gateway_subscription_id,
                at_period_end=True,
                idempotency_key=f"demo-cancel:{sub.pk}",
            )

    def _usage(self, tenant: Tenant, slug: str) -> None:
        """AI Agents usage, within each tenant's current period: Helix a month of sessions near its
        own limit; the trials, Starter and the tenant in its grace period some."""
        usage = {
            "helix": (23, 30),
            "orbit": (3, 4),
            "nimbus": (8, 4),
            "tidewater": (12, 9),
            "kestrel": (KESTREL_RENEWAL_FAILED_DAYS_AGO - 1, 24),
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
