"""Every write of the tenants app: keyword-only, typed, atomic; refusals raise BusinessError."""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from tenants.audit import SYSTEM, Actor, audit
from tenants.cache import Versions
from tenants.errors import BusinessError
from tenants.first_statement import ConnectionWasClosed, execute_first
from tenants.models import ApiKey, CacheVersion, Invitation, Membership, Role, Tenant, User
from tenants.notifications import notify
from tenants.text import CONTROL, MSG_CONTROL

API_KEY_PREFIX = "alw_"


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "tenant"
    slug, n = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


# --- tenants and users -------------------------------------------------------------------------


@transaction.atomic
def tenant_create(*, name: str, admin: User, actor: User | Actor | None = None) -> Tenant:
    """Create a tenant with `admin` as its first administrator."""
    name = _tenant_name(name)
    tenant = Tenant.objects.create(name=name, slug=_unique_slug(name))
    Membership.objects.create(tenant=tenant, user=admin, role=Role.ADMIN)
    audit(tenant=tenant, actor=actor or admin, action="tenant.created", target=tenant)
    audit(
        tenant=tenant,
        actor=actor or admin,
        action="member.added",
        target_label=admin.email,
        data={"role": "admin"},
    )
    return tenant


def _check_password(password: str, user: User | None = None) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise BusinessError("weak_password", " ".join(exc.messages)) from exc


MAX_TENANT_NAME = Tenant._meta.get_field("name").max_length or 120


def _tenant_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise BusinessError("tenant_name_required", "Give your organization a name.")
    if len(name) > MAX_TENANT_NAME:
        # Refused, not cut: the sign-up form refuses it too, and a name cut mid-word is not the one given.
        raise BusinessError(
            "tenant_name_too_long", f"Organization name: at most {MAX_TENANT_NAME} characters."
        )
    if CONTROL.search(name):
        raise BusinessError("tenant_name_invalid", f"Organization name: {MSG_CONTROL}")
    return name


@transaction.atomic
def user_signup(*, email: str, password: str, organization: str, full_name: str = "") -> tuple[User, Tenant]:
    """Sign-up: a new user and their own tenant, with them as its admin."""
    email = email.strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        raise BusinessError("email_taken", "An account with this email already exists. Log in instead.")
    user = User(email=email, full_name=full_name.strip())
    _check_password(password, user)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:  # a concurrent sign-up with the same address
        raise BusinessError(
            "email_taken", "An account with this email already exists. Log in instead."
        ) from exc
    tenant = tenant_create(name=organization, admin=user)
    return user, tenant


def set_password_link(user: User) -> str:
    """An absolute link where `user` chooses a password (Django's password-reset token)."""
    from django.contrib.auth.tokens import default_token_generator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return settings.SITE_URL + reverse("password_reset_confirm", kwargs={"uidb64": uid, "token": token})


# --- memberships -------------------------------------------------------------------------------


def _admin_count(tenant: Tenant) -> int:
    return Membership.objects.filter(tenant=tenant, role=Role.ADMIN).count()


def tenant_lock(*, tenant: Tenant) -> None:
    """Serialize the writes that must see each other per tenant (inside a transaction): changes to
    its admins (two admins demoting each other at once must not leave none), and those that start
    or change its subscriptions or its customer at the gateway (plans, billing_portal; taken first).
    FOR NO KEY UPDATE: it serializes these lockers as FOR UPDATE would, but lets through the
    FOR KEY SHARE that every foreign-key check to the tenant takes, so the tenant's other writes
    (sessions, credits, tickets) never wait behind it, even while it is held across a gateway call."""
    Tenant.objects.select_for_update(no_key=True).filter(pk=tenant.pk).values_list("pk", flat=True).first()


@transaction.atomic
def membership_change_role(
    *, tenant: Tenant, membership: Membership, role: Role | str, actor: User
) -> Membership:
    role = Role(role)
    tenant_lock(tenant=tenant)
    membership = Membership.objects.select_for_update().get(pk=membership.pk, tenant=tenant)
    if membership.role == role:
        return membership
    if membership.role == Role.ADMIN and _admin_count(tenant) <= 1:
        raise BusinessError(
            "last_admin", "A tenant needs at least one admin. Make someone else an admin first.", status=409
        )
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit(
        tenant=tenant,
        actor=actor,
        action="member.role_changed",
        target=membership,
        target_label=membership.user.email,
        data={"from": old, "to": role.value},
    )
    return membership


