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
