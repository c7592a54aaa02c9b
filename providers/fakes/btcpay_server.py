"""A stateful fake BTCPay Server: Greenfield invoices + webhooks, and the legacy BitPay API.

Use it in-process through `httpx.ASGITransport(app=fake.app)` (Greenfield), or as a real
server on 127.0.0.1 (`FakeServerThread`, needed by `btcpay-python`, which speaks
`requests`), or for a demo: `python -m providers.fakes.btcpay_server --port 14142`.

Invoices move only through the controls (`pay_in_full`, `pay_partially`, `overpay`,
`expire`, `pay_after_expiry`, `mark_settled`, `mark_invalid`, `fail_to_confirm`), each
returning the webhook deliveries real BTCPay would send, byte-shaped like BTCPay's
(Newtonsoft indented camelCase JSON) and signed `BTCPay-Sig: sha256=<hex>`. The shapes are
checked against the vendored OpenAPI spec in tests/test_btcpay_fake_contract.py.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import html
import json
import logging
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from ecdsa import BadSignatureError, SECP256k1, VerifyingKey
from ecdsa.util import sigdecode_der
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from config.money import format_decimal
from config.settings import BtcpaySettings
from providers.btcpay_legacy import BTCPayLegacyProvider, pair_legacy
from providers.btcpay_provider import BTCPayProvider, sign_body

log = logging.getLogger(__name__)

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_LEGACY_STATUS = {
    "New": "new",
    "Processing": "paid",
    "Settled": "complete",
    "Expired": "expired",
    "Invalid": "invalid",
}
_LEGACY_EXCEPTION: dict[str, Any] = {
    "None": False,
    "PaidLate": "paidLater",
    "PaidPartial": "paidPartial",
    "PaidOver": "paidOver",
    "Marked": "marked",
    "Invalid": "invalid",
}
_SPEED_POLICIES = ("HighSpeed", "MediumSpeed", "LowMediumSpeed", "LowSpeed")


def _new_id(length: int = 22) -> str:
    return "".join(secrets.choice(_BASE58) for _ in range(length))


def newtonsoft_json(obj: Any) -> bytes:
    """JSON as BTCPay's Newtonsoft `Formatting.Indented` writes it: 2 spaces, UTF-8, no BOM."""
    return json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8")


def sin_from_public_key(compressed_hex: str) -> str:
    """The BitId client id (SIN) BTCPay derives from a compressed secp256k1 public key."""
    sha = hashlib.sha256(bytes.fromhex(compressed_hex)).digest()
    version = b"\x0f\x02" + hashlib.new("ripemd160", sha).digest()
    checksum = hashlib.sha256(hashlib.sha256(version).digest()).digest()[:4]
    number = int.from_bytes(version + checksum, "big")
    out = ""
    while number:
        number, rem = divmod(number, 58)
        out = _BASE58[rem] + out
    return out


def verify_bitid(message: str, identity: str, signature: str) -> bool:
    """Check btcpay-python's `X-Signature` (hex DER ECDSA-SHA256) by `X-Identity`."""
    try:
        key = VerifyingKey.from_string(bytes.fromhex(identity), curve=SECP256k1)
        return bool(
            key.verify(
                bytes.fromhex(signature),
                message.encode(),
                hashfunc=hashlib.sha256,
                sigdecode=sigdecode_der,
            )
        )
    except (BadSignatureError, ValueError, AssertionError):
        return False


