"""The shared request guards: body caps (413 before any handler reads) and rate limits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from config.settings import LimitsSettings, Settings
from gateway.http.errors import TooManyRequests, handlers
from gateway.http.limits import BodyLimitMiddleware, RateLimiter
from tests.support.app import running


def _echo_app(seen: list[int]) -> Starlette:
    async def echo(request: Request) -> Response:
        body = await request.body()
        seen.append(len(body))
        return JSONResponse({"bytes": len(body)})

    # Wired as the gateway wires it: inside Starlette's own error middleware, with its table.
    return Starlette(
        routes=[
            Route("/webhooks/x", echo, methods=["POST"]),
            Route("/checkout/x", echo, methods=["POST"]),
        ],
        exception_handlers=handlers(),
        middleware=[Middleware(BodyLimitMiddleware, webhook_bytes=2048, api_bytes=1024)],
    )


@pytest.fixture
def guarded() -> tuple[Starlette, list[int]]:
    seen: list[int] = []
    return _echo_app(seen), seen


async def _client(app: Any) -> AsyncIterator[Any]:
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def test_declared_oversize_body_is_refused_413_before_the_handler(
    guarded: tuple[Starlette, list[int]],
) -> None:
    app, seen = guarded
    async for client in _client(app):
        over = await client.post("/checkout/x", content=b"x" * 1025)
        under = await client.post("/checkout/x", content=b"x" * 1024)
        webhook = await client.post("/webhooks/x", content=b"x" * 2000)

    assert over.status_code == 413
    assert over.json()["error"] == "payload_too_large"
    assert under.status_code == 200
    assert webhook.status_code == 200  # webhooks have their own, larger cap
    assert seen == [1024, 2000]


async def test_chunked_oversize_body_is_counted_and_refused(
    guarded: tuple[Starlette, list[int]],
) -> None:
    app, seen = guarded

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"y" * 512

    async for client in _client(app):
        response = await client.post("/checkout/x", content=chunks())

    assert response.status_code == 413
    assert seen == []


async def test_rate_limiter_answers_429_with_retry_after_after_the_budget() -> None:
    limiter = RateLimiter(LimitsSettings(checkout_per_ip="3/minute"))

    for _ in range(3):
        await limiter.check("checkout_per_ip", "203.0.113.7")
    with pytest.raises(TooManyRequests) as caught:
        await limiter.check("checkout_per_ip", "203.0.113.7")
    await limiter.check("checkout_per_ip", "203.0.113.8")  # another caller has its own budget

    assert caught.value.status_code == 429
    assert 1 <= int(caught.value.headers["retry-after"]) <= 60


async def test_rate_limited_error_renders_429_json_with_retry_after_header(
    settings_factory: Callable[..., Settings],
) -> None:
    limiter = RateLimiter(LimitsSettings(license_per_ip="1/minute"))

    async def limited(request: Request) -> Response:
        await limiter.check("license_per_ip", "ip")
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/l", limited)], exception_handlers=handlers())
    async with running(app) as client:
        first = await client.get("/l")
        second = await client.get("/l")

    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json()["error"] == "rate_limited"
    assert int(second.headers["retry-after"]) >= 1


def test_bad_rate_string_is_a_settings_error_naming_the_field() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="checkout_per_ip"):
        LimitsSettings(checkout_per_ip="lots")


async def test_shared_redis_budget_spans_two_limiters() -> None:
    # given two workers' limiters on one Redis (the local server on 6379)
    import secrets

    rule = LimitsSettings(checkout_per_email="2/minute")
    first = RateLimiter(rule, "redis://127.0.0.1:6379")
    second = RateLimiter(rule, "redis://127.0.0.1:6379")
    who = "buyer-" + secrets.token_hex(6)

    # when they share the budget
    await first.check("checkout_per_email", who)
    await second.check("checkout_per_email", who)

    # then the third hit, on either, is refused
    try:
        with pytest.raises(TooManyRequests):
            await first.check("checkout_per_email", who)
    finally:
        await first.aclose()
        await second.aclose()
