"""Idempotency keys, one wrapper for every write of the local gateway, as Stripe keeps them
(https://docs.stripe.com/api/idempotent_requests, https://docs.stripe.com/idempotency):

- the first request with a key runs and its answer is kept: the object as the request left it, or
  the error it raised (Stripe saves the status code and body "regardless of whether it succeeds or
  fails", 500s included);
- a repeat with the same key and the same parameters gets that answer again, error included,
  whatever has happened since (the object is not re-read);
- the same key with other parameters is refused (`idempotency_error`), and nothing is kept for it;
- keys are forgotten 24 hours after their first use (on the gateway's clock): a request with an
  older key runs again.

Stripe keeps answers outside our database, so a caller that rolls back its own transaction does not
undo them. The stand-in keeps each answer twice: in its store (the row that also serializes two
requests with one key) and in Django's cache, which no rollback reaches, so a request retried after
its caller rolled back still gets the first answer, as at Stripe. (Where the first request made
something and its caller rolled back, the object is gone with the rollback, but its answer is
replayed: the stand-in shares our database, Stripe does not.)"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, transaction

from billing_portal.gateway.base import GatewayError
from billing_portal.gateway.local import objects
from billing_portal.gateway.local.core import LocalCore
from billing_portal.gateway.store import LocalGatewayObject

KEY_LIFETIME = timedelta(hours=24)
MSG_KEY_REUSED = (
    "Keys for idempotent requests can only be used with the same parameters they were first used with."
)

Answer = dict[str, Any] | GatewayError


def answer_or_raise(answer: Answer) -> dict[str, Any]:
    """The object of a kept answer; a kept error is raised (call it once the transaction is done)."""
    if isinstance(answer, GatewayError):
        raise answer
    return answer


def _fingerprint(operation: str, params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([operation, params], sort_keys=True, default=str).encode()).hexdigest()


class LocalIdempotency(LocalCore):
    def _once(
        self,
        key: str,
        operation: str,
        params: dict[str, Any],
        run: Callable[[], str],
        *,
        object_type: str,
    ) -> dict[str, Any]:
        """`_idempotent` in its own transaction, then its object, or its error raised once the
        transaction has committed (so that the key keeps the error, as Stripe's does)."""
        with transaction.atomic():
            answer = self._idempotent(key, operation, params, run, object_type=object_type)
        return answer_or_raise(answer)

    def _idempotent(
        self,
        key: str,
        operation: str,
        params: dict[str, Any],
        run: Callable[[], str],
        *,
        object_type: str,
    ) -> Answer:
        """Run `run` (it returns the id of the `object_type` it made or changed) once per key and
        return its answer: the object as it was then, or the GatewayError it raised. Call inside a
        transaction; raise the error (`answer_or_raise`) after it."""
        fingerprint = _fingerprint(operation, params)
        now = self._now()
        if not key:
            return self._run(run, object_type)
        row_id = "idem_local_" + hashlib.sha256(key.encode()).hexdigest()[:48]
        outside = cache.get(row_id)
        if outside is not None and outside["first_used"] > objects.ts(now - KEY_LIFETIME):
            if outside["fingerprint"] != fingerprint:
                return GatewayError(MSG_KEY_REUSED, code="idempotency_error")
            if outside.get("answer") is not None:
                return _revive(outside["answer"])
        row = LocalGatewayObject.objects.select_for_update().filter(object_id=row_id).first()
        if row is None:
            try:
                with transaction.atomic():
                    row = LocalGatewayObject.objects.create(
                        object_type="idempotency",
                        object_id=row_id,
                        data={"key": key, "fingerprint": fingerprint, "first_used": objects.ts(now)},
                    )
            except IntegrityError:
                # A concurrent request with the same key got there first and has committed.
                row = LocalGatewayObject.objects.select_for_update().get(object_id=row_id)
        if row.data["first_used"] <= objects.ts(now - KEY_LIFETIME):
            # Pruned at Stripe: the key is new again.
            row.data = {"key": key, "fingerprint": fingerprint, "first_used": objects.ts(now)}
        if row.data["fingerprint"] != fingerprint:
            return GatewayError(MSG_KEY_REUSED, code="idempotency_error")
        kept = row.data.get("answer")
        if kept is not None:
            return _revive(kept)
        answer = self._run(run, object_type)
        row.data["answer"] = (
            {"error": {"message": answer.message, "code": answer.code}}
            if isinstance(answer, GatewayError)
            else {"object": answer}
        )
        row.save()
        cache.set(row_id, row.data, timeout=int(KEY_LIFETIME.total_seconds()) + 3600)
        return answer

    @staticmethod
    def _run(run: Callable[[], str], object_type: str) -> Answer:
        try:
            with transaction.atomic():  # an error undoes the operation's writes (and its events)
                object_id = run()
                snapshot: dict[str, Any] = json.loads(json.dumps(objects.read(object_id, object_type)))
        except GatewayError as exc:
            return exc
        return snapshot


def _revive(kept: dict[str, Any]) -> Answer:
    if "error" in kept:
        return GatewayError(kept["error"]["message"], code=kept["error"]["code"])
    found: dict[str, Any] = kept["object"]
    return found
