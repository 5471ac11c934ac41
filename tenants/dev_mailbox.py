"""The development mailbox: in `make run` (DEBUG, mail to the console) every email sent is also kept
for a day, per recipient, in the `dev_mailbox` cache (shared by the web process and the worker), so
a signed-in user can read their own mail (a security code, an invitation) at /t/<slug>/dev/mailbox/
without reading the server's console. A message about one tenant carries its slug in TENANT_HEADER
and shows only in that tenant's mailbox page; one about no tenant (a password reset) is the user's
own wherever they look. Never used with DEBUG off (settings choose this backend only in DEBUG with
the console mailer; the page answers 404)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.cache import caches
from django.core.mail import EmailMessage
from django.core.mail.backends.console import EmailBackend as ConsoleBackend
from django.utils import timezone

KEEP = 20  # messages per recipient
LIFETIME = 86_400  # seconds
# Set by the senders on a message about one tenant (its slug); the dev mailbox sorts by it.
TENANT_HEADER = "X-Allowance-Tenant"


def _key(address: str) -> str:
    return f"dev-mailbox:{address.strip().lower()}"


def record(message: EmailMessage) -> None:
    for address in message.to:
        kept: list[dict[str, Any]] = caches["dev_mailbox"].get(_key(address)) or []
        kept.insert(
            0,
            {
                "subject": message.subject,
                "body": str(message.body),
                "sent_at": timezone.now().isoformat(),
                "tenant": message.extra_headers.get(TENANT_HEADER, ""),
            },
        )
        caches["dev_mailbox"].set(_key(address), kept[:KEEP], LIFETIME)


def mailbox(address: str, *, tenant_slug: str) -> list[dict[str, Any]]:
    """The recent messages sent to `address` about the tenant `tenant_slug` or about no tenant,
    newest first."""
    found: list[dict[str, Any]] = caches["dev_mailbox"].get(_key(address)) or []
    return [mail for mail in found if mail.get("tenant", "") in ("", tenant_slug)]


class DevMailboxBackend(ConsoleBackend):
    """The console mailer, keeping a copy of each message for the dev mailbox."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        for message in email_messages:
            record(message)
        return int(super().send_messages(email_messages) or 0)
