"""Idempotency keys, one wrapper for every write of the local gateway."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction

from billing_portal.gateway.base import GatewayError
from billing_portal.gateway.local.core import LocalCore
from billing_portal.gateway.store import LocalGatewayObject


class LocalIdempotency(LocalCore):
    def _idempotent(self, key: str, operation: str, params: dict[str, Any], run: Callable[[], str]) -> str:
        """Run `run` once per idempotency key; a repeat returns the id it created. Reusing a key for
        another request is refused, as Stripe does. Call inside a transaction."""
        if not key:
            return run()
        row_id = "idem_local_" + hashlib.sha256(key.encode()).hexdigest()[:48]
        fingerprint = hashlib.sha256(
            json.dumps([operation, params], sort_keys=True, default=str).encode()
        ).hexdigest()
        row = LocalGatewayObject.objects.select_for_update().filter(object_id=row_id).first()
        if row is None:
            try:
                with transaction.atomic():
                    row = LocalGatewayObject.objects.create(
                        object_type="idempotency",
                        object_id=row_id,
                        data={"key": key, "operation": operation, "fingerprint": fingerprint, "result": ""},
                    )
            except IntegrityError:
                # A concurrent request with the same key got there first and has committed.
                row = LocalGatewayObject.objects.select_for_update().get(object_id=row_id)
        if row.data["fingerprint"] != fingerprint:
            raise GatewayError(
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                code="idempotency_error",
            )
        if row.data["result"]:
            return str(row.data["result"])
        result = run()
        row.data["result"] = result
        row.save()
        return result
