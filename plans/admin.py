"""Platform staff: the catalog (editable), subscriptions, scheduled changes, leads (worked here)."""

from django.contrib import admin

from plans.models import Lead, Plan, Product, ScheduledChange, Subscription, TrialGrant


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


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    list_display = ["created_at", "tenant", "plan", "kind", "user", "status"]
    list_filter = ["status", "kind", "plan"]
    search_fields = ["tenant__name", "tenant__slug", "user__email", "message"]
    list_editable = ["status"]
    readonly_fields = ["tenant", "user", "plan", "kind", "message", "created_at"]
    list_select_related = ["tenant", "plan", "user"]
