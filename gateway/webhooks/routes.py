"""`POST /webhooks/{provider}`: raw bytes -> provider verifies -> apply path -> answer."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.http.errors import NotFound
from gateway.ops import metrics
from gateway.state import AppState
from gateway.webhooks.service import receive


async def webhook(request: Request) -> Response:
    received = time.perf_counter()
    state: AppState = request.app.state.gateway
    name = request.path_params["provider"]
    provider = state.provider(name)
    if provider is None:
        # Not the path segment as a label: a client could mint unbounded label values.
        metrics.WEBHOOKS_REJECTED.labels("unknown", "unknown_provider").inc()
        raise NotFound(f"payment provider {name!r} is not enabled", code="unknown_provider")
    metrics.WEBHOOKS_RECEIVED.labels(name).inc()
    # The exact bytes: signatures are over them, and any re-serialisation breaks them.
    body = await request.body()
    answer = await receive(state, name, provider, body, request.headers, received=received)
    return JSONResponse(answer)
