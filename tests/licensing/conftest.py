"""The plans tests' fixtures (a frozen clock at START, an org that signed up then, the on-commit
capture that delivers the local gateway's webhooks), for the licensing journeys through billing."""

from tests.subscriptions.conftest import capture, clock, org  # noqa: F401
