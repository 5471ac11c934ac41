"""APPEND_SLASH sends only GET and HEAD on to the path with a slash. Found by an outsider probe: a POST,
PUT, PATCH or DELETE to `/api/v1` or `/t/<slug>/billing` was a 500 with DEBUG on (Django raises rather
than redirect a body it would lose) and a 301 with it off, which a client follows as a GET."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_write_to_a_path_without_its_slash_is_a_404_not_a_redirect(
    tenant, admin, client_for, method, debug
):
    page = client_for(admin)
    with override_settings(DEBUG=debug):
        api = getattr(Client(), method)("/api/v1")
        billing = getattr(page, method)(f"/t/{tenant.slug}/billing")

    assert api.status_code == 404
    assert api.json()["error"]["code"] == "not_found"
    assert billing.status_code == 404
    assert "Location" not in billing


def test_a_get_or_head_is_still_sent_on_to_the_slash(tenant, admin, client_for):
    page = client_for(admin)
    for method in ("get", "head"):
        response = getattr(page, method)(f"/t/{tenant.slug}/billing")
        assert response.status_code == 301
        assert response["Location"] == f"/t/{tenant.slug}/billing/"
