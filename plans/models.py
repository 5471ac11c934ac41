"""The catalog (products, plans and their entitlements), subscriptions and their state, scheduled
plan changes, trials and sales leads. Money is in integer minor units with a currency code;
credits in thousandths."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from tenants.models import Tenant


class Product(models.Model):
    class Code(models.TextChoices):
        AI_AGENTS = "ai_agents", "AI Agents"
        AI_CREDITS = "ai_credits", "AI Credits"
        HELPDESK_AI = "helpdesk_ai", "Helpdesk AI"

    code = models.CharField(max_length=32, unique=True, choices=Code.choices)
    name = models.CharField(max_length=80)
    description = models.TextField(blank=True)
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "name"]

    def __str__(self) -> str:
        return self.name


class LeadKind(models.TextChoices):
    """What a sales request asks for (`Lead.Kind`); a contact-sales plan names one (`Plan.lead_kind`)."""

    BOOK_DEMO = "book_demo", "Book a demo"
    SPECIALIST = "specialist", "Speak with Specialist"
    INTEREST = "interest", "Registered interest"


# The kinds a contact-sales card may ask for; registered interest is for self-serve plans.
CONTACT_LEAD_KINDS = [LeadKind.BOOK_DEMO, LeadKind.SPECIALIST]


class Plan(models.Model):
    class Interval(models.TextChoices):
        MONTH = "month", "Monthly"
        YEAR = "year", "Yearly"
        NONE = "none", "One-off"

    class Kind(models.TextChoices):
        TRIAL = "trial", "Free trial"  # ours alone; no payment gateway involved
        FREE = "free", "Free"  # ours alone, for a validity period
        SELF_SERVE = "self_serve", "Self-serve"  # paid through the gateway's checkout
        CONTACT_SALES = "contact_sales", "Contact sales"  # a Lead, never a checkout

    class CreditRenewal(models.TextChoices):
        NONE = "none", "No renewal"
        MONTHLY = "monthly", "Monthly renewal"

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="plans")
    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    tagline = models.CharField(max_length=160, blank=True)
    features = models.TextField(blank=True, help_text="One feature a line, shown on the plan card.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SELF_SERVE)
    # What a contact-sales card asks for: it decides the button ("Book a demo", "Speak with
    # Specialist") and the kind of the Lead it creates. Blank on every other kind of plan.
    lead_kind = models.CharField(
        max_length=16,
        blank=True,
        choices=[(kind.value, kind.label) for kind in CONTACT_LEAD_KINDS],
        help_text="Contact-sales plans only: what the card's button asks for.",
    )
    price_amount = models.PositiveIntegerField(default=0, help_text="Minor units (cents) per interval.")
    currency = models.CharField(max_length=3, default="usd")
    interval = models.CharField(max_length=8, choices=Interval.choices, default=Interval.MONTH)
    stripe_price_id = models.CharField(max_length=100, blank=True, db_index=True)
    rank = models.PositiveSmallIntegerField(
        default=0, help_text="Higher is a bigger plan: decides upgrade vs downgrade."
    )
    is_public = models.BooleanField(default=True, help_text="Listed in the Plans section.")
    # Validity of a trial or a free plan (days); paid plans renew every interval instead.
    validity_days = models.PositiveIntegerField(null=True, blank=True)
    validity_months = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="A free plan's validity in calendar months, when set, instead of its days "
        "(AI Free: 3 months, C05; a day the last month lacks is its last day).",
    )

    # Entitlements — AI Agents
    session_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Billable sessions a period (base limit)."
    )
    answered_only = models.BooleanField(
        default=False, help_text="Only sessions the customer answered are billed."
    )
    # Entitlements — AI Credits
    included_credits = models.PositiveBigIntegerField(default=0, help_text="Thousandths of a credit.")
    credit_renewal = models.CharField(max_length=8, choices=CreditRenewal.choices, default=CreditRenewal.NONE)
    extra_packs_allowed = models.BooleanField(default=False)
    # Entitlements — Helpdesk AI
    ai_licenses = models.PositiveIntegerField(default=0)
    chat_licenses = models.PositiveIntegerField(default=0)
    ticket_credits_per_license = models.PositiveIntegerField(default=3)
    unlimited_ai = models.BooleanField(default=False)

    class Meta:
        ordering = ["product__sort_order", "rank", "price_amount"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="self_serve") | Q(price_amount__gt=0), name="plan_self_serve_has_price"
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=["trial", "free"]) | Q(validity_days__isnull=False),
                name="plan_trial_free_has_validity",
            ),
            models.CheckConstraint(
                condition=Q(kind="contact_sales", lead_kind__in=["book_demo", "specialist"])
                | (~Q(kind="contact_sales") & Q(lead_kind="")),
                name="plan_lead_kind_iff_contact_sales",
                violation_error_message="A contact-sales plan needs a lead kind (Book a demo or Speak "
                "with Specialist); other plans have none.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product.name} — {self.name}"

    @property
    def is_paid(self) -> bool:
        return self.kind == self.Kind.SELF_SERVE

    @property
    def feature_list(self) -> list[str]:
        return [line.strip() for line in self.features.splitlines() if line.strip()]


class Subscription(models.Model):
    """A tenant's subscription to one product. At most one live (non-expired) row per tenant and
    product; an expired row stays as history and a new subscription is a new row."""

    class State(models.TextChoices):
        TRIALING = "trialing", "Trial"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Payment issue"  # a payment failed; grace period running
        SUSPENDED = "suspended", "Suspended"  # grace period over, still unpaid
        CANCELED = "canceled", "Canceled"  # cancellation scheduled: active until ends_at
        EXPIRED = "expired", "Expired"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="subscriptions")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    state = models.CharField(max_length=16, choices=State.choices)
    started_at = models.DateTimeField(default=timezone.now)
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    trial_ends_at = models.DateTimeField(null=True, blank=True)
    # When the trial's sessions reached TRIAL_ENDING_SOON_PERCENT of its cap (S10, set by the sessions
    # app as it counts them): from then on the badge says "Trial ending soon", as it does in the
    # trial's last days, wherever it is shown (the card, /entitlements, the Overview tile).
    trial_sessions_ending_at = models.DateTimeField(null=True, blank=True)
    # Payment issue: when access stops if the balance is still unpaid.
    payment_failed_at = models.DateTimeField(null=True, blank=True)
    grace_until = models.DateTimeField(null=True, blank=True)
    # Cancellation: the moment access ends (the end of the paid period) and when it was asked for.
    canceled_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    gateway_subscription_id = models.CharField(max_length=100, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "product"],
                condition=~Q(state="expired"),
                name="subscription_one_live_per_product",
            ),
            models.UniqueConstraint(
                fields=["gateway_subscription_id"],
                condition=~Q(gateway_subscription_id=""),
                name="subscription_gateway_id_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "trial_ends_at"]),
            models.Index(fields=["state", "grace_until"]),
            models.Index(fields=["state", "current_period_end"]),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} · {self.plan} ({self.state})"


class TrialGrant(models.Model):
    """A tenant's trial of a product, once ever: the unique constraint is the rule."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    granted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "product"], name="trial_once_per_tenant")]

    def __str__(self) -> str:
        return f"{self.tenant} trial of {self.product}"


