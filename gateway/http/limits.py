"""Request limits shared by every route: a body-size cap and rate limits.

One mechanism, configured per route family (`settings.limits`), so webhooks, checkout, the
license API and the buyer forms are bounded the same way:

- `BodyLimitMiddleware` refuses a body over its route's cap with 413 *before* any handler
  reads it: at once from `Content-Length`, and by counting streamed bytes for chunked bodies,
  so nothing is buffered, parsed or HMAC'd past the cap.
- `RateLimiter` wraps the `limits` library (sliding window counter: two counters per key,
  O(1) per hit, so it costs the same at any budget); in memory by default, in Redis
  when `GATEWAY_REDIS_URL` is set so several workers share one budget. Identifiers (emails,
  license keys) are hashed before they reach the store; `client_ip` names the caller.
  A key names what a person or a network controls: an email case-folded (mailboxes are
  case-insensitive in practice), an IPv6 client by its /64 (`limits.ipv6_prefix`).

Which sites may post our forms is `gateway/http/origins.py`; which proxies may name the
client, `gateway/http/proxies.py`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import time
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config.settings import LimitsSettings
from gateway.http.errors import PayloadTooLarge, TooManyRequests

WEBHOOK_PREFIX = "/webhooks/"


def _too_large(cap: int) -> list[Message]:
    body = json.dumps(
        {"error": "payload_too_large", "detail": f"request body is over {cap} bytes"}
    ).encode()
    return [
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        },
        {"type": "http.response.body", "body": body},
    ]


async def _refuse(send: Send, cap: int) -> None:
    for message in _too_large(cap):
        await send(message)


class BodyLimitMiddleware:
    """413 for a request body over its route's cap, checked before the handler reads it."""

    def __init__(self, app: ASGIApp, *, webhook_bytes: int, api_bytes: int) -> None:
        self.app = app
        self.webhook_bytes = webhook_bytes
        self.api_bytes = api_bytes

    def cap_for(self, path: str) -> int:
        return self.webhook_bytes if path.startswith(WEBHOOK_PREFIX) else self.api_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap_for(scope["path"])
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = cap + 1  # unparseable: treat as over the cap
                if declared > cap:
                    await _refuse(send, cap)
                    return
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked:
            # No body, or one whose declared length is within the cap (the HTTP server
            # enforces it): nothing to count, so the hot GETs pay no wrapper.
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send, cap)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        """Run the app on a chunked body, counting its bytes as the handler reads them."""
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    # Rendered 413 by the app's error table; caught below if it escapes.
                    raise PayloadTooLarge(f"request body is over {cap} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracking_send)
        except PayloadTooLarge:
            if not started:
                await _refuse(send, cap)


def mailbox_key(email: str) -> str:
    """One key per mailbox: `Buyer@Example.com` and `buyer@example.com` reach one inbox.

    Only the key: the address stored on the order stays as the buyer wrote it.
    """
    return email.strip().casefold()


def network_key(ip: str, ipv6_prefix: int) -> str:
    """An IPv4 client by its address, an IPv6 one by its network (`2001:db8:1:2::/64`)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip  # not an address (a test client, a unix socket): its own bucket
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address), ipv6_prefix), strict=False))
    return str(address)


def _hash(identifier: str) -> str:
    # Emails and license keys never reach the limiter's store (possibly a shared Redis).
    return hashlib.sha256(identifier.encode()).hexdigest()[:32]


class RateLimiter:
    """Sliding-window limits by rule name (a `LimitsSettings` field) and identifier."""

    def __init__(self, settings: LimitsSettings, redis_url: str | None = None) -> None:
        self.storage: Storage = MemoryStorage()
        if redis_url:
            # `limits` names its asyncio Redis backend "async+redis://".
            url = redis_url.replace("redis://", "async+redis://", 1)
            # redis-py rather than coredis: it can be closed cleanly at shutdown.
            storage = storage_from_string(url, implementation="redispy")
            assert isinstance(storage, Storage)
            self.storage = storage
        self.strategy = SlidingWindowCounterRateLimiter(self.storage)
        self.ipv6_prefix = settings.ipv6_prefix
        self.rules: dict[str, RateLimitItem] = {
            name: parse(value)
            for name, value in settings.model_dump().items()
            if name.endswith(("_per_ip", "_per_email", "_per_key"))
        }

    def key(self, rule: str, identifier: str) -> str:
        """Whose budget a hit counts against: the rule's suffix says what `identifier` is."""
        if rule.endswith("_per_ip"):
            return network_key(identifier, self.ipv6_prefix)
        if rule.endswith("_per_email"):
            return mailbox_key(identifier)
        return identifier

    async def check(self, rule: str, identifier: str) -> None:
        """Count one hit; raise `TooManyRequests` (429 + Retry-After) over the limit."""
        item = self.rules[rule]
        key = _hash(self.key(rule, identifier))
        if await self.strategy.hit(item, rule, key):
            return
        stats = await self.strategy.get_window_stats(item, rule, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequests(
            f"too many requests; retry in {retry_after} s", retry_after=retry_after
        )

    async def reset(self) -> None:
        await self.storage.reset()

    async def aclose(self) -> None:
        """Close the Redis connections (no-op for the in-memory store)."""
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        if client is not None:
            await client.aclose()


def client_ip(scope_or_request: Any) -> str:
    """The caller's address: the peer's, or the client a trusted proxy forwarded for
    (`TrustedProxyMiddleware` has written it into the scope by now)."""
    client = getattr(scope_or_request, "client", None)
    return client.host if client else "unknown"
