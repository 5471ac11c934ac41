"""A page's <title> is plain text: the tab, the history and a screen reader's first words read it.
Markup inside `{% block title %}` (a stray `</div>` once) shows as text in the browser tab."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TITLE_BLOCK = re.compile(r"\{%\s*block title\s*%\}(.*?)\{%\s*endblock", re.S)


def _templates() -> list[Path]:
    return [p for p in ROOT.rglob("templates/**/*.html") if ".venv" not in p.parts]


def test_every_title_block_is_plain_text_on_one_line():
    found = []
    for path in _templates():
        for title in TITLE_BLOCK.findall(path.read_text()):
            if "<" in title or ">" in title or "\n" in title:
                found.append(f"{path.relative_to(ROOT)}: {title!r}")
    assert _templates(), "no templates found"
    assert found == [], "markup or line breaks in a page title"
