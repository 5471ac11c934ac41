"""Counting requests per key in the cache, for limits that answer the same either way (the caller
decides what "over the limit" means; nothing here raises).

Fixed windows: a key's hits are counted under the window's number, so a counter can never outlive
its window, even if a race left it without an expiry. The increment is the cache's own (Redis
INCR in production and tests), atomic across processes."""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind N reverse proxies (AXES_PROXY_COUNT) the address
    the outermost proxy saw, N-th from the right of X-Forwarded-For; the entries left of it are
    whatever the client chose to send."""
    proxies = settings.AXES_IPWARE_PROXY_COUNT
    if proxies:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [hop for hop in hops if hop]
        if len(hops) >= proxies:
            return hops[-proxies]
    return str(request.META.get("REMOTE_ADDR") or "")


def hit_within_limit(*, scope: str, key: str, limit: int, window: int, now: float | None = None) -> bool:
    """Count one hit of `key` in `scope` for the current window of `window` seconds; True while the
    window holds at most `limit` hits, this one included."""
    bucket = int((time.time() if now is None else now) // window)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]  # no address in a cache key; a fixed length
    cache_key = f"throttle:{scope}:{digest}:{bucket}"
    cache.add(cache_key, 0, timeout=2 * window)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # expired between add() and incr(): this hit is the window's first
        cache.add(cache_key, 1, timeout=2 * window)
        count = 1
    return count <= limit
