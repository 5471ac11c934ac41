"""The integration API's JSON answer, built by a view itself: what django-ninja sends for the data a
view returns once its response schema has validated it — the same encoder, the same content type,
the same headers — without ninja's per-request work of validating the data again (the hot
endpoints build their data in the schema's field order with the schema's own types; their tests
compare the bytes with ninja's rendering)."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from ninja.responses import NinjaJSONEncoder

JSON = "application/json; charset=utf-8"  # ninja's JSONRenderer: media type and charset


def json_answer(data: Any, *, status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(data, cls=NinjaJSONEncoder), status=status, content_type=JSON)
