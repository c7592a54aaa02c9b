"""One contract, every provider (Stripe, BTCPay Greenfield, BTCPay legacy).

Each provider is wired to its fake (which speaks the real HTTP API) through a harness; the
same assertions hold for all of them.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest

from providers.base import PaymentProvider, UnsignedNotifications
from providers.errors import WebhookSignatureError
from providers.events import Ignored, PaymentSettled
from sandbox.btcpay.harness import BTCPayGreenfieldHarness, BTCPayLegacyHarness
from sandbox.stripe.harness import StripeContractHarness

HARNESSES = {
    "stripe": StripeContractHarness,
    "btcpay-greenfield": BTCPayGreenfieldHarness,
    "btcpay-legacy": BTCPayLegacyHarness,
}
# BTCPay's legacy IPN carries no signature at all; for it, "forged" is covered by re-fetching.
SIGNED = sorted(set(HARNESSES) - {"btcpay-legacy"})
UNSIGNED_HARNESSES = (BTCPayLegacyHarness,)
SIGNATURE_HEADERS = ("stripe-signature", "btcpay-sig")


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@pytest.fixture(params=sorted(HARNESSES))
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    h = HARNESSES[request.param]()
    try:
        yield h
    finally:
        await h.aclose()


@pytest.fixture(params=SIGNED)
async def signed_harness(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    h = HARNESSES[request.param]()
    try:
        yield h
    finally:
        await h.aclose()


async def _provider(harness: Any) -> PaymentProvider:
    provider: PaymentProvider = await _maybe(harness.build_provider())
    return provider


async def test_provider_satisfies_the_protocol(harness: Any) -> None:
    provider = await _provider(harness)
    assert isinstance(provider, PaymentProvider)
    assert provider.name.value in ("stripe", "btcpay")


async def test_only_providers_with_unsigned_notifications_claim_that_capability(
    harness: Any,
) -> None:
    # Signed webhooks are verified before anything is read; only legacy IPNs need the
    # gateway's cheap "is this a checkout of ours" look first.
    provider = await _provider(harness)
    assert isinstance(provider, UnsignedNotifications) == (type(harness) in UNSIGNED_HARNESSES)


async def test_settle_fixture_becomes_payment_settled_with_our_order_id(harness: Any) -> None:
    provider = await _provider(harness)
    body, headers = await _maybe(
        harness.signed_settle_webhook("ord_c0000000000000000001", 999, "USD")
    )

    events = await provider.parse_webhook(body, headers)

    settled = [e for e in events if isinstance(e, PaymentSettled)]
    assert len(settled) == 1
    assert settled[0].order_id == "ord_c0000000000000000001"
    assert (settled[0].amount_minor, settled[0].currency) == (999, "USD")
    assert settled[0].provider == provider.name
    assert settled[0].dedupe_key


async def test_same_fact_has_a_stable_dedupe_key(harness: Any) -> None:
    provider = await _provider(harness)
    body, headers = await _maybe(
        harness.signed_settle_webhook("ord_c0000000000000000002", 3999, "USD")
    )

    first = await provider.parse_webhook(body, headers)
    second = await provider.parse_webhook(body, headers)

    assert [e.dedupe_key for e in first if isinstance(e, PaymentSettled)] == [
        e.dedupe_key for e in second if isinstance(e, PaymentSettled)
    ]


async def test_unrelated_event_is_ignored(harness: Any) -> None:
    provider = await _provider(harness)
    body, headers = await _maybe(harness.signed_unrelated_webhook())

    events = await provider.parse_webhook(body, headers)

    assert events, "an unrelated event still yields an explicit Ignored"
    assert all(isinstance(e, Ignored) for e in events)


async def test_one_tampered_byte_fails_verification(signed_harness: Any) -> None:
    provider = await _provider(signed_harness)
    body, headers = await _maybe(
        signed_harness.signed_settle_webhook("ord_c0000000000000000003", 999, "USD")
    )
    tampered = body.replace(b"ord_c0000000000000000003", b"ord_c0000000000000000004")
    assert tampered != body

    with pytest.raises(WebhookSignatureError):
        await provider.parse_webhook(tampered, headers)


async def test_tampered_unsigned_ipn_cannot_redirect_a_settlement() -> None:
    # Legacy IPNs are unsigned: the body is only a hint, the re-fetched invoice decides,
    # and it still names the real order.
    harness = BTCPayLegacyHarness()
    try:
        provider = await harness.build_provider()
        body, headers = await harness.signed_settle_webhook("ord_c0000000000000000003", 999, "USD")
        tampered = body.replace(b"ord_c0000000000000000003", b"ord_c0000000000000000004")
        assert tampered != body

        events = await provider.parse_webhook(tampered, headers)

        settled = [e for e in events if isinstance(e, PaymentSettled)]
        assert [e.order_id for e in settled] == ["ord_c0000000000000000003"]
    finally:
        await harness.aclose()


@pytest.mark.parametrize("signature", [None, ""])
async def test_missing_or_empty_signature_is_rejected(
    signed_harness: Any, signature: str | None
) -> None:
    provider = await _provider(signed_harness)
    body, headers = await _maybe(
        signed_harness.signed_settle_webhook("ord_c0000000000000000005", 999, "USD")
    )
    kept = {k: v for k, v in headers.items() if k.lower() not in SIGNATURE_HEADERS}
    if signature is not None:
        kept.update({k.lower(): signature for k in headers if k.lower() in SIGNATURE_HEADERS})

    with pytest.raises(WebhookSignatureError):
        await provider.parse_webhook(body, kept)
