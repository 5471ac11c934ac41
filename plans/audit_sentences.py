"""How the Activity page reads the plans app's audit events (registered from PlansConfig.ready)."""

from __future__ import annotations

from plans.models import Lead
from tenants.audit import Fields, Fold, Sentence
from tenants.models import AuditEvent

_TRIAL_ENDED_BECAUSE = {
    "days": "no days were left",
    "sessions": "no sessions were left",
    "converted": "a paid plan took its place",
}
_LEAD_VERB = {
    "book_demo": "{actor} booked a demo of {target}",
    "specialist": "{actor} asked to speak with a specialist about {target}",
    "interest": "{actor} registered interest in {target}",
}


def _trial_ended(event: AuditEvent, fields: Fields) -> str:
    because = _TRIAL_ENDED_BECAUSE.get(fields.get("reason", ""))
    return f"The free trial ended: {because}" if because else "The free trial ended"


def _activated(event: AuditEvent, fields: Fields) -> str:
    """Into Active: a first subscription (its trial or its first payment over) becomes active; only
    one that had lapsed (a failed payment, a suspension) is reactivated; a canceled one resumed."""
    was = str((event.data or {}).get("from", ""))
    if was == "canceled":
        return "{actor} resumed {target}: it renews again".format_map(fields)
    if was in ("past_due", "suspended", "expired"):
        return "{actor} reactivated {target}".format_map(fields)
    return "{target} became active".format_map(fields)


def _lead(event: AuditEvent, fields: Fields) -> str:
    if fields.get("by") == "operator":  # create_tenant's record of a contract agreed outside the product
        return "{actor} recorded the sales agreement for {target}".format_map(fields)
    return _LEAD_VERB.get(fields.get("kind", ""), "{actor} contacted sales about {target}").format_map(fields)


# The tenant's Activity page shows these to the customer: what happened to their request, in their
# words, not the sales team's pipeline ("Lost" reads as a verdict on them).
_LEAD_STATUS_VERB: dict[str, str] = {
    Lead.Status.NEW: "reopened",
    Lead.Status.CONTACTED: "took up",
    Lead.Status.LOST: "closed",
}


def _lead_status(event: AuditEvent, fields: Fields) -> str:
    verb = _LEAD_STATUS_VERB.get(str((event.data or {}).get("to", "")), "updated")
    return f"{fields['actor']} {verb} the sales request for {fields['target']}"


SENTENCES: dict[str, Sentence] = {
    "subscription.trial_started": "{actor} started the free trial, until {ends}",
    "subscription.started": "{actor} started {target}",
    "subscription.trial_ended": _trial_ended,
    "subscription.converted": "{actor} upgraded the subscription to {target}",
    "subscription.replaced": "{target} was replaced by a newer paid subscription",
    "subscription.plan_changed": "{actor} changed the plan to {target}",
    "subscription.activated": _activated,
    "subscription.payment_failed": "A payment for {target} failed: the grace period started",
    "subscription.suspended": "{actor} suspended {target} (payment overdue)",
    "subscription.canceled": "{actor} canceled {target}: it stays active until the end of the period",
    "subscription.expired": "{target} expired",
    "subscription.trialing": "{actor} put {target} on a trial",
    "subscription.change_scheduled": "{actor} scheduled a change to {target} on {starts_on}",
    "subscription.change_canceled": "{actor} canceled the scheduled change to {target}",
    "subscription.resumed": "{actor} resumed {target}: it renews again",
    "lead.created": _lead,
    "subscription.contracted": "{actor} assigned {target} under a contract, until {ends}",
    "subscription.ended_by_contract": "{target} ended: a contracted plan took its place",
    "lead.won": "{actor} won the sales request for {target}",
    "lead.status_changed": _lead_status,
}
LABELS = {
    "subscription.trial_started": "Trial started",
    "subscription.started": "Subscription started",
    "subscription.trial_ended": "Trial ended",
    "subscription.converted": "Upgraded from the free plan",
    "subscription.replaced": "Subscription replaced",
    "subscription.plan_changed": "Plan changed",
    "subscription.activated": "Subscription activated",
    "subscription.payment_failed": "Payment failed",
    "subscription.suspended": "Subscription suspended",
    "subscription.canceled": "Subscription canceled",
    "subscription.expired": "Subscription expired",
    "subscription.trialing": "Trial resumed",
    "subscription.change_scheduled": "Plan change scheduled",
    "subscription.change_canceled": "Scheduled change canceled",
    "subscription.resumed": "Subscription resumed",
    "lead.created": "Sales request",
    "subscription.contracted": "Contracted plan assigned",
    "subscription.ended_by_contract": "Replaced by a contract",
    "lead.won": "Sales request won",
    "lead.status_changed": "Sales request updated",
}

# One action, one row: the state and plan changes that a trial's (or a free plan's) upgrade and a
# resume write beside their own event read as part of it on the Activity page.
FOLDS = [
    Fold("subscription.activated", into=("subscription.converted",), data={"from": "trialing"}),
    Fold("subscription.plan_changed", into=("subscription.converted",)),
    Fold("subscription.activated", into=("subscription.resumed",), data={"from": "canceled"}),
]