@transaction.atomic
def membership_remove(*, tenant: Tenant, membership: Membership, actor: User) -> None:
    tenant_lock(tenant=tenant)
    membership = (
        Membership.objects.select_for_update().select_related("user").get(pk=membership.pk, tenant=tenant)
    )
    if membership.role == Role.ADMIN and _admin_count(tenant) <= 1:
        raise BusinessError(
            "last_admin", "A tenant needs at least one admin. Make someone else an admin first.", status=409
        )
    email = membership.user.email
    membership.delete()
    audit(tenant=tenant, actor=actor, action="member.removed", target_label=email)


# --- invitations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str  # only ever in the email; we keep its hash


@transaction.atomic
def invitation_create(*, tenant: Tenant, email: str, role: Role | str, actor: User) -> IssuedInvitation:
    """Invite `email` to the tenant with `role`. A pending invitation to the same address is replaced."""
    email = email.strip().lower()
    role = Role(role)
    if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
        raise BusinessError("already_member", f"{email} is already a member of {tenant.name}.", status=409)
    Invitation.objects.filter(tenant=tenant, email__iexact=email, status=Invitation.Status.PENDING).update(
        status=Invitation.Status.REVOKED
    )
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    invitation = Invitation.objects.create(
        tenant=tenant,
        email=email,
        role=role,
        token_hash=_sha256(token),
        invited_by=actor,
        created_at=now,
        expires_at=now + settings.INVITATION_TTL,
    )
    audit(tenant=tenant, actor=actor, action="invitation.sent", target=invitation, data={"role": role.value})
    notify(
        key=f"invitation:{invitation.pk}",
        tenant=tenant,
        to=email,
        template="invitation",
        context={
            "tenant": tenant,
            "inviter": actor,
            "role": role.label,
            "link": settings.SITE_URL + reverse("invitation_accept", kwargs={"token": token}),
            "expires_at": invitation.expires_at,
        },
    )
    return IssuedInvitation(invitation=invitation, token=token)


@transaction.atomic
def invitation_revoke(*, tenant: Tenant, invitation: Invitation, actor: User) -> bool:
    """Withdraw a pending invitation; False when it was no longer pending (accepted, expired...)."""
    updated = Invitation.objects.filter(
        pk=invitation.pk, tenant=tenant, status=Invitation.Status.PENDING
    ).update(status=Invitation.Status.REVOKED)
    if updated:
        audit(tenant=tenant, actor=actor, action="invitation.revoked", target=invitation)
    return bool(updated)


def invitation_for_token(token: str) -> Invitation:
    """The pending, unexpired invitation behind `token`, or a BusinessError saying why not."""
    invitation = Invitation.objects.select_related("tenant").filter(token_hash=_sha256(token)).first()
    if invitation is None:
        raise BusinessError("invitation_invalid", "This invitation link is not valid.", status=404)
    if invitation.status == Invitation.Status.ACCEPTED:
        raise BusinessError(
            "invitation_used", "This invitation has already been used. Log in instead.", status=410
        )
    if invitation.status == Invitation.Status.REVOKED:
        raise BusinessError(
            "invitation_revoked", "This invitation was withdrawn. Ask for a new one.", status=410
        )
    if invitation.status == Invitation.Status.EXPIRED or invitation.is_expired():
        raise BusinessError(
            "invitation_expired", "This invitation has expired. Ask for a new one.", status=410
        )
    return invitation


@transaction.atomic
def invitation_accept(
    *, token: str, user: User | None = None, password: str = "", full_name: str = ""
) -> tuple[User, Membership]:
    """Accept an invitation: as the signed-in `user`, or as a new user choosing `password`.

    Single use: the invitation row is locked and must still be pending."""
    found = invitation_for_token(token)
    invitation = Invitation.objects.select_for_update().select_related("tenant").get(pk=found.pk)
    invitation_for_token(token)  # re-check under the lock: a concurrent accept may have won
    if invitation.status != Invitation.Status.PENDING:
        raise BusinessError(
            "invitation_used", "This invitation has already been used. Log in instead.", status=410
        )
    if user is None:
        existing = User.objects.filter(email__iexact=invitation.email).first()
        if existing is not None:
            raise BusinessError(
                "login_required", "You already have an account: log in to accept this invitation.", status=409
            )
        user = User(email=invitation.email, full_name=full_name.strip())
        _check_password(password, user)
        user.set_password(password)
        user.save()
    elif user.email.lower() != invitation.email.lower():
        raise BusinessError(
            "invitation_other_email",
            f"This invitation is for {invitation.email}. Log out and accept it with that account.",
            status=403,
        )
    membership, created = Membership.objects.get_or_create(
        tenant=invitation.tenant, user=user, defaults={"role": invitation.role}
    )
    invitation.status = Invitation.Status.ACCEPTED
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["status", "accepted_at", "accepted_by"])
    audit(
        tenant=invitation.tenant,
        actor=user,
        action="invitation.accepted",
        target=invitation,
        data={"role": membership.role, "new_member": created},
    )
    return user, membership


