"""Root fixtures: the personas every suite uses.

`admin`, `member` and `finance` belong to `tenant`; `outsider` is the admin of `other_tenant`
and of nothing else. Each persona is a User; `client_for(user)` gives a logged-in test client."""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.test import Client

from tenants.factories import MembershipFactory, TenantFactory, UserFactory
from tenants.models import Role, Tenant, User

# Browser tests drive a live server from a sync Playwright API inside pytest's event-loop-free
# thread; Django refuses ORM calls from a thread that has an event loop unless told it is fine.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test` runs the suite in one process per core) each process gets its
    own Redis database, the next ones after REDIS_URL's, as pytest-django gives it its own test
    database: every test empties the cache, and would empty another process's mid-test."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or worker == "gw0":
        return
    from django.conf import settings

    location = settings.CACHES["default"].get("LOCATION", "")
    if not isinstance(location, str) or not location.startswith("redis://"):
        return
    parts = urlsplit(location)
    db = int(parts.path.strip("/") or 0)
    # Redis has 16 databases (0-15): counting on from 13 or above wraps round to 0.
    url = urlunsplit(parts._replace(path=f"/{(db + int(worker.removeprefix('gw'))) % 16}"))
    settings.CACHES["default"]["LOCATION"] = url
    settings.CELERY_BROKER_URL = url


@pytest.fixture(autouse=True)
def _settings_for_tests(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.SECURE_SSL_REDIRECT = False  # tests run with DEBUG off; requests are plain http
    settings.AXES_ENABLED = False
    # Hashing cost is not under test here; PBKDF2's 1M rounds would dominate the suite's time.
    # The in-process payment gateway; Stripe itself is faked only at the gateway boundary.
    settings.PAYMENT_GATEWAY = "local"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_test_secret"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _empty_cache():
    """Every test starts with an empty cache: counters (the password-reset throttle) that earlier
    tests or runs left in Redis would otherwise refuse this test's requests."""
    from django.core.cache import cache

    from tenants.services import api_keys_forget

    cache.clear()
    api_keys_forget()  # the keys this process remembers (tenants.key_confirmation)


@pytest.fixture(autouse=True)
def _catalog(request):
    """The plan and credit catalogs come from data migrations; a transactional test's flush deletes it, so it
    is put back for any test that uses the database."""
    if not ({"db", "transactional_db"} & set(request.fixturenames)) and not request.node.get_closest_marker(
        "django_db"
    ):
        return
    request.getfixturevalue("_django_db_helper")  # whichever kind of database access the test asked for
    from django.conf import settings as dj_settings

    from credits.catalog import ensure_credit_catalog
    from credits.models import ExtraPack, FeatureCost
    from plans.catalog import ensure_catalog
    from plans.models import Plan, Product

    if not Plan.objects.exists():
        ensure_catalog(
            Product, Plan, trial_days=dj_settings.TRIAL_DAYS, trial_sessions=dj_settings.TRIAL_SESSIONS
        )
    if not FeatureCost.objects.exists():
        ensure_credit_catalog(FeatureCost, ExtraPack)


@pytest.fixture
def tenant(db) -> Tenant:
    return TenantFactory(name="Acme Corp", slug="acme")


@pytest.fixture
def other_tenant(db) -> Tenant:
    return TenantFactory(name="Globex Secret Holdings", slug="globex")


def _persona(tenant: Tenant, role: Role, email: str) -> User:
    return MembershipFactory(tenant=tenant, role=role, user=UserFactory(email=email)).user


@pytest.fixture
def admin(tenant) -> User:
    return _persona(tenant, Role.ADMIN, "admin@acme.test")


@pytest.fixture
def member(tenant) -> User:
    return _persona(tenant, Role.MEMBER, "member@acme.test")


@pytest.fixture
def finance(tenant) -> User:
    return _persona(tenant, Role.FINANCE, "finance@acme.test")


@pytest.fixture
def outsider(other_tenant) -> User:
    return _persona(other_tenant, Role.ADMIN, "outsider@globex.test")


@pytest.fixture
def client_for(db) -> Callable[[User], Client]:
    def make(user: User) -> Client:
        client = Client()
        client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
        return client

    return make
