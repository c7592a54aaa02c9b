"""mkdocs hooks (named in mkdocs.yml) that let one Markdown source read right on GitHub and in
the built site.

GitHub splits a table row on every `|` not escaped as `\\|`, code spans included; Python-Markdown
leaves pipes inside code spans alone but shows the backslash. The pages keep GitHub's `\\|`, and
this hook drops the backslash inside the code spans of table rows before mkdocs renders them.
"""

from __future__ import annotations

import re

_CODE_SPAN = re.compile(r"`[^`\n]+`")


def _unescape_pipes(match: re.Match[str]) -> str:
    return match.group(0).replace("\\|", "|")


def on_page_markdown(markdown: str, **_: object) -> str:
    """Table rows only: elsewhere a `\\|` in a code span is meant literally."""
    lines = [
        _CODE_SPAN.sub(_unescape_pipes, line) if line.lstrip().startswith("|") else line
        for line in markdown.split("\n")
    ]
    return "\n".join(lines)