@dataclass(slots=True)
class FakeInvoice:
    id: str
    store_id: str
    amount: Decimal | None
    currency: str
    metadata: dict[str, Any]
    checkout: dict[str, Any]
    created: int
    expiration: int
    status: str = "New"
    additional_status: str = "None"
    paid: Decimal = Decimal(0)
    notification_url: str | None = None

    def greenfield(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "storeId": self.store_id,
            "amount": str(self.amount if self.amount is not None else Decimal(0)),
            "paidAmount": str(self.paid),
            "currency": self.currency,
            "type": "Standard" if self.amount is not None else "TopUp",
            "checkoutLink": f"{base_url}/i/{self.id}",
            "createdTime": self.created,
            "expirationTime": self.expiration,
            "monitoringExpiration": self.expiration + 24 * 3600,
            "status": self.status,
            "additionalStatus": self.additional_status,
            "availableStatusesForManualMarking": (
                ["Settled", "Invalid"] if self.status in ("Expired", "Invalid") else []
            ),
            "archived": False,
            "metadata": self.metadata,
            # Unset options are left out: the spec puts `nullable` beside allOf-$refs, which
            # OpenAPI 3.0 validators (rightly) read as "null not allowed".
            "checkout": {k: v for k, v in self.checkout.items() if v is not None},
            "receipt": {"enabled": True},
        }

    def legacy(self, base_url: str, *, status: str | None = None) -> dict[str, Any]:
        amount = self.amount or Decimal(0)
        buyer_email = self.metadata.get("buyerEmail")
        return {
            "id": self.id,
            "url": f"{base_url}/invoice?id={self.id}",
            "posData": None,
            "status": status or _LEGACY_STATUS[self.status],
            # .NET decimals serialise as JSON numbers; float() only renders the literal.
            "price": float(amount) if amount != amount.to_integral_value() else int(amount),
            "currency": self.currency,
            "itemDesc": self.metadata.get("itemDesc"),
            "itemCode": self.metadata.get("itemCode"),
            "orderId": self.metadata.get("orderId"),
            "invoiceTime": self.created * 1000,
            "expirationTime": self.expiration * 1000,
            "currentTime": int(time.time() * 1000),
            "exceptionStatus": _LEGACY_EXCEPTION[self.additional_status],
            "buyer": {"email": buyer_email},
            "buyerFields": {"buyerEmail": buyer_email} if buyer_email else None,
            "amountPaid": str(self.paid),
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery: the exact bytes and headers BTCPay would POST."""

    event_type: str
    invoice_id: str
    delivery_id: str
    original_delivery_id: str
    body: bytes
    headers: dict[str, str]


@dataclass
class FakeBTCPay:
    """The fake server's state, its controls, and its Starlette `app`."""

    store_id: str = field(default_factory=lambda: _new_id(44))
    api_key: str = field(default_factory=lambda: secrets.token_hex(20))
    webhook_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    webhook_url: str | None = None
    base_url: str | None = None
    # Outage switches: answer every API call with this status, or after this delay.
    outage_status: int | None = None
    delay_seconds: float = 0.0
    invoices: dict[str, FakeInvoice] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    # (method, path, parsed JSON body) of every API request, for contract checks.
    received: list[tuple[str, str, Any]] = field(default_factory=list)
    pairing_codes: set[str] = field(default_factory=set)
    legacy_tokens: dict[str, str] = field(default_factory=dict)
    webhook_id: str = field(default_factory=_new_id)

    def __post_init__(self) -> None:
        self.app = self._build_app()

    # -- controls ------------------------------------------------------------------------

    def create_invoice(
        self,
        *,
        amount: Decimal | str | None,
        currency: str = "USD",
        metadata: dict[str, Any] | None = None,
        checkout: dict[str, Any] | None = None,
        notification_url: str | None = None,
    ) -> tuple[FakeInvoice, list[Delivery]]:
        now = int(time.time())
        options = {
            "speedPolicy": "MediumSpeed",
            "paymentMethods": ["BTC-CHAIN", "BTC-LN"],
            "defaultPaymentMethod": None,
            "lazyPaymentMethods": False,
            "expirationMinutes": 15,
            "monitoringMinutes": 1440,
            "paymentTolerance": 0.0,
            "redirectURL": None,
            "redirectAutomatically": False,
            "defaultLanguage": None,
        } | (checkout or {})
        invoice = FakeInvoice(
            id=_new_id(),
            store_id=self.store_id,
            amount=Decimal(amount) if amount is not None else None,
            currency=currency.upper(),
            metadata=dict(metadata or {}),
            checkout=options,
            created=now,
            expiration=now + int(Decimal(str(options["expirationMinutes"])) * 60),
            notification_url=notification_url,
        )
        self.invoices[invoice.id] = invoice
        return invoice, [self._emit(invoice, "InvoiceCreated", {})]

    def pay_in_full(self, invoice_id: str) -> list[Delivery]:
        """Full payment seen (Processing), then confirmed (Settled)."""
        inv = self.invoices[invoice_id]
        return self._pay(inv, self._due(inv), "None") + self.confirm(invoice_id)

    def receive_full_payment(self, invoice_id: str) -> list[Delivery]:
        """Full payment seen but unconfirmed: New -> Processing."""
        inv = self.invoices[invoice_id]
        return self._pay(inv, self._due(inv), "None")

    def overpay(self, invoice_id: str) -> list[Delivery]:
        inv = self.invoices[invoice_id]
        extra = self._due(inv) + Decimal("0.01")
        return self._pay(inv, extra, "PaidOver") + self.confirm(invoice_id)

    def pay_partially(self, invoice_id: str) -> list[Delivery]:
        inv = self.invoices[invoice_id]
        due = self._due(inv)
        part = (due / 2).quantize(Decimal("0.01"))
        inv.paid += part
        inv.additional_status = "PaidPartial"
        return [self._payment_event(inv, "InvoiceReceivedPayment", "Processing", False)]

    def confirm(self, invoice_id: str) -> list[Delivery]:
        inv = self.invoices[invoice_id]
        out = [self._payment_event(inv, "InvoicePaymentSettled", "Settled", False)]
        inv.status = "Settled"
        overpaid = inv.additional_status == "PaidOver"
        out.append(
            self._emit(inv, "InvoiceSettled", {"manuallyMarked": False, "overPaid": overpaid})
        )
        return out

    def expire(self, invoice_id: str) -> list[Delivery]:
        inv = self.invoices[invoice_id]
        inv.status = "Expired"
        partial = inv.additional_status == "PaidPartial"
        out = [self._emit(inv, "InvoiceExpired", {"partiallyPaid": partial})]
        if partial:
            out.append(self._emit(inv, "InvoiceExpiredPaidPartial", {}))
        return out

    def pay_after_expiry(self, invoice_id: str) -> list[Delivery]:
        """A full payment to an expired invoice: stays Expired, PaidLate, never Settled."""
        inv = self.invoices[invoice_id]
        if inv.status == "New":
            self.expire(invoice_id)
        inv.paid += self._due(inv)
        inv.additional_status = "PaidLate"
        return [
            self._payment_event(inv, "InvoiceReceivedPayment", "Processing", True),
            self._emit(inv, "InvoicePaidAfterExpiration", {}),
            self._payment_event(inv, "InvoicePaymentSettled", "Settled", True),
        ]

    def mark_settled(self, invoice_id: str) -> list[Delivery]:
        inv = self.invoices[invoice_id]
        inv.status, inv.additional_status = "Settled", "Marked"
        return [self._emit(inv, "InvoiceSettled", {"manuallyMarked": True, "overPaid": False})]

    def mark_invalid(self, invoice_id: str) -> list[Delivery]:
        inv = self.invoices[invoice_id]
        inv.status, inv.additional_status = "Invalid", "Marked"
        return [self._emit(inv, "InvoiceInvalid", {"manuallyMarked": True})]

    def fail_to_confirm(self, invoice_id: str) -> list[Delivery]:
        inv = self.invoices[invoice_id]
        inv.status, inv.additional_status = "Invalid", "None"
        return [self._emit(inv, "InvoiceInvalid", {"manuallyMarked": False})]

    def redeliver(self, delivery: Delivery) -> Delivery:
        """BTCPay's retry: a new deliveryId, same originalDeliveryId, isRedelivery true."""
        payload = json.loads(delivery.body)
        payload["deliveryId"] = _new_id()
        payload["isRedelivery"] = True
        payload["timestamp"] = int(time.time())
        return self._sign(delivery.event_type, delivery.invoice_id, payload)

    def issue_pairing_code(self) -> str:
        code = "".join(secrets.choice(_BASE58) for _ in range(7))
        self.pairing_codes.add(code)
        return code

    def legacy_ipn(self, invoice_id: str, *, status: str | None = None) -> bytes:
        """The unsigned IPN body (non-extended: the bare `data` object)."""
        return json.dumps(self.invoices[invoice_id].legacy(self._base(), status=status)).encode()

    async def post_deliveries(
        self, deliveries: list[Delivery], client: httpx.AsyncClient | None = None
    ) -> list[int]:
        """POST deliveries to `webhook_url` as BTCPay would; returns the status codes."""
        if not self.webhook_url:
            return []
        owned = client is None
        client = client or httpx.AsyncClient(timeout=10)
        codes = []
        try:
            for delivery in deliveries:
                try:
                    r = await client.post(
                        self.webhook_url, content=delivery.body, headers=delivery.headers
                    )
                    codes.append(r.status_code)
                except httpx.HTTPError as exc:
                    log.warning("fake btcpay: webhook delivery failed: %s", exc)
                    codes.append(0)
        finally:
            if owned:
                await client.aclose()
        return codes

    # -- internals -----------------------------------------------------------------------

    def _base(self) -> str:
        return (self.base_url or "http://btcpay.test").rstrip("/")

    @staticmethod
    def _due(inv: FakeInvoice) -> Decimal:
        total = inv.amount if inv.amount is not None else Decimal("1.00")
        return max(total - inv.paid, Decimal(0))

    def _pay(self, inv: FakeInvoice, value: Decimal, extra: str) -> list[Delivery]:
        inv.paid += value
        inv.status, inv.additional_status = "Processing", extra
        return [
            self._payment_event(inv, "InvoiceReceivedPayment", "Processing", False),
            self._emit(inv, "InvoiceProcessing", {"overPaid": extra == "PaidOver"}),
        ]

    def _payment_event(
        self, inv: FakeInvoice, event_type: str, payment_status: str, after_expiration: bool
    ) -> Delivery:
        payment = {
            "id": secrets.token_hex(32) + "-0",
            "receivedDate": int(time.time()),
            "value": "0.00021",
            "fee": "0",
            "status": payment_status,
            "destination": "bcrt1qfakeaddress0000000000000000000000000",
        }
        fields = {
            "afterExpiration": after_expiration,
            "paymentMethodId": "BTC-CHAIN",
            "payment": payment,
        }
        return self._emit(inv, event_type, fields)

    def _emit(self, inv: FakeInvoice, event_type: str, fields: dict[str, Any]) -> Delivery:
        delivery_id = _new_id()
        payload = {
            "deliveryId": delivery_id,
            "webhookId": self.webhook_id,
            "originalDeliveryId": delivery_id,
            "isRedelivery": False,
            "type": event_type,
            "timestamp": int(time.time()),
            **fields,
            "storeId": inv.store_id,
            "invoiceId": inv.id,
            "metadata": inv.metadata,
        }
        delivery = self._sign(event_type, inv.id, payload)
        self.deliveries.append(delivery)
        return delivery

    def _sign(self, event_type: str, invoice_id: str, payload: dict[str, Any]) -> Delivery:
        body = newtonsoft_json(payload)
        headers = {
            "content-type": "application/json; charset=utf-8",
            "btcpay-sig": sign_body(self.webhook_secret, body),
        }
        return Delivery(
            event_type=event_type,
            invoice_id=invoice_id,
            delivery_id=payload["deliveryId"],
            original_delivery_id=payload["originalDeliveryId"],
            body=body,
            headers=headers,
        )

    # -- HTTP ----------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/stores/{store_id}/invoices", self._gf_create, methods=["POST"]),
                Route(
                    "/api/v1/stores/{store_id}/invoices/{invoice_id}",
                    self._gf_get,
                    methods=["GET"],
                ),
                Route("/tokens", self._legacy_pair, methods=["POST"]),
                Route("/invoices", self._legacy_create, methods=["POST"]),
                Route("/invoices/", self._legacy_create, methods=["POST"]),
                Route("/invoices/{invoice_id}", self._legacy_get, methods=["GET"]),
                Route("/i/{invoice_id}", self._checkout_page, methods=["GET"]),
                Route("/invoice", self._checkout_page, methods=["GET"]),
                Route("/_fake/pairing-codes", self._control_pairing, methods=["POST"]),
                Route("/_fake/invoices/{invoice_id}/{action}", self._control, methods=["POST"]),
            ]
        )

    async def _gate(self, request: Request) -> Response | None:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.outage_status is not None:
            return JSONResponse(
                {"code": "outage", "message": "fake outage"}, status_code=self.outage_status
            )
        if self.base_url is None:
            self.base_url = str(request.base_url).rstrip("/")
        return None

    def _gf_auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"token {self.api_key}":
            return JSONResponse(
                {"code": "unauthenticated", "message": "Authentication is required"},
                status_code=401,
            )
        if request.path_params["store_id"] != self.store_id:
            return JSONResponse(
                {"code": "missing-permission", "message": "Insufficient API permissions"},
                status_code=403,
            )
        return None

    async def _gf_create(self, request: Request) -> Response:
        if (early := await self._gate(request)) or (early := self._gf_auth(request)):
            return early
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.received.append(("POST", request.url.path, body))
        errors = _validate_create(body)
        if errors:
            return JSONResponse(errors, status_code=422)
        assert isinstance(body, dict)
        invoice, _ = self.create_invoice(
            amount=Decimal(str(body["amount"])) if body.get("amount") is not None else None,
            currency=body.get("currency") or "USD",
            metadata=body.get("metadata") or {},
            checkout={k: v for k, v in (body.get("checkout") or {}).items() if v is not None},
        )
        return JSONResponse(invoice.greenfield(self._base()))

    async def _gf_get(self, request: Request) -> Response:
        if (early := await self._gate(request)) or (early := self._gf_auth(request)):
            return early
        self.received.append(("GET", request.url.path, None))
        invoice = self.invoices.get(request.path_params["invoice_id"])
        if invoice is None:
            return JSONResponse(
                {"code": "invoice-not-found", "message": "The invoice was not found"},
                status_code=404,
            )
        return JSONResponse(invoice.greenfield(self._base()))

    async def _legacy_pair(self, request: Request) -> Response:
        if early := await self._gate(request):
            return early
        body = await request.json()
        code = body.get("pairingCode") if isinstance(body, dict) else None
        client_id = body.get("id") if isinstance(body, dict) else None
        if code not in self.pairing_codes or not isinstance(client_id, str):
            return JSONResponse({"error": "The specified pairingCode is not found"}, 404)
        self.pairing_codes.discard(code)
        token = _new_id(44)
        self.legacy_tokens[token] = client_id
        now = int(time.time() * 1000)
        return JSONResponse(
            {
                "data": [
                    {
                        "policies": [],
                        "resource": client_id,
                        "token": token,
                        "facade": "merchant",
                        "dateCreated": now,
                        "pairingExpiration": now + 86_400_000,
                        "pairingCode": code,
                    }
                ]
            }
        )

    def _legacy_auth(self, request: Request, signed: str, token: Any) -> Response | None:
        identity = request.headers.get("x-identity", "")
        signature = request.headers.get("x-signature", "")
        if not verify_bitid(signed, identity, signature):
            return JSONResponse({"error": "Invalid signature"}, status_code=401)
        if not isinstance(token, str) or self.legacy_tokens.get(token) != sin_from_public_key(
            identity
        ):
            return JSONResponse({"error": "Invalid token"}, status_code=401)
        return None

    async def _legacy_create(self, request: Request) -> Response:
        if early := await self._gate(request):
            return early
        raw = await request.body()
        # BitId signs the URL exactly as the server sees it, plus the body.
        body = json.loads(raw) if raw else {}
        if denied := self._legacy_auth(request, str(request.url) + raw.decode(), body.get("token")):
            return denied
        self.received.append(("POST", request.url.path, body))
        try:
            price = Decimal(str(body["price"]))
        except (KeyError, InvalidOperation):
            return JSONResponse({"error": "Invalid price"}, status_code=400)
        buyer = body.get("buyer") or {}
        metadata = {
            "orderId": body.get("orderId"),
            "itemDesc": body.get("itemDesc"),
            "itemCode": body.get("itemCode"),
            "buyerEmail": buyer.get("email") or body.get("buyerEmail"),
        }
        invoice, _ = self.create_invoice(
            amount=price,
            currency=body.get("currency") or "USD",
            metadata={k: v for k, v in metadata.items() if v is not None},
            checkout={"redirectURL": body.get("redirectURL")},
            notification_url=body.get("notificationURL"),
        )
        return JSONResponse({"data": invoice.legacy(self._base())})

    async def _legacy_get(self, request: Request) -> Response:
        if early := await self._gate(request):
            return early
        signed = str(request.url)
        if denied := self._legacy_auth(request, signed, request.query_params.get("token")):
            return denied
        invoice = self.invoices.get(request.path_params["invoice_id"])
        if invoice is None:
            return JSONResponse({"error": "Object not found"}, status_code=404)
        return JSONResponse({"data": invoice.legacy(self._base())})

    async def _checkout_page(self, request: Request) -> Response:
        invoice_id = request.path_params.get("invoice_id") or request.query_params.get("id", "")
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            return HTMLResponse("<h1>Invoice not found</h1>", status_code=404)
        buttons = "".join(
            f'<form method="post" action="/_fake/invoices/{invoice.id}/{action}">'
            f"<button>{html.escape(action)}</button></form>"
            for action in _ACTIONS
        )
        amount = html.escape(f"{invoice.amount} {invoice.currency}")
        return HTMLResponse(
            f"<h1>Fake BTCPay invoice {invoice.id}</h1><p>{amount}: "
            f"{invoice.status} / {invoice.additional_status}</p>{buttons}"
        )

    async def _control_pairing(self, request: Request) -> Response:
        return JSONResponse({"pairingCode": self.issue_pairing_code()})

    async def _control(self, request: Request) -> Response:
        invoice_id = request.path_params["invoice_id"]
        action = _ACTIONS.get(request.path_params["action"])
        if invoice_id not in self.invoices or action is None:
            return JSONResponse({"error": "unknown invoice or action"}, status_code=404)
        deliveries = action(self, invoice_id)
        await self.post_deliveries(deliveries)
        invoice = self.invoices[invoice_id]
        if invoice.notification_url:
            await self._post_ipn(invoice)
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(f"/i/{invoice_id}", status_code=303)
        return JSONResponse({"deliveries": [d.event_type for d in deliveries]})

    async def _post_ipn(self, invoice: FakeInvoice) -> None:
        assert invoice.notification_url is not None
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                await client.post(invoice.notification_url, content=self.legacy_ipn(invoice.id))
        except httpx.HTTPError as exc:
            log.warning("fake btcpay: IPN delivery failed: %s", exc)


