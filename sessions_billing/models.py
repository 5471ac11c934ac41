"""Billable sessions of AI agents: conversations, their 24-hour billable windows, the per-period
usage counters and the tenant's session limit.

A conversation (one "session" on the Sessions screen) is billed per 24-hour window counted from its
start: window k is [started_at + k·24 h, started_at + (k+1)·24 h). Only billed windows are stored
(`BillableWindow`, unique per conversation and k), each attributed to the usage period in which it
starts. `UsagePeriod.billable_sessions` always equals the number of windows attributed to it, and
`Conversation.billable_sessions` the number of its windows: both change only by a conditional
`UPDATE … RETURNING` in the same transaction that inserts the window (services.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from tenants.models import Tenant

MAX_ID_LENGTH = 200  # conversation ids and agent keys, as the API accepts them


class Agent(models.Model):
    """An AI agent of the tenant, as the API names it (`agent` of a start) or as an admin registered
    it. Never deleted while conversations point at it."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=MAX_ID_LENGTH)
    name = models.CharField(max_length=MAX_ID_LENGTH, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="agent_key_unique_per_tenant")]

    def __str__(self) -> str:
        return self.name or self.key

    @property
    def label(self) -> str:
        return self.name or self.key


class Conversation(models.Model):
    """One conversation between a customer and an AI agent: one session on the Sessions screen,
    one or more billable sessions."""

    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    # db_index=False: indexed first in conversation_id_unique_per_tenant (one index less per start).
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    conversation_id = models.CharField(max_length=MAX_ID_LENGTH)
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.PROTECT, related_name="conversations"
    )
    direction = models.CharField(max_length=8, choices=Direction.choices)
    started_at = models.DateTimeField()
    last_activity_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    # The customer spoke (an inbound start, or a customer_message).
    answered = models.BooleanField(default=False)
    # How many of its windows are billed: the rows of BillableWindow that point at it.
    billable_sessions = models.PositiveIntegerField(default=0)
    # The highest window k billed so far: an event in it (most events) needs no window insert.
    last_billed_window = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "conversation_id"], name="conversation_id_unique_per_tenant"
            )
        ]
        indexes = [
            # The Sessions screen and the API list: newest first, keyset pagination.
            models.Index(fields=["tenant", "-started_at", "-id"], name="conv_tenant_started"),
            models.Index(fields=["tenant", "agent", "-started_at", "-id"], name="conv_tenant_agent_started"),
        ]

    def __str__(self) -> str:
        return self.conversation_id

    @property
    def ended(self) -> bool:
        return self.ended_at is not None


class UsagePeriod(models.Model):
    """The billable sessions of one billing period of the tenant's AI Agents subscription (the trial
    is one period). Created when the period is first used; rows never overlap (a new period trims
    the previous one's end)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    billable_sessions = models.PositiveIntegerField(default=0)
    # The two usage emails of the period, each sent once: on a trial at 60% and 90% of the trial
    # sessions, on a paid plan at 80% ("Session limit almost reached") and 100% of the limit.
    first_warning_at = models.DateTimeField(null=True, blank=True)
    second_warning_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "period_start"], name="usage_period_unique_start"),
            models.CheckConstraint(
                condition=Q(period_end__gte=models.F("period_start")), name="usage_period_order"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.period_start:%Y-%m-%d} → {self.period_end:%Y-%m-%d} ({self.billable_sessions})"


class BillableWindow(models.Model):
    """A billed 24-hour window of a conversation. Unique per (conversation, index): a window is
    never counted twice, whatever the order or concurrency of the reports."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    # db_index=False: indexed first in billable_window_once and window_period_starts.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="windows", db_index=False
    )
    index = models.PositiveIntegerField()  # k: the window starts at started_at + k·24 h
    starts_at = models.DateTimeField()
    usage_period = models.ForeignKey(
        UsagePeriod, on_delete=models.PROTECT, related_name="windows", db_index=False
    )
    counted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "index"], name="billable_window_once"),
        ]
        indexes = [models.Index(fields=["usage_period", "starts_at"], name="window_period_starts")]

    def __str__(self) -> str:
        return f"{self.conversation_id} window {self.index + 1}"


class SessionLimit(models.Model):
    """The tenant's own session limit (S22-S23). Without a row the plan's base limit applies. A
    limit above the plan's base limit is not allowed; after a downgrade the lower base applies
    (`effective_limit`), and the tenant's number returns if the plan allows it again."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="+")
    session_limit = models.PositiveIntegerField()
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    set_by_label = models.CharField(max_length=200, blank=True)
    set_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(session_limit__gt=0), name="session_limit_positive")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.session_limit}"
