"""Writes to the payment gateway, one attempt each: a pending row is written before the call, the
call carries that attempt's idempotency key (the row's id and a hash of its parameters, behind the
installation's id), and the row records how it ended.

Why not keys built from our own rows (the subscription's id and a count, the tenant's id): Stripe
keeps the first answer of a key for 24 hours, errors included, so a refused or failed request would
be replayed to every retry for a day. An attempt that failed is never asked again: the next one is a
new row, a new key. https://docs.stripe.com/api/idempotent_requests

The row is written in the caller's transaction. The services that call the gateway commit a failed
attempt before they raise (the failure is on record); a process that dies between the call and its
commit leaves nothing, and the next attempt is a new key — which is why the gateway side is also
checked where a lost answer could double something (a subscription's schedule, its price, an open
checkout)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from django.utils import timezone

from billing_portal.gateway.base import GatewayError
from billing_portal.models import GatewayAttempt
from tenants.models import Tenant


def params_hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def attempt_begin(*, tenant: Tenant | None, operation: str, params: Mapping[str, Any]) -> GatewayAttempt:
    return GatewayAttempt.objects.create(tenant=tenant, operation=operation, params_hash=params_hash(params))


def attempt_end(attempt: GatewayAttempt, *, result_id: str = "", error: GatewayError | None = None) -> None:
    attempt.status = GatewayAttempt.Status.FAILED if error is not None else GatewayAttempt.Status.SUCCEEDED
    attempt.result_id = result_id[:200]
    attempt.error_code = "" if error is None else error.code[:80]
    attempt.finished_at = timezone.now()
    attempt.save(update_fields=["status", "result_id", "error_code", "finished_at"])


def gateway_write[T](
    *,
    tenant: Tenant | None,
    operation: str,
    params: Mapping[str, Any],
    call: Callable[[str], T],
    result_id: Callable[[T], str] = lambda _: "",
) -> T:
    """`call(idempotency_key)` under a new attempt: pending before, succeeded or failed after (a
    GatewayError is recorded on the attempt, then raised)."""
    attempt = attempt_begin(tenant=tenant, operation=operation, params=params)
    try:
        result = call(attempt.idempotency_key)
    except GatewayError as exc:
        attempt_end(attempt, error=exc)
        raise
    attempt_end(attempt, result_id=result_id(result))
    return result
