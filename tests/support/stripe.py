"""The real app wired to a fake Stripe over HTTP-shaped calls (the contract harness)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import httpx
from starlette.applications import Starlette

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from sandbox.stripe.api import FakeStripe
from sandbox.stripe.harness import StripeContractHarness
from tests.conftest import running


@contextlib.asynccontextmanager
async def stripe_gateway(
    fake: FakeStripe, db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> AsyncIterator[tuple[httpx.AsyncClient, Starlette]]:
    """A client for the app (real StripeProvider against `fake`), mailer and migrations off."""
    harness = StripeContractHarness(fake=fake)
    try:
        provider = harness.build_provider()
        app = create_app(
            settings_factory(database_url=db_url),
            catalog=catalog,
            providers={provider.name: provider},
            run_migrations=False,
            run_mailer=False,
        )
        async with running(app) as client:
            yield client, app
    finally:
        await harness.aclose()
