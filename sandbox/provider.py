"""`FakeProvider`: satisfies `PaymentProvider` for gateway tests without any provider API.

Its webhook is JSON `{"events": [...]}` signed with `X-Fake-Signature: hex(HMAC-SHA256)`.
Each event dict has `kind` (pending|settled|failed|reversed|reinstated|needs_review|ignored)
and the event fields.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from providers.base import CheckoutRequest, CheckoutSession
from providers.errors import ProviderUnavailable, WebhookPayloadError, WebhookSignatureError
from providers.events import (
    Ignored,
    PaymentEvent,
    PaymentFailed,
    PaymentNeedsReview,
    PaymentPending,
    PaymentReinstated,
    PaymentReversed,
    PaymentSettled,
    ProviderName,
)

_counter = itertools.count(1)


class FakeProvider:
    def __init__(
        self,
        name: ProviderName = ProviderName.STRIPE,
        secret: str = "fake-secret",  # noqa: S107 - a test fake, not a credential
    ) -> None:
        self.name = name
        self.secret = secret.encode()
        self.created: list[CheckoutRequest] = []
        self.statuses: dict[str, PaymentEvent] = {}
        self.fail_create = False
        self.closed = False

    async def create_checkout(self, req: CheckoutRequest) -> CheckoutSession:
        if self.fail_create:
            raise ProviderUnavailable("fake provider is down")
        self.created.append(req)
        ref = f"fake_{next(_counter)}"
        return CheckoutSession(provider_ref=ref, checkout_url=f"https://pay.invalid/{ref}")

    def sign(self, body: bytes) -> dict[str, str]:
        return {"x-fake-signature": hmac.new(self.secret, body, hashlib.sha256).hexdigest()}

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[PaymentEvent]:
        got = headers.get("x-fake-signature", "")
        want = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not got or not hmac.compare_digest(got, want):
            raise WebhookSignatureError("bad fake signature")
        try:
            data = json.loads(body)
            return [self._event(item) for item in data["events"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookPayloadError(f"bad fake payload: {exc}") from exc

    def _event(self, item: dict[str, Any]) -> PaymentEvent:
        kind = item.pop("kind")
        if kind == "ignored":
            return Ignored(
                provider=self.name,
                reason=item.get("reason", "ignored"),
                provider_ref=item.get("provider_ref"),
                recheck_soon=bool(item.get("recheck_soon", False)),
            )
        common: dict[str, Any] = {
            "provider": self.name,
            "provider_ref": item["provider_ref"],
            "order_id": item.get("order_id"),
            "dedupe_key": item["dedupe_key"],
            "occurred_at": datetime.now(UTC),
            "payment_ref": item.get("payment_ref"),
        }
        if kind == "settled":
            return PaymentSettled(
                **common,
                amount_minor=int(item["amount_minor"]),
                currency=item["currency"],
                notes=tuple(item.get("notes", ())),
            )
        if kind == "pending":
            return PaymentPending(**common)
        if kind == "failed":
            return PaymentFailed(**common, reason=item.get("reason", "failed"))
        if kind == "reversed":
            return PaymentReversed(**common, reason=item.get("reason", "refunded"))
        if kind == "reinstated":
            return PaymentReinstated(**common, reason=item.get("reason", "dispute won"))
        if kind == "needs_review":
            return PaymentNeedsReview(**common, reason=item.get("reason", "needs a human"))
        raise WebhookPayloadError(f"unknown kind {kind!r}")

    async def fetch_status(self, provider_ref: str) -> PaymentEvent | None:
        return self.statuses.get(provider_ref)

    async def aclose(self) -> None:
        self.closed = True
