"""The fake Stripe account: its objects, what happens to them, and the signed events.

`StripeState` validates create params like Stripe does, moves sessions, payment intents,
charges and disputes through what the buyer, the bank or the seller does, and signs each
change as a webhook (`SignedEvent`). It speaks no HTTP: `FakeStripe` in
sandbox.stripe.api serves it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import stripe

from sandbox.stripe.objects import (
    charge_object,
    dispute_object,
    event_object,
    new_id,
    payment_intent_object,
    refund_object,
    session_object,
)

# Stripe: amounts in these currencies must end in 0 (docs.stripe.com/currencies).
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


class FakeStripeError(Exception):
    """An API error the fake answers in Stripe's `{"error": {...}}` shape."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, type_: str | None = None
    ):
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {
            "type": type_ or "invalid_request_error",
            "message": message,
        }
        if param is not None:
            self.body["param"] = param
        if status == 404:
            self.body["code"] = "resource_missing"


@dataclass(frozen=True, slots=True)
class SignedEvent:
    """A webhook exactly as Stripe would deliver it: these bytes and these headers."""

    event: dict[str, Any]
    body: bytes
    headers: dict[str, str]


class StripeState:
    """The fake's objects and events, changed only through the methods below."""

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        public_url: str,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.public_url = public_url.rstrip("/")
        self.clock = clock or (lambda: int(time.time()))
        self.livemode = api_key.startswith("sk_live_")
        self.sessions: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.events: list[SignedEvent] = []
        # payment_intent_data.metadata, copied onto the payment intent when one is created.
        self._intent_metadata: dict[str, dict[str, str]] = {}

    # -- events -------------------------------------------------------------------------

    def sign(self, body: bytes, *, timestamp: int | None = None, secret: str | None = None) -> str:
        """A `Stripe-Signature` header for `body`, made the way Stripe makes it."""
        header: str = stripe.WebhookSignature.generate_signature_header(
            body.decode("utf-8"),
            secret or self.webhook_secret,
            timestamp=self.clock() if timestamp is None else timestamp,
        )
        return header

    def emit(
        self, type_: str, obj: dict[str, Any], *, request_id: str | None = None
    ) -> SignedEvent:
        """Record and sign a `stripe.Event` of `type_` carrying a snapshot of `obj`."""
        event = event_object(
            type_, obj, created=self.clock(), livemode=self.livemode, request_id=request_id
        )
        body = json.dumps(event).encode()
        signed = SignedEvent(
            event=event,
            body=body,
            headers={
                "content-type": "application/json; charset=utf-8",
                "stripe-signature": self.sign(body),
                "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
        )
        self.events.append(signed)
        return signed

    # -- state changes (what the buyer, the bank or the seller does) ---------------------

    def create_session(self, params: dict[str, Any]) -> dict[str, Any]:
        """Create a session from decoded create params (validated like Stripe does)."""
        if params.get("mode") not in {"payment", "setup", "subscription"}:
            raise FakeStripeError(400, "Missing required param: mode.", param="mode")
        items = params.get("line_items")
        if params["mode"] == "payment" and not items:
            raise FakeStripeError(400, "Missing required param: line_items.", param="line_items")
        total, currency = 0, None
        for i, item in enumerate(items or []):
            price = item.get("price_data")
            if not isinstance(price, dict):
                raise FakeStripeError(400, "Only inline price_data is supported by the fake.")
            currency = str(price.get("currency", "")).lower()
            param = f"line_items[{i}][price_data][unit_amount]"
            try:
                unit = int(price["unit_amount"])
                quantity = int(item.get("quantity", "1"))
            except (KeyError, ValueError) as exc:
                raise FakeStripeError(400, "Invalid integer: unit_amount.", param=param) from exc
            if unit < 0 or quantity < 1:
                raise FakeStripeError(
                    400, "This value must be greater than or equal to 0.", param=param
                )
            if currency in THREE_DECIMAL and unit % 10:
                raise FakeStripeError(
                    400,
                    f"Amounts in {currency.upper()} must be divisible by 10 (the last digit "
                    "must be 0).",
                    param=param,
                )
            total += unit * quantity
        now = self.clock()
        expires_at = now + 24 * 3600
        if "expires_at" in params:
            try:
                expires_at = int(params["expires_at"])
            except ValueError as exc:
                raise FakeStripeError(400, "Invalid integer.", param="expires_at") from exc
            # Stripe: 30 minutes to 24 hours after creation (a minute of slack for clocks).
            if not now + 30 * 60 - 60 <= expires_at <= now + 24 * 3600 + 60:
                raise FakeStripeError(
                    400,
                    "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
                    "Checkout Session creation.",
                    param="expires_at",
                )
        sid = new_id("cs_live" if self.livemode else "cs_test")
        session = session_object(
            sid=sid,
            params=params,
            amount=total,
            currency=currency,
            created=now,
            expires_at=expires_at,
            livemode=self.livemode,
            url=f"{self.public_url}/pay/{sid}",
        )
        self.sessions[sid] = session
        pi_data = params.get("payment_intent_data") or {}
        self._intent_metadata[sid] = dict(pi_data.get("metadata") or {})
        return session

    def session(self, sid: str) -> dict[str, Any]:
        try:
            return self.sessions[sid]
        except KeyError:
            raise FakeStripeError(
                404, f"No such checkout.session: '{sid}'", param="session"
            ) from None

    def complete_session(self, sid: str, *, paid: bool = True) -> SignedEvent:
        """The buyer finishes Checkout: by card (paid), or with a delayed method (unpaid)."""
        session = self._open(sid)
        intent = self._new_payment_intent(session, status="succeeded" if paid else "processing")
        session.update(
            status="complete",
            payment_status="paid" if paid else "unpaid",
            payment_intent=intent["id"],
            url=None,
            customer_details={
                "address": None,
                "email": session["customer_email"] or "buyer@example.com",
                "name": "Jenny Rosen",
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            },
        )
        if paid:
            self._new_charge(intent)
        return self.emit("checkout.session.completed", session)

    def succeed_async_payment(self, sid: str) -> SignedEvent:
        session, intent = self._delayed(sid)
        intent.update(status="succeeded", amount_received=intent["amount"])
        self._new_charge(intent)
        session["payment_status"] = "paid"
        return self.emit("checkout.session.async_payment_succeeded", session)

    def fail_async_payment(self, sid: str) -> SignedEvent:
        session, intent = self._delayed(sid)
        intent["status"] = "requires_payment_method"
        return self.emit("checkout.session.async_payment_failed", session)

    def expire_session(self, sid: str) -> SignedEvent:
        session = self._open(sid)
        session.update(status="expired", url=None)
        return self.emit("checkout.session.expired", session)

    def refund(self, sid: str, amount: int | None = None) -> SignedEvent:
        """Refund the session's charge, in full or by `amount` minor units."""
        charge = self._charge_of(sid)
        left = charge["amount"] - charge["amount_refunded"]
        amount = left if amount is None else amount
        if not 0 < amount <= left:
            raise FakeStripeError(
                400, f"Refund amount must be between 1 and {left}.", param="amount"
            )
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        refund = refund_object(charge, amount=amount, created=self.clock())
        self.refunds[refund["id"]] = refund
        return self.emit("charge.refunded", charge, request_id=new_id("req"))

    def fail_refund(self, sid: str) -> SignedEvent:
        """The bank returns the session's latest refund: Stripe marks it `failed`, gives the
        amount back to the charge and sends `refund.failed`
        (docs.stripe.com/refunds#failed-refunds).
        """
        charge = self._charge_of(sid)
        mine = [r for r in self.refunds.values() if r["charge"] == charge["id"]]
        if not mine or mine[-1]["status"] != "succeeded":
            raise FakeStripeError(400, f"{sid} has no refund that could fail.")
        refund = mine[-1]
        refund.update(status="failed", failure_reason="expired_or_canceled_card")
        charge["amount_refunded"] -= refund["amount"]
        charge["refunded"] = False
        return self.emit("refund.failed", refund)

    def payment_link_session(self, client_reference_id: str, amount: int = 100) -> dict[str, Any]:
        """A session someone opens from one of the account's Payment Links with
        `?client_reference_id=...` in the URL: any value, and none of our metadata."""
        return self.create_session(
            {
                "mode": "payment",
                "line_items": [
                    {
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": str(amount),
                            "product_data": {"name": "Tip jar"},
                        },
                        "quantity": "1",
                    }
                ],
                "client_reference_id": client_reference_id,
                "success_url": "https://shop.example/thanks",
            }
        )

    def dispute(self, sid: str, reason: str = "fraudulent") -> SignedEvent:
        charge = self._charge_of(sid)
        charge["disputed"] = True
        dispute = dispute_object(
            charge, reason=reason, created=self.clock(), livemode=self.livemode
        )
        self.disputes[dispute["id"]] = dispute
        return self.emit("charge.dispute.created", dispute)

    def close_dispute(self, sid: str, status: str = "won") -> SignedEvent:
        """The card network decides the session's dispute: `won` or `lost`."""
        charge = self._charge_of(sid)
        found = [d for d in self.disputes.values() if d["charge"] == charge["id"]]
        if not found or found[-1]["status"] != "needs_response":
            raise FakeStripeError(400, f"{sid} has no open dispute.")
        found[-1]["status"] = status
        return self.emit("charge.dispute.closed", found[-1])

    def _open(self, sid: str) -> dict[str, Any]:
        session = self.session(sid)
        if session["status"] != "open":
            raise FakeStripeError(
                400, f"Only Checkout Sessions with a status of `open` can be changed ({sid})."
            )
        return session

    def _delayed(self, sid: str) -> tuple[dict[str, Any], dict[str, Any]]:
        session = self.session(sid)
        intent = self.payment_intents.get(session["payment_intent"] or "")
        if intent is None or intent["status"] != "processing":
            raise FakeStripeError(400, f"{sid} has no delayed payment in progress.")
        return session, intent

    def _charge_of(self, sid: str) -> dict[str, Any]:
        intent = self.payment_intents.get(self.session(sid)["payment_intent"] or "")
        if intent is None or intent["latest_charge"] is None:
            raise FakeStripeError(400, f"{sid} has no successful charge to refund or dispute.")
        return self.charges[intent["latest_charge"]]

    def _new_payment_intent(self, session: dict[str, Any], *, status: str) -> dict[str, Any]:
        intent = payment_intent_object(
            amount=session["amount_total"],
            currency=session["currency"],
            metadata=dict(self._intent_metadata[session["id"]]),
            status=status,
            created=self.clock(),
            livemode=self.livemode,
        )
        self.payment_intents[intent["id"]] = intent
        return intent

    def _new_charge(self, intent: dict[str, Any]) -> dict[str, Any]:
        charge = charge_object(intent, created=self.clock(), livemode=self.livemode)
        self.charges[charge["id"]] = charge
        intent.update(latest_charge=charge["id"], amount_received=intent["amount"])
        return charge
