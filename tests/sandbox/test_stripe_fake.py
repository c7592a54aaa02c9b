"""The fake Stripe API, checked against Stripe's own OpenAPI description.

tests/specs/stripe/stripe_extract.json is a trimmed, committed extract of Stripe's spec (see
SOURCE.md there; regenerate with tools/extract_stripe_spec.py). Every request the real SDK
sends to the fake must satisfy the Checkout Session create schema (unknown parameters
rejected), and every object and webhook event the fake produces must satisfy Stripe's object
schemas and carry every top-level field Stripe's current fixtures have.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

# No stubs ship with jsonschema and the dev extra does not pin types-jsonschema.
from jsonschema import Draft4Validator, validators  # type: ignore[import-untyped]
from pydantic import SecretStr

from config.money import to_minor
from config.settings import StripeSettings
from providers.base import CheckoutRequest
from providers.stripe.provider import StripeProvider
from sandbox.stripe.api import FakeStripe, decode_form
from sandbox.stripe.state import SignedEvent

ROOT = Path(__file__).resolve().parents[2]
EXTRACT_PATH = ROOT / "tests" / "specs" / "stripe" / "stripe_extract.json"
SHARED_SPEC = ROOT.parent / "shared" / "specs" / "stripe" / "spec3.json"
EXTRACT: dict[str, Any] = json.loads(EXTRACT_PATH.read_text(encoding="utf-8"))
_SCHEMA_KEYS = ("items", "additionalProperties", "not")
# One creation instant per test run, as an order row gives the provider on every retry.
CREATED_AT = datetime.now(UTC).replace(microsecond=0)
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf")


def oas30_to_jsonschema(node: Any, *, closed: bool = False) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema draft 4: `nullable` becomes `anyOf [..., null]`.

    `closed` adds `additionalProperties: false` to objects that list properties and say
    nothing about extras: Stripe answers "Received unknown parameter" for those in requests.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "nullable" or key.startswith("x-"):
            continue
        if key == "properties":
            out[key] = {k: oas30_to_jsonschema(v, closed=closed) for k, v in value.items()}
        elif key in _SCHEMA_KEYS and isinstance(value, dict):
            out[key] = oas30_to_jsonschema(value, closed=closed)
        elif key in _SCHEMA_LISTS:
            out[key] = [oas30_to_jsonschema(v, closed=closed) for v in value]
        elif key == "$ref":
            out[key] = value
        else:
            out[key] = value
    if closed and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


_COMPONENTS = {
    name: oas30_to_jsonschema(schema) for name, schema in EXTRACT["components"]["schemas"].items()
}


def _form_type(pattern: str) -> Any:
    def check(checker: Any, instance: Any) -> bool:
        return isinstance(instance, str) and re.fullmatch(pattern, instance) is not None

    return check


# A form body carries only strings: integers, numbers and booleans arrive as their text.
_FormValidator = validators.extend(
    Draft4Validator,
    type_checker=Draft4Validator.TYPE_CHECKER.redefine_many(
        {
            "integer": _form_type(r"-?\d+"),
            "number": _form_type(r"-?\d+(\.\d+)?"),
            "boolean": _form_type(r"true|false"),
        }
    ),
)


def request_errors(params: dict[str, Any]) -> list[str]:
    schema = oas30_to_jsonschema(EXTRACT["request"]["schema"], closed=True)
    validator = _FormValidator({**schema, "definitions": {}})
    return sorted(f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(params))


def object_errors(name: str, instance: Any) -> list[str]:
    # $ref siblings are ignored in draft 4, so the components ride along for resolution.
    validator = Draft4Validator(
        {"$ref": f"#/components/schemas/{name}", "components": {"schemas": _COMPONENTS}}
    )
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]
    if isinstance(instance, dict):
        known = set(EXTRACT["components"]["schemas"][name].get("properties", {}))
        fixture = set(EXTRACT["x-fixture-keys"].get(name, ()))
        errors += [f"missing {k!r} (in Stripe's fixture)" for k in sorted(fixture - set(instance))]
        errors += [f"unknown key {k!r}" for k in sorted(set(instance) - known - fixture)]
    return errors


def event_errors(event: dict[str, Any]) -> list[str]:
    errors = object_errors("event", event)
    obj = event["data"]["object"]
    if obj.get("object") in EXTRACT["x-fixture-keys"]:
        errors += [f"data.object {e}" for e in object_errors(obj["object"], obj)]
    return errors


# -- a full tour of the fake through the real SDK -------------------------------------


def _request(order: str, amount: str, currency: str, **extra: Any) -> CheckoutRequest:
    values: dict[str, Any] = {
        "order_id": order,
        "product_id": "pro",
        "product_name": "Pro license",
        "description": "One seat, perpetual",
        "amount_minor": to_minor(Decimal(amount), currency),
        "currency": currency,
        "buyer_email": "buyer@example.com",
        "success_url": f"https://shop.example/orders/{order}",
        "cancel_url": f"https://shop.example/orders/{order}?cancelled=1",
        "notification_url": "https://shop.example/webhooks/stripe",
        "idempotency_key": f"checkout:{order}",
        "created_at": CREATED_AT,
    }
    values.update(extra)
    return CheckoutRequest(**values)


@pytest.fixture
async def toured() -> AsyncIterator[FakeStripe]:
    """A fake that has been through every flow the gateway uses, driven by the real SDK."""
    fake = FakeStripe()
    settings = StripeSettings(
        enabled=True,
        secret_key=SecretStr(fake.api_key),
        webhook_secret=SecretStr(fake.webhook_secret),
        max_network_retries=0,
        session_expires_minutes=60,
    )
    provider = StripeProvider(settings, transport=fake.transport())
    try:
        refs = [
            (await provider.create_checkout(_request(f"ord_{cur}", amt, cur))).provider_ref
            for amt, cur in (("9.99", "USD"), ("1500", "JPY"), ("1.230", "KWD"), ("5", "EUR"))
        ]
        await provider.create_checkout(_request("ord_USD", "9.99", "USD"))  # replayed
        usd, jpy, kwd, eur = refs
        for signed in (
            fake.complete_session(usd),
            fake.refund(usd, 300),
            fake.refund(usd),
            fake.complete_session(jpy, paid=False),
            fake.succeed_async_payment(jpy),
            fake.dispute(jpy),
            fake.complete_session(kwd, paid=False),
            fake.fail_async_payment(kwd),
        ):
            await provider.parse_webhook(signed.body, signed.headers)
        # the seller expires a session through the API, as the SDK would
        headers = {"authorization": f"Bearer {fake.api_key}", "idempotency-key": "expire-eur"}
        async with httpx.AsyncClient(transport=fake.transport(), base_url="http://s.test") as c:
            expired = await c.post(f"/v1/checkout/sessions/{eur}/expire", headers=headers)
        assert expired.json()["status"] == "expired"
        await provider.parse_webhook(fake.events[-1].body, fake.events[-1].headers)
        for ref in refs:
            await provider.fetch_status(ref)
        yield fake
    finally:
        await provider.aclose()


def test_every_request_the_sdk_sent_matches_the_create_session_schema(
    toured: FakeStripe,
) -> None:
    creates = [r for r in toured.requests if r.path == "/v1/checkout/sessions"]
    assert len(creates) == 5
    for recorded in creates:
        assert request_errors(recorded.params) == [], recorded.params


def test_request_schema_rejects_unknown_and_misplaced_parameters() -> None:
    # given what the SDK sends when idempotency_key is wrongly put in params, and a typo
    good = decode_form(
        b"mode=payment&success_url=https://x/ok&line_items[0][quantity]=1"
        b"&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=999"
        b"&line_items[0][price_data][product_data][name]=Pro"
    )
    misplaced = {**good, "idempotency_key": "k"}
    nested_typo = json.loads(json.dumps(good))
    nested_typo["line_items"][0]["price_data"]["unit_amout"] = "999"
    not_an_integer = json.loads(json.dumps(good))
    not_an_integer["line_items"][0]["price_data"]["unit_amount"] = "9.99"

    # then the contract check catches each of them
    assert request_errors(good) == []
    assert any("idempotency_key" in e for e in request_errors(misplaced))
    assert any("unit_amout" in e for e in request_errors(nested_typo))
    assert any("is not of type 'integer'" in e for e in request_errors(not_an_integer))


def test_every_object_the_fake_answered_matches_stripe_object_schemas(
    toured: FakeStripe,
) -> None:
    kinds = set()
    assert any(r.path.endswith("/expire") for r, _, _ in toured.exchanges)
    for recorded, status, body in toured.exchanges:
        assert status == 200, (recorded.path, body)
        kinds.add(body["object"])
        assert object_errors(body["object"], body) == [], recorded.path
    # creates and reconciliation read sessions; reversals read payment intents
    assert kinds == {"checkout.session", "payment_intent"}


def test_every_webhook_event_matches_the_event_and_object_schemas(toured: FakeStripe) -> None:
    types = [signed.event["type"] for signed in toured.events]
    assert set(types) == {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "charge.refunded",
        "charge.dispute.created",
    }
    for signed in toured.events:
        assert json.loads(signed.body) == signed.event
        assert event_errors(signed.event) == [], signed.event["type"]


def test_payment_intents_and_charges_match_their_schemas(toured: FakeStripe) -> None:
    assert toured.payment_intents
    assert toured.charges
    assert toured.disputes
    for intent in toured.payment_intents.values():
        assert object_errors("payment_intent", intent) == []
    for charge in toured.charges.values():
        assert object_errors("charge", charge) == []
    for dispute in toured.disputes.values():
        assert object_errors("dispute", dispute) == []


async def test_error_bodies_match_the_error_schema() -> None:
    # given a wrong key, an unknown session, a KWD amount not ending in 0, and an outage
    fake = FakeStripe()
    path = "/v1/checkout/sessions/cs_test_missing"
    auth = {"authorization": f"Bearer {fake.api_key}"}
    kwd = (
        b"mode=payment&success_url=https://x/ok&line_items[0][quantity]=1"
        b"&line_items[0][price_data][currency]=kwd&line_items[0][price_data][unit_amount]=1231"
        b"&line_items[0][price_data][product_data][name]=Pro"
    )
    async with httpx.AsyncClient(transport=fake.transport(), base_url="http://stripe.test") as c:
        wrong_key = await c.get(path, headers={"authorization": "Bearer sk_test_wrong"})
        missing = await c.get(path, headers=auth)
        bad_amount = await c.post("/v1/checkout/sessions", content=kwd, headers=auth)
        fake.fail_status = 500
        outage = await c.get(path, headers=auth)

    # then each answer has Stripe's status and error shape
    answers = (wrong_key, missing, bad_amount, outage)
    assert [r.status_code for r in answers] == [401, 404, 400, 500]
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert bad_amount.json()["error"]["param"] == "line_items[0][price_data][unit_amount]"
    assert request_errors(decode_form(kwd)) == []
    for response in answers:
        assert object_errors("error", response.json()) == [], response.text


def test_a_drifted_object_is_caught() -> None:
    # given a session as the fake makes it, then with a renamed field and a bad enum
    fake = FakeStripe()
    session = fake.create_session(
        decode_form(
            b"mode=payment&line_items[0][price_data][currency]=usd"
            b"&line_items[0][price_data][unit_amount]=100&line_items[0][quantity]=1"
        )
    )
    drifted = {**session, "status": "paid", "amount_totl": 100}
    del drifted["amount_total"]

    errors = object_errors("checkout.session", drifted)

    assert object_errors("checkout.session", session) == []
    assert any(e.startswith("['status']") for e in errors)
    assert "unknown key 'amount_totl'" in errors
    assert "missing 'amount_total' (in Stripe's fixture)" in errors


def test_signed_events_verify_with_the_sdk() -> None:
    import stripe

    fake = FakeStripe()
    signed: SignedEvent = fake.emit("customer.created", {"id": "cus_1", "object": "customer"})
    event = stripe.Webhook.construct_event(
        signed.body, signed.headers["stripe-signature"], fake.webhook_secret
    )
    assert event.id == signed.event["id"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", signed.headers["stripe-signature"])


# -- the extract itself ---------------------------------------------------------------


def _extract_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "extract_stripe_spec", ROOT / "tools" / "extract_stripe_spec.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extract_is_small_and_names_its_source() -> None:
    assert EXTRACT_PATH.stat().st_size < 300_000
    assert re.search(r"spec3\.yaml @ [0-9a-f]{40}", EXTRACT["x-source"])
    schemas = EXTRACT["components"]["schemas"]
    for name in ("checkout.session", "charge", "dispute", "payment_intent", "event", "error"):
        assert "x-stub" not in schemas[name]
    # every $ref in the extract resolves inside it
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', EXTRACT_PATH.read_text()))
    assert refs <= set(schemas)


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_extract_keeps_deep_object_encoding_for_nested_params() -> None:
    encoding = EXTRACT["request"]["encoding"]
    for name in ("line_items", "metadata", "payment_intent_data"):
        assert encoding[name] == {"explode": True, "style": "deepObject"}
    docs = [
        n for n in _walk(EXTRACT) if isinstance(n, dict) and isinstance(n.get("description"), str)
    ]
    assert docs == []


if SHARED_SPEC.exists():
    # Only where ../shared is checked out (not in CI): the committed extract is what the tool
    # makes from today's shared spec, so nobody edits it by hand or forgets to regenerate.

    def test_extract_is_up_to_date_with_the_shared_spec() -> None:
        tool = _extract_tool()
        spec = json.loads(SHARED_SPEC.read_text(encoding="utf-8"))
        expected = tool.render(
            tool.build_extract(spec, tool.source_line(SHARED_SPEC), tool.load_fixtures(SHARED_SPEC))
        )
        assert EXTRACT_PATH.read_text(encoding="utf-8") == expected


def test_reinstatement_flows_match_stripe_schemas() -> None:
    # given a paid session that is disputed and wins, then refunded and the refund fails
    fake = FakeStripe()
    sid = fake.create_session(
        {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": "999",
                        "product_data": {"name": "Pro"},
                    },
                    "quantity": "1",
                }
            ],
            "metadata": {"order_id": "ord_" + "0" * 20},
            "success_url": "https://shop.example/ok",
        }
    )["id"]
    fake.complete_session(sid)
    fake.dispute(sid)
    closed = fake.close_dispute(sid, "won")
    fake.refund(sid)
    failed = fake.fail_refund(sid)

    # then the new objects and events are what Stripe's schemas describe
    assert event_errors(closed.event) == []
    assert closed.event["data"]["object"]["status"] == "won"
    assert object_errors("event", failed.event) == []
    assert failed.event["type"] == "refund.failed"
    # the extract stubs `refund`; its fields, from spec3.json components.schemas.refund:
    refund_fields = set(
        [
            "amount",
            "balance_transaction",
            "charge",
            "created",
            "currency",
            "description",
            "failure_balance_transaction",
            "failure_reason",
            "id",
            "instructions_email",
            "metadata",
            "next_action",
            "object",
            "payment_intent",
            "reason",
            "receipt_number",
            "source_transfer_reversal",
            "status",
            "transfer_reversal",
        ]
    )
    for refund in fake.refunds.values():
        assert set(refund) <= refund_fields, set(refund) - refund_fields
        assert {"amount", "created", "currency", "id", "object"} <= set(refund)
    assert [r["status"] for r in fake.refunds.values()] == ["failed"]
    assert (
        fake.charges[fake.payment_intents[fake.sessions[sid]["payment_intent"]]["latest_charge"]][
            "amount_refunded"
        ]
        == 0
    )
