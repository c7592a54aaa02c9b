"""Prometheus metrics and `GET /metrics`.

Every metric is defined here, once, so its name and labels are greppable in one place.
Labels are closed sets (provider names, reasons, outcomes, status codes): never an order
id, an email, a key or anything else a client chooses.

Several workers (`serve --workers N`) share nothing in memory, so `serve` points
`PROMETHEUS_MULTIPROC_DIR` at an empty directory before the workers start; prometheus-client
then writes each worker's values to files there and a scrape of any worker sums them all.

`/metrics` shows sales counts, so it is closed unless configured: with `GATEWAY_METRICS_TOKEN`
it needs that bearer token, with `GATEWAY_METRICS_PUBLIC=true` (and no token) it is open,
otherwise it answers 404 like any unknown path. A token on the main port rather than a
listener of its own: every worker answers a scrape the same way, with nothing to bind once
per host and no second port to publish or firewall.
"""

from __future__ import annotations

import hmac
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from config.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

WEBHOOKS_RECEIVED = Counter(
    "gateway_webhooks_received_total", "Webhook deliveries received", ["provider"]
)
WEBHOOKS_REJECTED = Counter(
    "gateway_webhooks_rejected_total",
    "Webhook deliveries refused before anything was stored",
    ["provider", "reason"],  # bad_signature, bad_payload, provider_unavailable, ...
)
WEBHOOK_DUPLICATES = Counter(
    "gateway_webhook_duplicates_total", "Verified events already received before", ["provider"]
)
EVENTS = Counter(
    "gateway_events_total",
    "Verified events by apply outcome",
    ["provider", "outcome"],  # applied, noop, parked, duplicate, ignored
)
SETTLE_TO_LICENSE = Histogram(
    "gateway_settle_to_license_seconds",
    "From receiving a settle webhook to its license being committed (includes re-fetches)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
LICENSES_ISSUED = Counter(
    "gateway_licenses_issued_total",
    "Licenses issued",
    ["source"],  # webhook, comp
)
LICENSES_REVOKED = Counter(
    "gateway_licenses_revoked_total",
    "Licenses revoked",
    ["source"],  # reversal, operator
)
OUTBOX = Gauge(
    "gateway_outbox_emails",
    "Outbox emails by state, counted in the database at scrape time",
    ["state"],  # pending, failing (pending with a failed attempt), sent, dead
    multiprocess_mode="mostrecent",
)
PROVIDER_CALLS = Counter(
    "gateway_provider_calls_total",
    "Calls into a payment provider by operation and outcome",
    ["provider", "operation", "outcome"],  # outcome: ok or the provider error's kind
)
PROVIDER_CALL_SECONDS = Histogram(
    "gateway_provider_call_seconds",
    "Latency of calls into a payment provider",
    ["provider", "operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
WEBHOOK_SIGNATURE_FAILING = Gauge(
    "gateway_webhook_signature_failing",
    "1 while every delivery of a provider failed its signature check for the alarm window",
    ["provider"],
    multiprocess_mode="max",
)
# Wired by the reconciler and the license API (their own modules call these).
RECONCILER_PASSES = Counter(
    "gateway_reconciler_passes_total",
    "Reconciler passes run",
    ["outcome"],  # ok, error
)
RECONCILER_REPAIRS = Counter(
    "gateway_reconciler_repairs_total",
    "Orders the reconciler moved after asking the provider",
    ["provider", "outcome"],  # the apply outcome of the re-fetched event
)
LICENSE_API_REQUESTS = Counter(
    "gateway_license_api_requests_total",
    "License API answers by endpoint and HTTP status code",
    ["endpoint", "code"],
)


def render() -> tuple[bytes, str]:
    """The exposition text: this process's registry, or every worker's files when shared."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


async def refresh_outbox() -> None:
    from gateway.db.models import EmailStatus, OutboxEmail

    pending = OutboxEmail.filter(status=EmailStatus.PENDING)
    OUTBOX.labels("pending").set(await pending.count())
    OUTBOX.labels("failing").set(await pending.filter(attempts__gt=0).count())
    OUTBOX.labels("sent").set(await OutboxEmail.filter(status=EmailStatus.SENT).count())
    OUTBOX.labels("dead").set(await OutboxEmail.filter(status=EmailStatus.DEAD).count())


async def metrics_endpoint(request: Request) -> Response:
    """`GET /metrics`: with a token, only for `Authorization: Bearer …`; without, 404 unless
    `metrics_public` opens it."""
    settings: Settings = request.app.state.gateway.settings
    token = settings.metrics_token
    if token is None and not settings.metrics_public:
        raise HTTPException(status_code=404)  # the same answer as a path that does not exist
    if token is not None:
        given = request.headers.get("authorization", "").encode()
        expected = f"Bearer {token.get_secret_value()}".encode()
        if not hmac.compare_digest(given, expected):
            return JSONResponse(
                {"error": "unauthorized", "detail": "metrics need a bearer token"},
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
    await refresh_outbox()
    body, content_type = render()
    return Response(body, headers={"content-type": content_type})


def access_note(settings: Settings) -> str | None:
    """One startup line for an operator whose scraper gets 404s; None when /metrics is open
    to someone."""
    if settings.metrics_token is not None or settings.metrics_public:
        return None
    return (
        "/metrics is closed (404): set GATEWAY_METRICS_TOKEN and scrape with that bearer "
        "token, or GATEWAY_METRICS_PUBLIC=true where only the scraper reaches the port"
    )
