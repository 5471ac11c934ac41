"""Admission checks: may the tenant start new work on a product now?

The plans app knows the subscription's refusal (ended, overdue); a product app knows its own usage
(the session limit, credits left). Product apps register a checker for their product code from
their `AppConfig.ready`; `check()` asks it, and falls back to the plain entitlement refusal for a
product without one. plans never imports the product apps.

A checker also receives what its app's key companions read in the API key's own statement
(`tenants.services.register_key_companion`; empty outside the admission endpoint and on SQLite):
it may answer from them when they are conclusive and must read the database when they are not."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from plans.selectors import Entitlements, ProductEntitlement, Refusal, entitlements
from tenants.cache import Versions
from tenants.models import Tenant


@dataclass(frozen=True)
class Admission:
    product: str
    allowed: bool
    code: str | None
    message: str | None
    state: str
    plan_code: str | None
    details: dict[str, Any] = field(default_factory=dict)  # the product's own figures (usage, limit)
    # True when the answer follows from the product's entitlement and the key's companions alone (no
    # other read): the same entitlements object and the same companions' values give the same answer,
    # so the API may answer them again with it (plans.api.admission).
    reusable: bool = field(default=False, compare=False)


Checker = Callable[[Tenant, ProductEntitlement, datetime | None, Mapping[str, Any]], Admission]

_CHECKERS: dict[str, Checker] = {}


def register(product: str, checker: Checker) -> None:
    """Ask `checker` whether new work on `product` may start (replaces an earlier registration)."""
    _CHECKERS[product] = checker


def from_refusal(
    ent: ProductEntitlement, refusal: Refusal | None, *, reusable: bool = False, **details: Any
) -> Admission:
    return Admission(
        product=ent.product,
        allowed=refusal is None,
        code=refusal.code if refusal else None,
        message=refusal.message if refusal else None,
        state=ent.shown_state,
        plan_code=ent.plan_code,
        details=details,
        reusable=reusable,
    )


def check(
    *,
    tenant: Tenant,
    product: str,
    now: datetime | None = None,
    versions: Versions | None = None,
    companions: Mapping[str, Any] | None = None,
    ents: Entitlements | None = None,
) -> Admission | None:
    """The admission of new work on `product`, or None for a product that does not exist.
    `versions`: the request's cache versions (plans.selectors.entitlements); `companions`: the
    request key's companions (`key.companions`); `ents`: the tenant's entitlements when the caller
    has them already."""
    if ents is None:
        ents = entitlements(tenant=tenant, now=now, versions=versions)
    ent = ents.get(product)
    if ent is None:
        return None
    checker = _CHECKERS.get(product)
    if checker is None:
        return from_refusal(ent, ent.refusal, reusable=True)
    return checker(tenant, ent, now, companions or {})
