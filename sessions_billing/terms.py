"""What metering needs to know of the tenant's AI Agents subscription at a moment: its refusal,
period, trial, answered-only flag and the effective session limit. Built from
`plans.selectors.entitlements()` (never re-derived) and the tenant's own `SessionLimit`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

from plans.models import Plan, Product
from plans.selectors import MSG_ENDED, ProductEntitlement, Refusal, entitlements
from sessions_billing.models import SessionLimit
from tenants.cache import VersionedCache, Versions
from tenants.models import Tenant

PRODUCT = Product.Code.AI_AGENTS.value

LIMIT_REACHED = "session_limit_reached"
ENDED = "subscription_ended"


@dataclass(frozen=True)
class Terms:
    ent: ProductEntitlement
    tenant_limit: int | None  # the tenant's own limit (SessionLimit), whether or not it applies now

    @property
    def trial(self) -> bool:
        return self.ent.plan_kind == Plan.Kind.TRIAL

    @property
    def paid(self) -> bool:
        return self.ent.is_paid

    @property
    def base_limit(self) -> int | None:
        """The plan's base limit (the trial's sessions on a trial)."""
        return self.ent.limits.session_limit

    @property
    def limit_adjustable(self) -> bool:
        """The Session limit card: paid plans only, not on the trial (S22)."""
        return self.paid

    @property
    def limit(self) -> int | None:
        """The effective limit of billable sessions this period. The tenant's own limit applies on a
        paid plan up to the plan's base limit: after a downgrade below it, the lower base applies."""
        base = self.base_limit
        if self.tenant_limit is None or not self.limit_adjustable:
            return base
        return self.tenant_limit if base is None else min(self.tenant_limit, base)

    @property
    def limit_source(self) -> str | None:
        if self.limit is None:
            return None
        if self.tenant_limit is not None and self.limit_adjustable and self.limit == self.tenant_limit:
            return "tenant"
        return "plan"

    @property
    def tenant_limit_capped(self) -> bool:
        """The tenant's limit is above the plan's base limit (after a downgrade): the base applies."""
        return (
            self.tenant_limit is not None
            and self.limit_adjustable
            and self.base_limit is not None
            and self.tenant_limit > self.base_limit
        )

    @property
    def answered_only(self) -> bool:
        return self.ent.limits.answered_only

    @property
    def period_start(self) -> datetime | None:
        return self.ent.period_start

    @property
    def period_end(self) -> datetime | None:
        return self.ent.period_end

    @property
    def last_period(self) -> bool:
        """The plan ends with this period (canceled at its end, a contract's last month): the counter
        and the limit do not reset, the plan expires (S25, S29)."""
        ends, period_end = self.ent.ends_at, self.period_end
        return ends is not None and period_end is not None and ends <= period_end

    @property
    def resets_on(self) -> datetime | None:
        """When the count starts again at zero: the next period's start; None in the last period."""
        return None if self.last_period else self.period_end

    @property
    def refusal(self) -> Refusal | None:
        """Why the subscription refuses new sessions, before usage is looked at: `subscription_ended`
        (no subscription too, for AI agents) or `payment_overdue`."""
        refusal = self.ent.refusal
        if refusal is not None and refusal.code == "no_subscription":
            return Refusal(ENDED, MSG_ENDED)
        return refusal

    def thresholds(self) -> tuple[int, int]:
        """The two usage emails of a period, in percent: the trial's (about 60% and 90% of the trial
        sessions) or the session limit's (80% and 100%)."""
        return (60, 90) if self.trial else (80, 100)

    def usage_refusal(self, billable_sessions: int) -> Refusal | None:
        """The refusal of a new conversation at this count: a trial out of sessions has ended; a paid
        plan at its limit refuses until the limit is raised or the next period starts."""
        limit = self.limit
        if limit is None or billable_sessions < limit:
            return None
        if self.trial:
            return Refusal(ENDED, MSG_ENDED)
        return Refusal(LIMIT_REACHED, limit_reached_message(self.resets_on))


def limit_reached_message(period_end: datetime | None) -> str:
    """`period_end`: when the counter resets (None in a plan's last period: it does not)."""
    resume = f" or the next billing period starts on {period_end:%-d %b %Y}" if period_end else ""
    return (
        "Session limit has been reached: AI agents accept no new sessions until the limit is increased "
        f"on the Session limit card{resume}."
    )


# Per process: the tenant's own session limit, for the integration API (tenants.cache). Setting or
# resetting it bumps the tenant's cache version (a trigger on its table), so a request that read the
# new version never finds the old limit here. It changes with nothing else: no expiry.
_LIMITS = VersionedCache("session-limit")


def terms_for(*, tenant: Tenant, now: datetime | None = None, versions: Versions | None = None) -> Terms:
    """`versions`: the cache versions the API request read with its key, before it wrote anything;
    with them the entitlements and the tenant's limit may come from this process's cache."""
    ent = entitlements(tenant=tenant, now=now, versions=versions)[PRODUCT]
    if versions is None:
        return Terms(ent=ent, tenant_limit=tenant_limit(tenant_id=tenant.pk))
    found = _LIMITS.get(tenant.pk, versions, now or timezone.now())
    if found is None:
        found = (tenant_limit(tenant_id=tenant.pk),)
        _LIMITS.put(tenant.pk, versions, found, valid_from=datetime.min.replace(tzinfo=UTC), valid_until=None)
    return Terms(ent=ent, tenant_limit=found[0])


_LIMIT_SQL = f"SELECT session_limit FROM {SessionLimit._meta.db_table} WHERE tenant_id = %s"  # noqa: S608


def tenant_limit(*, tenant_id: int) -> int | None:
    """The tenant's own session limit, if it set one (a plain query: this is on every API call)."""
    with connection.cursor() as cursor:
        cursor.execute(_LIMIT_SQL, [tenant_id])
        row = cursor.fetchone()
    return row[0] if row else None


def trial_ending_soon(terms: Terms, *, billable_sessions: int) -> bool:
    """ "Trial ending soon" (S10): at least TRIAL_ENDING_SOON_PERCENT of the trial sessions used, or at
    most TRIAL_ENDING_SOON_DAYS days left (the days rule is the plans app's badge)."""
    if terms.ent.state != "trialing" or terms.ent.refusal is not None:
        return False
    limit = terms.base_limit
    by_sessions = bool(limit) and billable_sessions * 100 >= settings.TRIAL_ENDING_SOON_PERCENT * (limit or 0)
    return by_sessions or terms.ent.badge == "Trial ending soon"
