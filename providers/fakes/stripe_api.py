"""A stateful fake of the slice of Stripe's API the gateway uses, plus signed webhooks.

It speaks real HTTP (a Starlette app: in process through `FakeStripe.transport()`, or under
uvicorn for a demo: `python -m providers.fakes.stripe_api --port 12111`) and accepts what the
`stripe` SDK really sends: form-encoded bodies in bracket (deepObject) notation, a Bearer
key, an Idempotency-Key on every POST. Objects are shaped like Stripe's current fixtures and
are checked against Stripe's OpenAPI schemas by tests/test_stripe_fake_contract.py.

API: `POST /v1/checkout/sessions`, `GET /v1/checkout/sessions/{id}`,
`POST /v1/checkout/sessions/{id}/expire`, `GET /v1/payment_intents/{id}`, `GET /v1/charges/{id}`.
Demo controls (each emits a signed event and POSTs it to `webhook_url` if one is set):
`POST /_fake/sessions/{id}/{complete|complete_unpaid|async_succeeded|async_failed|expire|
refund|dispute}` (`refund?amount=N` for a partial refund), `POST /_fake/outage?status=500`
(empty status ends the outage) and a hosted payment page at `GET /pay/{id}`.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import html
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import stripe
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from config.settings import StripeSettings
from providers.events import ProviderName
from providers.stripe_provider import StripeProvider

logger = logging.getLogger(__name__)

API_VERSION = stripe._api_version._ApiVersion.CURRENT
# Stripe: amounts in these currencies must end in 0 (docs.stripe.com/currencies).
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
DEFAULT_API_KEY = "sk_test_fake_gateway"
DEFAULT_WEBHOOK_SECRET = "whsec_fake_gateway_secret"  # noqa: S105 (the fake's own test secret)


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


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One API call as the fake received it; `params` is the decoded form body."""

    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, Any]


