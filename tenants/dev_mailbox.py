"""The development mailbox: in `make run` (DEBUG, mail to the console) every email sent is also kept
for a day in Django's cache, per recipient, so a signed-in user can read their own mail (a security
code, an invitation) at /t/<slug>/dev/mailbox/ without reading the server's console. Never used
with DEBUG off (settings choose this backend only in DEBUG with the console mailer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.cache import cache
from django.core.mail import EmailMessage
from django.core.mail.backends.console import EmailBackend as ConsoleBackend
from django.utils import timezone

KEEP = 20  # messages per recipient
LIFETIME = 86_400  # seconds


def _key(address: str) -> str:
    return f"dev-mailbox:{address.strip().lower()}"


def record(message: EmailMessage) -> None:
    for address in message.to:
        kept: list[dict[str, Any]] = cache.get(_key(address)) or []
        kept.insert(
            0,
            {"subject": message.subject, "body": str(message.body), "sent_at": timezone.now().isoformat()},
        )
        cache.set(_key(address), kept[:KEEP], LIFETIME)


def mailbox(address: str) -> list[dict[str, Any]]:
    """The recent messages sent to `address`, newest first."""
    found: list[dict[str, Any]] = cache.get(_key(address)) or []
    return found


class DevMailboxBackend(ConsoleBackend):
    """The console mailer, keeping a copy of each message for the dev mailbox."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        for message in email_messages:
            record(message)
        return int(super().send_messages(email_messages) or 0)
