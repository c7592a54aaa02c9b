"""The Starlette application factory (`gateway.app:create_app`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from config.catalog import Catalog, load_catalog
from config.settings import Settings, load_settings
from gateway import db, license_api
from gateway.apply import Applier
from gateway.errors import handlers
from gateway.guards import BodyLimitMiddleware, RateLimiter
from gateway.health import healthz, readyz
from gateway.mailer import Mailer
from gateway.orders import order_status
from gateway.purchase import checkout, purchase_options, render_purchase_options
from gateway.signing import load_signer
from gateway.state import AppState
from gateway.webhooks import webhook
from providers.base import PaymentProvider
from providers.events import ProviderName
from providers.registry import build_providers

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    catalog: Catalog | None = None,
    providers: dict[ProviderName, PaymentProvider] | None = None,
    run_migrations: bool = True,
    run_mailer: bool = True,
) -> Starlette:
    """Build the app. Settings, catalog and providers are loaded here, once.

    Startup errors (bad settings, bad catalog) raise here, before the server listens.
    Tests inject `providers` (fakes) and a `catalog`; `run_mailer=False` keeps the outbox
    sender loop off so a test can drive `gateway.mailer.Mailer` itself.
    """
    settings = settings or load_settings()
    catalog = catalog or load_catalog(settings.products_file)
    for name, (is_on, reason) in settings.provider_status.items():
        log.log(logging.INFO if is_on else logging.WARNING, "provider %s: %s", name, reason)
    owns_providers = providers is None
    active = providers if providers is not None else build_providers(settings)
    state = AppState(
        settings=settings,
        catalog=catalog,
        providers=active,
        applier=Applier(
            catalog, public_url=settings.public_url, help_url=settings.license.activation_help_url
        ),
        limiter=RateLimiter(settings.limits, settings.redis_url),
    )
    state.purchase_options = render_purchase_options(settings, catalog, active)
    # License signing keys: read once (refusing unsafe key files), the first one made here.
    signer = load_signer(
        settings.license.keys_path(settings.data_dir),
        issuer=settings.public_url,
        ttl=timedelta(days=settings.license.token_ttl_days),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.open_db(settings, run_migrations=run_migrations)
        stop = asyncio.Event()
        sender = (
            asyncio.create_task(Mailer(settings).run_forever(stop), name="outbox-mailer")
            if run_mailer
            else None
        )
        try:
            yield
        finally:
            if sender is not None:
                # Stopped before the DB closes; a send in flight gets a moment to finish.
                stop.set()
                try:
                    await asyncio.wait_for(sender, timeout=settings.smtp.timeout_seconds)
                except TimeoutError:
                    log.warning("outbox mailer did not stop in time; cancelled")
            await state.limiter.aclose()
            if owns_providers:
                for provider in active.values():
                    await provider.aclose()
            await db.close_db()

    routes = [
        Route("/purchase-options/{product}", purchase_options, methods=["GET"]),
        Route("/checkout/{provider}/{product}", checkout, methods=["POST"]),
        Route("/webhooks/{provider}", webhook, methods=["POST"]),
        Route("/orders/{order_id}", order_status, methods=["GET"]),
        Route("/licenses/validate", license_api.validate, methods=["POST"]),
        Route("/licenses/activate", license_api.activate, methods=["POST"]),
        Route("/licenses/deactivate", license_api.deactivate, methods=["POST"]),
        Route("/licenses/token", license_api.token, methods=["POST"]),
        Route("/.well-known/jwks.json", license_api.jwks, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    middleware = [
        Middleware(
            BodyLimitMiddleware,
            webhook_bytes=settings.limits.webhook_body_bytes,
            api_bytes=settings.limits.api_body_bytes,
        )
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers=handlers(), middleware=middleware
    )
    app.state.gateway = state
    app.state.license_signer = signer
    return app
