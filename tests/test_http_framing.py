"""HTTP's own rules on every route: HEAD is answered as GET without the body (an uptime check's
`HEAD /healthz`), and a compressed request body is refused with 415 in words, changing nothing —
not taken for bad input because its bytes hold NULs."""

from __future__ import annotations

import gzip
import json

import pytest
from django.http import HttpResponse, StreamingHttpResponse
from django.test import Client, RequestFactory

from config.middleware import HeadAsGetMiddleware
from credits.factories import grant, on_plus
from credits.models import Consumption
from tenants.services import api_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(tenant, admin) -> Client:
    on_plus(tenant)
    grant(tenant, 10)
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_key_create(tenant=tenant, name='k', actor=admin).secret}")


def test_head_answers_as_get_without_the_body(api, admin, client_for):
    for client, path in (
        (Client(), "/healthz"),
        (api, "/api/v1/credits"),
        (api, "/api/v1/tenant"),
        (client_for(admin), "/t/acme/"),
        (client_for(admin), "/t/acme/marketplace/ai-credits/"),
    ):
        get, head = client.get(path), client.head(path)
        assert (head.status_code, get.status_code) == (200, 200), path
        assert head.content == b"", path
        assert head["Content-Type"] == get["Content-Type"], path
        assert int(head["Content-Length"]) == len(get.content), path


def test_head_of_a_streamed_export_streams_nothing(admin, client_for):
    head = client_for(admin).head("/t/acme/licenses/export.csv")
    assert head.status_code == 200
    assert head["Content-Type"].startswith("text/csv")
    assert b"".join(head.streaming_content) == b""


def test_head_on_a_route_without_get_is_its_405_and_unknown_routes_their_404(api, client_for, admin):
    assert Client().head("/api/v1/credits").status_code == 401  # the key is checked as for GET
    refused = api.head("/api/v1/credits/consume")
    assert (refused.status_code, refused.content) == (405, b"")
    assert "POST" in refused["Allow"]
    assert api.head("/api/v1/nothing-here").status_code == 404
    assert client_for(admin).head("/t/acme/nothing-here/").status_code == 404


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate", "GZIP "])
def test_a_compressed_body_is_refused_with_415_and_nothing_is_consumed(api, encoding):
    body = gzip.compress(
        json.dumps({"feature": "smart_response", "quantity": 1, "idempotency_key": "z"}).encode()
    )
    response = api.post(
        "/api/v1/credits/consume", body, content_type="application/json", HTTP_CONTENT_ENCODING=encoding
    )
    assert response.status_code == 415
    assert response["Accept-Encoding"] == "identity"
    assert response.json() == {
        "error": {
            "code": "unsupported_content_encoding",
            "message": "Send the request body uncompressed: no Content-Encoding (gzip, br, deflate) is accepted.",
        }
    }
    assert not Consumption.objects.exists()


def test_identity_is_no_encoding(api):
    body = json.dumps({"feature": "smart_response", "quantity": 1, "idempotency_key": "z"})
    response = api.post(
        "/api/v1/credits/consume", body, content_type="application/json", HTTP_CONTENT_ENCODING="identity"
    )
    assert response.status_code == 201


def test_a_compressed_form_post_is_refused_on_a_page_in_words(admin, client_for):
    response = client_for(admin).post(
        "/t/acme/licenses/clients/import/",
        b"\x1f\x8b\x08\x00",
        content_type="text/csv",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 415
    assert "Send the request body uncompressed" in response.content.decode()


def test_a_content_encoding_without_a_body_refuses_nothing(api):
    """The rule is about a compressed body: a stray header on a GET or HEAD is answered as usual."""
    assert Client().get("/healthz", HTTP_CONTENT_ENCODING="gzip").status_code == 200
    assert Client().head("/healthz", HTTP_CONTENT_ENCODING="gzip").status_code == 200
    assert api.get("/api/v1/credits", HTTP_CONTENT_ENCODING="gzip").status_code == 200


def test_the_middleware_itself_drops_the_body_and_keeps_its_length():
    """Django's test client empties a HEAD answer by itself (conditional_content_removal), so the
    tests above cannot see the middleware drop it: a server does not, and this does."""
    seen = []

    def view(request):
        seen.append(request.method)
        return HttpResponse(b"abc", content_type="text/plain")

    def stream(request):
        return StreamingHttpResponse(iter([b"a,b\n", b"c,d\n"]), content_type="text/csv")

    request = RequestFactory().head("/healthz")
    answer = HeadAsGetMiddleware(view)(request)
    assert (seen, request.method) == (["GET"], "HEAD")  # the view saw a GET; the request stays HEAD
    assert (answer.content, answer["Content-Length"]) == (b"", "3")
    streamed = HeadAsGetMiddleware(stream)(RequestFactory().head("/x.csv"))
    assert b"".join(streamed.streaming_content) == b""
    assert HeadAsGetMiddleware(view)(RequestFactory().get("/healthz")).content == b"abc"
