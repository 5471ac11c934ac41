"""C10: the security code that confirms a money-taking action — emailed, hashed, bound to the user,
the tenant and the action, expiring, single use, a few tries then a pause, resend throttled."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from tenants.errors import BusinessError
from tenants.models import SecurityCode
from tenants.security_codes import security_code_send, security_code_use

PURPOSE = "subscribe:credits-plus"


@pytest.fixture
def send(django_capture_on_commit_callbacks):
    def do(user, tenant, purpose=PURPOSE) -> str:
        with django_capture_on_commit_callbacks(execute=True):
            security_code_send(user=user, tenant=tenant, purpose=purpose, action="subscribe to AI Plus")
        found = re.search(r"\b(\d{6})\b", mail.outbox[-1].body)
        assert found is not None
        return found.group(1)

    return do


def _another(code: str) -> str:
    """A well-formed code that is not `code`."""
    return f"{(int(code) + 1) % 1_000_000:06d}"


def refused(expected: str, **kwargs) -> BusinessError:
    with pytest.raises(BusinessError) as exc:
        security_code_use(**kwargs)
    assert exc.value.code == expected
    return exc.value


def test_c10_the_emailed_code_confirms_once_and_is_stored_only_hashed(send, admin, tenant):
    code = send(admin, tenant)

    message = mail.outbox[-1]
    assert message.to == [admin.email]
    assert message.subject == f"Your Allowance security code: {code}"
    assert "subscribe to AI Plus" in message.body
    row = SecurityCode.objects.get(user=admin, tenant=tenant)
    assert code not in row.code_hash
    assert len(row.code_hash) == 64
    security_code_use(user=admin, tenant=tenant, purpose=PURPOSE, code=code)
    refused("security_code_missing", user=admin, tenant=tenant, purpose=PURPOSE, code=code)  # reused


def test_c10_a_wrong_code_is_refused_and_counted(send, admin, tenant):
    code = send(admin, tenant)
    wrong = _another(code)

    error = refused("security_code_wrong", user=admin, tenant=tenant, purpose=PURPOSE, code=wrong)

    assert error.message == "That security code is not right. 4 tries left."
    assert SecurityCode.objects.get(user=admin, tenant=tenant).attempts == 1
    security_code_use(user=admin, tenant=tenant, purpose=PURPOSE, code=code)  # the right one still works


def test_c10_an_expired_code_is_refused(send, admin, tenant):
    code = send(admin, tenant)
    with time_machine.travel(timezone.now() + timedelta(minutes=10, seconds=1)):
        error = refused("security_code_expired", user=admin, tenant=tenant, purpose=PURPOSE, code=code)
    assert error.message == "This security code has expired. Ask for a new one."


def test_c10_five_wrong_tries_kill_the_code_and_pause_the_member_for_15_minutes(send, admin, tenant):
    code = send(admin, tenant)
    wrong = _another(code)
    for _ in range(4):
        refused("security_code_wrong", user=admin, tenant=tenant, purpose=PURPOSE, code=wrong)

    error = refused("security_code_paused", user=admin, tenant=tenant, purpose=PURPOSE, code=wrong)

    assert (error.status, error.message) == (429, "Too many wrong security codes. Try again in 15 minutes.")
    refused(
        "security_code_paused", user=admin, tenant=tenant, purpose=PURPOSE, code=code
    )  # even the right one
    with pytest.raises(BusinessError) as no_new_code:
        security_code_send(user=admin, tenant=tenant, purpose=PURPOSE, action="x")
    assert no_new_code.value.code == "security_code_paused"
    with time_machine.travel(timezone.now() + timedelta(minutes=15, seconds=1)):
        fresh = send(admin, tenant)
        security_code_use(user=admin, tenant=tenant, purpose=PURPOSE, code=fresh)


def test_c10_a_code_for_another_action_user_or_tenant_confirms_nothing(
    send, admin, member, tenant, other_tenant, outsider
):
    code = send(admin, tenant)

    refused("security_code_missing", user=admin, tenant=tenant, purpose="extra_pack:extra-500", code=code)
    refused("security_code_missing", user=member, tenant=tenant, purpose=PURPOSE, code=code)
    refused("not_a_member", user=admin, tenant=other_tenant, purpose=PURPOSE, code=code)
    other_code = send(outsider, other_tenant)
    refused("not_a_member", user=outsider, tenant=tenant, purpose=PURPOSE, code=other_code)
    if other_code != code:
        refused("security_code_wrong", user=outsider, tenant=other_tenant, purpose=PURPOSE, code=code)
    security_code_use(user=admin, tenant=tenant, purpose=PURPOSE, code=code)


def test_c10_a_new_code_replaces_the_old_and_resending_is_throttled(send, admin, tenant):
    first = send(admin, tenant)
    with pytest.raises(BusinessError) as throttled:
        security_code_send(user=admin, tenant=tenant, purpose=PURPOSE, action="x")
    assert (throttled.value.code, throttled.value.status) == ("security_code_throttled", 429)

    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        second = send(admin, tenant)
        if first != second:
            refused("security_code_wrong", user=admin, tenant=tenant, purpose=PURPOSE, code=first)
        security_code_use(user=admin, tenant=tenant, purpose=PURPOSE, code=second)


def test_c10_malformed_input_is_refused_without_counting_a_try(send, admin, tenant):
    send(admin, tenant)
    for bad in ("", "12345", "abcdef", "1234567", "١٢٣٤٥٦"):
        refused("security_code_invalid", user=admin, tenant=tenant, purpose=PURPOSE, code=bad)
    assert SecurityCode.objects.get(user=admin, tenant=tenant).attempts == 0


def test_c10_asking_for_a_new_code_does_not_reset_the_wrong_tries(send, admin, tenant):
    """Four wrong tries, a new code a minute later, one more wrong try: paused, as for one code."""
    start = timezone.now()
    code = send(admin, tenant)
    wrong = _another(code)
    for _ in range(4):
        refused("security_code_wrong", user=admin, tenant=tenant, purpose=PURPOSE, code=wrong)
    with time_machine.travel(start + timedelta(seconds=61)):
        fresh = send(admin, tenant)
        other = _another(fresh)
        error = refused("security_code_paused", user=admin, tenant=tenant, purpose=PURPOSE, code=other)
        assert error.status == 429
        refused("security_code_paused", user=admin, tenant=tenant, purpose=PURPOSE, code=fresh)


def test_c10_the_count_starts_again_after_an_accepted_code(send, admin, tenant):
    start = timezone.now()
    code = send(admin, tenant)
    wrong = _another(code)
    for _ in range(3):
        refused("security_code_wrong", user=admin, tenant=tenant, purpose=PURPOSE, code=wrong)
    security_code_use(user=admin, tenant=tenant, purpose=PURPOSE, code=code)
    with time_machine.travel(start + timedelta(seconds=61)):
        fresh = send(admin, tenant)
        other = _another(fresh)
        error = refused("security_code_wrong", user=admin, tenant=tenant, purpose=PURPOSE, code=other)
        assert error.message == "That security code is not right. 4 tries left."


def test_c10_a_code_that_cannot_be_emailed_is_withdrawn_with_a_clear_error(
    admin, tenant, monkeypatch, django_capture_on_commit_callbacks
):
    def down(*args, **kwargs):
        raise OSError("SMTP unreachable")

    monkeypatch.setattr("django.core.mail.EmailMultiAlternatives.send", down)
    with pytest.raises(BusinessError) as failed, django_capture_on_commit_callbacks(execute=True):
        security_code_send(user=admin, tenant=tenant, purpose=PURPOSE, action="subscribe to AI Plus")
    assert (failed.value.code, failed.value.status) == ("security_code_not_sent", 503)
    assert not SecurityCode.objects.filter(user=admin, tenant=tenant).exists()
    monkeypatch.undo()
    with django_capture_on_commit_callbacks(execute=True):  # asking again at once is not throttled
        security_code_send(user=admin, tenant=tenant, purpose=PURPOSE, action="subscribe to AI Plus")
    assert SecurityCode.objects.filter(user=admin, tenant=tenant).count() == 1


def test_c10_inside_a_callers_transaction_the_mail_failure_still_reaches_the_caller(
    admin, tenant, monkeypatch, django_capture_on_commit_callbacks
):
    """The email goes out from the service itself, not from an on-commit callback: a caller that
    holds a transaction still hears that the code was not sent (a callback would run only at that
    transaction's commit, after the caller had answered "code sent"), and nothing is kept."""
    from django.db import transaction

    def down(*args, **kwargs):
        raise OSError("SMTP unreachable")

    monkeypatch.setattr("django.core.mail.EmailMultiAlternatives.send", down)
    with (
        django_capture_on_commit_callbacks(execute=False) as callbacks,
        pytest.raises(BusinessError) as failed,
        transaction.atomic(),
    ):
        security_code_send(user=admin, tenant=tenant, purpose=PURPOSE, action="subscribe to AI Plus")
    assert failed.value.code == "security_code_not_sent"
    assert callbacks == []
    assert not SecurityCode.objects.filter(user=admin, tenant=tenant).exists()
