"""Reading a CSV file of clients: every row checked with the rules the page and the API use, every
bad row reported with its line number (the file's own line, the header being line 1). Pure: no
database. `licensing.services` compares the rows with the tenant's clients and applies them."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from licensing import rules
from licensing.rules import ClientFields
from tenants.errors import BusinessError

MAX_ROWS = 20_000
MAX_ERRORS = 200  # reported; the count says how many there are in all
COLUMNS = ("external_id", "name", "status", "company_type", "agreement_type")
REQUIRED = ("external_id", "name")
ALIASES = {"client_id": "external_id", "id": "external_id", "client": "name", "client_name": "name"}


# The fields an import may leave out: a column left out, or an empty status cell, leaves an existing
# client's value as it is (a new client is active, with no company or agreement type).
OPTIONAL = ("status", "company_type", "agreement_type")


@dataclass(frozen=True)
class Row:
    line: int
    external_id: str
    fields: ClientFields
    given: frozenset[str]  # the fields this row sets (name always)


@dataclass
class Checked:
    rows: list[Row] = field(default_factory=list)
    columns: frozenset[str] = frozenset()  # the client fields the header names
    errors: list[dict[str, object]] = field(default_factory=list)
    error_count: int = 0
    total: int = 0  # data rows (blank lines left out)

    def error(self, line: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"line": line, "message": message})


class _NotCsv(Exception):
    def __init__(self, line: int, error: csv.Error) -> None:
        super().__init__(line, error)
        self.line, self.error = line, error


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(the line a record starts on, its cells); a quoted cell may span lines. A record the csv
    module cannot read raises _NotCsv with the line it starts on. Strict: a quote never closed (the
    rest of the file would be one cell) or text after a closing quote is an error, not a guess."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _NotCsv(start, exc) from exc
        yield start, cells
        start = reader.line_num + 1


# Spreadsheets in many locales save "CSV" with semicolons (or tabs) between values: the header is then
# one cell, and "unknown column 'external_id;name'" would not say what to change.
OTHER_SEPARATORS = {";": "semicolons", "\t": "tabs"}
MSG_SEPARATOR = (
    "The values are separated by {what}, not commas: save the file as CSV with commas (CSV UTF-8) "
    "and try again."
)


def _header(cells: list[str], checked: Checked) -> list[str] | None:
    if len(cells) == 1:
        for separator, what in OTHER_SEPARATORS.items():
            if separator in cells[0]:
                checked.error(1, MSG_SEPARATOR.format(what=what))
                return None
    names = [ALIASES.get(c.strip().lower(), c.strip().lower()) for c in cells]
    unknown = [c for c in names if c not in COLUMNS]
    missing = [c for c in REQUIRED if c not in names]
    if unknown:
        checked.error(1, f"Unknown column {unknown[0]!r}: use {', '.join(COLUMNS)}.")
    if missing:
        checked.error(1, f"The header row has no {' and no '.join(missing)} column.")
    duplicated = sorted({c for c in names if names.count(c) > 1})
    if duplicated:
        checked.error(1, f"The column {duplicated[0]} appears twice.")
    return None if checked.error_count else names


def _row(line: int, names: list[str], cells: list[str]) -> Row:
    if len(cells) != len(names):
        raise BusinessError("invalid_request", f"{len(cells)} values for {len(names)} columns.")
    values = dict(zip(names, cells, strict=True))
    if any("\x00" in v for v in cells):
        raise BusinessError("invalid_request", "The row contains a NUL character.")
    external_id = rules.clean_external_id(values["external_id"], field="external_id")
    status = values.get("status", "").strip()
    fields = rules.clean_fields(
        name=values["name"],
        status=status or "active",
        company_type=values.get("company_type", ""),
        agreement_type=values.get("agreement_type", ""),
    )
    given = {"name", *(n for n in OPTIONAL if n in values)} - (set() if status else {"status"})
    return Row(line, external_id, fields, frozenset(given))


def check(text: str, *, progress: Callable[[int], None] | None = None, every: int = 500) -> Checked:
    """Every row of the file checked; `progress(rows done)` is told every `every` rows."""
    checked = Checked()
    seen: dict[str, int] = {}
    names: list[str] | None = None
    line = 1
    try:
        for line, cells in _records(text):
            if names is None:
                names = _header(cells, checked)
                if names is None:
                    return checked
                checked.columns = frozenset(n for n in names if n not in ("external_id",))
                continue
            if not any(c.strip() for c in cells):
                continue  # a blank line
            checked.total += 1
            if checked.total > MAX_ROWS:
                checked.error(
                    line, f"The file has more than {MAX_ROWS:,} clients: split it into smaller files."
                )
                return checked
            try:
                row = _row(line, names, cells)
            except BusinessError as exc:
                checked.error(line, exc.message)
            else:
                if row.external_id in seen:
                    checked.error(
                        line, f"The client id {row.external_id} is also on line {seen[row.external_id]}."
                    )
                else:
                    seen[row.external_id] = line
                    checked.rows.append(row)
            if progress is not None and checked.total % every == 0:
                progress(checked.total)
    except _NotCsv as bad:
        checked.error(bad.line, f"The file is not valid CSV ({bad.error}).")
    if names is None and not checked.error_count:
        checked.error(1, "The file is empty: it needs a header row and one row per client.")
    elif not checked.total and not checked.error_count:
        checked.error(2, "The file has a header row but no clients.")
    return checked
