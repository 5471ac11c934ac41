"""The credit catalog a fresh installation starts with (a data migration; staff edit it in the
admin afterwards). Quantities are thousandths of a credit; prices in cents."""

from __future__ import annotations

from typing import Any

K = 1000  # thousandths in one credit

# C08: 1 credit = 1 Smart Response = 10 AI Reviewer reviews.
FEATURE_COSTS: list[dict[str, Any]] = [
    {"feature": "smart_response", "name": "Smart Response", "unit": "ai_credit", "cost": 1 * K},
    {"feature": "ai_review", "name": "AI Reviewer review", "unit": "ai_credit", "cost": K // 10},
]

# Extra credits for AI Plus (C12, C13): one-off, valid 30 days.
EXTRA_PACKS: list[dict[str, Any]] = [
    {
        "code": "extra-500",
        "name": "500 extra credits",
        "credits": 500 * K,
        "price_amount": 2900,
        "sort_order": 1,
    },
    {
        "code": "extra-1000",
        "name": "1,000 extra credits",
        "credits": 1000 * K,
        "price_amount": 4900,
        "sort_order": 2,
    },
    {
        "code": "extra-2500",
        "name": "2,500 extra credits",
        "credits": 2500 * K,
        "price_amount": 9900,
        "sort_order": 3,
    },
]


def ensure_credit_catalog(FeatureCost, ExtraPack) -> None:
    """Create what is missing; never overwrite what staff changed."""
    for spec in FEATURE_COSTS:
        FeatureCost.objects.get_or_create(feature=spec["feature"], defaults=spec)
    for spec in EXTRA_PACKS:
        ExtraPack.objects.get_or_create(code=spec["code"], defaults={**spec, "validity_days": 30})