class ScheduledChange(models.Model):
    """A plan change that takes effect later (end of the current period, or a chosen date)."""

    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        APPLIED = "applied", "Applied"
        CANCELED = "canceled", "Canceled"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="scheduled_changes")
    to_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    effective_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    gateway_schedule_id = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subscription"],
                condition=Q(status="scheduled"),
                name="one_scheduled_change_per_subscription",
            )
        ]

    def __str__(self) -> str:
        return f"→ {self.to_plan} on {self.effective_at:%Y-%m-%d} ({self.status})"


class Lead(models.Model):
    """Contact sales / Book a demo / Speak with Specialist / registered interest: worked by staff."""

    Kind = LeadKind

    class Status(models.TextChoices):
        NEW = "new", "New"
        CONTACTED = "contacted", "Contacted"
        WON = "won", "Won"
        LOST = "lost", "Lost"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="leads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="leads")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    message = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    staff_notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One open request per tenant and plan: sending twice does not create two CRM records.
            models.UniqueConstraint(
                fields=["tenant", "plan"], condition=Q(status="new"), name="lead_one_open_per_plan"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.tenant} → {self.plan.name}"


class Contract(models.Model):
    """A contact-sales plan (AI Ultra, Enterprise) assigned by staff under a contract: no payment
    gateway is involved, so the contract's terms say what the gateway says of a paid plan — its
    periods (one calendar month each, from `starts_at` until `ends_at`) and, on AI Credits, the
    credits each period grants. The billing sweep moves its subscription from period to period and
    expires it at `ends_at`."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    subscription = models.OneToOneField(Subscription, on_delete=models.CASCADE, related_name="contract")
    # The won request it answers: assigning the same lead twice finds this row (one subscription).
    lead = models.OneToOneField(
        Lead, null=True, blank=True, on_delete=models.SET_NULL, related_name="contract"
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    months = models.PositiveSmallIntegerField()
    credits_per_period = models.PositiveBigIntegerField(default=0, help_text="Thousandths of a credit.")
    reason = models.CharField(max_length=200)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        permissions = [("assign_contract", "Can assign a contracted (contact-sales) plan")]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="contract_ends_after_start"
            ),
            models.CheckConstraint(condition=Q(months__gte=1), name="contract_at_least_one_month"),
        ]

    def __str__(self) -> str:
        return f"Contract #{self.pk}: {self.subscription}"
