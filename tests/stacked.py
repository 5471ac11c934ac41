"""What a table marked `stack-sm` must carry to read as cards on a phone (static/css/app.css): each
row's cells after the first (the row's title) name their column in `data-label`."""

from __future__ import annotations

import re

_TABLE = re.compile(r"<table class=\"([^\"]*)\"[^>]*>(.*?)</table>", re.S)
_HEAD = re.compile(r"<th[^>]*>(.*?)</th>", re.S)
_ROW = re.compile(r"<tr[^>]*data-testid=\"{}\"[^>]*>(.*?)</tr>", re.S)
_CELL = re.compile(r"<td([^>]*)>", re.S)
_LABEL = re.compile(r"data-label=\"([^\"]*)\"")
_TAGS = re.compile(r"<[^>]+>")


def stacked_labels(page: str, row_testid: str) -> list[list[str | None]]:
    """Per row marked `row_testid`, each cell's data-label (None where it has none), after checking
    that its table is a stacking one and that the labels are the table's own column names."""
    for classes, table in _TABLE.findall(page):
        rows = re.findall(_ROW.pattern.format(row_testid), table, re.S)
        if not rows:
            continue
        assert "stack-sm" in classes.split(), f"the table of {row_testid} does not stack: {classes!r}"
        heads = [" ".join(_TAGS.sub("", h).split()) for h in _HEAD.findall(table)]
        found = []
        for row in rows:
            labels = [m.group(1) if (m := _LABEL.search(attrs)) else None for attrs in _CELL.findall(row)]
            assert labels[1:] == heads[1 : len(labels)], (labels, heads)
            found.append(labels)
        return found
    raise AssertionError(f"no row {row_testid} in the page")
