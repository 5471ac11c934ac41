"""CSV downloads, one way for every page: streamed (no row limit in memory) and safe to open in a
spreadsheet (a text cell that would run as a formula is kept as text), never cached."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Sequence

from django.http import StreamingHttpResponse
from django.utils.cache import add_never_cache_headers
from django.utils.http import content_disposition_header

# A cell starting with one of these is run as a formula by spreadsheet programs (OWASP's CSV
# injection list); a plain number such as "-12.50" is not a formula and stays as it is.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def csv_text(value: str) -> str:
    """`value` as a cell that a spreadsheet shows as text, never runs."""
    if value[:1] in _FORMULA_START and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


class _Echo:
    """A file-like object whose write() hands the line back, for streaming csv.writer output."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[Sequence[object]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow([csv_text(cell) if isinstance(cell, str) else cell for cell in row])


def csv_response(rows: Iterable[Sequence[object]], *, filename: str) -> StreamingHttpResponse:
    """A CSV attachment of `rows` (the header first), streamed, never stored by the browser or a
    proxy (`Cache-Control: no-store`, private: an export is a tenant's data)."""
    response = StreamingHttpResponse(
        csv_lines(rows),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": content_disposition_header(True, filename)},
    )
    add_never_cache_headers(response)
    return response
