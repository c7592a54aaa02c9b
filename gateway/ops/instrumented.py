"""A provider proxy that counts and times every call into a payment provider.

Wrapping at the Protocol keeps the providers free of metrics and covers every
implementation (Greenfield, legacy, Stripe, test fakes) the same way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from gateway.ops import metrics
from providers.base import (
    CheckoutRequest,
    CheckoutSession,
    PaymentProvider,
    UnsignedNotifications,
)
from providers.errors import (
    ProviderRejected,
    ProviderUnavailable,
    WebhookPayloadError,
    WebhookSignatureError,
)
from providers.events import PaymentEvent, ProviderName

T = TypeVar("T")

_OUTCOMES: tuple[tuple[type[Exception], str], ...] = (
    (WebhookSignatureError, "bad_signature"),
    (WebhookPayloadError, "bad_payload"),
    (ProviderUnavailable, "unavailable"),
    (ProviderRejected, "rejected"),
)


def outcome_of(exc: BaseException) -> str:
    for kind, outcome in _OUTCOMES:
        if isinstance(exc, kind):
            return outcome
    return "error"


class InstrumentedProvider:
    """Satisfies `PaymentProvider`; forwards everything to `inner`."""

    def __init__(self, inner: PaymentProvider) -> None:
        self.inner = inner
        self.name: ProviderName = inner.name
        # An optional capability is an attribute of the proxy itself: `isinstance` against a
        # runtime-checkable protocol does not look through `__getattr__` (Python >= 3.12).
        if isinstance(inner, UnsignedNotifications):
            self.unverified_ref = inner.unverified_ref

    async def _timed(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await call()
        except Exception as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            provider = self.name.value
            metrics.PROVIDER_CALLS.labels(provider, operation, outcome).inc()
            metrics.PROVIDER_CALL_SECONDS.labels(provider, operation).observe(
                time.perf_counter() - started
            )

    async def create_checkout(self, req: CheckoutRequest) -> CheckoutSession:
        return await self._timed("create_checkout", lambda: self.inner.create_checkout(req))

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[PaymentEvent]:
        return await self._timed("parse_webhook", lambda: self.inner.parse_webhook(body, headers))

    async def fetch_status(self, provider_ref: str) -> PaymentEvent | None:
        return await self._timed("fetch_status", lambda: self.inner.fetch_status(provider_ref))

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        # Provider-specific extras (e.g. settings) stay reachable through the proxy.
        return getattr(self.inner, name)
