"""The manual as test input: the runnable examples of docs/*.md and README.md, and its pages."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.procs import ROOT

DOCS = ROOT / "docs"
README = ROOT / "README.md"

# A fenced block is an example when `<!-- example: NAME -->` stands on the line just above it.
_EXAMPLE = re.compile(r"<!-- example: ([\w-]+) -->\n```\w*\n(.*?)```", flags=re.S)


def examples(page: Path) -> dict[str, str]:
    """The fenced blocks of `page` marked `<!-- example: NAME -->`, by name."""
    return dict(_EXAMPLE.findall(page.read_text(encoding="utf-8")))


def pages() -> list[Path]:
    """Every page of the manual (docs/**/*.md), sorted."""
    return sorted(DOCS.rglob("*.md"))
