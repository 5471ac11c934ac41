"""The README a clone reads: no links outside the repository, and every demo tenant with its key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

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


def _section(title: str) -> str:
    start = README.index(title)
    return README[start : README.index("\n## ", start + 1)]


def _body_after(section: str, path: str) -> dict:
    match = re.search(re.escape(path) + r"[^\n]*(?:\\\n[^\n]*)?-d '([^']+)'", section)
    assert match, path
    return json.loads(match.group(1))


@pytest.mark.django_db
def test_the_credits_and_helpdesk_curl_examples_answer_what_the_readme_says(settings):
    """Run against a freshly seeded demo, the README's AI credits and Helpdesk AI examples answer the
    figures their comments give (a new user pastes them)."""
    settings.DEBUG = True
    call_command("seed_demo", stdout=None)

    credits = _section("## AI credits")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {demo_api_key('lumen')}"}
    said = json.loads(re.search(r"# 201 (\{\"consumed\".*?), \.\.\.\}", credits).group(1) + "}")
    consumed = Client().post(
        "/api/v1/credits/consume",
        _body_after(credits, "/credits/consume"),
        content_type="application/json",
        **auth,
    )
    assert consumed.status_code == 201
    assert {k: consumed.json()[k] for k in said} == said
    assert "as_of=20" not in credits  # a fixed date falls outside the demo's month, replayed as nothing

    helpdesk = _section("## Helpdesk AI")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {demo_api_key('northwind')}"}
    upsert = _body_after(helpdesk, "/clients/4999")
    assert (
        Client().put("/api/v1/clients/4999", upsert, content_type="application/json", **auth).status_code
        == 201
    )
    remaining = int(re.search(r'"ticket_credits_remaining": (\d+)', helpdesk).group(1))
    ticket = (
        Client()
        .post("/api/v1/tickets", _body_after(helpdesk, "/tickets"), content_type="application/json", **auth)
        .json()
    )
    assert (ticket["ai"], ticket["via"], ticket["ticket_credits_remaining"]) == (
        True,
        "ticket_credit",
        remaining,
    )
