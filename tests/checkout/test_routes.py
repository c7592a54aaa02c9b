"""The checkout domain's route list is what the app serves for it."""

from __future__ import annotations

from collections.abc import Callable

from starlette.routing import Route

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.checkout.routes import ROUTES


def test_the_app_serves_every_checkout_route_with_its_handler(
    settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    app = create_app(settings_factory(), catalog=catalog, providers={}, run_migrations=False)
    served = {r.path: (r.endpoint, r.methods) for r in app.routes if isinstance(r, Route)}

    listed = {r.path: (r.endpoint, r.methods) for r in ROUTES if isinstance(r, Route)}

    assert {path: methods for path, (_, methods) in listed.items()} == {
        "/purchase-options/{product}": {"GET", "HEAD"},
        "/checkout/{provider}/{product}": {"POST"},
        "/orders/{order_id}": {"GET", "HEAD"},
    }
    assert all(served.get(path) == handler for path, handler in listed.items())
    assert len(ROUTES) == len(listed)