_ACTIONS = {
    "pay": FakeBTCPay.pay_in_full,
    "pay-unconfirmed": FakeBTCPay.receive_full_payment,
    "confirm": FakeBTCPay.confirm,
    "pay-partial": FakeBTCPay.pay_partially,
    "overpay": FakeBTCPay.overpay,
    "expire": FakeBTCPay.expire,
    "pay-late": FakeBTCPay.pay_after_expiry,
    "mark-settled": FakeBTCPay.mark_settled,
    "mark-invalid": FakeBTCPay.mark_invalid,
    "fail-to-confirm": FakeBTCPay.fail_to_confirm,
}


def _validate_create(body: Any) -> list[dict[str, str]]:
    """BTCPay's create-invoice validation, answered as 422 `[{"path","message"}]`."""
    if not isinstance(body, dict):
        return [{"path": "", "message": "The request body must be a JSON object"}]
    errors = []
    amount = body.get("amount")
    if amount is not None:
        try:
            value = Decimal(str(amount))
            if not value.is_finite() or value < 0:
                errors.append({"path": "amount", "message": "The amount should be 0 or more."})
        except InvalidOperation:
            errors.append({"path": "amount", "message": "The amount is not a number"})
    if body.get("currency") is not None and not isinstance(body.get("currency"), str):
        errors.append({"path": "currency", "message": "The currency is invalid"})
    if body.get("metadata") is not None and not isinstance(body.get("metadata"), dict):
        errors.append({"path": "metadata", "message": "metadata should be an object"})
    checkout = body.get("checkout") or {}
    if not isinstance(checkout, dict):
        return [*errors, {"path": "checkout", "message": "checkout should be an object"}]
    minutes = checkout.get("expirationMinutes")
    if minutes is not None and (not isinstance(minutes, int | float) or minutes * 60 < 30):
        errors.append(
            {
                "path": "checkout.expirationMinutes",
                "message": "expirationMinutes must be at least 30 seconds",
            }
        )
    speed = checkout.get("speedPolicy")
    if speed is not None and speed not in _SPEED_POLICIES:
        errors.append({"path": "checkout.speedPolicy", "message": "Invalid speed policy"})
    return errors


