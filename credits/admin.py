"""Platform staff: the credit catalog (feature costs and extra packs, editable), wallets with the
staff adjustment, grants with package deactivation (C20: staff only, never self-service), and the
ledger itself, read-only. Every change goes through a service, which audits it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from credits import services
from credits.models import Consumption, Entry, ExtraPack, FeatureCost, Grant, Hold, Wallet
from plans.models import Plan
from plans.money import MAX_CREDITS_AT_ONCE, credits_string, decimal_string, parse_credits, parse_money
from tenants.errors import BusinessError


def _credits_field(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(label=label, max_length=20, help_text=help_text)


def _positive_credits(text: str) -> int:
    """Staff type credits as the pages show them ("0.1", "500"); the catalog keeps thousandths."""
    try:
        amount = parse_credits(text)
    except ValueError as exc:
        raise forms.ValidationError("A quantity of credits with at most three decimals.") from exc
    if amount <= 0:
        raise forms.ValidationError("More than zero credits.")
    if amount > MAX_CREDITS_AT_ONCE:
        raise forms.ValidationError("At most a billion credits (1000000000).")
    return amount


class FeatureCostForm(forms.ModelForm):
    """The cost per use in credits ("0.1" for an AI Reviewer review), not the thousandths it is kept in."""

    credits_per_use = _credits_field(
        "Credits per use", '"1" for a Smart Response, "0.1" for an AI Reviewer review.'
    )

    class Meta:
        model = FeatureCost
        fields = ["feature", "name", "unit", "credits_per_use", "active"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["credits_per_use"] = credits_string(self.instance.cost)

    def clean_credits_per_use(self) -> int:
        return _positive_credits(self.cleaned_data["credits_per_use"])

    def save(self, commit: bool = True) -> FeatureCost:
        self.instance.cost = self.cleaned_data["credits_per_use"]
        return super().save(commit=commit)


MAX_PRICE = 2_147_483_647  # ExtraPack.price_amount's range, in minor units


class ExtraPackForm(forms.ModelForm):
    """The pack's credits and price as a customer reads them ("500", "29.00"), not thousandths and cents."""

    pack_credits = _credits_field("Credits", 'The credits the pack grants, e.g. "500".')
    price = forms.CharField(
        label="Price", max_length=20, help_text='In the currency below, e.g. "29.00" (two decimals for USD).'
    )

    class Meta:
        model = ExtraPack
        fields = [
            "code",
            "name",
            "pack_credits",
            "price",
            "currency",
            "validity_days",
            "active",
            "sort_order",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["pack_credits"] = credits_string(self.instance.credits)
            self.initial["price"] = decimal_string(self.instance.price_amount, self.instance.currency)

    def clean_pack_credits(self) -> int:
        return _positive_credits(self.cleaned_data["pack_credits"])

    def clean_currency(self) -> str:
        """A pack is sold in a currency the plans are priced in, as the ISO code in lowercase as
        Stripe takes it. Its one-off invoice goes to the customer that pays the Plus subscription,
        and a customer is invoiced in its own currency unless the account uses multi-currency
        customers (https://docs.stripe.com/invoicing/multi-currency-customers): any other code
        would fail only when a customer buys the pack."""
        currency = self.cleaned_data["currency"].strip().lower()
        priced_in = sorted(set(Plan.objects.values_list("currency", flat=True)))
        if currency not in priced_in:
            names = " or ".join(code.upper() for code in priced_in) or "none"
            raise forms.ValidationError(f"A currency the plans are priced in: {names}.")
        return currency

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        currency, text = cleaned.get("currency"), cleaned.get("price")
        if currency and text is not None:
            try:
                cleaned["price"] = parse_money(text, currency)
            except ValueError as exc:
                self.add_error("price", str(exc))
            else:
                if cleaned["price"] > MAX_PRICE:  # the column's range
                    self.add_error("price", f"At most {decimal_string(MAX_PRICE, currency)}.")
        return cleaned

    def save(self, commit: bool = True) -> ExtraPack:
        self.instance.credits = self.cleaned_data["pack_credits"]
        self.instance.price_amount = self.cleaned_data["price"]
        return super().save(commit=commit)


@admin.register(FeatureCost)
class FeatureCostAdmin(admin.ModelAdmin):
    form = FeatureCostForm
    list_display = ["name", "feature", "unit", "credits_per_use", "active", "updated_at"]
    list_editable = ["active"]

    @admin.display(description="Credits per use")
    def credits_per_use(self, obj: FeatureCost) -> str:
        return credits_string(obj.cost)


@admin.register(ExtraPack)
class ExtraPackAdmin(admin.ModelAdmin):
    form = ExtraPackForm
    list_display = [
        "name",
        "code",
        "pack_credits",
        "price_amount",
        "currency",
        "validity_days",
        "active",
        "sort_order",
    ]
    list_editable = ["active", "sort_order"]

    @admin.display(description="Credits")
    def pack_credits(self, obj: ExtraPack) -> str:
        return credits_string(obj.credits)


class ReadOnlyAdmin(admin.ModelAdmin):
    """The ledger is written by the services only: staff read it here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AdjustForm(forms.Form):
    credits = forms.CharField(
        max_length=20, help_text='Credits to add, or to take with a leading minus: "500", "-12.5".'
    )
    reason = forms.CharField(max_length=200, help_text="Shown in the ledger and the audit log.")
    expires_at = forms.DateTimeField(
        required=False, help_text="For added credits; empty: they never expire (YYYY-MM-DD HH:MM, UTC)."
    )

    def clean_credits(self) -> int:
        try:
            amount = parse_credits(self.cleaned_data["credits"])
        except ValueError as exc:
            raise forms.ValidationError("A quantity of credits with at most three decimals.") from exc
        if amount == 0:
            raise forms.ValidationError("Adjust by a non-zero quantity.")
        if abs(amount) > MAX_CREDITS_AT_ONCE:  # a 20-digit quantity was a 500 (the ledger's bigint)
            raise forms.ValidationError("Adjust by at most a billion credits (1000000000) at a time.")
        return amount


class DeactivateForm(forms.Form):
    reason = forms.CharField(max_length=200, help_text="Who asked Customer Success, and why (audited).")


def _action_form(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    form_class: type[forms.Form],
    *,
    action: str,
    title: str,
) -> tuple[forms.Form | None, HttpResponse | None]:
    """The intermediate page of an admin action: the form until it is posted valid."""
    form = form_class(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        return form, None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "objects": queryset,
        "action": action,
        "opts": modeladmin.model._meta,
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
    }
    return None, TemplateResponse(request, "admin/credits/action_form.html", context)


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "unit", "created_at"]
    list_filter = ["unit"]
    search_fields = ["tenant__name", "tenant__slug"]
    actions = ["adjust_credits"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The list and its actions, no edit form; for staff holding credits.change_wallet (or a
        # superuser), as Django's own check says: being staff is not enough.
        return obj is None and admin.ModelAdmin.has_change_permission(self, request)

    @admin.action(description="Adjust credits (staff adjustment, audited)")
    def adjust_credits(self, request: HttpRequest, queryset: QuerySet[Wallet]) -> HttpResponse | None:
        form, page = _action_form(
            self, request, queryset, AdjustForm, action="adjust_credits", title="Adjust credits"
        )
        if page is not None:
            return page
        assert form is not None
        for wallet in queryset.select_related("tenant"):
            try:
                services.credits_adjust(
                    tenant=wallet.tenant,
                    unit=wallet.unit,
                    amount=form.cleaned_data["credits"],
                    reason=form.cleaned_data["reason"],
                    expires_at=form.cleaned_data["expires_at"],
                    actor=request.user,  # type: ignore[arg-type]
                )
            except BusinessError as exc:
                self.message_user(request, f"{wallet}: {exc.message}", messages.ERROR)
            else:
                self.message_user(
                    request, f"{wallet}: adjusted by {credits_string(form.cleaned_data['credits'])}."
                )
        return None


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "tenant",
        "source",
        "shown_amount",
        "shown_remaining",
        "valid_from",
        "expires_at",
        "deactivated_at",
        "reference",
    ]
    list_filter = ["source", "wallet__unit"]
    search_fields = ["tenant__name", "tenant__slug", "reference", "note"]
    date_hierarchy = "valid_from"
    list_select_related = ["tenant"]
    actions = ["deactivate"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deactivating is a change: staff holding credits.change_grant (or a superuser) only.
        return obj is None and admin.ModelAdmin.has_change_permission(self, request)

    @admin.display(description="Amount")
    def shown_amount(self, obj: Grant) -> str:
        return credits_string(obj.amount)

    @admin.display(description="Remaining")
    def shown_remaining(self, obj: Grant) -> str:
        return credits_string(obj.remaining)

    @admin.action(description="Deactivate package (ends now; C20, audited)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Grant]) -> HttpResponse | None:
        form, page = _action_form(
            self, request, queryset, DeactivateForm, action="deactivate", title="Deactivate packages"
        )
        if page is not None:
            return page
        assert form is not None
        for grant in queryset:
            services.credits_grant_deactivate(
                grant=grant,
                actor=request.user,  # type: ignore[arg-type]
                reason=form.cleaned_data["reason"],
            )
            self.message_user(
                request, f"{grant.get_source_display()} #{grant.pk} of {grant.tenant}: deactivated."
            )
        return None


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "tenant",
        "kind",
        "shown_quantity",
        "grant",
        "feature",
        "client_id",
        "idempotency_key",
        "actor_label",
    ]
    list_filter = ["kind", "wallet__unit"]
    search_fields = ["tenant__name", "idempotency_key", "client_id"]
    list_select_related = ["tenant", "grant"]
    date_hierarchy = "created_at"

    @admin.display(description="Credits")
    def shown_quantity(self, obj: Entry) -> str:
        return credits_string(obj.quantity)


@admin.register(Consumption)
class ConsumptionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "tenant",
        "idempotency_key",
        "feature",
        "quantity",
        "amount",
        "client_id",
        "refunded_at",
    ]
    search_fields = ["tenant__name", "idempotency_key", "client_id"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "tenant",
        "idempotency_key",
        "amount",
        "status",
        "expires_at",
        "committed_amount",
    ]
    list_filter = ["status"]
    search_fields = ["tenant__name", "idempotency_key"]
    list_select_related = ["tenant"]
