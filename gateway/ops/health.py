"""Liveness and readiness."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tortoise import connections

log = logging.getLogger(__name__)


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(_: Request) -> Response:
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception as exc:  # any failure to reach the DB means "not ready"
        log.warning("readiness check failed: %s", exc)
        return JSONResponse(
            {"error": "database_unavailable", "detail": "database unreachable"}, status_code=503
        )
    return JSONResponse({"status": "ready", "database": "ok"})
