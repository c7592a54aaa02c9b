"""The fake BTCPay and our Greenfield client, checked against BTCPay's own OpenAPI spec.

The spec fragments are vendored in tests/specs/btcpay (see SOURCE.md there for the merge
and the one normalisation applied).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from providers.base import CheckoutRequest
from providers.btcpay.greenfield import BTCPayProvider, sign_body, verify_signature
from sandbox.btcpay.harness import BTCPayGreenfieldHarness
from sandbox.btcpay.payloads import Delivery
from sandbox.btcpay.payloads import newtonsoft_json as newtonsoft_json
from sandbox.btcpay.server import FakeBTCPay, legacy_ipn_statuses

SPEC_DIR = Path(__file__).resolve().parents[1] / "specs" / "btcpay"
SHARED_SPEC_DIR = Path(__file__).resolve().parents[3] / "shared" / "specs" / "btcpay"
BLOBS = {
    "swagger.template.json": "03c0ef85a6ee32eb133661bf3a60326f53ad9eb9",
    "swagger.template.invoices.json": "c4af224ac9bef09c2bd9ea66acf75cbf1cb9176c",
    "swagger.template.webhooks.json": "38a2ab106b92ac797ab56cc69da4eea41d434de3",
    "swagger.template.pull-payments.json": "c94ce9e4eb52e9cac5d0fd2d12a547d28908c42d",
    "swagger.template.stores-payment-methods.json": "1c10df3eb93afdba1e18c63fe2201020f2488d4b",
    "swagger.template.stores-payment-methods.lightning-network.json": (
        "de9c75474019050351e0732ed8a7be5c600e60a7"
    ),
    "swagger.template.stores-payment-methods.lnurl.json": (
        "689f6cad22363a047a203cea51b8974f266c9503"
    ),
    "swagger.template.stores-wallet.on-chain.json": "f92c30fa9dfd2b807dbef31b88c08b3950938d38",
}
# Emitted by BTCPay >= 2.1.2 but missing from x-webhooks: validated as the base event.
UNSPECIFIED_TYPES = {"InvoiceExpiredPaidPartial", "InvoicePaidAfterExpiration", "InvoiceRefund"}

# Our own sample from ../shared/notes/btcpay.md §8a with its published HMAC (secret
# "my-webhook-secret"): pins both our verifier and the fake's Newtonsoft-style bytes.
NOTES_SETTLED = {
    "deliveryId": "Dk9mXz1hT5r8Qw2eYp3LcA",
    "webhookId": "Wh7Kp2sLq9XvB3nR5tYc1Z",
    "originalDeliveryId": "Dk9mXz1hT5r8Qw2eYp3LcA",
    "isRedelivery": False,
    "type": "InvoiceSettled",
    "timestamp": 1592312018,
    "manuallyMarked": False,
    "overPaid": False,
    "storeId": "9CiNzKoANXxmk5ayZngSXrHTiVvvgCrwrpFQd4m2K776",
    "invoiceId": "HMprBnL9BTXWuPvpoKBS6e",
    "metadata": {
        "orderId": "order-1001",
        "buyerEmail": "buyer@example.com",
        "itemDesc": "Pro license (1 seat)",
    },
}
NOTES_SETTLED_SIG = "sha256=5718a13a5d05ffd69a3f8ed669387ac668550c5f6a76bea727b2be730a174206"


def _deep_merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(into.get(key), dict) and isinstance(value, dict):
            _deep_merge(into[key], value)
        elif isinstance(into.get(key), list) and isinstance(value, list):
            into[key] = into[key] + value
        else:
            into[key] = value


def merged_spec() -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for path in sorted(SPEC_DIR.glob("swagger.template*.json")):
        _deep_merge(doc, json.loads(path.read_bytes()))
    return doc


def _open_all_of(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """Strip `additionalProperties: false` from allOf members; return the union to close on."""
    doc = copy.deepcopy(doc)
    schemas: dict[str, Any] = doc["components"]["schemas"]

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            return schemas[ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]
        return node

    def collect(node: dict[str, Any]) -> tuple[set[str], bool]:
        node = resolve(node)
        names = set(node.get("properties", {}))
        closed = node.get("additionalProperties") is False
        for member in node.get("allOf", []):
            more, member_closed = collect(member)
            names |= more
            closed = closed or member_closed
        return names, closed

    closed_on: dict[str, set[str]] = {}
    for name, schema in schemas.items():
        if "allOf" in schema:
            names, closed = collect(schema)
            if closed:
                closed_on[name] = names
    for schema in schemas.values():
        for member in schema.get("allOf", []):
            resolve(member).pop("additionalProperties", None)
    return doc, closed_on


_DOC, _CLOSED_ON = _open_all_of(merged_spec())
_REGISTRY: Registry[Any] = Registry().with_resource(
    "urn:btcpay", Resource.from_contents(_DOC, default_specification=DRAFT4)
)


def schema_errors(schema_name: str, instance: Any) -> list[str]:
    schema: dict[str, Any] = {"$ref": f"urn:btcpay#/components/schemas/{schema_name}"}
    if schema_name in _CLOSED_ON:
        schema = {
            "allOf": [schema],
            "properties": {name: {} for name in sorted(_CLOSED_ON[schema_name])},
            "additionalProperties": False,
        }
    validator = OAS30Validator(schema, registry=_REGISTRY)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


def webhook_schema(event_type: str) -> str:
    if event_type in UNSPECIFIED_TYPES:
        return "WebhookInvoiceEvent"
    body = _DOC["x-webhooks"][event_type]["post"]["requestBody"]
    ref: str = body["content"]["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[1]


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


# -- the vendored files ---------------------------------------------------------------------


def test_vendored_spec_files_are_unchanged_upstream_blobs() -> None:
    # given the vendored folder, when hashed like git, then every file is the upstream blob
    found = {p.name: git_blob_sha1(p.read_bytes()) for p in SPEC_DIR.glob("*.json")}
    assert found == BLOBS
    if SHARED_SPEC_DIR.is_dir():
        for name in BLOBS:
            assert (SPEC_DIR / name).read_bytes() == (SHARED_SPEC_DIR / name).read_bytes()


def test_merged_spec_has_every_path_and_schema() -> None:
    doc = merged_spec()
    assert (len(doc["paths"]), len(doc["components"]["schemas"])) == (36, 78)


def test_normalised_schemas_still_reject_unknown_keys() -> None:
    assert schema_errors("CreateInvoiceRequest", {"amount": "1.00", "metadata": {}}) == []
    assert schema_errors("CreateInvoiceRequest", {"amount": "1.00", "bogus": 1}) != []
    assert schema_errors("CreateInvoiceRequest", {"amount": 1.0}) != []
    assert schema_errors("WebhookInvoiceSettledEvent", NOTES_SETTLED) == []
    assert schema_errors("WebhookInvoiceSettledEvent", NOTES_SETTLED | {"amount": "1"}) != []


# -- signatures and bytes ------------------------------------------------------------------


def test_fake_serialises_webhooks_byte_for_byte_like_btcpay() -> None:
    body = newtonsoft_json(NOTES_SETTLED)
    assert len(body) == 493
    assert sign_body("my-webhook-secret", body) == NOTES_SETTLED_SIG
    verify_signature("my-webhook-secret", body, NOTES_SETTLED_SIG)


# -- our client's requests and the fake's answers --------------------------------------------


@pytest.fixture
async def greenfield() -> AsyncIterator[tuple[BTCPayGreenfieldHarness, BTCPayProvider]]:
    harness = BTCPayGreenfieldHarness()
    provider = await harness.build_provider()
    yield harness, provider
    await harness.aclose()


def _request(amount_minor: int = 999, currency: str = "USD") -> CheckoutRequest:
    return CheckoutRequest(
        order_id="ord_c0000000000000000000",
        product_id="pro",
        product_name="Pro",
        description="Pro license (1 seat)",
        amount_minor=amount_minor,
        currency=currency,
        buyer_email="buyer@example.com",
        success_url="https://shop.example/orders/ord_contract",
        cancel_url="https://shop.example/cancel",
        notification_url="https://shop.example/webhooks/btcpay",
        idempotency_key="idem",
    )


@pytest.mark.parametrize(("amount_minor", "currency"), [(999, "USD"), (1500, "JPY"), (1234, "KWD")])
async def test_create_invoice_request_matches_create_invoice_request_schema(
    greenfield: tuple[BTCPayGreenfieldHarness, BTCPayProvider], amount_minor: int, currency: str
) -> None:
    harness, provider = greenfield
    await provider.create_checkout(_request(amount_minor, currency))
    [(method, _, body)] = [r for r in harness.fake.received if r[0] == "POST"]
    assert method == "POST"
    assert schema_errors("CreateInvoiceRequest", body) == []
    assert isinstance(body["amount"], str)


Control = Callable[[FakeBTCPay, str], list[Delivery]]
LIFECYCLES: dict[str, list[Control]] = {
    "paid": [FakeBTCPay.pay_in_full],
    "overpaid": [FakeBTCPay.overpay],
    "partial then expired": [FakeBTCPay.pay_partially, FakeBTCPay.expire],
    "expired": [FakeBTCPay.expire],
    "paid late": [FakeBTCPay.pay_after_expiry],
    "paid late, unconfirmed": [FakeBTCPay.pay_late_unconfirmed, FakeBTCPay.confirm],
    "paid late, instant": [FakeBTCPay.pay_late_instant],
    "refunded": [FakeBTCPay.pay_in_full, FakeBTCPay.refund],
    "settled then marked invalid": [FakeBTCPay.pay_in_full, FakeBTCPay.mark_invalid],
    "marked settled": [FakeBTCPay.mark_settled],
    "marked invalid": [FakeBTCPay.mark_invalid],
    "failed to confirm": [FakeBTCPay.receive_full_payment, FakeBTCPay.fail_to_confirm],
}


@pytest.mark.parametrize("steps", LIFECYCLES.values(), ids=LIFECYCLES.keys())
async def test_fake_invoices_and_webhooks_match_the_spec_in_every_state(
    greenfield: tuple[BTCPayGreenfieldHarness, BTCPayProvider], steps: list[Control]
) -> None:
    harness, provider = greenfield
    session = await provider.create_checkout(_request())
    async with httpx.AsyncClient(
        transport=harness.transport(),
        base_url="http://btcpay.test",
        headers={"Authorization": f"token {harness.fake.api_key}"},
    ) as client:
        path = f"/api/v1/stores/{harness.fake.store_id}/invoices/{session.provider_ref}"
        invoices = [(await client.get(path)).json()]
        methods = [(await client.get(path + "/payment-methods")).json()]
        for step in steps:
            step(harness.fake, session.provider_ref)
            invoices.append((await client.get(path)).json())
            methods.append((await client.get(path + "/payment-methods")).json())
        listed = await client.get(
            f"/api/v1/stores/{harness.fake.store_id}/invoices",
            params={"orderId": "ord_c0000000000000000000"},
        )
    for invoice in [*invoices, *listed.json()]:
        assert schema_errors("InvoiceData", invoice) == []
    assert [i["id"] for i in listed.json()] == [session.provider_ref]
    for answer in methods:
        assert answer, "an invoice always has payment methods"
        for method in answer:
            assert schema_errors("InvoicePaymentMethodDataModel", method) == []
            for payment in method["payments"]:
                assert payment["status"] in ("Processing", "Settled")
    deliveries = harness.fake.deliveries
    assert len(deliveries) > 1
    for delivery in [*deliveries, harness.fake.redeliver(deliveries[-1])]:
        payload = json.loads(delivery.body)
        if payload["type"] == "InvoiceRefund":
            # base payload + pullPaymentId (WebhookInvoiceRefundEvent, notes §3)
            assert isinstance(payload.pop("pullPaymentId"), str)
        assert schema_errors(webhook_schema(payload["type"]), payload) == [], payload["type"]
        verify_signature(harness.fake.webhook_secret, delivery.body, delivery.headers["btcpay-sig"])


async def test_validation_errors_come_back_as_422_path_message_list() -> None:
    fake = FakeBTCPay()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake.app),
        base_url="http://btcpay.test",
        headers={"Authorization": f"token {fake.api_key}"},
    ) as client:
        response = await client.post(
            f"/api/v1/stores/{fake.store_id}/invoices",
            json={"amount": "-1", "checkout": {"expirationMinutes": 0.1}},
        )
        unauthenticated = await client.get(
            f"/api/v1/stores/{fake.store_id}/invoices/x", headers={"Authorization": "token no"}
        )
    assert response.status_code == 422
    assert schema_errors("ValidationProblemDetails", response.json()) == []
    assert {e["path"] for e in response.json()} == {"amount", "checkout.expirationMinutes"}
    assert unauthenticated.status_code == 401


def test_redelivery_keeps_original_delivery_id_and_gets_a_new_one() -> None:
    fake = FakeBTCPay()
    invoice, _ = fake.create_invoice(amount="9.99", metadata={"orderId": "o"})
    first = fake.pay_in_full(invoice.id)[-1]
    again = fake.redeliver(first)
    payload = json.loads(again.body)
    assert payload["originalDeliveryId"] == first.delivery_id != payload["deliveryId"]
    assert payload["isRedelivery"] is True


async def test_invoice_list_answers_the_spec_shape_for_check_config() -> None:
    # `checkout-gateway check-config` pings with GET .../invoices?take=1
    fake = FakeBTCPay()
    fake.create_invoice(amount="9.99", metadata={"orderId": "o1"})
    fake.create_invoice(amount="19.99", metadata={"orderId": "o2"})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake.app),
        base_url="http://btcpay.test",
        headers={"Authorization": f"token {fake.api_key}"},
    ) as client:
        one = await client.get(f"/api/v1/stores/{fake.store_id}/invoices", params={"take": "1"})
        refused = await client.get(
            f"/api/v1/stores/{fake.store_id}/invoices", headers={"Authorization": "token no"}
        )

    assert one.status_code == 200
    assert schema_errors("InvoiceDataList", one.json()) == []
    assert [i["metadata"]["orderId"] for i in one.json()] == ["o2"]
    assert refused.status_code == 401


# -- the order real BTCPay sends things in (issue 8 item 13) ---------------------------------


def _types(deliveries: list[Delivery]) -> list[str]:
    return [d.event_type for d in deliveries]


def test_greenfield_late_payment_comes_after_invoice_expired() -> None:
    fake = FakeBTCPay()
    invoice, _ = fake.create_invoice(amount="9.99", metadata={"orderId": "o"})
    assert _types(fake.pay_after_expiry(invoice.id)) == [
        "InvoiceExpired",
        "InvoiceReceivedPayment",
        "InvoicePaidAfterExpiration",
        "InvoicePaymentSettled",
    ]


def test_instant_late_payment_settles_before_the_invoice_is_paid_late() -> None:
    fake = FakeBTCPay()
    invoice, _ = fake.create_invoice(amount="9.99", metadata={"orderId": "o"})
    fake.expire(invoice.id)
    deliveries = fake.pay_late_instant(invoice.id)
    assert _types(deliveries) == [
        "InvoiceReceivedPayment",
        "InvoicePaymentSettled",
        "InvoicePaidAfterExpiration",
    ]
    assert all(json.loads(d.body).get("afterExpiration", True) for d in deliveries)


def test_each_payment_gets_its_own_payment_settled_event() -> None:
    fake = FakeBTCPay()
    invoice, _ = fake.create_invoice(amount="10.00", metadata={"orderId": "o"})
    fake.pay_partially(invoice.id)
    fake.pay(invoice.id, Decimal("5.00"))
    confirmed = fake.confirm(invoice.id)
    assert _types(confirmed) == ["InvoicePaymentSettled", "InvoicePaymentSettled", "InvoiceSettled"]
    ids = {json.loads(d.body)["payment"]["id"] for d in confirmed[:2]}
    assert len(ids) == 2


def test_legacy_sends_no_ipn_for_a_late_payment() -> None:
    fake = FakeBTCPay()
    invoice, _ = fake.create_invoice(amount="9.99", metadata={"orderId": "o"})
    expiry = fake.expire(invoice.id)
    late = fake.pay_after_expiry(invoice.id)
    assert legacy_ipn_statuses(expiry) == [None]
    assert legacy_ipn_statuses(late) == []
    paid, _ = fake.create_invoice(amount="9.99", metadata={"orderId": "p"})
    assert legacy_ipn_statuses(fake.pay_in_full(paid.id)) == ["paid", "confirmed"]
