"""Every CSV download goes through tenants.csv_export: text a spreadsheet would run as a formula is
kept as text (OWASP's CSV injection), numbers stay numbers."""

from __future__ import annotations

import pytest

from tenants.csv_export import csv_lines, csv_text


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ('=HYPERLINK("http://evil.test")', '\'=HYPERLINK("http://evil.test")'),
        ("+cmd", "'+cmd"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-12.50", "-12.50"),
        ("+7", "+7"),
        ("helpdesk", "helpdesk"),
        ("", ""),
    ],
)
def test_a_formula_is_kept_as_text_and_a_number_is_not(cell, shown):
    assert csv_text(cell) == shown


def test_only_text_cells_are_guarded():
    assert list(csv_lines([("id", "n"), ("=1+1", -3)])) == ["id,n\r\n", "'=1+1,-3\r\n"]
