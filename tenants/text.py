"""The one rule for the text people and clients name things with: no control characters.

Control characters are C0 (NUL included: PostgreSQL refuses it), DEL, C1, the bidirectional
embeddings, overrides and isolates (U+202A to U+202E, U+2066 to U+2069): those reorder the text
around them, so a name such as "Contoso\\u202eexe.fdp" would show on the pages as another name; and
the invisible format characters that make two names look the same or break a line where none shows:
the zero-width space (U+200B), the line and paragraph separators (U+2028, U+2029), the word joiner
and invisible operators (U+2060 to U+2064), the deprecated format controls (U+206A to U+206F), the
zero-width no-break space (U+FEFF, a BOM) and the interlinear annotation controls (U+FFF9 to
U+FFFB). The joiners and marks that scripts need (ZWJ, ZWNJ, LRM, RLM) stay allowed. (The tag
characters, U+E0000 and up, are left out: a JSON Schema pattern cannot name them.)

`CONTROL_CLASS` is the body of a regular-expression character class, written with escapes that
Python's `re`, pydantic's patterns and JSON Schema (the OpenAPI page) all read the same way."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

CONTROL_CLASS = (
    r"\x00-\x1f\x7f-\x9f\u200b\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
)
CONTROL = re.compile(f"[{CONTROL_CLASS}]")
MSG_CONTROL = "Remove the control characters."


def ascii_digits(value: object) -> bool:
    """Whether `value` is a non-empty text of the digits 0-9 only, which `int()` reads. `str.isdigit`
    is also true for superscripts ("²") and other digit characters that `int()` refuses (a
    ValueError, a 500 where a query string or a form sent it)."""
    return isinstance(value, str) and value.isascii() and value.isdigit()


def no_control_characters(value: str) -> None:
    """A form field's validator."""
    if CONTROL.search(value):
        raise ValidationError(MSG_CONTROL, code="control_character")
