"""The Starlette application factory (`gateway.app:create_app`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from config.catalog import Catalog, CatalogError, load_catalog
from config.settings import Settings, load_settings
from gateway.checkout.options import render_purchase_options
from gateway.checkout.routes import checkout, order_status, purchase_options
from gateway.db import database as db
from gateway.http.cors import ScopedCORSMiddleware
from gateway.http.errors import handlers
from gateway.http.limits import BodyLimitMiddleware, RateLimiter
from gateway.http.request_id import RequestIdMiddleware
from gateway.http.security import SecurityHeadersMiddleware, content_security_policy
from gateway.licenses import routes as license_api
from gateway.licenses.signing import load_signer
from gateway.mail.outbox import Mailer
from gateway.ops.health import healthz, readyz
from gateway.ops.instrumented import InstrumentedProvider
from gateway.ops.logs import install_filters
from gateway.ops.metrics import metrics_endpoint
from gateway.pages.routes import buy_page, buy_submit, recover_page, recover_submit
from gateway.payments.apply import Applier
from gateway.payments.reconciler import Reconciler
from gateway.state import AppState
from gateway.webhooks.alarm import SignatureAlarm
from gateway.webhooks.routes import webhook
from providers.base import PaymentProvider
from providers.events import ProviderName
from providers.registry import build_providers, price_problems

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    catalog: Catalog | None = None,
    providers: dict[ProviderName, PaymentProvider] | None = None,
    run_migrations: bool = True,
    run_mailer: bool | None = None,
    run_reconciler: bool | None = None,
) -> Starlette:
    """Build the app. Settings, catalog and providers are loaded here, once.

    Startup errors (bad settings, bad catalog) raise here, before the server listens.
    Tests inject `providers` (fakes) and a `catalog`; `run_mailer=False` keeps the outbox
    sender loop off so a test can drive `gateway.mail.outbox.Mailer` itself; by default it follows
    `mail.sender_in_serve` (`serve --no-mailer`). With no arguments this is the factory that
    `serve --workers N` hands to uvicorn (`gateway.app:create_app`, one call per worker).
    The reconciler runs when `settings.reconcile.enabled` (default on) unless
    `run_reconciler` says.
    """
    settings = settings or load_settings()
    if run_mailer is None:
        run_mailer = settings.mail.sender_in_serve
    catalog = catalog or load_catalog(settings.products_file)
    install_filters()
    for name, (is_on, reason) in settings.provider_status.items():
        log.log(logging.INFO if is_on else logging.WARNING, "provider %s: %s", name, reason)
    names = (
        list(providers) if providers is not None else list(filter(settings.is_active, ProviderName))
    )
    problems = price_problems(names, catalog)
    if problems:
        # Checked before anything listens: a price a provider rounds is a free or lost sale.
        raise CatalogError(f"{settings.products_file}: " + "; ".join(problems))
    owns_providers = providers is None
    built = providers if providers is not None else build_providers(settings)
    # Every call into a provider is counted and timed (gateway_provider_calls_total).
    active: dict[ProviderName, PaymentProvider] = {
        name: InstrumentedProvider(provider) for name, provider in built.items()
    }
    state = AppState(
        settings=settings,
        catalog=catalog,
        providers=active,
        applier=Applier(
            catalog, public_url=settings.public_url, help_url=settings.license.activation_help_url
        ),
        limiter=RateLimiter(settings.limits, settings.redis_url),
        # The first signing key is made here if none exists yet.
        signer=load_signer(
            settings.license.keys_path(settings.data_dir),
            issuer=settings.public_url,
            ttl=timedelta(days=settings.license.token_ttl_days),
        ),
        webhook_alarm=SignatureAlarm(settings.webhook_alarm_minutes),
    )
    state.purchase_options = render_purchase_options(settings, catalog, active)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.open_db(settings, run_migrations=run_migrations)
        stop = asyncio.Event()
        sender = (
            asyncio.create_task(Mailer(settings).run_forever(stop), name="outbox-mailer")
            if run_mailer
            else None
        )
        reconcile = settings.reconcile.enabled if run_reconciler is None else run_reconciler
        reconciler = (
            asyncio.create_task(
                Reconciler(settings, active, state.applier).run_forever(stop),
                name="reconciler",
            )
            if reconcile and active
            else None
        )
        try:
            yield
        finally:
            stop.set()
            if reconciler is not None:
                try:
                    # A poll in flight ends within the provider's own timeout.
                    await asyncio.wait_for(reconciler, timeout=30)
                except TimeoutError:
                    log.warning("reconciler did not stop in time; cancelled")
            if sender is not None:
                # Stopped before the DB closes; a send in flight gets a moment to finish.
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
        *(
            Route(f"/licenses/{name}", license_api.counted(name, handler), methods=["POST"])
            for name, handler in (
                ("validate", license_api.validate),
                ("activate", license_api.activate),
                ("deactivate", license_api.deactivate),
                ("token", license_api.token),
            )
        ),
        Route("/.well-known/jwks.json", license_api.jwks, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/buy/{product}", buy_page, methods=["GET"]),
        Route("/buy/{product}", buy_submit, methods=["POST"]),
        Route("/licenses/recover", recover_page, methods=["GET"]),
        Route("/licenses/recover", recover_submit, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("gateway.pages", "static")]), name="static"),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    middleware = [
        # Outermost, so every answer (413s included) carries the request id.
        Middleware(RequestIdMiddleware),
        # Next, so every answer (413s and error pages included) carries the headers.
        Middleware(SecurityHeadersMiddleware, csp=content_security_policy(settings)),
        Middleware(ScopedCORSMiddleware, origins=settings.allowed_origins),
        Middleware(
            BodyLimitMiddleware,
            webhook_bytes=settings.limits.webhook_body_bytes,
            api_bytes=settings.limits.api_body_bytes,
        ),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers=handlers(), middleware=middleware
    )
    app.state.gateway = state
    return app
