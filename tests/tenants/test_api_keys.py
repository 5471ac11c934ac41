"""API keys: the secret is shown once and only its hash is kept; the integration API accepts an
active key, refuses everything else with 401 in the error shape, and records last use sparingly."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tenants import services
from tenants.errors import BusinessError
from tenants.factories import ApiKeyFactory
from tenants.models import ApiKey, AuditEvent

from .helpers import db_rows, messages_of, tables_containing

UNAUTHORIZED = {
    "error": {
        "code": "unauthorized",
        "message": "A valid API key is required: send it as 'Authorization: Bearer <key>'.",
    }
}
NOT_FOUND = {"error": {"code": "not_found", "message": "Not found."}}


def _call(secret: str | None, path: str = "/api/v1/tenant", **headers):
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    return Client().get(path, headers=headers)


@pytest.fixture
def issued(tenant, admin):
    return services.api_key_create(tenant=tenant, name="Billing sync", actor=admin)


def _secret_on(response) -> str:
    found = re.findall(r'<div class="secret" id="new-key-secret">([^<]+)</div>', response.content.decode())
    assert len(found) == 1
    return found[0]


# --- creating and listing ----------------------------------------------------------------------


def test_new_key_secret_is_shown_once_and_only_its_hash_and_prefix_are_stored(tenant, admin, client_for):
    client = client_for(admin)

    response = client.post("/t/acme/api-keys/", {"name": "Billing sync"})

    assert response.status_code == 200
    secret = _secret_on(response)
    key = ApiKey.objects.get()
    assert re.fullmatch(r"alw_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", secret)
    assert (key.tenant, key.name, key.created_by, key.revoked_at, key.last_used_at) == (
        tenant,
        "Billing sync",
        admin,
        None,
        None,
    )
    assert key.prefix == secret[:12]
    assert key.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    # Neither the secret nor its random part is anywhere in the database.
    assert tables_containing(secret) == []
    assert tables_containing(secret.removeprefix(key.prefix + "_")) == []
    assert list(AuditEvent.objects.values_list("action", "actor_user", "target_id")) == [
        ("api_key.created", admin.pk, str(key.pk))
    ]


def test_key_list_never_shows_a_secret_again(tenant, admin, client_for):
    client = client_for(admin)
    secret = _secret_on(client.post("/t/acme/api-keys/", {"name": "Billing sync"}))
    key = ApiKey.objects.get()

    response = client.get("/t/acme/api-keys/")

    assert response.status_code == 200
    content = response.content.decode()
    assert secret not in content
    assert secret.removeprefix(key.prefix + "_") not in content
    assert 'id="new-key-secret"' not in content
    assert f"<code>{key.prefix}_…</code>" in content
    assert content.count('data-testid="key-row"') == 1


def test_key_created_through_htmx_shows_the_secret_in_the_fragment(tenant, admin, client_for):
    response = client_for(admin).post(
        "/t/acme/api-keys/", {"name": "Billing sync"}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    content = response.content.decode()
    assert content.lstrip().startswith('<div id="keys"')
    assert "<html" not in content
    secret = _secret_on(response)
    assert ApiKey.objects.get().key_hash == hashlib.sha256(secret.encode()).hexdigest()


def test_key_without_a_name_is_refused(tenant, admin, client_for):
    client = client_for(admin)
    before = db_rows()

    response = client.post("/t/acme/api-keys/", {"name": "   "})

    assert response.status_code == 400
    assert response.context["form"].errors == {"name": ["This field is required."]}
    assert 'id="new-key-secret"' not in response.content.decode()
    assert db_rows() == before


def test_a_refused_key_name_through_htmx_comes_back_as_200_with_its_error(tenant, admin, client_for):
    """htmx swaps only 2xx answers: a 400 left the admin clicking Create with nothing shown."""
    client = client_for(admin)
    before = db_rows()

    response = client.post("/t/acme/api-keys/", {"name": "   "}, headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<div id="keys"')
    assert "This field is required." in response.content.decode()
    assert db_rows() == before


def test_key_with_a_control_character_in_its_name_is_refused(tenant, admin, client_for):
    """No control characters in a name (tenants.text): a bidirectional override would show the
    key's name reversed on the pages and in the activity log."""
    client = client_for(admin)
    before = db_rows()

    response = client.post("/t/acme/api-keys/", {"name": "billing\u202etxt.exe"})

    assert response.status_code == 400
    assert response.context["form"].errors == {"name": ["Remove the control characters."]}
    assert db_rows() == before
    with pytest.raises(BusinessError, match=r"Key name: Remove the control characters\."):
        services.api_key_create(tenant=tenant, name="a\x85b", actor=admin)
    assert db_rows() == before


# --- using a key -------------------------------------------------------------------------------


def test_api_call_with_the_key_answers_as_its_tenant(tenant, admin, issued, other_tenant):
    response = _call(issued.secret)

    assert response.status_code == 200
    assert response.json() == {
        "tenant": {"slug": "acme", "name": "Acme Corp"},
        "api_key": {
            "name": "Billing sync",
            "prefix": issued.api_key.prefix,
            "created_at": issued.api_key.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        },
    }


def test_scheme_name_is_case_insensitive(issued):
    assert _call(None, Authorization=f"bearer {issued.secret}").json()["tenant"]["slug"] == "acme"


