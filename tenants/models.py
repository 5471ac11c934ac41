"""Who, and in which tenant: users, tenants, memberships, invitations, API keys, the audit log
and the once-only notification log."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from tenants.cache import Versions


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email__iexact=username or "")


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Logs in with their email; belongs to tenants through memberships."""

    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="Platform staff: may use the Django admin.")
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email

    @property
    def display_name(self) -> str:
        return self.full_name or self.email


class Tenant(models.Model):
    """An organization: the unit of billing and of isolation."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    FINANCE = "finance", "Finance"


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique")]
        indexes = [models.Index(fields=["tenant", "role"])]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


class Invitation(models.Model):
    """An emailed, expiring, single-use invitation to join a tenant with a role.

    Only a SHA-256 hash of the token is stored; the token itself is only in the email."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            # One open invitation per address and tenant; a new one replaces (revokes) the old.
            models.UniqueConstraint(
                Lower("email"), "tenant", condition=models.Q(status="pending"), name="invitation_one_pending"
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} → {self.tenant} ({self.status})"

    def is_expired(self, now=None) -> bool:
        return (now or timezone.now()) >= self.expires_at


class ApiKey(models.Model):
    """A tenant's key for the integration API. The secret is shown once; we keep its SHA-256 hash
    and a visible prefix (the first characters) so people can tell keys apart."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    # Set by `api_key_authenticate`: the tenant's and the catalog's cache version as the request's key
    # query read them (`tenants.cache`). None on a key loaded any other way.
    versions: Versions | None = None
    # Set by `api_key_authenticate(..., companions=True)`: what each registered key companion read in
    # the same statement (`tenants.services.register_key_companion`); empty otherwise.
    companions: Mapping[str, Any] = MappingProxyType({})
    # Set by `api_key_authenticate(..., remembered=True)` on a key from the process's memory, which the
    # request must confirm (`tenants.key_confirmation`).
    remembered: bool = False

    class Meta:
        indexes = [models.Index(fields=["tenant", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ActorType(models.TextChoices):
    USER = "user", "User"
    API_KEY = "api_key", "API key"
    SYSTEM = "system", "System"


class AuditEvent(models.Model):
    """Append-only record of who changed what in a tenant. Written by services, never by views."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="audit_events")
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What the actor was called at the time, kept even if the user or key is later deleted.
    actor_label = models.CharField(max_length=200)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"]), models.Index(fields=["tenant", "action"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.target_label}"


class Notification(models.Model):
    """The once-only log of emails the system sends. `key` is unique (for example
    `trial-reminder:<tenant>:7d:<period>`): a job that runs twice finds the row and sends nothing."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    key = models.CharField(max_length=200, unique=True)
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    to_email = models.EmailField()
    template = models.CharField(max_length=120)
    subject = models.CharField(max_length=200)
    # Rendered bodies are kept only until the message is sent (they may hold one-time links).
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.key} → {self.to_email} ({self.status})"


class CacheVersion(models.Model):
    """The version of what a tenant's API answers may be cached from (`tenants.cache`): one row per
    tenant (`scope` = the tenant's id) and one for the whole catalog (`scope` = 0). Database triggers
    bump it in the same transaction as every write that changes an answer (a subscription, a
    scheduled change, the plan catalog, a session limit: see `tenants.db_triggers`), so no code path
    can forget it; the API key's query reads it on every request. Never written from Python."""

    CATALOG = 0

    scope = models.BigIntegerField(primary_key=True)
    version = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.scope}: {self.version}"


class SecurityCode(models.Model):
    """A six-digit code emailed to a signed-in member to confirm one money-taking action
    (`tenants.security_codes`). Only an HMAC of the code is stored, bound to the user, the tenant and
    the purpose ("subscribe:ai-plus", "extra_pack:<code>"): a code confirms that action only."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    purpose = models.CharField(max_length=80)
    code_hash = models.CharField(max_length=64)  # hex HMAC-SHA256, never the code itself
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)  # wrong tries so far
    used_at = models.DateTimeField(null=True, blank=True)
    # Replaced by a newer code, or dead after too many wrong tries.
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Too many wrong tries: no code for this user in this tenant is sent or accepted until then.
    paused_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "tenant", "-created_at"])]
        constraints = [
            models.CheckConstraint(condition=models.Q(attempts__lte=5), name="security_code_tries")
        ]

    def __str__(self) -> str:
        return f"{self.purpose} for {self.user_id} in {self.tenant_id}"
