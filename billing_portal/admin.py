"""Platform staff: every tenant's invoices, gateway customers, checkout sessions and the webhook
event log. All read-only: these rows mirror the gateway or record what it told us, so an edit here
would only make them disagree with it."""

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest

from billing_portal.models import (
    BillingCustomer,
    CheckoutSession,
    GatewayAttempt,
    Invoice,
    InvoiceLine,
    LocalGatewayObject,
    WebhookEvent,
)
from plans.money import format_money


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class InvoiceLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = InvoiceLine
    extra = 0
    fields = readonly_fields = ("position", "description", "quantity", "amount", "period_start", "period_end")


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "tenant",
        "number",
        "status",
        "total_display",
        "refunded_display",
        "currency",
        "issued_at",
    ]
    list_filter = ["status", "currency"]
    search_fields = [
        "tenant__name",
        "tenant__slug",
        "number",
        "gateway_invoice_id",
        "gateway_subscription_id",
    ]
    list_select_related = ["tenant"]
    date_hierarchy = "issued_at"
    inlines = [InvoiceLineInline]

    @admin.display(description="Total", ordering="total")
    def total_display(self, obj: Invoice) -> str:
        return format_money(obj.total, obj.currency)

    @admin.display(description="Refunded", ordering="amount_refunded")
    def refunded_display(self, obj: Invoice) -> str:
        """A refund leaves the invoice paid (the refund is on its payment): said beside its status."""
        return format_money(obj.amount_refunded, obj.currency) if obj.amount_refunded else "—"


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "event_id",
        "type",
        "status",
        "tenant",
        "attempts",
        "event_created",
        "received_at",
        "processed_at",
    ]
    list_filter = ["status", "type"]
    search_fields = ["event_id", "type"]
    list_select_related = ["tenant"]
    date_hierarchy = "received_at"


@admin.register(BillingCustomer)
class BillingCustomerAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["tenant", "gateway", "customer_id", "created_at"]
    list_filter = ["gateway"]
    search_fields = ["tenant__name", "tenant__slug", "customer_id"]
    list_select_related = ["tenant"]


@admin.register(CheckoutSession)
class CheckoutSessionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "tenant",
        "plan",
        "status",
        "gateway_session_id",
        "created_by",
        "created_at",
        "completed_at",
    ]
    list_filter = ["status"]
    search_fields = ["tenant__name", "tenant__slug", "gateway_session_id"]
    list_select_related = ["tenant", "plan", "created_by"]


if settings.DEBUG:
    # The local gateway's store exists only in development (a system check refuses it otherwise).
    @admin.register(LocalGatewayObject)
    class LocalGatewayObjectAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
        list_display = ["object_id", "object_type", "customer_id", "created_at", "updated_at"]
        list_filter = ["object_type"]
        search_fields = ["object_id", "customer_id"]


@admin.register(GatewayAttempt)
class GatewayAttemptAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every write to the payment gateway, with how it ended (the key it sent is its id and hash)."""

    list_display = ["operation", "tenant", "status", "error_code", "result_id", "created_at"]
    list_filter = ["status", "operation"]
    search_fields = ["result_id", "tenant__slug"]


from billing_portal import contract_admin  # noqa: E402, F401  (the Lead admin's contract action)
