"""A stateful fake BTCPay Server: Greenfield invoices + webhooks, and the legacy BitPay API.

Use it in-process through `httpx.ASGITransport(app=fake.app)` (Greenfield), or as a real
server on 127.0.0.1 (`FakeServerThread`, needed by `btcpay-python`, which speaks
`requests`), or for a demo: `python -m sandbox.btcpay.server --port 14142`.

The store's state and controls are `BTCPayState` (sandbox.btcpay.state), the JSON
shapes are in sandbox.btcpay.payloads and the provider contract harnesses in
sandbox.btcpay.harness. The shapes are checked against the vendored OpenAPI spec in
tests/sandbox/test_btcpay_fake.py.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import logging
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.btcpay.payloads import (
    Delivery,
    FakeInvoice,
    new_id,
    sin_from_public_key,
    verify_bitid,
)
from sandbox.btcpay.state import BTCPayState

log = logging.getLogger(__name__)

_SPEED_POLICIES = ("HighSpeed", "MediumSpeed", "LowMediumSpeed", "LowSpeed")


@dataclass
class FakeBTCPay(BTCPayState):
    """The fake server's state (`BTCPayState`), its controls, and its Starlette `app`."""

    def __post_init__(self) -> None:
        self.app = self._build_app()

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

    # -- HTTP ----------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/stores/{store_id}/invoices", self._gf_create, methods=["POST"]),
                Route("/api/v1/stores/{store_id}/invoices", self._gf_list, methods=["GET"]),
                Route(
                    "/api/v1/stores/{store_id}/invoices/{invoice_id}/payment-methods",
                    self._gf_payment_methods,
                    methods=["GET"],
                ),
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

    async def _gf_list(self, request: Request) -> Response:
        """`GET .../invoices?orderId=a&orderId=b` (operation `Invoices_GetInvoices` in BTCPay's
        own swagger.template.invoices.json, vendored in tests/specs/btcpay: `orderId` is a
        repeatable query parameter; `take` bounds the page). Listed newest first here.
        `checkout-gateway check-config` pings with `?take=1` (needs only canviewinvoices)."""
        if (early := await self._gate(request)) or (early := self._gf_auth(request)):
            return early
        self.received.append(("GET", str(request.url.path) + "?" + request.url.query, None))
        wanted = set(request.query_params.getlist("orderId"))
        found = [
            inv.greenfield(self._base())
            # Insertion order reversed: newest first even within one clock tick.
            for inv in reversed(list(self.invoices.values()))
            if not wanted or inv.metadata.get("orderId") in wanted
        ]
        raw = request.query_params.get("take", "")
        return JSONResponse(found[: int(raw)] if raw.isdigit() else found)

    async def _gf_payment_methods(self, request: Request) -> Response:
        """`GET .../invoices/{id}/payment-methods` with `payments[].status` per payment
        (BTCPay `InvoicePaymentMethodDataModel`; accounted payments only by default)."""
        if (early := await self._gate(request)) or (early := self._gf_auth(request)):
            return early
        self.received.append(("GET", request.url.path, None))
        invoice = self.invoices.get(request.path_params["invoice_id"])
        if invoice is None:
            return JSONResponse(
                {"code": "invoice-not-found", "message": "The invoice was not found"},
                status_code=404,
            )
        return JSONResponse(invoice.payment_methods())

    async def _legacy_pair(self, request: Request) -> Response:
        if early := await self._gate(request):
            return early
        body = await request.json()
        code = body.get("pairingCode") if isinstance(body, dict) else None
        client_id = body.get("id") if isinstance(body, dict) else None
        if code not in self.pairing_codes or not isinstance(client_id, str):
            return JSONResponse({"error": "The specified pairingCode is not found"}, 404)
        self.pairing_codes.discard(code)
        token = new_id(44)
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
        self.received.append(("GET", request.url.path, None))
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
        # `?deliver=0` changes the invoice only; `checkout-gateway simulate --sandbox` then
        # sends its own signed webhook.
        deliver = request.query_params.get("deliver") != "0"
        if deliver:
            await self.post_deliveries(deliveries)
        invoice = self.invoices[invoice_id]
        if deliver and invoice.notification_url:
            for status in legacy_ipn_statuses(deliveries):
                await self._post_ipn(invoice, status)
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(f"/i/{invoice_id}", status_code=303)
        return JSONResponse({"deliveries": [d.event_type for d in deliveries]})

    async def _post_ipn(self, invoice: FakeInvoice, status: str | None) -> None:
        assert invoice.notification_url is not None
        body = self.legacy_ipn(invoice.id, status=status)
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                await client.post(invoice.notification_url, content=body)
        except httpx.HTTPError as exc:
            log.warning("fake btcpay: IPN delivery failed: %s", exc)


# Greenfield webhook type -> legacy IPN `status` override, for the IPNs BTCPay sends to an
# invoice created with `fullNotifications: true` (what the gateway sends).
# BitpayIPNSender.StartAsync (BTCPayServer/Plugins/Bitpay/BitpayIPNSender.cs): full
# notifications fire on Expired, PaidInFull, MarkedInvalid, MarkedCompleted,
# FailedToConfirm, Completed, ExpiredPaidPartial, and every invoice gets Confirmed; the
# status is forced to "paid" for PaidInFull and "confirmed" for Confirmed. A late payment
# raises only ReceivedPayment/PaidAfterExpiration/PaymentSettled, none of which is in that
# list: **no IPN after expiry** (issue 8 item 12). Refunds send none either.
_LEGACY_IPN = {
    "InvoiceExpired": None,
    "InvoiceExpiredPaidPartial": None,
    "InvoiceProcessing": "paid",
    "InvoiceInvalid": None,
}


def legacy_ipn_statuses(deliveries: list[Delivery]) -> list[str | None]:
    """The IPNs (as `status` overrides) real BTCPay would POST for these webhook events."""
    out: list[str | None] = []
    for delivery in deliveries:
        if delivery.event_type == "InvoiceSettled":
            manual = b'"manuallyMarked": true' in delivery.body
            out.append(None if manual else "confirmed")
        elif delivery.event_type in _LEGACY_IPN:
            out.append(_LEGACY_IPN[delivery.event_type])
    return out


_ACTIONS = {
    "pay": FakeBTCPay.pay_in_full,
    "pay-unconfirmed": FakeBTCPay.receive_full_payment,
    "confirm": FakeBTCPay.confirm,
    "pay-partial": FakeBTCPay.pay_partially,
    "overpay": FakeBTCPay.overpay,
    "expire": FakeBTCPay.expire,
    "pay-late": FakeBTCPay.pay_after_expiry,
    "pay-late-unconfirmed": FakeBTCPay.pay_late_unconfirmed,
    "pay-late-instant": FakeBTCPay.pay_late_instant,
    "refund": FakeBTCPay.refund,
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
