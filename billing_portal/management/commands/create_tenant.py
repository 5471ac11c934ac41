"""Operator command: create a tenant with its admin (emailed a set-password link) and, with
--api-key, an API key. The last line of output is one JSON object: {"tenant": slug, "api_key": ...}."""

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from billing_portal.demo import local_gateway_available, start_plan
from billing_portal.services import organization_create
from plans.models import Plan
from tenants import services
from tenants.audit import SYSTEM
from tenants.errors import BusinessError
from tenants.models import User
from tenants.notifications import notify


class Command(BaseCommand):
    help = "Create a tenant and its admin; optionally an API key and a plan."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help='The organization\'s name, e.g. "Acme"')
        parser.add_argument("--admin-email", required=True, help="Email of the tenant's first admin")
        parser.add_argument(
            "--plan",
            help="Plan code to start on instead of the default new-tenant plans: a trial or free plan starts "
            "at once; a paid plan only through the local gateway (DEBUG), otherwise the admin subscribes",
        )
        parser.add_argument("--api-key", action="store_true", help="Also create an API key and print it once")

    def handle(self, *args, **options) -> None:
        plan = None
        if options["plan"]:
            plan = Plan.objects.select_related("product").filter(code=options["plan"]).first()
            if plan is None:
                codes = ", ".join(Plan.objects.order_by("code").values_list("code", flat=True))
                raise CommandError(f"No plan {options['plan']!r}. Plans: {codes}.")
            if plan.kind == Plan.Kind.CONTACT_SALES:
                raise CommandError(f"{plan.name} is contracted through sales; it has no self-serve start.")
            if plan.is_paid and not local_gateway_available():
                raise CommandError(
                    f"{plan.name} is paid: with the Stripe gateway the tenant's admin subscribes on the Billing tab."
                )
        email = options["admin_email"].strip().lower()
        try:
            with transaction.atomic():
                admin = User.objects.filter(email__iexact=email).first()
                new_user = admin is None
                if admin is None:
                    admin = User.objects.create_user(email)
                if plan is None:
                    tenant = organization_create(name=options["name"], admin=admin, actor=SYSTEM)
                else:
                    # The plan replaces the default new-tenant plans: provisioning them first would
                    # use up the very trial or free plan asked for.
                    tenant = services.tenant_create(name=options["name"], admin=admin, actor=SYSTEM)
                if new_user:
                    notify(
                        key=f"welcome-admin:{tenant.pk}:{admin.pk}",
                        tenant=tenant,
                        to=admin.email,
                        template="welcome_admin",
                        context={"tenant": tenant, "link": services.set_password_link(admin)},
                    )
                if plan is not None:
                    start_plan(tenant=tenant, plan=plan, actor=SYSTEM)
                secret = None
                if options["api_key"]:
                    secret = services.api_key_create(tenant=tenant, name="Default key", actor=SYSTEM).secret
        except BusinessError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Created {tenant.name} ({tenant.slug}) with admin {admin.email}.")
        self.stdout.write(json.dumps({"tenant": tenant.slug, "api_key": secret}))
