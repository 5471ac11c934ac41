"""Idempotent demo data for `make run`: three tenants (an MSP partner, a marketplace on AI credits,
an AI-agent platform), each with an admin, a member and a finance user, and one platform staff user.
Every password is DEMO_PASSWORD; the README lists the logins."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tenants import services
from tenants.audit import SYSTEM
from tenants.models import Membership, Role, Tenant, User

DEMO_PASSWORD = "allowance-demo"

DEMO_TENANTS = [
    # (slug, name, email domain)
    ("northwind", "Northwind IT Partners", "northwind.test"),
    ("lumen", "Lumen Marketplace", "lumen.test"),
    ("helix", "Helix Agents", "helix.test"),
]


def demo_api_key(slug: str) -> str:
    return f"alw_demo{slug[:4]}_{slug}-demo-key-not-secret"


class Command(BaseCommand):
    help = "Create (or bring up to date) the demo tenants and users. Safe to run any number of times."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--force", action="store_true", help="Seed even with DEBUG off (never in production)")

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError("seed_demo creates known passwords and keys: it runs only with DEBUG=true (or --force).")
        with transaction.atomic():
            staff = self._user("staff@allowance.test", "Platform Staff")
            if not (staff.is_staff and staff.is_superuser):
                staff.is_staff = staff.is_superuser = True
                staff.save(update_fields=["is_staff", "is_superuser"])
            for slug, name, domain in DEMO_TENANTS:
                tenant = Tenant.objects.filter(slug=slug).first()
                admin = self._user(f"admin@{domain}", f"{name.split()[0]} Admin")
                if tenant is None:
                    tenant = services.tenant_create(name=name, admin=admin, actor=SYSTEM)
                    if tenant.slug != slug:
                        Tenant.objects.filter(pk=tenant.pk).update(slug=slug)
                        tenant.slug = slug
                for role in (Role.ADMIN, Role.MEMBER, Role.FINANCE):
                    user = self._user(f"{role.value}@{domain}", f"{name.split()[0]} {role.label}")
                    Membership.objects.update_or_create(tenant=tenant, user=user, defaults={"role": role})
                if not tenant.api_keys.exists():
                    # A known key so the README can show API calls; only ever in demo data.
                    services.api_key_create(
                        tenant=tenant, name="Demo integration", actor=SYSTEM, secret=demo_api_key(slug)
                    )
        self.stdout.write(self.style.SUCCESS(f"Demo data ready. Every demo password is {DEMO_PASSWORD!r}."))

    def _user(self, email: str, full_name: str) -> User:
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            user = User.objects.create_user(email, DEMO_PASSWORD, full_name=full_name)
        return user
