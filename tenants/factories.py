"""factory-boy factories for the tenants app (used by every app's tests)."""

from datetime import timedelta
from typing import Any

import factory
import psycopg
from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from tenants.models import ApiKey, Invitation, Membership, Role, Tenant, User

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Tenant {n}")
    slug = factory.Sequence(lambda n: f"tenant-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    tenant = factory.SubFactory(TenantFactory)
    role = Role.MEMBER


class InvitationFactory(factory.django.DjangoModelFactory):
    """A pending invitation. Use tenants.services.invitation_create when the token is needed."""

    class Meta:
        model = Invitation

    tenant = factory.SubFactory(TenantFactory)
    email = factory.Sequence(lambda n: f"invitee{n}@example.test")
    role = Role.MEMBER
    token_hash = factory.Sequence(lambda n: f"{n:064x}")
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=7))


class ApiKeyFactory(factory.django.DjangoModelFactory):
    """A key row without a usable secret. Use tenants.services.api_key_create when the secret is needed."""

    class Meta:
        model = ApiKey

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Key {n}")
    prefix = factory.Sequence(lambda n: f"alw_{n:08x}")
    key_hash = factory.Sequence(lambda n: f"{n:064x}")


def insert_copy(row: models.Model, **changes: Any) -> None:
    """Insert a copy of `row` with `changes` (each a field of its model), its deferred constraints
    (the foreign keys) checked at once rather than at the test's commit that never comes."""
    row.pk = None
    row._state.adding = True
    names = {f.name for f in row._meta.concrete_fields} | {f.attname for f in row._meta.concrete_fields}
    for name, value in changes.items():
        assert name in names, f"{type(row).__name__} has no field {name}"
        setattr(row, name, value)
    with transaction.atomic():
        row.save()
        connection.check_constraints()


def second_connection(*, autocommit: bool = True) -> psycopg.Connection:
    """Another PostgreSQL session on the test database, as another worker's would be."""
    params = settings.DATABASES["default"]
    return psycopg.connect(
        host=params["HOST"], port=params["PORT"], user=params["USER"], password=params.get("PASSWORD") or None,
        dbname=connection.settings_dict["NAME"], autocommit=autocommit,
    )  # fmt: skip
