"""Content negotiation: whether a caller wants the HTML page or the JSON document."""

from __future__ import annotations


def prefers_html(accept: str) -> bool:
    """True when the client ranks text/html above JSON (a browser back from checkout)."""
    best: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best[media.lower()] = max(q, best.get(media.lower(), 0.0))
    html = best.get("text/html", 0.0)
    return html > 0 and html >= best.get("application/json", 0.0)