def decode_form(body: bytes) -> dict[str, Any]:
    """Decode Stripe's bracket form (`a[b][0][c]=v`) into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head, *(p.rstrip("]") for p in rest.split("["))] if rest else [head]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key} conflicts with a scalar value")
        if isinstance(node.get(parts[-1]), dict):
            raise ValueError(f"{key} conflicts with nested values")
        node[parts[-1]] = value
    result: dict[str, Any] = _listify(root)
    return result


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class FakeStripe:
    """The fake's state and its Starlette app (`.app`)."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        webhook_url: str | None = None,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        public_url: str = "http://127.0.0.1:12111",
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.webhook_transport = webhook_transport
        self.public_url = public_url.rstrip("/")
        self.clock = clock or (lambda: int(time.time()))
        self.livemode = api_key.startswith("sk_live_")
        self.sessions: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.events: list[SignedEvent] = []
        self.requests: list[RecordedRequest] = []
        # Every API answer as (request, status, JSON body), for contract checks.
        self.exchanges: list[tuple[RecordedRequest, int, dict[str, Any]]] = []
        # Outage switches: answer API calls with `fail_status` (the next `fail_remaining`
        # ones, or all while it is None), or refuse connections altogether.
        self.fail_status: int | None = None
        self.fail_remaining: int | None = None
        self.unreachable = False
        self._idempotent: dict[str, tuple[str, bytes]] = {}
        # payment_intent_data.metadata, copied onto the payment intent when one is created.
        self._intent_metadata: dict[str, dict[str, str]] = {}
        self.app = Starlette(
            routes=[
                Route("/v1/checkout/sessions", self._create_session, methods=["POST"]),
                Route("/v1/checkout/sessions/{sid}", self._get_session, methods=["GET"]),
                Route("/v1/checkout/sessions/{sid}/expire", self._api_expire, methods=["POST"]),
                Route("/v1/payment_intents/{pid}", self._get_payment_intent, methods=["GET"]),
                Route("/v1/charges/{cid}", self._get_charge, methods=["GET"]),
                Route("/_fake/sessions/{sid}/{action}", self._control, methods=["POST"]),
                Route("/_fake/outage", self._outage, methods=["POST"]),
                Route("/pay/{sid}", self._pay_page, methods=["GET", "POST"]),
            ]
        )

    # -- wiring -------------------------------------------------------------------------

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport into this fake that honours the `unreachable` switch."""
        return _FakeTransport(self)

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
        event = {
            "id": _new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.clock(),
            "data": {"object": copy.deepcopy(obj)},
            "livemode": self.livemode,
            "pending_webhooks": 1,
            "request": {"id": request_id, "idempotency_key": None},
            "type": type_,
        }
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

    async def deliver(self, signed: SignedEvent) -> int | None:
        """POST the event to `webhook_url` like Stripe does; the status, or None if no URL."""
        if self.webhook_url is None:
            return None
        async with httpx.AsyncClient(transport=self.webhook_transport, timeout=30) as client:
            response = await client.post(
                self.webhook_url, content=signed.body, headers=signed.headers
            )
        logger.info("fake stripe delivered %s -> %s", signed.event["type"], response.status_code)
        return response.status_code

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
        sid = _new_id("cs_live" if self.livemode else "cs_test")
        session = _session(
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
        return self.emit("charge.refunded", charge, request_id=_new_id("req"))

    def dispute(self, sid: str, reason: str = "fraudulent") -> SignedEvent:
        charge = self._charge_of(sid)
        charge["disputed"] = True
        dispute = _dispute(charge, reason=reason, created=self.clock(), livemode=self.livemode)
        self.disputes[dispute["id"]] = dispute
        return self.emit("charge.dispute.created", dispute)

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
        intent = _payment_intent(
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
        charge = _charge(intent, created=self.clock(), livemode=self.livemode)
        self.charges[charge["id"]] = charge
        intent.update(latest_charge=charge["id"], amount_received=intent["amount"])
        return charge

    # -- HTTP ---------------------------------------------------------------------------

    async def _api(
        self, request: Request, handler: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Response:
        body = await request.body()
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            params={},
        )
        status, content, replayed = self._answer(request, body, recorded, handler)
        self.exchanges.append((recorded, status, json.loads(content)))
        headers = {"idempotent-replayed": "true"} if replayed else {}
        return Response(content, status, media_type="application/json", headers=headers)

    def _answer(
        self,
        request: Request,
        body: bytes,
        recorded: RecordedRequest,
        handler: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> tuple[int, bytes, bool]:
        try:
            recorded.params.update(decode_form(body))
        except ValueError as exc:
            return _fail(FakeStripeError(400, f"Invalid request body: {exc}"))
        self.requests.append(recorded)
        if self.fail_status is not None and self.fail_remaining != 0:
            if self.fail_remaining is not None:
                self.fail_remaining -= 1
            return _fail(FakeStripeError(self.fail_status, "Fake outage.", type_="api_error"))
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return _fail(FakeStripeError(401, "You did not provide an API key."))
        if auth.removeprefix("Bearer ") != self.api_key:
            masked = auth.removeprefix("Bearer ")[-4:]
            error = FakeStripeError(401, f"Invalid API Key provided: sk_****{masked}")
            return _fail(error)
        # Stripe replays the first response for a key and refuses the key with other params.
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        fingerprint = hashlib.sha256(request.url.path.encode() + b"\0" + body).hexdigest()
        if key and key in self._idempotent:
            seen, content = self._idempotent[key]
            if seen != fingerprint:
                error = FakeStripeError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}' if you "
                    "meant to execute a different request.",
                    type_="idempotency_error",
                )
                return _fail(error)
            return 200, content, True
        try:
            result = handler(recorded.params)
        except FakeStripeError as exc:
            return _fail(exc)
        content = json.dumps(result).encode()
        if key:
            self._idempotent[key] = (fingerprint, content)
        return 200, content, False

    async def _create_session(self, request: Request) -> Response:
        return await self._api(request, self.create_session)

    async def _get_session(self, request: Request) -> Response:
        return await self._api(request, lambda _: self.session(request.path_params["sid"]))

    async def _api_expire(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        emitted: list[SignedEvent] = []

        def expire(_: dict[str, Any]) -> dict[str, Any]:
            emitted.append(self.expire_session(sid))
            return self.session(sid)

        response = await self._api(request, expire)
        for signed in emitted:
            await self.deliver(signed)
        return response

    async def _get_payment_intent(self, request: Request) -> Response:
        def get(_: dict[str, Any]) -> dict[str, Any]:
            pid = request.path_params["pid"]
            if pid not in self.payment_intents:
                raise FakeStripeError(404, f"No such payment_intent: '{pid}'", param="intent")
            return self.payment_intents[pid]

        return await self._api(request, get)

    async def _get_charge(self, request: Request) -> Response:
        def get(_: dict[str, Any]) -> dict[str, Any]:
            cid = request.path_params["cid"]
            if cid not in self.charges:
                raise FakeStripeError(404, f"No such charge: '{cid}'", param="id")
            return self.charges[cid]

        return await self._api(request, get)

    async def _control(self, request: Request) -> Response:
        sid, action = request.path_params["sid"], request.path_params["action"]
        raw_amount = request.query_params.get("amount", "")
        if raw_amount and not raw_amount.isdigit():
            return _error_response(FakeStripeError(400, "Invalid integer.", param="amount"))
        actions: dict[str, Callable[[], SignedEvent]] = {
            "complete": lambda: self.complete_session(sid, paid=True),
            "complete_unpaid": lambda: self.complete_session(sid, paid=False),
            "async_succeeded": lambda: self.succeed_async_payment(sid),
            "async_failed": lambda: self.fail_async_payment(sid),
            "expire": lambda: self.expire_session(sid),
            "refund": lambda: self.refund(sid, int(raw_amount) if raw_amount else None),
            "dispute": lambda: self.dispute(sid),
        }
        if action not in actions:
            return _error_response(FakeStripeError(404, f"Unknown fake action {action!r}."))
        try:
            signed = actions[action]()
        except FakeStripeError as exc:
            return _error_response(exc)
        delivered = await self.deliver(signed)
        return JSONResponse({"event": signed.event, "delivered_status": delivered})

    async def _outage(self, request: Request) -> Response:
        status = request.query_params.get("status", "")
        if status and not status.isdigit():
            return _error_response(FakeStripeError(400, "Invalid integer.", param="status"))
        self.fail_status = int(status) if status else None
        self.fail_remaining = None
        return JSONResponse({"fail_status": self.fail_status})

    async def _pay_page(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        if sid not in self.sessions:
            return HTMLResponse("<h1>No such checkout session</h1>", status_code=404)
        session = self.sessions[sid]
        if request.method == "POST" and session["status"] == "open":
            form = await request.form()
            signed = self.complete_session(sid, paid=form.get("method") != "delayed")
            await self.deliver(signed)
            return RedirectResponse(session["success_url"] or "/", status_code=303)
        currency, amount = html.escape(str(session["currency"])), session["amount_total"]
        cancel = html.escape(session["cancel_url"] or "/", quote=True)
        return HTMLResponse(
            f"<h1>Fake Stripe Checkout</h1><p>{currency} {amount} (minor units), "
            f"status {html.escape(str(session['status']))}</p><form method=post>"
            "<button name=method value=card>Pay with card 4242</button> "
            "<button name=method value=delayed>Pay by bank debit (delayed)</button></form>"
            f'<p><a href="{cancel}">Cancel</a></p>'
        )


class _FakeTransport(httpx.AsyncBaseTransport):
    def __init__(self, fake: FakeStripe) -> None:
        self._fake = fake
        self._asgi = httpx.ASGITransport(app=fake.app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._fake.unreachable:
            raise httpx.ConnectError("fake stripe is unreachable", request=request)
        return await self._asgi.handle_async_request(request)

    async def aclose(self) -> None:
        await self._asgi.aclose()


def _fail(exc: FakeStripeError) -> tuple[int, bytes, bool]:
    return exc.status, json.dumps({"error": exc.body}).encode(), False


def _error_response(exc: FakeStripeError) -> Response:
    status, content, _ = _fail(exc)
    return Response(content, status, media_type="application/json")


def _session(
    *,
    sid: str,
    params: dict[str, Any],
    amount: int,
    currency: str | None,
    created: int,
    expires_at: int,
    livemode: bool,
    url: str,
) -> dict[str, Any]:
    return {
        "id": sid,
        "object": "checkout.session",
        "adaptive_pricing": None,
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": amount,
        "amount_total": amount,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": None,
        "cancel_url": params.get("cancel_url"),
        "client_reference_id": params.get("client_reference_id"),
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "created": created,
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": None,
        "customer_account": None,
        "customer_creation": "if_required",
        "customer_details": None,
        "customer_email": params.get("customer_email"),
        "discounts": [],
        "expires_at": expires_at,
        "integration_identifier": None,
        "invoice": None,
        "invoice_creation": None,
        "livemode": livemode,
        "locale": None,
        "managed_payments": None,
        "metadata": dict(params.get("metadata") or {}),
        "mode": params["mode"],
        "origin_context": None,
        # Null until the session is confirmed (API 2022-08-01 and later).
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "if_required",
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "permissions": None,
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": None,
        "subscription": None,
        "success_url": params.get("success_url"),
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted_page",
        "url": url,
        "wallet_options": None,
    }


def _payment_intent(
    *,
    amount: int,
    currency: str,
    metadata: dict[str, str],
    status: str,
    created: int,
    livemode: bool,
) -> dict[str, Any]:
    pid = _new_id("pi")
    return {
        "id": pid,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{pid}_secret_{secrets.token_hex(8)}",
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": None,
        "customer_account": None,
        "description": None,
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": livemode,
        "managed_payments": None,
        "metadata": metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": _new_id("pm"),
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


def _charge(intent: dict[str, Any], *, created: int, livemode: bool) -> dict[str, Any]:
    cid = _new_id("ch")
    return {
        "id": cid,
        "object": "charge",
        "amount": intent["amount"],
        "amount_captured": intent["amount"],
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": _new_id("txn"),
        "billing_details": {
            "address": None,
            "email": None,
            "name": "Jenny Rosen",
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": "CHECKOUT GATEWAY",
        "captured": True,
        "created": created,
        "currency": intent["currency"],
        "customer": None,
        "description": None,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": livemode,
        "metadata": {},
        "on_behalf_of": None,
        "outcome": {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": intent["id"],
        "payment_method": intent["payment_method"],
        "payment_method_details": {
            "card": {"brand": "visa", "exp_month": 8, "exp_year": 2030, "last4": "4242"},
            "type": "card",
        },
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "refunds": {
            "data": [],
            "has_more": False,
            "object": "list",
            "url": f"/v1/charges/{cid}/refunds",
        },
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }


def _dispute(
    charge: dict[str, Any], *, reason: str, created: int, livemode: bool
) -> dict[str, Any]:
    evidence_fields = (
        "access_activity_log", "billing_address", "cancellation_policy",
        "cancellation_policy_disclosure", "cancellation_rebuttal", "customer_communication",
        "customer_email_address", "customer_name", "customer_purchase_ip", "customer_signature",
        "duplicate_charge_documentation", "duplicate_charge_explanation", "duplicate_charge_id",
        "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
        "refund_refusal_explanation", "service_date", "service_documentation",
        "shipping_address", "shipping_carrier", "shipping_date", "shipping_documentation",
        "shipping_tracking_number", "uncategorized_file", "uncategorized_text",
    )  # fmt: skip
    return {
        "id": _new_id("dp"),
        "object": "dispute",
        "amount": charge["amount"],
        "balance_transactions": [],
        "charge": charge["id"],
        "created": created,
        "currency": charge["currency"],
        "enhanced_eligibility_types": [],
        "evidence": {**dict.fromkeys(evidence_fields), "enhanced_evidence": {}},
        "evidence_details": {
            "due_by": created + 7 * 24 * 3600,
            "enhanced_eligibility": {},
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": livemode,
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "payment_method_details": {
            "card": {"brand": "visa", "case_type": "chargeback", "network_reason_code": "10.4"},
            "type": "card",
        },
        "reason": reason,
        "status": "needs_response",
    }


@dataclass
class StripeContractHarness:
    """Wires a `StripeProvider` to a fresh fake for the provider contract suite."""

    fake: FakeStripe = field(default_factory=FakeStripe)
    _providers: list[StripeProvider] = field(default_factory=list)

    name = ProviderName.STRIPE

    def settings(self) -> StripeSettings:
        return StripeSettings(
            enabled=True,
            secret_key=SecretStr(self.fake.api_key),
            webhook_secret=SecretStr(self.fake.webhook_secret),
            max_network_retries=0,
        )

    def build_provider(self) -> StripeProvider:
        provider = StripeProvider(self.settings(), transport=self.fake.transport())
        self._providers.append(provider)
        return provider

    def signed_settle_webhook(
        self, order_id: str, amount_minor: int, currency: str
    ) -> tuple[bytes, dict[str, str]]:
        """A signed, paid `checkout.session.completed` for our `order_id`."""
        session = self.fake.create_session(
            {
                "mode": "payment",
                "line_items": [
                    {
                        "price_data": {
                            "currency": currency.lower(),
                            "unit_amount": str(amount_minor),
                            "product_data": {"name": "License"},
                        },
                        "quantity": "1",
                    }
                ],
                "client_reference_id": order_id,
                "metadata": {"order_id": order_id},
                "payment_intent_data": {"metadata": {"order_id": order_id}},
                "success_url": "https://shop.example/ok",
                "cancel_url": "https://shop.example/cancel",
            }
        )
        signed = self.fake.complete_session(session["id"], paid=True)
        return signed.body, dict(signed.headers)

    def signed_unrelated_webhook(self) -> tuple[bytes, dict[str, str]]:
        """A signed event type the gateway does not act on (`customer.created`)."""
        customer = {"id": _new_id("cus"), "object": "customer", "created": self.fake.clock()}
        signed = self.fake.emit("customer.created", customer)
        return signed.body, dict(signed.headers)

    async def aclose(self) -> None:
        for provider in self._providers:
            await provider.aclose()


def main(argv: list[str] | None = None) -> int:
    """Run the fake under uvicorn on 127.0.0.1 for a by-hand demo."""
    import uvicorn

    parser = argparse.ArgumentParser(description="Fake Stripe API for local demos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--webhook-secret", default=DEFAULT_WEBHOOK_SECRET)
    parser.add_argument("--webhook-url", default="http://127.0.0.1:8000/webhooks/stripe")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    fake = FakeStripe(
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        webhook_url=args.webhook_url or None,
        public_url=f"http://{args.host}:{args.port}",
    )
    logger.info(
        "fake Stripe on http://%s:%d, webhooks to %s", args.host, args.port, fake.webhook_url
    )
    uvicorn.run(fake.app, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