def invitations_expire_due(*, now: datetime) -> int:
    """Mark pending invitations past their expiry as expired (the sweeper); returns how many."""
    expired = 0
    with transaction.atomic():
        due = list(
            Invitation.objects.select_for_update(skip_locked=True)
            .select_related("tenant")
            .filter(status=Invitation.Status.PENDING, expires_at__lte=now)[:1000]
        )
        for invitation in due:
            invitation.status = Invitation.Status.EXPIRED
            invitation.save(update_fields=["status"])
            audit(tenant=invitation.tenant, actor=SYSTEM, action="invitation.expired", target=invitation)
            expired += 1
    return expired


# --- API keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    secret: str  # shown once, never stored


@transaction.atomic
def api_key_create(
    *, tenant: Tenant, name: str, actor: User | Actor, secret: str | None = None
) -> IssuedApiKey:
    """A new key for the tenant. `secret` is for demo seeding only (a known key for the README);
    everywhere else the secret is random and shown once."""
    name = name.strip()
    if not name:
        raise BusinessError(
            "api_key_name_required", "Give the key a name, for example the system that uses it."
        )
    if CONTROL.search(name):
        raise BusinessError("api_key_name_invalid", f"Key name: {MSG_CONTROL}")
    if secret is None:
        prefix = API_KEY_PREFIX + secrets.token_hex(4)  # visible part, e.g. alw_3f9a1c2e
        secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    else:
        prefix = secret[: len(API_KEY_PREFIX) + 8]
    key = ApiKey.objects.create(
        tenant=tenant,
        name=name[:80],
        prefix=prefix,
        key_hash=_sha256(secret),
        created_by=actor if isinstance(actor, User) else None,
    )
    audit(tenant=tenant, actor=actor, action="api_key.created", target=key)
    return IssuedApiKey(api_key=key, secret=secret)


