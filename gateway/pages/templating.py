"""Jinja2 rendering for the buyer pages: autoescaped templates from gateway/pages/templates/."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader
from starlette.responses import HTMLResponse

from config.settings import Settings

# Autoescape everything: every dynamic value on a page is escaped unless a template says
# otherwise (none does).
_ENV = Environment(loader=PackageLoader("gateway.pages", "templates"), autoescape=True)


def render(
    name: str,
    settings: Settings,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    body = _ENV.get_template(name).render(shop=settings.shop, **context)
    return HTMLResponse(body, status_code=status_code, headers=headers)


def message_page(
    settings: Settings,
    heading: str,
    *paragraphs: str,
    status_code: int = 200,
    link: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A page that only says something (not found, refused, try later), with one link."""
    return render(
        "message.html",
        settings,
        status_code=status_code,
        headers=headers,
        heading=heading,
        paragraphs=paragraphs,
        link={"href": link[0], "text": link[1]} if link else None,
    )
