"""Security codes: a six-digit code emailed to the signed-in member to confirm one money-taking
action (C10: Subscribe Now, an extra pack).

Why not django-otp's email device: django-otp 1.7.5 imports and runs on Django 6.1, but its
`SideChannelDevice` keeps the token in plain text, on a device bound to the user only — neither the
tenant nor the action. Here a code is:
- stored only as an HMAC (SHA-256, keyed by SECRET_KEY) of the user, the tenant, the purpose and
  the code, compared in constant time: a code for one action, user or tenant confirms nothing else;
- valid for CODE_LIFETIME, used once; a new code replaces the previous one for the same action;
- sent again no sooner than RESEND_AFTER;
- dead after MAX_TRIES wrong tries, counted over every code of this member in this tenant within
  PAUSE since their last accepted code, which also pause their codes in this tenant for PAUSE
  (nothing is sent or accepted meanwhile: asking for a new code does not reset the count).

The email goes straight through Django's mail once the code is committed; it is not kept in the
notification log (which stores bodies until they are sent)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Max, Sum
from django.template.loader import render_to_string
from django.utils import timezone

from tenants.dev_mailbox import TENANT_HEADER
from tenants.errors import BusinessError
from tenants.models import Membership, SecurityCode, Tenant, User

CODE_LIFETIME = timedelta(minutes=10)
RESEND_AFTER = timedelta(seconds=60)
MAX_TRIES = 5
PAUSE = timedelta(minutes=15)
DIGITS = 6

logger = logging.getLogger(__name__)

MSG_MISSING = "Ask for a security code first: we email it to you."
MSG_FORMAT = "Enter the 6-digit security code from the email."
MSG_EXPIRED = "This security code has expired. Ask for a new one."
MSG_NOT_SENT = "We could not email your security code just now. Try again in a minute."


def _minutes(span: timedelta) -> int:
    return max(1, math.ceil(span.total_seconds() / 60))


def _paused_error(until: datetime, now: datetime) -> BusinessError:
    minutes = _minutes(until - now)
    return BusinessError(
        "security_code_paused",
        f"Too many wrong security codes. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
        status=429,
    )


def _digest(*, user_id: int, tenant_id: int, purpose: str, code: str) -> str:
    message = f"{user_id}:{tenant_id}:{purpose}:{code}".encode()
    key = f"security-code:{settings.SECRET_KEY}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _lock(user: User, tenant: Tenant) -> None:
    """Serialize the member's codes in this tenant (and refuse a user who is not a member)."""
    if not Membership.objects.select_for_update().filter(user=user, tenant=tenant).exists():
        raise BusinessError("not_a_member", "Your role does not allow this.", status=403)


def _paused_until(user: User, tenant: Tenant, now: datetime) -> datetime | None:
    return (
        SecurityCode.objects.filter(user=user, tenant=tenant, paused_until__gt=now)
        .order_by("-paused_until")
        .values_list("paused_until", flat=True)
        .first()
    )


def _wrong_tries(user: User, tenant: Tenant, now: datetime) -> int:
    """The member's wrong tries in this tenant within the last PAUSE since their last accepted code,
    over every code (asking for a new code does not start the count again)."""
    codes = SecurityCode.objects.filter(user=user, tenant=tenant)
    since = now - PAUSE
    last_used = codes.filter(used_at__isnull=False).aggregate(at=Max("used_at"))["at"]
    if last_used is not None and last_used > since:
        since = last_used
    return codes.filter(created_at__gt=since).aggregate(n=Sum("attempts"))["n"] or 0


def security_code_send(
    *, user: User, tenant: Tenant, purpose: str, action: str, now: datetime | None = None
) -> SecurityCode:
    """Email a new code for `purpose` to `user` (`action` names it in the email: "subscribe to AI
    Plus"). The previous code for the same purpose stops working. The code is stored in its own
    transaction, then emailed; a mail that cannot go withdraws the code (so asking again is not
    throttled) and raises. The email is sent here, not from an on-commit callback: inside a
    caller's transaction the refusal still reaches the caller (and rolls that back too)."""
    row, context = _issue(user=user, tenant=tenant, purpose=purpose, action=action, now=now or timezone.now())
    _email_or_withdraw(row, to=user.email, context=context)
    return row


