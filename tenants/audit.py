"""Writing the audit log, and reading it as sentences.

Services call `audit(...)` inside their transaction. The Activity page reads each event as a
sentence ("Ana Admin changed the plan to Growth"): each app registers the sentences of the actions it
writes with `register_sentences` from its `AppConfig.ready` (tenants names no action of the apps
above it); an action without one reads as a plain fallback sentence."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from django.db import models
from django.db.models import Exists, OuterRef, Q

from tenants.models import ActorType, ApiKey, AuditEvent, Role, Tenant, User


@dataclass(frozen=True)
class Actor:
    """Who did it: a signed-in user, an API key, or the system (a job, a webhook, a command)."""

    type: str
    user: User | None = None
    api_key: ApiKey | None = None
    label: str = "system"

    @classmethod
    def of(cls, who: User | ApiKey | Actor | None) -> Actor:
        if isinstance(who, Actor):
            return who
        if isinstance(who, User):
            return cls(type=ActorType.USER, user=who, label=who.email)
        if isinstance(who, ApiKey):
            return cls(type=ActorType.API_KEY, api_key=who, label=f"API key {who.name} ({who.prefix})")
        return SYSTEM


SYSTEM = Actor(type=ActorType.SYSTEM, label="system")


def audit(
    *,
    tenant: Tenant,
    actor: User | ApiKey | Actor | None,
    action: str,
    target: models.Model | None = None,
    target_label: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    who = Actor.of(actor)
    return AuditEvent.objects.create(
        tenant=tenant,
        actor_type=who.type,
        actor_user=who.user,
        actor_api_key=who.api_key,
        actor_label=who.label[:200],
        action=action,
        target_type=(target._meta.model_name or "") if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=(target_label or (str(target) if target is not None else ""))[:200],
        data=data or {},
    )


# --- reading the log as sentences ------------------------------------------------------------------

# A sentence is a template over the event's fields ({actor}, {target} and every key of its data), or
# a function of the event and those fields for sentences that depend on a value.
Fields = dict[str, str]
Sentence = str | Callable[[AuditEvent, Fields], str]

_SENTENCES: dict[str, Sentence] = {}
_LABELS: dict[str, str] = {}


@dataclass(frozen=True)
class Fold:
    """One user action can write several events (a trial's upgrade: "converted", its state change
    and its plan change): an `action` event (whose data holds `data`) on the same target as an event
    of one of `into`, written within `within` of it, repeats that event, and the Activity page shows
    only the one it repeats. The event stays in the log (it is append-only); only the page folds it."""

    action: str
    into: tuple[str, ...]
    data: Mapping[str, str] = field(default_factory=dict)
    within: timedelta = timedelta(minutes=1)


_FOLDS: list[Fold] = []


def register_sentences(
    sentences: Mapping[str, Sentence],
    *,
    labels: Mapping[str, str] | None = None,
    folds: Iterable[Fold] = (),
) -> None:
    """Add the sentences (and the filter's readable names, and the events that repeat another) of an
    app's actions; registering an action again replaces it."""
    _SENTENCES.update(sentences)
    _LABELS.update(labels or {})
    _FOLDS.extend(fold for fold in folds if fold not in _FOLDS)


def folded_q() -> Q:
    """The events the Activity page folds into the event of the same step they repeat (see Fold)."""
    folded = Q(pk__in=[])
    for fold in _FOLDS:
        repeated = AuditEvent.objects.filter(
            tenant=OuterRef("tenant"),
            target_type=OuterRef("target_type"),
            target_id=OuterRef("target_id"),
            action__in=fold.into,
            created_at__gte=OuterRef("created_at") - fold.within,
            created_at__lte=OuterRef("created_at") + fold.within,
        )
        data = {f"data__{key}": value for key, value in fold.data.items()}
        folded |= Q(Exists(repeated), action=fold.action, **data) & ~Q(target_id="")
    return folded


def registered_actions() -> frozenset[str]:
    return frozenset(_SENTENCES)


def action_label(action: str) -> str:
    """The readable name of an action for the Activity filter: "Plan changed", not
    `subscription.plan_changed` (derived from the code when the app registered none)."""
    if action in _LABELS:
        return _LABELS[action]
    noun, _, verb = action.partition(".")
    noun = noun.replace("_", " ").replace("api key", "API key")
    words = f"{noun} {verb.replace('_', ' ')}".strip()
    return words[:1].upper() + words[1:]


def actor_name(event: AuditEvent) -> str:
    """Who did it, as people say it: the user's name (their email when they gave none), the API key,
    or "System". Reads `event.actor_user`: select it with the events."""
    if event.actor_type == ActorType.SYSTEM:
        return "System"
    if event.actor_type == ActorType.USER and event.actor_user is not None:
        return event.actor_user.display_name
    return event.actor_label or "Someone"


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_ROLES = {role.value: role.label for role in Role}


def _readable(value: object) -> str:
    """A data value as a sentence says it: a role by its name, an ISO day as "13 Dec 2026"."""
    text = str(value)
    if text in _ROLES:
        return _ROLES[text]
    if _ISO_DAY.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return text
        return f"{day.day} {day:%b %Y}"
    return text


# Data keys whose plain numbers are quantities (credits, a session limit): shown as the pages show
# them, "2,000". Other numbers (an invoice's number, a card's last digits) are left as they are.
_QUANTITY_KEYS = frozenset({"amount", "from", "to", "new", "updated", "unchanged"})
_DECIMAL = re.compile(r"-?\d+(\.\d+)?")


def details(event: AuditEvent) -> list[tuple[str, str]]:
    """The event's data as the Activity page's Details column says it: each key with its value
    read as a sentence reads it (a role's name, "28 Feb 2027"), quantities with thousands separators."""
    shown = []
    for key, value in (event.data or {}).items():
        text = _readable(value)
        if key in _QUANTITY_KEYS and not isinstance(value, bool) and _DECIMAL.fullmatch(text):
            whole, _, frac = text.lstrip("-").partition(".")
            text = ("-" if text.startswith("-") else "") + f"{int(whole):,}" + (f".{frac}" if frac else "")
        shown.append((str(key), text))
    return shown


def event_fields(event: AuditEvent) -> Fields:
    fields = {str(key): _readable(value) for key, value in (event.data or {}).items()}
    # An invitation is labelled "carla@… → Acme (pending)": the sentence names the address.
    target = (event.target_label or "").split(" \N{RIGHTWARDS ARROW} ", 1)[0]
    return fields | {"actor": actor_name(event), "target": target or "\N{HORIZONTAL ELLIPSIS}"}


def sentence(event: AuditEvent) -> str:
    """The event as a sentence; an action nobody registered (or a sentence its data cannot fill)
    reads "Ana Admin: Plan changed (Growth)"."""
    fields = event_fields(event)
    template = _SENTENCES.get(event.action)
    if template is not None:
        try:
            return template(event, fields) if callable(template) else template.format_map(fields)
        except (KeyError, IndexError, ValueError, AttributeError):
            pass
    target = f" ({fields['target']})" if event.target_label else ""
    return f"{fields['actor']}: {action_label(event.action)}{target}"


# The sentences of the tenants app's own actions (registered from TenantsConfig.ready).
TENANT_SENTENCES: dict[str, Sentence] = {
    "tenant.created": "{actor} created the organization {target}",
    "member.added": "{actor} added {target} to the team as {role}",
    "member.role_changed": "{actor} changed the role of {target} from {from} to {to}",
    "member.removed": "{actor} removed {target} from the team",
    "invitation.sent": "{actor} invited {target} as {role}",
    "invitation.revoked": "{actor} revoked the invitation of {target}",
    "invitation.accepted": "{actor} accepted the invitation and joined as {role}",
    "invitation.expired": "The invitation of {target} expired",
    "api_key.created": "{actor} created the API key {target}",
    "api_key.revoked": "{actor} revoked the API key {target}",
    "api_key.used": "{actor} used the API",
}
TENANT_LABELS = {
    "tenant.created": "Organization created",
    "member.added": "Member added",
    "member.role_changed": "Role changed",
    "member.removed": "Member removed",
    "invitation.sent": "Invitation sent",
    "invitation.revoked": "Invitation revoked",
    "invitation.accepted": "Invitation accepted",
    "invitation.expired": "Invitation expired",
    "api_key.created": "API key created",
    "api_key.revoked": "API key revoked",
    "api_key.used": "API key used",
}
