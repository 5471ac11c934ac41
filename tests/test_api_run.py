"""tenants.api_run: every operation of the integration API runs through the streamlined run, which
answers exactly what ninja's own `Operation.run` answers (status, headers, body) for successes and
every kind of refusal, and mirrors a pinned version of ninja's code."""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

import time_machine
from django.test import Client
from ninja.operation import Operation

from config.api import api
from tenants.api_run import streamlined
from tests.test_api_middleware_chain import NOW, _answer, _both, _cases, acme_on_every_product

# What tenants.api_run mirrors (django-ninja 1.7.1). A new ninja changes these: read its run again,
# bring streamlined_run in line, then update the digest.
MIRRORED = (
    Operation.run,
    Operation._run_checks,
    Operation._run_authentication,
    Operation._result_to_response,
)
DIGEST = "b5d8d6c6125f5f82"


def _operations() -> list[Any]:
    return [
        operation
        for bound in api._get_bound_routers()
        for view in bound.path_operations.values()
        for operation in view.operations
    ]


def _with_ninja_run(send: Any) -> Any:
    """`send()` with ninja's own run for every operation."""
    operations = _operations()
    saved = [operation.run for operation in operations]
    for operation in operations:
        operation.run = operation.run.__wrapped__
    try:
        return send()
    finally:
        for operation, run in zip(operations, saved, strict=True):
            operation.run = run


def test_the_mirrored_ninja_code_is_the_pinned_version():
    source = "".join(inspect.getsource(function) for function in MIRRORED)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == DIGEST


def test_every_operation_runs_streamlined():
    operations = _operations()
    assert len(operations) > 20
    for operation in operations:
        assert operation.run.__name__ == "streamlined_run", operation.view_func.__name__
        assert operation.run.__wrapped__ == Operation.run.__get__(operation)


def test_what_it_does_not_know_keeps_ninja_run():
    def plain(request: Any) -> None:
        return None

    assert streamlined(plain) is plain


def test_the_streamlined_run_answers_exactly_what_ninja_run_answers(tenant, admin):
    with time_machine.travel(NOW, tick=False):
        cases = _cases(acme_on_every_product(tenant, admin))
        client = Client()
        ours = {name: _answer(_both((client,), send)[0]) for name, send, _ in cases}
        theirs = _with_ninja_run(
            lambda: {name: _answer(_both((client,), send)[0]) for name, send, _ in cases}
        )

    for name, _, status in cases:
        assert ours[name][0] == status, name
        assert ours[name] == theirs[name], name