@transaction.atomic
def api_key_revoke(*, tenant: Tenant, api_key: ApiKey, actor: User) -> ApiKey:
    updated = ApiKey.objects.filter(pk=api_key.pk, tenant=tenant, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if updated:
        audit(tenant=tenant, actor=actor, action="api_key.revoked", target=api_key)
    # This process's memory of it is dropped at once (the write's own check would refuse it anyway:
    # tenants.key_confirmation); other processes find out from that check.
    transaction.on_commit(lambda: _forget(api_key.pk))
    return ApiKey.objects.get(pk=api_key.pk)


_KEY_FIELDS = [f.attname for f in ApiKey._meta.concrete_fields]
_KEY_TIMES = {"created_at", "last_used_at", "revoked_at"}
_KEY_ID, _KEY_LAST_USED = _KEY_FIELDS.index("id"), _KEY_FIELDS.index("last_used_at")


def _aware(value: datetime | str) -> datetime:
    """A timestamp from a raw query: aware on PostgreSQL; naive UTC (or its text) on SQLite."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_TENANT_FIELDS = [f.attname for f in Tenant._meta.concrete_fields]
_VERSIONS = CacheVersion._meta.db_table
_KEY_SELECT = (
    "SELECT "
    + ", ".join([f'k."{f}"' for f in _KEY_FIELDS] + [f't."{f}"' for f in _TENANT_FIELDS])
    + ", COALESCE(v.version, 0), COALESCE(c.version, 0)"
)
_KEY_FROM = (
    f" FROM {ApiKey._meta.db_table} k JOIN {Tenant._meta.db_table} t ON t.id = k.tenant_id"
    + f" LEFT JOIN {_VERSIONS} v ON v.scope = k.tenant_id"
    + f" LEFT JOIN {_VERSIONS} c ON c.scope = {CacheVersion.CATALOG}"
    + " WHERE k.key_hash = %s AND k.revoked_at IS NULL"
)

# Key companions: scalar SQL expressions over the key's row (`k.tenant_id`) that an endpoint may ask
# to be read in the key's own statement, saving itself a round trip (the admission check reads the
# period's session count this way). PostgreSQL only; each app registers its own from its
# AppConfig.ready, and whoever reads one must do without it (SQLite, or no companions asked).
_COMPANIONS: dict[str, str] = {}


def register_key_companion(name: str, expression: str) -> None:
    """Read `expression` (SQL over `k.tenant_id`, no parameters) beside the key when an endpoint asks
    for companions; its value is `key.companions[name]`."""
    _COMPANIONS[name] = expression


@functools.cache
def _key_sql(expressions: tuple[str, ...]) -> str:
    """The key's query, with these companions' columns after the versions."""
    return _KEY_SELECT + "".join(f", ({expression})" for expression in expressions) + _KEY_FROM


def _first_read(sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    """One row of a read that is the request's first query, doubling as its connection's health
    check (`tenants.first_statement`): on a kept connection that the server closed meanwhile, the
    connection is replaced and the read sent once more, as Django's check would have done before
    it; a read outside any transaction is safe to repeat."""
    try:
        return execute_first(sql, params)
    except ConnectionWasClosed:
        pass
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def api_key_authenticate(secret: str, *, companions: bool = False, remembered: bool = False) -> ApiKey | None:
    """The active key whose secret this is, or None, with its tenant and their cache version
    (`key.versions`: what this request may answer from `tenants.cache`) and, when `companions` is
    asked on PostgreSQL, the registered companions' values (`key.companions`). Records last use at
    most once a minute.

    `remembered`: the key may come from this process's memory, unconfirmed (`key.remembered`),
    when this process read it since its last use was recorded; the request must then confirm it
    (`tenants.key_confirmation`). PostgreSQL only, outside a transaction."""
    if not secret.startswith(API_KEY_PREFIX) or len(secret) > 200:
        return None
    digest = _sha256(secret)
    remembering = remembered and not companions and connection.vendor == "postgresql"
    if remembering and not connection.in_atomic_block:
        key = _recall(digest)
        if key is not None:
            return key
    read = dict(_COMPANIONS) if companions and connection.vendor == "postgresql" else {}
    # A plain joined query: every API call starts here, so the ORM's SQL compilation stays off it.
    row = _first_read(_key_sql(tuple(read.values())), [digest])
    if row is None:
        _REMEMBERED.pop(digest, None)
        return None
    n = len(_KEY_FIELDS) + len(_TENANT_FIELDS)
    values = [
        _aware(v) if isinstance(v, datetime | str) and name in _KEY_TIMES else v
        for name, v in zip(_KEY_FIELDS + _TENANT_FIELDS, row[:n], strict=True)
    ]
    versions = Versions(tenant=row[n], catalog=row[n + 1])
    key = _key_of(values, versions)
    if read:
        key.companions = dict(zip(read, row[n + 2 :], strict=True))
    now = timezone.now()
    stale = now - timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION)
    if key.last_used_at is None or key.last_used_at < stale:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
        values[_KEY_LAST_USED] = now
    if remembering:
        if len(_REMEMBERED) >= _REMEMBERED_MAX and digest not in _REMEMBERED:
            _REMEMBERED.clear()  # no unbounded growth; the keys in use are read again
        _REMEMBERED[digest] = (values, versions)
    return key


# Keys this process read for endpoints that take a remembered key (`remembered=True`), by their
# secret's hash: the values of the key's and the tenant's fields, and the cache versions read then.
_REMEMBERED: dict[str, tuple[list[Any], Versions]] = {}
_REMEMBERED_MAX = 1_000


def _key_of(values: list[Any], versions: Versions) -> ApiKey:
    key = ApiKey.from_db("default", _KEY_FIELDS, values[: len(_KEY_FIELDS)])
    key.tenant = Tenant.from_db("default", _TENANT_FIELDS, values[len(_KEY_FIELDS) :])
    key.versions = versions
    return key


def _recall(digest: str) -> ApiKey | None:
    """The remembered key, unconfirmed, while its recorded last use is recent enough that this use
    needs no new record."""
    found = _REMEMBERED.get(digest)
    if found is None:
        return None
    values, versions = found
    if values[_KEY_LAST_USED] < timezone.now() - timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION):
        return None
    key = _key_of(values, versions)
    key.remembered = True
    return key


def _forget(key_id: int) -> None:
    for digest, (values, _versions) in list(_REMEMBERED.items()):
        if values[_KEY_ID] == key_id:
            _REMEMBERED.pop(digest, None)


def api_keys_forget() -> None:
    """Forget the keys this process remembers (tests)."""
    _REMEMBERED.clear()
