"""The operations routes: liveness and readiness, and the Prometheus scrape.

Two lists, because the app mounts them apart (health after the license API, `/metrics` last).
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from gateway.ops.health import healthz, readyz
from gateway.ops.metrics import metrics_endpoint

HEALTH_ROUTES: list[BaseRoute] = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
METRICS_ROUTES: list[BaseRoute] = [Route("/metrics", metrics_endpoint, methods=["GET"])]
