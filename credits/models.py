"""The credit ledger: a wallet per tenant and unit, grants (buckets of credit with a source, a
priority, a validity window and a remaining quantity) and append-only entries that explain every
change of every grant.

Quantities are integer thousandths of a unit (1 credit = 1000). The invariants, enforced by the
database where it can and checked by the tests:
- a grant's `remaining` = its `amount` + the sum of its entries other than its GRANT entry
  (= the sum of all its entries, the GRANT entry carrying +amount); 0 <= remaining <= amount;
- a wallet's balance at `t` = the sum of `remaining` over its grants live at `t`
  (valid_from <= t < expires_at); an expired grant never counts, even before the sweeper writes
  its EXPIRE entry;
- an idempotency key names at most one consumption and one hold per wallet;
- holds reserve credit without touching grants; the credits are taken from the grants when the
  hold is committed.
Every write goes through `credits.services`, under a row lock on the wallet."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from plans.models import Plan
from tenants.models import ActorType, ApiKey, Tenant


class Unit(models.TextChoices):
    AI_CREDIT = "ai_credit", "AI credit"
    TICKET_CREDIT = "ticket_credit", "Ticket credit"


# How a sentence names a quantity of each unit ("12 AI credits").
UNIT_PLURAL = {Unit.AI_CREDIT: "AI credits", Unit.TICKET_CREDIT: "ticket credits"}


class Source(models.TextChoices):
    PLAN_INCLUDED = "plan_included", "Plan included"
    PLAN_RENEWAL = "plan_renewal", "Plan renewal"
    EXTRA_PACK = "extra_pack", "Extra pack"
    STAFF_ADJUSTMENT = "staff_adjustment", "Staff adjustment"
    TICKET_CYCLE = "ticket_cycle", "Ticket-credit cycle"


PLAN_SOURCES = (Source.PLAN_INCLUDED, Source.PLAN_RENEWAL)

# Consumption draws lower priorities first: plan credits (use them or lose them at renewal), then
# credits staff gave, then the extra packs the tenant paid for. Within a priority, the soonest
# expiring first.
DEFAULT_PRIORITY = {
    Source.PLAN_INCLUDED: 10,
    Source.PLAN_RENEWAL: 10,
    Source.TICKET_CYCLE: 10,
    Source.STAFF_ADJUSTMENT: 20,
    Source.EXTRA_PACK: 30,
}


class Wallet(models.Model):
    """One per tenant and unit: the row every write of the ledger locks first."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    unit = models.CharField(max_length=16, choices=Unit.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "unit"], name="wallet_one_per_tenant_unit"),
            # What the ledger's rows refer to: a wallet together with its tenant (migration 0009).
            models.UniqueConstraint(fields=["id", "tenant"], name="wallet_id_tenant_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} · {self.get_unit_display()}"


class Grant(models.Model):
    """A bucket of credit. `amount` never changes; `remaining` moves only with an entry."""

    wallet = models.ForeignKey(Wallet, on_delete=models.CASCADE, related_name="grants")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")  # = wallet.tenant
    source = models.CharField(max_length=24, choices=Source.choices)
    priority = models.PositiveSmallIntegerField()
    amount = models.BigIntegerField(help_text="Thousandths of a unit.")
    remaining = models.BigIntegerField(help_text="Thousandths of a unit.")
    valid_from = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    # What created it (an invoice, a subscription period, a payment), unique: never granted twice.
    reference = models.CharField(max_length=200, blank=True)
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    note = models.CharField(max_length=200, blank=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Set by the expiry sweeper once the grant is past its expiry and what was left is written down:
    # its index then holds only grants still to sweep (a consumption never writes this column).
    swept_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="grant_amount_positive"),
            models.CheckConstraint(condition=Q(remaining__gte=0), name="grant_remaining_not_negative"),
            models.CheckConstraint(
                condition=Q(remaining__lte=models.F("amount")), name="grant_remaining_within_amount"
            ),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(expires_at__gte=models.F("valid_from")),
                name="grant_expires_not_before_start",
            ),
            # Unique per source, and in fact across sources: references are namespaced by their
            # origin ("invoice:in_…", "payment:pi_…", "subscription:42:…"), so a retry that picked
            # another source could never grant twice.
            models.UniqueConstraint(
                fields=["reference"], condition=~Q(reference=""), name="grant_reference_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["wallet", "expires_at"]),
            # The expiry sweeper's: grants with an expiry not swept yet, so its scan does not walk
            # every grant that ever expired. No index names `remaining`, not even in a condition:
            # PostgreSQL then updates a grant's row in place (a HOT update) when a consumption moves
            # it. A hot wallet's grant moves thousands of times a minute; each non-HOT update added an
            # entry to every index of the table and left a version the next consumption walked past.
            models.Index(
                fields=["expires_at"],
                condition=Q(swept_at__isnull=True, expires_at__isnull=False),
                name="grant_expiry_unswept_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_source_display()} #{self.pk}"

    def is_live(self, at: Any) -> bool:
        return self.valid_from <= at and (self.expires_at is None or at < self.expires_at)


class FeatureCost(models.Model):
    """What one use of a feature costs (C08: 1 credit = 1 Smart Response = 10 AI Reviewer
    reviews). Staff edit it in the admin; a change applies to the next consumption."""

    feature = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=80)
    unit = models.CharField(max_length=16, choices=Unit.choices, default=Unit.AI_CREDIT)
    cost = models.PositiveBigIntegerField(help_text="Thousandths of a unit per use (1000 = 1 credit).")
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["feature"]
        constraints = [models.CheckConstraint(condition=Q(cost__gt=0), name="feature_cost_positive")]

    def __str__(self) -> str:
        return self.name


class ExtraPack(models.Model):
    """An extra-credit pack on sale to AI Plus tenants (C12 to C15). Staff set sizes and prices."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    credits = models.PositiveBigIntegerField(help_text="Thousandths of a credit.")
    price_amount = models.PositiveIntegerField(help_text="Minor units (cents).")
    currency = models.CharField(max_length=3, default="usd")
    validity_days = models.PositiveSmallIntegerField(default=30)
    active = models.BooleanField(default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "credits"]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="extra_pack_credits_positive"),
            models.CheckConstraint(condition=Q(price_amount__gt=0), name="extra_pack_price_positive"),
            # "valid for up to 30 days" (C13)
            models.CheckConstraint(
                condition=Q(validity_days__gte=1, validity_days__lte=30), name="extra_pack_validity_30_days"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ActorFields(models.Model):
    """Who: a user, an API key or the system, with the label they had at the time."""

    actor_type = models.CharField(max_length=16, choices=ActorType.choices, default=ActorType.SYSTEM)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, default="system")

    class Meta:
        abstract = True


class Hold(ActorFields):
    """Credit reserved for work whose cost is known only afterwards. An open hold past
    `expires_at` no longer counts, even before the sweeper marks it expired."""

    class Status(models.TextChoices):
        HELD = "held", "Held"
        COMMITTED = "committed", "Committed"
        RELEASED = "released", "Released"
        EXPIRED = "expired", "Expired"

    # db_index=False: indexed first in hold_idempotency_unique and (wallet, status).
    wallet = models.ForeignKey(Wallet, on_delete=models.CASCADE, related_name="holds", db_index=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    idempotency_key = models.CharField(max_length=200)
    feature = models.CharField(max_length=64, blank=True)
    quantity = models.PositiveIntegerField(null=True, blank=True)
    amount = models.BigIntegerField(help_text="Thousandths reserved.")
    client_id = models.CharField(max_length=200, blank=True)
    ttl_seconds = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.HELD)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    committed_amount = models.BigIntegerField(null=True, blank=True)
    response = models.JSONField(default=dict)  # the first answer, repeated to a retry
    resolve_response = models.JSONField(null=True, blank=True)  # the commit's or release's answer

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["wallet", "idempotency_key"], name="hold_idempotency_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="hold_amount_positive"),
            models.CheckConstraint(
                condition=Q(committed_amount__isnull=True)
                | Q(committed_amount__gte=0, committed_amount__lte=models.F("amount")),
                name="hold_commit_within_amount",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"]), models.Index(fields=["wallet", "status"])]

    def __str__(self) -> str:
        return f"Hold #{self.pk} ({self.status})"


class Consumption(ActorFields):
    """One consumption (or one commit of a hold), named by its idempotency key: the unique
    constraint is the rule that a key yields at most one consumption."""

    # db_index=False: each index an insert maintains costs the hot path; these columns lead others.
    # db_constraint=False: on PostgreSQL one foreign key checks both, (wallet, tenant) -> the wallet's
    # (id, tenant) (migration 0009): the row's tenant is its wallet's, and the insert locks no row of
    # the tenant that every other write of the tenant locks too.
    wallet = models.ForeignKey(  # indexed first in consumption_idempotency_unique
        Wallet, on_delete=models.CASCADE, related_name="consumptions", db_index=False, db_constraint=False
    )
    tenant = models.ForeignKey(  # indexed first in consumption_tenant_client
        Tenant, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    idempotency_key = models.CharField(max_length=200)
    feature = models.CharField(max_length=64, blank=True)
    quantity = models.PositiveIntegerField(null=True, blank=True)
    amount = models.BigIntegerField(help_text="Thousandths consumed.")
    client_id = models.CharField(max_length=200, blank=True)
    hold = models.OneToOneField(
        Hold, null=True, blank=True, on_delete=models.CASCADE, related_name="consumption"
    )
    created_at = models.DateTimeField(default=timezone.now)
    response = models.JSONField(default=dict)  # the first answer, repeated to a retry
    refunded_at = models.DateTimeField(null=True, blank=True)
    refunded_amount = models.BigIntegerField(null=True, blank=True)
    refund_response = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["wallet", "idempotency_key"], name="consumption_idempotency_unique"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="consumption_amount_not_negative"),
        ]
        indexes = [
            models.Index(fields=["wallet", "created_at"]),
            # AI credits used per client (Manage Licenses, AI Statistics' top clients): a client's
            # consumptions of a period, not every consumption of the period.
            models.Index(fields=["tenant", "client_id", "created_at"], name="consumption_tenant_client"),
        ]

    def __str__(self) -> str:
        return f"Consumption {self.idempotency_key}"


# The idempotency key's prefix of the adjust entries that withdraw a billing cycle's ticket credits
# after a downgrade within the cycle (credits.services.ticket_credits_grant_cycle): what they took
# is not part of the cycle's allowance, nor of its use (credits.selectors.ticket_credits).
TICKET_CYCLE_WITHDRAWAL = "ticket-cycle-withdrawal:"


class EntryQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        raise TypeError("Ledger entries are append-only: write a new entry instead.")


class Entry(ActorFields):
    """An append-only line of the ledger. Entries on a grant move its `remaining` by `quantity`;
    HOLD and RELEASE entries touch no grant (they move what is reserved, not what is left)."""

    class Kind(models.TextChoices):
        GRANT = "grant", "Grant"
        CONSUME = "consume", "Consume"
        COMMIT = "commit", "Commit"
        REFUND = "refund", "Refund"
        EXPIRE = "expire", "Expire"
        ADJUST = "adjust", "Adjust"
        HOLD = "hold", "Hold"
        RELEASE = "release", "Release"

    # db_index=False: each index an insert maintains costs the hot path; these columns lead others.
    # db_constraint=False: one foreign key checks both on PostgreSQL, as on Consumption.
    wallet = models.ForeignKey(  # indexed first in (wallet, created_at)
        Wallet, on_delete=models.CASCADE, related_name="entries", db_index=False, db_constraint=False
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    grant = models.ForeignKey(  # indexed first in (grant, created_at)
        Grant, null=True, blank=True, on_delete=models.CASCADE, related_name="entries", db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    quantity = models.BigIntegerField(help_text="Signed thousandths.")
    feature = models.CharField(max_length=64, blank=True)
    client_id = models.CharField(max_length=200, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    consumption = models.ForeignKey(
        Consumption, null=True, blank=True, on_delete=models.CASCADE, related_name="entries"
    )
    hold = models.ForeignKey(Hold, null=True, blank=True, on_delete=models.CASCADE, related_name="entries")
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = EntryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "entries"
        constraints = [
            models.CheckConstraint(condition=~Q(quantity=0), name="entry_quantity_not_zero"),
            models.CheckConstraint(
                condition=Q(kind__in=["hold", "release"], grant__isnull=True)
                | (~Q(kind__in=["hold", "release"]) & Q(grant__isnull=False)),
                name="entry_grant_unless_reservation",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["grant", "refund", "release"], quantity__gt=0)
                | Q(kind__in=["consume", "commit", "expire", "hold"], quantity__lt=0)
                | Q(kind="adjust"),
                name="entry_sign_matches_kind",
            ),
        ]
        indexes = [
            models.Index(fields=["wallet", "created_at"]),
            models.Index(fields=["grant", "created_at"]),
            models.Index(fields=["wallet", "kind", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.quantity:+d}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise TypeError("Ledger entries are append-only: write a new entry instead.")
        super().save(*args, **kwargs)
