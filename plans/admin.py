"""Platform staff: the catalog (editable), subscriptions, scheduled changes, leads (worked here)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpRequest
from django.utils import timezone
from django.utils.formats import date_format

from plans.models import Contract, Lead, Plan, Product, ScheduledChange, Subscription, TrialGrant
from plans.services import MSG_LEAD_CONTRACTED, lead_status_refusal, lead_status_set
from tenants.errors import BusinessError


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "sort_order"]


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "code",
        "product",
        "kind",
        "lead_kind",
        "price_amount",
        "currency",
        "interval",
        "stripe_price_id",
        "is_public",
    ]
    list_filter = ["product", "kind", "is_public"]
    search_fields = ["name", "code", "stripe_price_id"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "product",
                    "code",
                    "name",
                    "tagline",
                    "features",
                    "kind",
                    "lead_kind",
                    "rank",
                    "is_public",
                )
            },
        ),
        (
            "Price",
            {
                "fields": (
                    "price_amount",
                    "currency",
                    "interval",
                    "stripe_price_id",
                    "validity_days",
                    "validity_months",
                )
            },
        ),
        ("AI Agents", {"fields": ("session_limit", "answered_only")}),
        ("AI Credits", {"fields": ("included_credits", "credit_renewal", "extra_packs_allowed")}),
        (
            "Helpdesk AI",
            {"fields": ("ai_licenses", "chat_licenses", "ticket_credits_per_license", "unlimited_ai")},
        ),
    )


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "tenant",
        "product",
        "plan",
        "state",
        "current_period_end",
        "trial_ends_at",
        "grace_until",
        "ends_at",
    ]
    list_filter = ["state", "product", "plan"]
    search_fields = ["tenant__name", "tenant__slug", "gateway_subscription_id"]
    list_select_related = ["tenant", "product", "plan"]
    # State changes go through the state machine (services), never by hand here.
    readonly_fields = [f.name for f in Subscription._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # never by hand: the state machine ends a subscription


@admin.register(ScheduledChange)
class ScheduledChangeAdmin(admin.ModelAdmin):
    list_display = ["tenant", "subscription", "to_plan", "effective_at", "status"]
    list_filter = ["status"]
    search_fields = ["tenant__name", "tenant__slug", "gateway_schedule_id"]
    readonly_fields = [f.name for f in ScheduledChange._meta.fields]


@admin.register(TrialGrant)
class TrialGrantAdmin(admin.ModelAdmin):
    list_display = ["tenant", "product", "granted_at"]
    search_fields = ["tenant__name", "tenant__slug"]


def _contract(lead: Lead) -> Contract | None:
    """The contract that answers the lead (read with it by the list's select_related)."""
    try:
        return lead.contract
    except ObjectDoesNotExist:
        return None


class LeadStatusForm(forms.ModelForm):
    """The lead's status, in the list (list_editable) and on its page. "Won" is the contract's: it
    is refused by hand (plans.services.lead_status_refusal says why), and the status of a lead whose
    contracted plan was assigned is read-only."""

    class Meta:
        model = Lead
        fields = ["status", "staff_notes"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields.get("status")
        if field is None or self.instance.pk is None:
            return
        if _contract(self.instance) is not None:
            field.disabled = True
            field.help_text = MSG_LEAD_CONTRACTED
        else:
            field.help_text = 'Won is set by the action "Assign the contracted plan".'

    def clean_status(self) -> str:
        status = self.cleaned_data["status"]
        if self.instance.pk is not None:  # the instance still holds the stored status here
            refusal = lead_status_refusal(
                lead=self.instance, status=status, contracted=_contract(self.instance) is not None
            )
            if refusal is not None:
                raise forms.ValidationError(refusal.message, code=refusal.code)
        return status


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    form = LeadStatusForm
    list_display = ["created_at", "tenant", "plan", "kind", "user", "status", "contract_term"]
    list_filter = ["status", "kind", "plan"]
    search_fields = ["tenant__name", "tenant__slug", "user__email", "message"]
    list_editable = ["status"]
    readonly_fields = ["tenant", "user", "plan", "kind", "message", "created_at", "contract_term"]
    list_select_related = ["tenant", "plan", "user", "contract"]

    def get_changelist_form(self, request: HttpRequest, **kwargs):
        return super().get_changelist_form(request, form=LeadStatusForm, **kwargs)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A lead is a tenant's request (Speak with Specialist, Book a demo, Register interest); the
        # add form, its tenant and plan read-only, could only fail.
        return False

    @admin.display(description="Contract")
    def contract_term(self, lead: Lead) -> str:
        """When the contracted plan the lead won ends (or ended): the subscription's end."""
        contract = _contract(lead)
        if contract is None:
            return "—"
        day = date_format(timezone.localtime(contract.ends_at), "j M Y")
        return f"until {day}" if contract.ends_at > timezone.now() else f"ended {day}"

    def save_model(self, request: HttpRequest, obj: Lead, form: forms.ModelForm, change: bool) -> None:
        """The status through its service (refused, audited); the staff notes as they are."""
        others = [name for name in form.changed_data if name != "status"]
        if "status" in form.changed_data:
            try:
                lead_status_set(lead=obj, status=obj.status, actor=request.user)  # type: ignore[arg-type]
            except BusinessError as exc:  # a contract assigned since the form was checked
                self.message_user(request, exc.message, messages.ERROR)
                return
        if others:
            obj.save(update_fields=others)