class FakeServerThread:
    """Serve `app` with uvicorn on 127.0.0.1 (port 0 = any free port) in a daemon thread."""

    def __init__(self, app: Starlette, port: int = 0) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.url = ""

    def start(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake BTCPay server did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


# -- harnesses for the provider contract suite (tests/test_provider_contract.py) ---------


def _checkout_metadata(order_id: str) -> dict[str, Any]:
    return {
        "orderId": order_id,
        "buyerEmail": "buyer@example.com",
        "itemDesc": "Pro license (1 seat)",
        "itemCode": "pro",
    }


class BTCPayGreenfieldHarness:
    """Greenfield provider wired to a fresh in-process fake over `httpx.ASGITransport`."""

    supports_signatures = True

    def __init__(self, *, late_payment: str = "settle") -> None:
        self.fake = FakeBTCPay(base_url="http://btcpay.test")
        self.late_payment = late_payment
        self._providers: list[BTCPayProvider] = []

    def settings(self) -> BtcpaySettings:
        return BtcpaySettings(
            enabled=True,
            url="http://btcpay.test",
            store_id=self.fake.store_id,
            api_key=self.fake.api_key,
            webhook_secret=self.fake.webhook_secret,
            late_payment=self.late_payment,
        )

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.fake.app)

    async def build_provider(self) -> BTCPayProvider:
        provider = BTCPayProvider(self.settings(), transport=self.transport())
        self._providers.append(provider)
        return provider

    async def signed_settle_webhook(
        self, order_id: str, amount_minor: int, currency: str
    ) -> tuple[bytes, dict[str, str]]:
        invoice, _ = self.fake.create_invoice(
            amount=format_decimal(amount_minor, currency),
            currency=currency,
            metadata=_checkout_metadata(order_id),
        )
        settled = [d for d in self.fake.pay_in_full(invoice.id) if d.event_type == "InvoiceSettled"]
        return settled[0].body, dict(settled[0].headers)

    def signed_unrelated_webhook(self) -> tuple[bytes, dict[str, str]]:
        _, deliveries = self.fake.create_invoice(
            amount="1.00", metadata=_checkout_metadata("unrelated")
        )
        return deliveries[0].body, dict(deliveries[0].headers)

    async def aclose(self) -> None:
        for provider in self._providers:
            await provider.aclose()


