"""The one rule for the text people and clients name things with: no control characters.

Control characters are C0 (NUL included: PostgreSQL refuses it), DEL, C1 and the bidirectional
embeddings, overrides and isolates (U+202A to U+202E, U+2066 to U+2069): those reorder the text
around them, so a name such as "Contoso\\u202eexe.fdp" would show on the pages as another name. The
joiners and marks that scripts need (ZWJ, ZWNJ, LRM, RLM) stay allowed.

`CONTROL_CLASS` is the body of a regular-expression character class, written with escapes that
Python's `re`, pydantic's patterns and JSON Schema (the OpenAPI page) all read the same way."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

CONTROL_CLASS = r"\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
CONTROL = re.compile(f"[{CONTROL_CLASS}]")
MSG_CONTROL = "Remove the control characters."


def no_control_characters(value: str) -> None:
    """A form field's validator."""
    if CONTROL.search(value):
        raise ValidationError(MSG_CONTROL, code="control_character")
