"""The Starlette application factory (`gateway.app:create_app`): what is built once at
startup (`AppState`), the routes of every domain, the middleware, and the lifespan
(`gateway.lifespan`)."""

from __future__ import annotations

import logging
from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from config.catalog import Catalog, CatalogError, load_catalog
from config.settings import Settings, load_settings
from gateway.checkout import routes as checkout
from gateway.checkout.options import render_purchase_options
from gateway.http.cors import ScopedCORSMiddleware
from gateway.http.errors import handlers
from gateway.http.limits import BodyLimitMiddleware, RateLimiter
from gateway.http.proxies import TrustedProxyMiddleware
from gateway.http.request_id import RequestIdMiddleware
from gateway.http.security import SecurityHeadersMiddleware, content_security_policy
from gateway.licenses import routes as licenses
from gateway.licenses.signing import load_signer
from gateway.lifespan import lifespan
from gateway.ops import routes as ops
from gateway.ops.instrumented import InstrumentedProvider
from gateway.ops.logs import install_filters
from gateway.pages import routes as pages
from gateway.payments.apply import Applier
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
    catalog = catalog or load_catalog(settings.products_file)
    install_filters()
    _check_providers(settings, catalog, providers)
    built = providers if providers is not None else build_providers(settings)
    state = _state(settings, catalog, built)
    app = Starlette(
        routes=_routes(),
        lifespan=lifespan(
            state,
            run_migrations=run_migrations,
            run_mailer=settings.mail.sender_in_serve if run_mailer is None else run_mailer,
            run_reconciler=settings.reconcile.enabled if run_reconciler is None else run_reconciler,
            owns_providers=providers is None,
        ),
        exception_handlers=handlers(),
        middleware=_middleware(settings),
    )
    app.state.gateway = state
    return app


def _check_providers(
    settings: Settings, catalog: Catalog, providers: dict[ProviderName, PaymentProvider] | None
) -> None:
    """Log which providers are on and why; refuse a price one of them would round."""
    for name, (is_on, reason) in settings.provider_status.items():
        log.log(logging.INFO if is_on else logging.WARNING, "provider %s: %s", name, reason)
    names = (
        list(providers) if providers is not None else list(filter(settings.is_active, ProviderName))
    )
    problems = price_problems(names, catalog)
    if problems:
        # Checked before anything listens: a price a provider rounds is a free or lost sale.
        raise CatalogError(f"{settings.products_file}: " + "; ".join(problems))


def _state(
    settings: Settings, catalog: Catalog, providers: dict[ProviderName, PaymentProvider]
) -> AppState:
    # Every call into a provider is counted and timed (gateway_provider_calls_total).
    active: dict[ProviderName, PaymentProvider] = {
        name: InstrumentedProvider(provider) for name, provider in providers.items()
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
    return state


def _routes() -> list[BaseRoute]:
    """Every route, each domain's list in matching order (their paths do not overlap)."""
    return [
        *checkout.ROUTES,
        Route("/webhooks/{provider}", webhook, methods=["POST"]),
        *licenses.ROUTES,
        *ops.HEALTH_ROUTES,
        *pages.ROUTES,
        *ops.METRICS_ROUTES,
    ]


def _middleware(settings: Settings) -> list[Middleware]:
    return [
        # First of all, so everything after it (limits, logs) sees the forwarded client.
        Middleware(TrustedProxyMiddleware, trusted=settings.trusted_proxies),
        # Outside the rest, so every answer (413s included) carries the request id.
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
