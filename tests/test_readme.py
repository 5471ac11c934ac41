"""The README a clone reads: no links outside the repository, and every demo tenant with its key."""

from __future__ import annotations

import re
from pathlib import Path

from billing_portal.management.commands.seed_demo import DEMO_TENANTS, demo_api_key

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_links_nothing_outside_the_repository():
    assert "../" not in README
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith(("http://", "https://")):
            assert (Path(__file__).resolve().parents[1] / target).exists(), target


def test_readme_lists_every_demo_tenant_with_its_api_key():
    for slug, name, _plan, _state in DEMO_TENANTS:
        row = next((line for line in README.splitlines() if f"(`{slug}`)" in line), None)
        assert row is not None, f"{slug} is not in the README's demo table"
        assert name in row
        assert f"`{demo_api_key(slug)}`" in row


def test_readme_lists_every_webhook_event_to_register():
    """Issue 7: the events an operator registers are the ones the endpoint handles, all of them."""
    from billing_portal.webhooks import HANDLERS

    section = README[README.index("### Setting up a Stripe account") : README.index("### The optional suite")]
    missing = [event_type for event_type in HANDLERS if f"`{event_type}`" not in section]
    assert missing == []
