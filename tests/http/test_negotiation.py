"""Content negotiation: a browser's Accept header gets the HTML page, an API client JSON."""

from __future__ import annotations

import pytest

from gateway.http.negotiation import prefers_html

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER, True),
        ("text/html", True),
        ("application/json", False),
        ("", False),
        ("*/*", False),
        ("application/json, text/html;q=0.5", False),
        ("text/html;q=0.9, application/json;q=0.1", True),
    ],
)
def test_prefers_html_follows_the_accept_header(accept: str, html: bool) -> None:
    assert prefers_html(accept) is html
