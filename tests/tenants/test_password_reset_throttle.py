"""Password-reset requests are throttled per address and per client IP, silently: over a limit the
page answers exactly as when an email goes out, and nothing is sent (issue 6: 30 requests sent 30
emails to the victim). Counters live in the cache (Redis in the suite), incremented atomically."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test import Client

from tenants.factories import UserFactory
from tenants.models import Notification
from tenants.throttle import client_ip, hit_within_limit

RESET = "/accounts/password/reset/"
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def send_mail(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def _ask(email: str, send_mail, *, ip: str = "203.0.113.7", **headers: str):
    with send_mail():
        return Client(REMOTE_ADDR=ip).post(RESET, {"email": email}, **headers)


def _answer(response) -> tuple[int, str, bytes]:
    """What the requester sees: the status, where it sends them, and that page (its CSRF token,
    different for every client, blanked)."""
    page = Client().get(response["Location"]).content
    return response.status_code, response["Location"], re.sub(rb'"X-CSRFToken": "[^"]+"', b"", page)


def _reset_emails_to(address: str) -> int:
    return Notification.objects.filter(template="password_reset", to_email=address).count()


@time_machine.travel(NOON, tick=False)
def test_the_fourth_request_for_one_address_in_an_hour_sends_nothing_and_answers_the_same(admin, send_mail):
    answers = [_answer(_ask("admin@acme.test", send_mail)) for _ in range(4)]

    assert answers[0][:2] == (302, "/accounts/password/reset/sent/")
    assert b"Check your email" in answers[0][2]
    assert answers[3] == answers[0] == answers[1] == answers[2]
    assert len(mail.outbox) == 3
    assert [m.to for m in mail.outbox] == [["admin@acme.test"]] * 3
    assert _reset_emails_to("admin@acme.test") == 3


@time_machine.travel(NOON, tick=False)
def test_the_address_limit_ignores_case_spaces_and_the_ip(admin, send_mail):
    for email, ip in [
        ("admin@acme.test", "203.0.113.1"),
        ("ADMIN@Acme.test", "203.0.113.2"),
        (" admin@acme.TEST ", "203.0.113.3"),
    ]:
        _ask(email, send_mail, ip=ip)
    fourth = _ask("Admin@ACME.test", send_mail, ip="198.51.100.9")

    assert (fourth.status_code, fourth["Location"]) == (302, "/accounts/password/reset/sent/")
    assert len(mail.outbox) == 3
    assert _reset_emails_to("admin@acme.test") == 3


def test_an_address_may_ask_again_in_the_next_hour(admin, send_mail):
    with time_machine.travel(NOON, tick=False):
        for _ in range(4):
            _ask("admin@acme.test", send_mail)
    assert len(mail.outbox) == 3

    with time_machine.travel(NOON + timedelta(hours=1), tick=False):
        _ask("admin@acme.test", send_mail)

    assert len(mail.outbox) == 4


@time_machine.travel(NOON, tick=False)
def test_a_different_address_from_the_same_ip_is_limited_by_the_ip_rule(admin, send_mail):
    """20 requests an hour per client IP (settings): spraying addresses from one client stops there,
    also for an address never asked about, which the same request from another client still reaches."""
    for n in range(20):
        assert _ask(f"nobody-{n}@elsewhere.test", send_mail).status_code == 302
    assert mail.outbox == []  # unknown addresses: nothing to send, but every request counted

    over = _ask("admin@acme.test", send_mail)

    assert _answer(over)[:2] == (302, "/accounts/password/reset/sent/")
    assert mail.outbox == []
    assert _reset_emails_to("admin@acme.test") == 0

    elsewhere = _ask("admin@acme.test", send_mail, ip="198.51.100.20")

    assert _answer(elsewhere) == _answer(over)
    assert [m.to for m in mail.outbox] == [["admin@acme.test"]]


@time_machine.travel(NOON, tick=False)
def test_the_limits_are_settings(admin, settings, send_mail):
    settings.PASSWORD_RESET_LIMIT_PER_EMAIL = 1
    settings.PASSWORD_RESET_LIMIT_PER_IP = 2
    other = UserFactory(email="other@acme.test")

    _ask("admin@acme.test", send_mail)
    _ask("admin@acme.test", send_mail)  # over the address limit (1), second hit of the IP
    _ask(other.email, send_mail)  # third hit of the IP: over its limit (2)

    assert [m.to for m in mail.outbox] == [["admin@acme.test"]]


@time_machine.travel(NOON, tick=False)
def test_behind_a_proxy_the_ip_rule_counts_the_address_the_proxy_saw(admin, settings, send_mail):
    """With AXES_PROXY_COUNT=1 the client is the last X-Forwarded-For entry (the proxy appends what it
    saw); what the client writes to the left of it cannot dodge the limit."""
    settings.AXES_IPWARE_PROXY_COUNT = 1
    settings.PASSWORD_RESET_LIMIT_PER_IP = 2
    proxy = "10.0.0.2"
    for n in range(2):
        _ask(
            f"nobody-{n}@elsewhere.test",
            send_mail,
            ip=proxy,
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.7",
        )

    _ask("admin@acme.test", send_mail, ip=proxy, HTTP_X_FORWARDED_FOR="192.0.2.99, 203.0.113.7")
    assert mail.outbox == []

    _ask("admin@acme.test", send_mail, ip=proxy, HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert [m.to for m in mail.outbox] == [["admin@acme.test"]]


def test_client_ip_reads_remote_addr_unless_proxies_are_configured(rf, settings):
    request = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.7")

    settings.AXES_IPWARE_PROXY_COUNT = 0
    assert client_ip(request) == "10.0.0.2"
    settings.AXES_IPWARE_PROXY_COUNT = 1
    assert client_ip(request) == "203.0.113.7"
    settings.AXES_IPWARE_PROXY_COUNT = 2
    assert client_ip(request) == "192.0.2.1"
    settings.AXES_IPWARE_PROXY_COUNT = 3  # fewer hops than proxies: the header is not trusted
    assert client_ip(request) == "10.0.0.2"


def test_a_counter_belongs_to_its_window(db):
    hour = 3600
    start = NOON.timestamp()
    hits = [hit_within_limit(scope="t", key="k", limit=2, window=hour, now=start + s) for s in (0, 1, 2)]
    assert hits == [True, True, False]
    assert hit_within_limit(scope="t", key="k", limit=2, window=hour, now=start + hour) is True
    assert hit_within_limit(scope="other", key="k", limit=2, window=hour, now=start + 3) is True


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_requests_for_one_address_send_exactly_three_emails(admin):
    """The counter is the cache's atomic increment: no read-then-write race lets a fourth through."""
    barrier = threading.Barrier(20)
    answers: list[int] = []
    errors: list[BaseException] = []

    def ask(n: int) -> None:
        try:
            client = Client(REMOTE_ADDR=f"198.51.100.{n}")
            barrier.wait(timeout=10)
            answers.append(client.post(RESET, {"email": "admin@acme.test"}).status_code)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert answers == [302] * 20
    assert _reset_emails_to("admin@acme.test") == 3