@transaction.atomic
def _issue(
    *, user: User, tenant: Tenant, purpose: str, action: str, now: datetime
) -> tuple[SecurityCode, dict]:
    """The new code's row (the previous ones revoked) and its email's context, or the refusal."""
    _lock(user, tenant)
    paused = _paused_until(user, tenant, now)
    if paused is not None:
        raise _paused_error(paused, now)
    last = (
        SecurityCode.objects.filter(user=user, tenant=tenant, purpose=purpose)
        .order_by("-created_at", "-pk")
        .first()
    )
    if last is not None and last.created_at > now - RESEND_AFTER:
        wait = math.ceil((last.created_at + RESEND_AFTER - now).total_seconds())
        raise BusinessError(
            "security_code_throttled",
            f"We just sent you a code. Check your email, or ask for a new one in {wait} seconds.",
            status=429,
        )
    SecurityCode.objects.filter(
        user=user, tenant=tenant, purpose=purpose, used_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=now)
    code = f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"
    row = SecurityCode.objects.create(
        user=user,
        tenant=tenant,
        purpose=purpose,
        code_hash=_digest(user_id=user.pk, tenant_id=tenant.pk, purpose=purpose, code=code),
        created_at=now,
        expires_at=now + CODE_LIFETIME,
    )
    context = {
        "code": code,
        "action": action,
        "tenant": tenant,
        "minutes": _minutes(CODE_LIFETIME),
        "site_url": settings.SITE_URL,
    }
    return row, context


def _email_or_withdraw(row: SecurityCode, *, to: str, context: dict) -> None:
    """Send the code; when the mail cannot go, withdraw the code (so asking again is not throttled)
    and say so instead of failing the request."""
    try:
        _email(to=to, context=context)
    except Exception as exc:
        logger.exception("The security code email to %s could not be sent", to)
        SecurityCode.objects.filter(pk=row.pk).delete()
        raise BusinessError("security_code_not_sent", MSG_NOT_SENT, status=503) from exc


def _email(*, to: str, context: dict) -> None:
    subject, _, body = render_to_string("emails/security_code.txt", context).strip().partition("\n")
    html = render_to_string("emails/security_code.html", {**context, "subject": subject})
    message = EmailMultiAlternatives(
        subject=subject.strip(),
        body=body.strip() + "\n",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers={TENANT_HEADER: context["tenant"].slug},
    )
    message.attach_alternative(html, "text/html")
    message.send()


def security_code_use(
    *, user: User, tenant: Tenant, purpose: str, code: str, now: datetime | None = None
) -> None:
    """Accept `code` for `purpose` once, or raise why not. A wrong try is counted and committed
    before the refusal is raised (so call this outside the transaction of the action it confirms);
    the MAX_TRIES-th kills the code and pauses the member's codes in this tenant."""
    now = now or timezone.now()
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        raise BusinessError("security_code_invalid", MSG_FORMAT, status=422)
    failure: BusinessError
    with transaction.atomic():
        _lock(user, tenant)
        paused = _paused_until(user, tenant, now)
        row = (
            SecurityCode.objects.select_for_update()
            .filter(user=user, tenant=tenant, purpose=purpose, used_at__isnull=True, revoked_at__isnull=True)
            .order_by("-created_at", "-pk")
            .first()
        )
        given = _digest(user_id=user.pk, tenant_id=tenant.pk, purpose=purpose, code=code)
        if paused is not None:
            failure = _paused_error(paused, now)
        elif row is None:
            failure = BusinessError("security_code_missing", MSG_MISSING, status=422)
        elif row.expires_at <= now:
            failure = BusinessError("security_code_expired", MSG_EXPIRED, status=422)
        elif hmac.compare_digest(row.code_hash, given):
            row.used_at = now
            row.save(update_fields=["used_at"])
            return
        else:
            left = MAX_TRIES - _wrong_tries(user, tenant, now) - 1
            row.attempts += 1
            if left <= 0:
                row.revoked_at = now
                row.paused_until = now + PAUSE
                failure = _paused_error(row.paused_until, now)
            else:
                failure = BusinessError(
                    "security_code_wrong",
                    f"That security code is not right. {left} tr{'ies' if left != 1 else 'y'} left.",
                    status=422,
                )
            row.save(update_fields=["attempts", "revoked_at", "paused_until"])
    raise failure
