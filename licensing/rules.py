"""What a client's fields may hold, and the sentences of licensing's refusals: shared by the
services, the forms, the CSV import and the API so that each says the same thing.

Pure functions (no database): a value is cleaned or a BusinessError (422) says why not."""

from __future__ import annotations

import re
from dataclasses import dataclass

from licensing.models import MAX_EXTERNAL_ID, MAX_NAME, MAX_TICKET_ID, MAX_TYPE, Client, LicenseKind
from plans.selectors import ProductEntitlement
from tenants.errors import BusinessError
from tenants.text import CONTROL, CONTROL_CLASS, MSG_CONTROL

PRODUCT = "helpdesk_ai"

# No control characters (tenants.text), no "/" in an id (one path segment).
_ID = re.compile(f"^[^{CONTROL_CLASS}/]+$")

STATUSES = {choice.value for choice in Client.Status}
MSG_UNKNOWN_CLIENT = "No client has this client_id."
MSG_TICKET_OTHER_CLIENT = (
    "This ticket_id was already answered for the client {client}: a ticket belongs to one client."
)
KIND_LABEL = {LicenseKind.AI: "AI", LicenseKind.CHAT: "Chat"}


@dataclass(frozen=True)
class ClientFields:
    name: str
    status: str
    company_type: str
    agreement_type: str


def _invalid(field: str, message: str) -> BusinessError:
    return BusinessError("invalid_request", f"{field}: {message}", status=422)


def clean_external_id(value: str, *, field: str = "client_id") -> str:
    value = value.strip()
    if not value:
        raise _invalid(field, "Enter the client's id.")
    if len(value) > MAX_EXTERNAL_ID:
        raise _invalid(field, f"At most {MAX_EXTERNAL_ID} characters.")
    if not _ID.match(value):
        raise _invalid(field, "Use printable characters, without '/'.")
    return value


def clean_ticket_id(value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_TICKET_ID or not _ID.match(value):
        raise _invalid("ticket_id", f"1 to {MAX_TICKET_ID} printable characters, without '/'.")
    return value


def _text(value: str, field: str, limit: int, *, required: bool = False) -> str:
    value = " ".join(value.split())  # one line, single spaces
    if required and not value:
        raise _invalid(field, "This field is required.")
    if len(value) > limit:
        raise _invalid(field, f"At most {limit} characters.")
    if CONTROL.search(value):
        raise _invalid(field, MSG_CONTROL)
    return value


def clean_fields(*, name: str, status: str, company_type: str = "", agreement_type: str = "") -> ClientFields:
    """A client's fields as stored, or a 422 naming the first field that is wrong."""
    status = status.strip().lower()
    if status not in STATUSES:
        raise _invalid("status", "Use active or inactive.")
    return ClientFields(
        name=_text(name, "name", MAX_NAME, required=True),
        status=status,
        company_type=_text(company_type, "company_type", MAX_TYPE),
        agreement_type=_text(agreement_type, "agreement_type", MAX_TYPE),
    )


def license_kind(value: str) -> LicenseKind:
    try:
        return LicenseKind(value)
    except ValueError:
        raise _invalid("kind", "Use ai or chat.") from None


def total_of(ent: ProductEntitlement, kind: str) -> int:
    """How many licenses of `kind` the plan includes (0 without a plan)."""
    return ent.limits.ai_licenses if kind == LicenseKind.AI else ent.limits.chat_licenses


# --- refusals ----------------------------------------------------------------------------------


MSG_PLAN_NEEDED = (
    "AI and Chat licenses come with a Helpdesk AI plan: subscribe to AI Essentials or AI Pro first, "
    "then assign them to your clients."
)


def assign_refusal(ent: ProductEntitlement) -> str | None:
    """Why no license can be assigned now, before any client is picked (L12): no Helpdesk AI plan,
    or a plan that admits no new work (its own message); None when the plan has licenses to give."""
    if ent.subscription_id is None:
        return MSG_PLAN_NEEDED
    return ent.refusal.message if ent.refusal is not None else None


def add_refusals(ent: ProductEntitlement, *, ai_used: int, chat_used: int) -> dict[str, str]:
    """Per kind ("ai", "chat"), why a row's Add AI license / Add Chat license would be refused on any
    client, so the menu shows it disabled with the reason instead of failing after the click (L04,
    L12, L13): no plan or one that admits no new work (`assign_refusal`), or every license of that
    kind assigned (the message the click would get). A kind with licenses left maps to ""."""
    refused = assign_refusal(ent)
    found = {}
    for kind, used in ((LicenseKind.AI, ai_used), (LicenseKind.CHAT, chat_used)):
        total = total_of(ent, kind)
        if refused is None and used >= total:
            found[kind.value] = limit_reached(
                kind=kind, total=total, used=used, plan_name=ent.plan_name
            ).message
        else:
            found[kind.value] = refused or ""
    return found


def refusal_error(ent: ProductEntitlement) -> BusinessError | None:
    """A plan that admits no new work (ended, overdue, none) refuses new licenses with its own
    code and message (402), as every billing refusal of the API."""
    if ent.refusal is None:
        return None
    return BusinessError(ent.refusal.code, ent.refusal.message, status=402)


def limit_reached(
    *, kind: str, total: int, used: int, plan_name: str | None, adding: int = 1
) -> BusinessError:
    """L04, L22: the plan's total is used up (or would be passed by `adding` more)."""
    label = KIND_LABEL[LicenseKind(kind)]
    plan = plan_name or "current"
    if used > total:
        message = (
            f"Your {plan} plan includes {total} {label} licenses and {used} are assigned: remove "
            f"{used - total} before assigning new ones, or upgrade your plan."
        )
    elif adding > 1 and used < total:
        left = total - used
        message = (
            f"Only {left} of your {total} {label} licenses {'is' if left == 1 else 'are'} left: pick at most "
            f"{left} client{'s' if left != 1 else ''}, or upgrade your plan."
        )
    else:
        message = (
            f"All {total} {label} licenses of your {plan} plan are assigned. Remove one from another client "
            f"or upgrade your plan."
        )
    return BusinessError("license_limit_reached", message, status=402)


def client_inactive(client: Client, kind: str) -> BusinessError:
    return BusinessError(
        "client_inactive",
        f"{client.name} is inactive: make it active before assigning it "
        f"{'an AI' if kind == LicenseKind.AI else 'a Chat'} license.",
        status=409,
    )
