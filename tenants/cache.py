"""Per-process caches of what the integration API answers from, keyed by the tenant's version.

Every API request reads its tenant's `CacheVersion` row (and the catalog's) with the API key, in the
key's one query (`tenants.services.api_key_authenticate`). A value cached here is kept with the
version it was computed under and the instant it stops being true on its own (a trial's end, a
grace period's end, the next period: whatever the owner computes), and is answered only to a
request that read the same version, at a moment between the computation and that instant. A
change that matters bumps the version in its own transaction (database triggers,
`tenants.db_triggers`), so the first request that starts after it commits reads the new version
and misses, in every process. Nothing is ever invalidated by hand.

Only what a request read with its own key may be answered from here: a tenant object loaded
elsewhere (a page, a job, a test) carries no version and always reads the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

MAX_ENTRIES = 10_000  # per cache and process: past it the cache starts again (no unbounded growth)


@dataclass(frozen=True, slots=True)
class Versions:
    """A tenant's cache version and the catalog's, as the request's key query read them."""

    tenant: int
    catalog: int


class _Entry(NamedTuple):
    version: Versions
    valid_from: datetime
    valid_until: datetime | None  # None: until the version changes
    value: Any


class VersionedCache:
    """Values per tenant, each valid for one `Versions` and for [valid_from, valid_until)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: dict[int, _Entry] = {}
        _ALL.append(self)

    def get(self, tenant_id: int, version: Versions, now: datetime) -> Any | None:
        entry = self._entries.get(tenant_id)
        if entry is None or entry.version != version or now < entry.valid_from:
            return None
        if entry.valid_until is not None and now >= entry.valid_until:
            return None
        return entry.value

    def put(
        self,
        tenant_id: int,
        version: Versions,
        value: Any,
        *,
        valid_from: datetime,
        valid_until: datetime | None,
    ) -> None:
        if len(self._entries) >= MAX_ENTRIES and tenant_id not in self._entries:
            self._entries.clear()
        self._entries[tenant_id] = _Entry(version, valid_from, valid_until, value)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_ALL: list[VersionedCache] = []


def clear_all() -> None:
    """Forget every cached value of this process (tests; nothing in production needs it)."""
    for cache in _ALL:
        cache.clear()
