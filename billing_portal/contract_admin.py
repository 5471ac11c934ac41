"""Platform staff: "Assign the contracted plan" on a sales lead (C07, C16; Enterprise, S16).

A contact-sales plan (AI Ultra, Enterprise) is never bought: sales agree a contract, and staff put
the tenant on the plan here, from the lead the tenant sent ("Speak with Specialist", "Book a
demo"). The lead's action (or its page, /admin/plans/lead/<id>/assign-contract/) asks for the
contract's start, its length in months, AI Ultra's credits per month and a reason; the service
(`billing_portal.services.contract_assign`) does the rest under the tenant's lock and audits it.
Only staff holding `plans.assign_contract` (or superusers) see the action or open the page.

It replaces the plans app's Lead admin with a subclass: plans may not import billing_portal, and
the action calls billing_portal's service."""

from __future__ import annotations

from datetime import UTC, datetime

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from billing_portal import services
from plans.admin import LeadAdmin
from plans.models import Lead, Plan, Product
from plans.money import credits_string, parse_credits
from plans.services import CONTRACT_MAX_MONTHS, CONTRACT_REASON_MAX
from tenants.errors import BusinessError

PERMISSION = "plans.assign_contract"


class ContractForm(forms.Form):
    starts_on = forms.DateField(
        label="Contract start", help_text="The first day of the contract (UTC); its months count from it."
    )
    months = forms.IntegerField(
        label="Contract length (months)", min_value=1, max_value=CONTRACT_MAX_MONTHS, initial=12
    )
    credits_per_month = forms.CharField(
        label="Credits per month",
        max_length=20,
        help_text='AI credits granted each month of the contract, e.g. "10000" or "12500.5".',
    )
    reason = forms.CharField(
        max_length=CONTRACT_REASON_MAX, help_text="The contract's reference and who agreed it (audited)."
    )

    def __init__(self, *args, plan: Plan, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["starts_on"].initial = timezone.now().date()
        if plan.product.code != Product.Code.AI_CREDITS:
            del self.fields["credits_per_month"]  # AI Agents' Enterprise grants no credits

    def clean_credits_per_month(self) -> int:
        try:
            amount = parse_credits(self.cleaned_data["credits_per_month"])
        except ValueError as exc:
            raise forms.ValidationError("A quantity of credits with at most three decimals.") from exc
        if amount <= 0:
            raise forms.ValidationError("A contract grants more than zero credits a month.")
        return amount


admin.site.unregister(Lead)


@admin.register(Lead)
class ContractLeadAdmin(LeadAdmin):
    actions = ["assign_contract"]

    def has_assign_contract_permission(self, request: HttpRequest) -> bool:
        # An explicit permission (superusers hold every one): being staff is not enough.
        return bool(request.user.has_perm(PERMISSION))

    def get_urls(self):
        return [
            path(
                "<int:lead_id>/assign-contract/",
                self.admin_site.admin_view(self.assign_contract_view),
                name="plans_lead_assign_contract",
            ),
            *super().get_urls(),
        ]

    @admin.action(description="Assign the contracted plan", permissions=["assign_contract"])
    def assign_contract(self, request: HttpRequest, queryset: QuerySet[Lead]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Assign a contract from one lead at a time.", messages.WARNING)
            return None
        lead = queryset.get()
        return HttpResponseRedirect(reverse("admin:plans_lead_assign_contract", args=[lead.pk]))

    def assign_contract_view(self, request: HttpRequest, lead_id: int) -> HttpResponse:
        if not self.has_assign_contract_permission(request):
            raise PermissionDenied
        lead = get_object_or_404(Lead.objects.select_related("tenant", "plan__product"), pk=lead_id)
        form = ContractForm(request.POST if request.method == "POST" else None, plan=lead.plan)
        error = ""
        if lead.plan.kind != Plan.Kind.CONTACT_SALES:
            error = f"{lead.plan.name} is not a contact-sales plan: it is bought, not contracted."
        elif form.is_bound and form.is_valid():
            data = form.cleaned_data
            try:
                sub, created = services.contract_assign(
                    lead=lead,
                    starts_at=datetime.combine(data["starts_on"], datetime.min.time(), tzinfo=UTC),
                    months=data["months"],
                    credits_per_period=data.get("credits_per_month", 0),
                    reason=data["reason"],
                    actor=request.user,  # type: ignore[arg-type]
                )
            except BusinessError as exc:
                error = exc.message
            else:
                credits = sub.contract.credits_per_period
                self.message_user(
                    request,
                    f"{lead.tenant}: {lead.plan.name} assigned until {sub.contract.ends_at:%-d %b %Y}"
                    + (f", {credits_string(credits)} credits a month" if credits else "")
                    + "."
                    if created
                    else f"{lead.tenant}: this lead's contract was already assigned; nothing changed.",
                )
                return HttpResponseRedirect(reverse("admin:plans_lead_change", args=[lead.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Assign the contracted plan",
            "lead": lead,
            "form": form,
            "error": error,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/plans/lead/assign_contract.html", context)
