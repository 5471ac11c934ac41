"""Logging filters named by settings.LOGGING."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied


class PermissionDeniedWithoutTraceback(logging.Filter):
    """Django's `django.request` logger records a PermissionDenied (a 403) with its traceback. A
    refusal of a role is the product working, not a failure: keep the one line, with the reason,
    and drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, PermissionDenied):
            reason = str(exc)
            if reason:
                record.msg = f"{record.msg} ({reason.replace('%', '%%')})"
            record.exc_info = None
            record.exc_text = None
        return True


class PaymentRequiredAtInfo(logging.Filter):
    """Django's `django.request` logger records every 4xx as a WARNING. A 402 is an expected answer
    of the integration API — a start past the session limit, a consumption without the credits, a
    plan that ended — and under load there are thousands a second: it is information, logged at
    INFO, and so written only where LOG_LEVEL (the root logger's level) lets INFO through: not under
    the benchmark's WARNING. (The root's level must be asked: Django's own "django" logger is at
    INFO whatever LOG_LEVEL says, and a record that passes it reaches the root's handler.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) != 402:
            return True
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return logging.getLogger().isEnabledFor(logging.INFO)