class BTCPayLegacyHarness:
    """Legacy provider paired (real `btcpay-python` over HTTP) with a fake on 127.0.0.1."""

    supports_signatures = False

    def __init__(self, *, late_payment: str = "settle", data_dir: Path | None = None) -> None:
        self.fake = FakeBTCPay()
        self.late_payment = late_payment
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="btcpay-legacy-"))
        self._server: FakeServerThread | None = None
        self._providers: list[BTCPayLegacyProvider] = []

    def settings(self) -> BtcpaySettings:
        return BtcpaySettings(
            enabled=True,
            mode="legacy",
            url=self._url(),
            late_payment=self.late_payment,
        )

    def _url(self) -> str:
        if self._server is None:
            self._server = FakeServerThread(self.fake.app)
            self.fake.base_url = self._server.start()
        return self._server.url

    async def pair(self) -> None:
        key_file, token_file = self.settings().legacy_paths(self.data_dir)
        if not key_file.exists():
            code = self.fake.issue_pairing_code()
            await asyncio.to_thread(pair_legacy, self._url(), code, key_file, token_file)

    async def build_provider(self) -> BTCPayLegacyProvider:
        await self.pair()
        provider = BTCPayLegacyProvider(self.settings(), data_dir=self.data_dir)
        self._providers.append(provider)
        return provider

    async def signed_settle_webhook(
        self, order_id: str, amount_minor: int, currency: str
    ) -> tuple[bytes, dict[str, str]]:
        invoice, _ = self.fake.create_invoice(
            amount=format_decimal(amount_minor, currency),
            currency=currency,
            metadata=_checkout_metadata(order_id),
        )
        self.fake.pay_in_full(invoice.id)
        body = self.fake.legacy_ipn(invoice.id, status="confirmed")
        return body, {"content-type": "application/json"}

    def signed_unrelated_webhook(self) -> tuple[bytes, dict[str, str]]:
        # An IPN for an unpaid invoice: the fetch says "new", so nothing to act on.
        invoice, _ = self.fake.create_invoice(
            amount="1.00", metadata=_checkout_metadata("unrelated")
        )
        return self.fake.legacy_ipn(invoice.id), {"content-type": "application/json"}

    async def aclose(self) -> None:
        for provider in self._providers:
            await provider.aclose()
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake BTCPay Server for a local demo")
    parser.add_argument("--port", type=int, default=14142)
    parser.add_argument("--store-id", default="FakeStore1111111111111111111111111111111111")
    parser.add_argument("--api-key", default="fake-btcpay-api-key")
    parser.add_argument("--webhook-secret", default="fake-btcpay-webhook-secret")
    parser.add_argument(
        "--webhook-url", default="http://127.0.0.1:8000/webhooks/btcpay", help="'' to disable"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    fake = FakeBTCPay(
        store_id=args.store_id,
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        webhook_url=args.webhook_url or None,
        base_url=f"http://127.0.0.1:{args.port}",
    )
    log.info(
        "fake BTCPay on http://127.0.0.1:%d store=%s; pairing code: %s",
        args.port,
        fake.store_id,
        fake.issue_pairing_code(),
    )
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
