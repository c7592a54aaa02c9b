"""The buyer pages' route list is what the app serves for them, static files included."""

from __future__ import annotations

from collections.abc import Callable

from starlette.routing import Mount, Route

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.pages.routes import ROUTES


def test_the_app_serves_every_page_route_with_its_handler(
    settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    app = create_app(settings_factory(), catalog=catalog, providers={}, run_migrations=False)
    pages = [(r.path, r.endpoint, r.methods) for r in ROUTES if isinstance(r, Route)]

    assert [(path, methods) for path, _, methods in pages] == [
        ("/buy/{product}", {"GET", "HEAD"}),
        ("/buy/{product}", {"POST"}),
        ("/licenses/recover", {"GET", "HEAD"}),
        ("/licenses/recover", {"POST"}),
    ]
    for page in pages:
        assert page in [(r.path, r.endpoint, r.methods) for r in app.routes if isinstance(r, Route)]
    assert [r.path for r in ROUTES if isinstance(r, Mount)] == ["/static"]
    assert "/static" in [r.path for r in app.routes if isinstance(r, Mount)]
