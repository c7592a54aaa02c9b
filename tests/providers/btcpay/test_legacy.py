"""Legacy BTCPay mode: real `btcpay-python` over HTTP against the fake on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config.settings import BtcpaySettings
from gateway.ops.instrumented import InstrumentedProvider
from providers.base import CheckoutRequest, PaymentProvider, UnsignedNotifications
from providers.btcpay.legacy import BTCPayLegacyProvider, PairingError, pair_legacy
from providers.errors import ProviderRejected, ProviderUnavailable, WebhookPayloadError
from providers.events import (
    Ignored,
    PaymentFailed,
    PaymentNeedsReview,
    PaymentPending,
    PaymentSettled,
)
from sandbox.btcpay.harness import BTCPayLegacyHarness


class Legacy:
    def __init__(self, harness: BTCPayLegacyHarness, provider: BTCPayLegacyProvider) -> None:
        self.harness = harness
        self.fake = harness.fake
        self.provider = provider

    def invoice(
        self, amount: str = "9.99", currency: str = "USD", order: str = "ord_00000000000000000001"
    ) -> str:
        invoice, _ = self.fake.create_invoice(
            amount=amount, currency=currency, metadata={"orderId": order}
        )
        return invoice.id


async def _legacy(tmp_path: Path, late_payment: str = "settle") -> Legacy:
    harness = BTCPayLegacyHarness(late_payment=late_payment, data_dir=tmp_path / "data")
    return Legacy(harness, await harness.build_provider())


@pytest.fixture
async def legacy(tmp_path: Path) -> AsyncIterator[Legacy]:
    env = await _legacy(tmp_path)
    yield env
    await env.harness.aclose()


@pytest.fixture
async def review(tmp_path: Path) -> AsyncIterator[Legacy]:
    env = await _legacy(tmp_path, "review")
    yield env
    await env.harness.aclose()


def checkout_request() -> CheckoutRequest:
    return CheckoutRequest(
        order_id="ord_00000000000000000009",
        product_id="pro",
        product_name="Pro",
        description="Pro license (1 seat)",
        amount_minor=999,
        currency="USD",
        buyer_email="buyer@example.com",
        success_url="https://shop.example/orders/ord_00000000000000000009",
        cancel_url="https://shop.example/cancel",
        notification_url="https://shop.example/webhooks/btcpay",
        idempotency_key="ord_00000000000000000009",
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- pairing --------------------------------------------------------------------------------


async def test_pairing_stores_a_working_key_and_token_readable_only_by_owner(
    legacy: Legacy,
) -> None:
    key_file, token_file = legacy.harness.settings().legacy_paths(legacy.harness.data_dir)
    assert (_mode(key_file), _mode(token_file)) == (0o600, 0o600)
    assert key_file.read_text().startswith("-----BEGIN EC PRIVATE KEY-----")
    token = json.loads(token_file.read_text())["merchant"]
    assert token in legacy.fake.legacy_tokens
    # and the stored pair is accepted by the (signature-checking) fake
    session = await legacy.provider.create_checkout(checkout_request())
    assert session.provider_ref in legacy.fake.invoices


async def test_pairing_refuses_to_overwrite_existing_files(legacy: Legacy) -> None:
    key_file, token_file = legacy.harness.settings().legacy_paths(legacy.harness.data_dir)
    before = key_file.read_bytes()
    url = legacy.harness.settings().url
    assert url is not None
    with pytest.raises(PairingError, match="refusing to overwrite"):
        pair_legacy(url, legacy.fake.issue_pairing_code(), key_file, token_file)
    assert key_file.read_bytes() == before


async def test_forced_pairing_overwrites_and_tightens_the_mode(legacy: Legacy) -> None:
    key_file, token_file = legacy.harness.settings().legacy_paths(legacy.harness.data_dir)
    os.chmod(key_file, 0o644)
    before = key_file.read_bytes()
    url = legacy.harness.settings().url
    assert url is not None
    code = legacy.fake.issue_pairing_code()
    result = await asyncio.to_thread(pair_legacy, url, code, key_file, token_file, force=True)
    assert key_file.read_bytes() != before
    assert _mode(key_file) == 0o600
    assert result.facade == "merchant"


@pytest.mark.parametrize("code", ["ABC", "ABCDEFGH", "ABC DEF", "ABCDEF!"])
def test_pairing_rejects_malformed_codes_and_writes_nothing(tmp_path: Path, code: str) -> None:
    with pytest.raises(PairingError):
        pair_legacy("http://127.0.0.1:9", code, tmp_path / "k.pem", tmp_path / "t.json")
    assert list(tmp_path.iterdir()) == []


async def test_pairing_with_a_code_btcpay_did_not_issue_is_rejected(legacy: Legacy) -> None:
    url = legacy.harness.settings().url
    assert url is not None
    key, token = legacy.harness.data_dir / "x.pem", legacy.harness.data_dir / "x.json"
    with pytest.raises(ProviderRejected):
        await asyncio.to_thread(pair_legacy, url, "AAAAAAA", key, token)
    assert not key.exists()
    assert not token.exists()


def test_pairing_with_btcpay_unreachable_is_unavailable(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProviderUnavailable):
        pair_legacy(f"http://127.0.0.1:{port}", "ABCDEFG", tmp_path / "k", tmp_path / "t")
    assert list(tmp_path.iterdir()) == []


def test_provider_without_pairing_files_names_the_pair_command(tmp_path: Path) -> None:
    settings = BtcpaySettings(mode="legacy", url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="btcpay pair"):
        BTCPayLegacyProvider(settings, data_dir=tmp_path)


# -- checkout -------------------------------------------------------------------------------


async def test_create_checkout_goes_through_btcpay_python_with_a_decimal_price(
    legacy: Legacy,
) -> None:
    assert isinstance(legacy.provider, PaymentProvider)
    session = await legacy.provider.create_checkout(checkout_request())

    [(_, path, body)] = legacy.fake.received
    assert path == "/invoices/"
    assert (
        session.checkout_url == f"{legacy.harness.settings().url}/invoice?id={session.provider_ref}"
    )
    assert body["price"] == "9.99"
    assert body["orderId"] == "ord_00000000000000000009"
    assert body["notificationURL"] == "https://shop.example/webhooks/btcpay"
    assert body["redirectURL"] == "https://shop.example/orders/ord_00000000000000000009"
    assert body["buyer"] == {"email": "buyer@example.com"}
    assert body["token"] in legacy.fake.legacy_tokens


async def test_event_loop_keeps_running_during_a_slow_legacy_call(legacy: Legacy) -> None:
    legacy.fake.delay_seconds = 1.0
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await legacy.provider.create_checkout(checkout_request())
    finally:
        task.cancel()
    assert ticks >= 5


async def test_btcpay_down_on_create_is_unavailable(legacy: Legacy) -> None:
    legacy.fake.outage_status = 500
    with pytest.raises(ProviderUnavailable):
        await legacy.provider.create_checkout(checkout_request())


async def test_revoked_token_is_rejected(legacy: Legacy) -> None:
    legacy.fake.legacy_tokens.clear()
    with pytest.raises(ProviderRejected):
        await legacy.provider.create_checkout(checkout_request())


async def test_token_used_with_another_key_is_rejected(legacy: Legacy, tmp_path: Path) -> None:
    # given a second pairing (new key) whose token file is swapped for the first's token
    other = tmp_path / "other"
    _, token_file = legacy.harness.settings().legacy_paths(legacy.harness.data_dir)
    url = legacy.harness.settings().url
    assert url is not None
    code = legacy.fake.issue_pairing_code()
    await asyncio.to_thread(pair_legacy, url, code, other / "k.pem", other / "t.json")
    (other / "t.json").write_text(token_file.read_text())
    settings = legacy.harness.settings().model_copy(
        update={"legacy_key_file": other / "k.pem", "legacy_token_file": other / "t.json"}
    )
    impostor = BTCPayLegacyProvider(settings, data_dir=other)
    # then the fake, checking the token belongs to the signing identity, refuses it
    with pytest.raises(ProviderRejected):
        await impostor.create_checkout(checkout_request())
    await impostor.aclose()


# -- IPN -------------------------------------------------------------------------------------


async def test_forged_complete_ipn_for_an_unpaid_invoice_settles_nothing(legacy: Legacy) -> None:
    invoice_id = legacy.invoice()
    forged = legacy.fake.legacy_ipn(invoice_id, status="complete")
    [event] = await legacy.provider.parse_webhook(forged, {})
    assert isinstance(event, Ignored)


async def test_genuine_ipn_after_completion_settles_with_fetched_values(legacy: Legacy) -> None:
    session = await legacy.provider.create_checkout(checkout_request())
    legacy.fake.pay_in_full(session.provider_ref)
    ipn = json.loads(legacy.fake.legacy_ipn(session.provider_ref, status="confirmed"))
    # the body is only a hint: lies in it change nothing
    ipn |= {"price": 0.01, "orderId": "ord_0000000000000000dead", "currency": "JPY"}
    [event] = await legacy.provider.parse_webhook(json.dumps(ipn).encode(), {})
    assert isinstance(event, PaymentSettled)
    assert (event.order_id, event.amount_minor, event.currency) == (
        "ord_00000000000000000009",
        999,
        "USD",
    )
    assert event.dedupe_key == f"{session.provider_ref}:complete"


async def test_extended_ipn_shape_is_understood(legacy: Legacy) -> None:
    invoice_id = legacy.invoice("1500", "JPY")
    legacy.fake.pay_in_full(invoice_id)
    data = json.loads(legacy.fake.legacy_ipn(invoice_id))
    body = json.dumps({"event": {"code": 1005, "name": "invoice_confirmed"}, "data": data})
    [event] = await legacy.provider.parse_webhook(body.encode(), {})
    assert isinstance(event, PaymentSettled)
    assert (event.amount_minor, event.currency) == (1500, "JPY")


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b"{}", b'{"id": "../../etc"}', b'{"data": {"id": 5}}']
)
async def test_ipn_without_a_usable_invoice_id_is_a_payload_error(
    legacy: Legacy, body: bytes
) -> None:
    with pytest.raises(WebhookPayloadError):
        await legacy.provider.parse_webhook(body, {})


async def test_ipn_for_an_unknown_invoice_is_ignored(legacy: Legacy) -> None:
    [event] = await legacy.provider.parse_webhook(b'{"id": "NoSuchInvoice"}', {})
    assert isinstance(event, Ignored)


async def test_unsigned_ipns_are_an_optional_capability_the_metrics_proxy_keeps(
    legacy: Legacy,
) -> None:
    # The webhook route asks `isinstance(provider, UnsignedNotifications)` of the proxy the
    # app wraps every provider in, and isinstance does not look through __getattr__ (3.12+).
    body = json.dumps({"id": "Claimed0000000000000001"}).encode()
    proxied = InstrumentedProvider(legacy.provider)
    calls_before = len(legacy.fake.received)
    assert isinstance(legacy.provider, UnsignedNotifications)
    assert isinstance(proxied, UnsignedNotifications)
    assert proxied.unverified_ref(body) == "Claimed0000000000000001"
    assert proxied.unverified_ref(b'{"id": "../../etc"}') is None
    # only the body was read: BTCPay was not asked
    assert len(legacy.fake.received) == calls_before


async def test_btcpay_down_during_ipn_refetch_is_unavailable(legacy: Legacy) -> None:
    invoice_id = legacy.invoice()
    legacy.fake.outage_status = 503
    with pytest.raises(ProviderUnavailable):
        await legacy.provider.parse_webhook(json.dumps({"id": invoice_id}).encode(), {})


async def test_paid_but_unconfirmed_is_pending(legacy: Legacy) -> None:
    invoice_id = legacy.invoice()
    legacy.fake.receive_full_payment(invoice_id)
    [event] = await legacy.provider.parse_webhook(legacy.fake.legacy_ipn(invoice_id), {})
    assert isinstance(event, PaymentPending)
    assert event.dedupe_key == f"{invoice_id}:paid"


async def test_overpaid_and_marked_complete_settle_with_notes(legacy: Legacy) -> None:
    over, marked = legacy.invoice(), legacy.invoice()
    legacy.fake.overpay(over)
    legacy.fake.mark_settled(marked)
    [over_event] = await legacy.provider.parse_webhook(legacy.fake.legacy_ipn(over), {})
    [marked_event] = await legacy.provider.parse_webhook(legacy.fake.legacy_ipn(marked), {})
    assert isinstance(over_event, PaymentSettled)
    assert isinstance(marked_event, PaymentSettled)
    assert over_event.notes == ("overpaid",)
    assert marked_event.notes == ("manually marked settled",)


async def test_expired_partial_and_invalid_invoices_fail(legacy: Legacy) -> None:
    expired, partial, invalid, marked = (legacy.invoice() for _ in range(4))
    legacy.fake.expire(expired)
    legacy.fake.pay_partially(partial)
    legacy.fake.expire(partial)
    legacy.fake.receive_full_payment(invalid)
    legacy.fake.fail_to_confirm(invalid)
    legacy.fake.mark_invalid(marked)
    reasons = {}
    for invoice_id in (expired, partial, invalid, marked):
        event, *withdrawn = await legacy.provider.parse_webhook(
            legacy.fake.legacy_ipn(invoice_id), {}
        )
        assert isinstance(event, PaymentFailed)
        assert len(withdrawn) == (invoice_id == marked)
        reasons[invoice_id] = event.reason
    assert reasons == {
        expired: "expired",
        partial: "expired, partially paid",
        invalid: "invalid",
        marked: "manually marked invalid",
    }


async def test_late_payment_needs_review_even_with_policy_settle(legacy: Legacy) -> None:
    # item 8.2: the legacy API cannot show confirmation, so no late payment auto-settles
    invoice_id = legacy.invoice()
    legacy.fake.pay_late_unconfirmed(invoice_id)
    [event] = await legacy.provider.parse_webhook(legacy.fake.legacy_ipn(invoice_id), {})
    polled = await legacy.provider.fetch_status(invoice_id)
    assert isinstance(event, PaymentNeedsReview)
    assert event.dedupe_key == f"{invoice_id}:paidLater"
    # item 8.12: the reconciler's poll reports it too (BTCPay sends no IPN for it)
    assert isinstance(polled, PaymentNeedsReview)
    assert polled.dedupe_key == event.dedupe_key


async def test_late_payment_needs_review_with_policy_review(review: Legacy) -> None:
    invoice_id = review.invoice()
    review.fake.pay_after_expiry(invoice_id)
    [event] = await review.provider.parse_webhook(review.fake.legacy_ipn(invoice_id), {})
    assert isinstance(event, PaymentNeedsReview)
    assert "check it in BTCPay" in event.reason


async def test_fetch_status_maps_the_legacy_invoice(legacy: Legacy) -> None:
    new, done = legacy.invoice(), legacy.invoice()
    legacy.fake.pay_in_full(done)
    assert await legacy.provider.fetch_status(new) is None
    settled = await legacy.provider.fetch_status(done)
    assert isinstance(settled, PaymentSettled)
    assert settled.dedupe_key == f"{done}:complete"
