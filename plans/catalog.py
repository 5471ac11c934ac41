"""The spec's catalog, created by a data migration and kept in line by `seed_demo`. Staff edit
plans in the Django admin afterwards (prices, Stripe price ids). Prices are in cents."""

from __future__ import annotations

from typing import Any

PRODUCTS = [
    {
        "code": "ai_agents",
        "name": "AI Agents",
        "sort_order": 1,
        "description": "AI agents that talk to your customers, billed by 24-hour sessions.",
    },
    {
        "code": "ai_credits",
        "name": "AI Credits",
        "sort_order": 2,
        "description": "Credits for Smart Responses and AI Reviewer reviews in the Marketplace.",
    },
    {
        "code": "helpdesk_ai",
        "name": "Helpdesk AI",
        "sort_order": 3,
        "description": "AI and Chat licenses for the client companies you support, with ticket credits.",
    },
]


def plans(*, trial_days: int, trial_sessions: int) -> list[dict[str, Any]]:
    k = 1000  # credits are stored in thousandths
    return [
        # AI Agents
        {
            "product": "ai_agents",
            "code": "agents-trial",
            "name": "Free trial",
            "kind": "trial",
            "rank": 0,
            "validity_days": trial_days,
            "session_limit": trial_sessions,
            "is_public": False,
            "interval": "none",
            "tagline": f"{trial_days} days and {trial_sessions} sessions to try AI agents.",
        },
        {
            "product": "ai_agents",
            "code": "agents-starter",
            "name": "Starter",
            "kind": "self_serve",
            "rank": 10,
            "price_amount": 4900,
            "session_limit": 300,
            "answered_only": True,
            "stripe_price_id": "price_local_agents_starter",
            "tagline": "For a first agent in production.",
            "features": "300 billable sessions a month\nAnswered only: outbound sessions without a reply are free\nEmail support",
        },
        {
            "product": "ai_agents",
            "code": "agents-growth",
            "name": "Growth",
            "kind": "self_serve",
            "rank": 20,
            "price_amount": 19900,
            "session_limit": 1500,
            "stripe_price_id": "price_local_agents_growth",
            "tagline": "For teams running several agents.",
            "features": "1,500 billable sessions a month\nSession limit you control\nPriority support",
        },
        {
            "product": "ai_agents",
            "code": "agents-scale",
            "name": "Scale",
            "kind": "self_serve",
            "rank": 30,
            "price_amount": 49900,
            "session_limit": 5000,
            "stripe_price_id": "price_local_agents_scale",
            "tagline": "For high-volume support.",
            "features": "5,000 billable sessions a month\nSession limit you control\nDedicated success manager",
        },
        {
            "product": "ai_agents",
            "code": "agents-enterprise",
            "name": "Enterprise",
            "kind": "contact_sales",
            "rank": 40,
            "lead_kind": "book_demo",
            "interval": "none",
            "tagline": "Custom volumes, SSO and a contract that fits.",
            "features": "Custom session volumes\nSSO and audit exports\nSLA and invoicing",
        },
        # AI Credits
        {
            "product": "ai_credits",
            "code": "credits-free",
            "name": "AI Free",
            "kind": "free",
            "rank": 0,
            "validity_days": 90,  # what a catalog before validity_months held; the months win
            "validity_months": 3,
            "included_credits": 50 * k,
            "interval": "none",
            "tagline": "Limited credits for experimentation.",
            "features": "50 credits for 3 months\n1 credit = 1 Smart Response = 10 AI Reviewer reviews",
        },
        {
            "product": "ai_credits",
            "code": "credits-plus",
            "name": "AI Plus",
            "kind": "self_serve",
            "rank": 10,
            "price_amount": 9900,
            "included_credits": 2000 * k,
            "credit_renewal": "monthly",
            "extra_packs_allowed": True,
            "stripe_price_id": "price_local_credits_plus",
            "tagline": "2,000 credits, renewed every month.",
            "features": "2,000 credits included\nAutomatic monthly renewal\nExtra credit packs when you need more",
        },
        {
            "product": "ai_credits",
            "code": "credits-ultra",
            "name": "AI Ultra",
            "kind": "contact_sales",
            "rank": 20,
            "lead_kind": "specialist",
            "interval": "none",
            "tagline": "A customized plan for high productivity.",
            "features": "Custom credit volume\nContracted with our sales team",
        },
        # Helpdesk AI (MSP partners)
        {
            "product": "helpdesk_ai",
            "code": "helpdesk-essentials",
            "name": "AI Essentials",
            "kind": "self_serve",
            "rank": 10,
            "price_amount": 29900,
            "ai_licenses": 10,
            "chat_licenses": 10,
            "ticket_credits_per_license": 3,
            "unlimited_ai": False,
            "stripe_price_id": "price_local_helpdesk_essentials",
            "tagline": "AI for your licensed clients.",
            "features": "10 AI licenses and 10 Chat licenses\n3 ticket credits per license, refreshed every cycle",
        },
        {
            "product": "helpdesk_ai",
            "code": "helpdesk-pro",
            "name": "AI Pro",
            "kind": "self_serve",
            "rank": 20,
            "price_amount": 59900,
            "ai_licenses": 25,
            "chat_licenses": 25,
            "ticket_credits_per_license": 3,
            "unlimited_ai": True,
            "stripe_price_id": "price_local_helpdesk_pro",
            "tagline": "More licenses and unlimited AI access.",
            "features": "25 AI licenses and 25 Chat licenses\n3 ticket credits per license, refreshed every cycle\nUnlimited AI access",
        },
    ]


def ensure_catalog(Product, Plan, *, trial_days: int, trial_sessions: int) -> None:
    """Create what is missing; never overwrite what staff changed. `Product` and `Plan` may be a
    migration's historical models: a field they do not have yet is left out."""
    by_code = {}
    for p in PRODUCTS:
        by_code[p["code"]], _ = Product.objects.get_or_create(code=p["code"], defaults=p)
    known = {f.name for f in Plan._meta.get_fields()}
    for spec in plans(trial_days=trial_days, trial_sessions=trial_sessions):
        fields = {k: v for k, v in spec.items() if k in known}
        fields["product"] = by_code[fields["product"]]
        Plan.objects.get_or_create(code=fields.pop("code"), defaults=fields)