def test_the_scheme_and_the_key_may_be_separated_by_several_spaces(issued):
    """RFC 9110 11.4: credentials = auth-scheme 1*SP token68."""
    for header in (f"Bearer   {issued.secret}", f"Bearer {issued.secret} ", f"Bearer \t{issued.secret}"):
        assert _call(None, Authorization=header).status_code == 200, repr(header)
    for header in (f"Bearer{issued.secret}", f"Bearer {issued.secret} x", f"Basic {issued.secret}"):
        assert _call(None, Authorization=header).status_code == 401, repr(header)


def test_last_used_at_is_written_at_most_once_a_minute(issued):
    key = issued.api_key
    start = timezone.now().replace(microsecond=0)

    def call_and_count_updates() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert _call(issued.secret).status_code == 200
        return sum(q["sql"].startswith('UPDATE "tenants_apikey"') for q in ctx.captured_queries)

    with time_machine.travel(start, tick=False):
        assert call_and_count_updates() == 1
    key.refresh_from_db()
    assert key.last_used_at == start

    with time_machine.travel(start + timedelta(seconds=59), tick=False):
        assert call_and_count_updates() == 0
    key.refresh_from_db()
    assert key.last_used_at == start

    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        assert call_and_count_updates() == 1
    key.refresh_from_db()
    assert key.last_used_at == start + timedelta(seconds=61)


def test_revoked_key_is_refused_at_once(tenant, admin, issued, client_for):
    assert _call(issued.secret).status_code == 200

    response = client_for(admin).post(f"/t/acme/api-keys/{issued.api_key.pk}/revoke/")

    assert response.status_code == 302
    assert response["Location"] == "/t/acme/api-keys/"
    assert messages_of(response) == ["Key Billing sync revoked: it is refused from now on."]
    refused = _call(issued.secret)
    assert refused.status_code == 401
    assert refused.json() == UNAUTHORIZED
    key = ApiKey.objects.get()
    assert key.revoked_at is not None
    assert list(
        AuditEvent.objects.filter(action="api_key.revoked").values_list("actor_user", "target_id")
    ) == [(admin.pk, str(key.pk))]


def test_revoking_twice_keeps_the_first_revocation(tenant, admin, issued, client_for):
    client = client_for(admin)
    client.post(f"/t/acme/api-keys/{issued.api_key.pk}/revoke/")
    first = ApiKey.objects.get().revoked_at

    client.post(f"/t/acme/api-keys/{issued.api_key.pk}/revoke/")

    assert ApiKey.objects.get().revoked_at == first
    assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1


def test_revoked_key_shows_as_revoked_without_a_revoke_button(tenant, admin, issued, client_for):
    client = client_for(admin)
    client.post(f"/t/acme/api-keys/{issued.api_key.pk}/revoke/")

    content = client.get("/t/acme/api-keys/").content.decode()

    assert "Revoked " in content
    assert f"/t/acme/api-keys/{issued.api_key.pk}/revoke/" not in content


@pytest.mark.parametrize(
    "authorization",
    [
        None,  # no header
        "",
        "Bearer",
        "Bearer ",
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "Token alw_00000000_whatever",
        "Bearer alw_00000000_unknown-key",  # well-formed, unknown
        "Bearer not-a-key-at-all",
        "Bearer alw_" + "x" * 300,  # far too long
    ],
)
def test_missing_malformed_or_unknown_key_is_401_in_the_error_shape(db, issued, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}

    response = Client().get("/api/v1/tenant", headers=headers)

    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == UNAUTHORIZED
    # RFC 9110 15.5.2 (a 401 names its scheme) and RFC 6750 3.1 (a Bearer key sent but refused).
    sent_bearer = (authorization or "").startswith("Bearer")
    expected = 'Bearer realm="api", error="invalid_token"' if sent_bearer else 'Bearer realm="api"'
    assert response["WWW-Authenticate"] == expected


def test_secret_with_a_known_prefix_but_another_rest_is_refused(tenant, issued):
    # Keys are matched by the hash of the whole secret, never by the visible prefix.
    forged = issued.api_key.prefix + "_" + "A" * 43
    assert _call(forged).status_code == 401


def test_factory_key_rows_never_authenticate(tenant):
    key = ApiKeyFactory(tenant=tenant)
    assert _call(key.key_hash).status_code == 401
    assert _call(key.prefix).status_code == 401


# --- the rest of the API surface ---------------------------------------------------------------


@pytest.mark.parametrize("with_key", [False, True])
def test_unknown_api_path_is_404_in_the_error_shape(issued, with_key):
    response = _call(issued.secret if with_key else None, "/api/v1/no-such-thing")

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


def test_api_docs_are_viewable_without_a_key(db):
    response = Client().get("/api/v1/docs")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger-ui" in response.content
    assert b"/api/v1/openapi.json" in response.content


def test_openapi_schema_is_viewable_without_a_key_and_documents_the_bearer_auth(db):
    response = Client().get("/api/v1/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "Allowance integration API"
    assert "/api/v1/tenant" in schema["paths"]
    assert schema["components"]["securitySchemes"] == {"ApiKeyAuth": {"type": "http", "scheme": "bearer"}}
    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert operations
    assert all(op["security"] == [{"ApiKeyAuth": []}] for op in operations)  # every endpoint needs a key
