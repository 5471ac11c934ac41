"""Operator command: create a tenant with its admin (emailed a set-password link) and, with
--api-key, an API key. The last line of output is one JSON object: {"tenant": slug, "api_key": ...}.

A contact-sales plan (AI Ultra, Enterprise) starts under the contract sales agreed, through the
service the Lead admin's "Assign the contracted plan" calls (`billing_portal.services.contract_assign`):
the contract's terms are options, the sales record is a lead of the new tenant that the contract
marks won, and every refusal of the service stops the command with nothing created."""

import argparse
import json
from datetime import UTC, date, datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from billing_portal.demo import local_gateway_available, start_plan
from billing_portal.services import contract_assign, organization_create
from plans import services as plan_services
from plans.models import Plan, Product
from plans.money import credits_string, parse_credits
from tenants import services
from tenants.audit import SYSTEM
from tenants.errors import BusinessError
from tenants.models import Tenant, User
from tenants.notifications import notify

CONTRACT_OPTIONS = ("contract_start", "contract_months", "credits_per_month", "contract_reason")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


class Command(BaseCommand):
    help = (
        "Create a tenant and its admin; optionally an API key and a plan (a contracted one with its terms)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help='The organization\'s name, e.g. "Acme"')
        parser.add_argument("--admin-email", required=True, help="Email of the tenant's first admin")
        parser.add_argument(
            "--plan",
            help="Plan code to start on instead of the default new-tenant plans: a trial or free plan starts "
            "at once; a paid plan only through the local gateway (DEBUG), otherwise the admin subscribes; a "
            "contact-sales plan (credits-ultra, agents-enterprise) under the contract given by the --contract "
            "options",
        )
        parser.add_argument("--api-key", action="store_true", help="Also create an API key and print it once")
        contract = parser.add_argument_group("contract (a contact-sales --plan: AI Ultra, Enterprise)")
        contract.add_argument(
            "--contract-start",
            type=_day,
            help="The contract's first day, YYYY-MM-DD (UTC); today by default, never later, at most a "
            "month ago",
        )
        contract.add_argument(
            "--contract-months",
            type=int,
            help=f"The contract's length: 1 to {plan_services.CONTRACT_MAX_MONTHS}",
        )
        contract.add_argument(
            "--credits-per-month", help='AI Ultra: AI credits granted each month, e.g. "10000" or "12500.5"'
        )
        contract.add_argument(
            "--contract-reason", help="The contract's reference and who agreed it (audited)"
        )

    def handle(self, *args, **options) -> None:
        plan = None
        if options["plan"]:
            plan = Plan.objects.select_related("product").filter(code=options["plan"]).first()
            if plan is None:
                codes = ", ".join(Plan.objects.order_by("code").values_list("code", flat=True))
                raise CommandError(f"No plan {options['plan']!r}. Plans: {codes}.")
            if plan.is_paid and not local_gateway_available():
                raise CommandError(
                    f"{plan.name} is paid: with the Stripe gateway the tenant's admin subscribes on the Billing tab."
                )
        terms = self._contract_terms(plan, options)
        email = options["admin_email"].strip().lower()
        contracted = ""
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
                if plan is not None and terms is not None:
                    contracted = self._contract(tenant, plan, terms)
                elif plan is not None:
                    start_plan(tenant=tenant, plan=plan, actor=SYSTEM)
                secret = None
                if options["api_key"]:
                    secret = services.api_key_create(tenant=tenant, name="Default key", actor=SYSTEM).secret
        except BusinessError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Created {tenant.name} ({tenant.slug}) with admin {admin.email}.")
        if contracted:
            self.stdout.write(contracted)
        self.stdout.write(json.dumps({"tenant": tenant.slug, "api_key": secret}))

    def _contract_terms(self, plan: Plan | None, options: dict) -> dict | None:
        """The contract's terms for a contact-sales plan, checked before anything is written; None for
        any other plan (which takes no contract option)."""
        given = [name for name in CONTRACT_OPTIONS if options.get(name) is not None]
        if plan is None or plan.kind != Plan.Kind.CONTACT_SALES:
            if given:
                flags = ", ".join("--" + name.replace("_", "-") for name in given)
                raise CommandError(
                    f"{flags}: contract terms are for a contact-sales plan (--plan credits-ultra or "
                    "agents-enterprise)."
                )
            return None
        credits_plan = plan.product.code == Product.Code.AI_CREDITS
        required = ["contract_months", "contract_reason"] + (["credits_per_month"] if credits_plan else [])
        missing = [
            name
            for name in required
            if options.get(name) is None or (isinstance(options[name], str) and not options[name].strip())
        ]
        if missing:
            flags = ", ".join("--" + name.replace("_", "-") for name in missing)
            raise CommandError(
                f"{plan.name} is contracted through sales: give the contract's {flags} (and --contract-start "
                "if it did not start today). Otherwise create the tenant without --plan; once it asks for "
                f"{plan.name} ({plan.get_lead_kind_display()}), staff assign the plan from that lead: "
                '/admin/plans/lead/, action "Assign the contracted plan".'
            )
        credits = 0
        if options.get("credits_per_month") is not None:
            if not credits_plan:
                raise CommandError(f"{plan.name} grants no AI credits: leave out --credits-per-month.")
            try:
                credits = parse_credits(options["credits_per_month"])
            except ValueError as exc:
                raise CommandError(
                    "--credits-per-month: a quantity of credits with at most three decimals."
                ) from exc
        start = options.get("contract_start") or timezone.now().date()
        return {
            "starts_at": datetime.combine(start, datetime.min.time(), tzinfo=UTC),
            "months": options["contract_months"],
            "credits_per_period": credits,
            "reason": options["contract_reason"].strip(),
        }

    def _contract(self, tenant: Tenant, plan: Plan, terms: dict) -> str:
        """The sales record (a lead of the new tenant), then its contract through the admin's service."""
        lead = plan_services.lead_record(
            tenant=tenant,
            plan=plan,
            message=f"Contract entered by an operator (manage.py create_tenant): {terms['reason']}",
            actor=SYSTEM,
        )
        sub, _ = contract_assign(lead=lead, actor=SYSTEM, **terms)
        contract = sub.contract
        credits = contract.credits_per_period
        return (
            f"{plan.name} under contract from {contract.starts_at:%-d %b %Y} until {contract.ends_at:%-d %b %Y}"
            + (f", {credits_string(credits)} credits a month" if credits else "")
            + "."
        )
