"""A stateful fake of the slice of Stripe's API the gateway uses, plus signed webhooks.

It speaks real HTTP (a Starlette app: in process through `FakeStripe.transport()`, or under
uvicorn for a demo: `python -m sandbox.stripe.api --port 12111`) and accepts what the
`stripe` SDK really sends: form-encoded bodies in bracket (deepObject) notation, a Bearer
key, an Idempotency-Key on every POST. Objects are shaped like Stripe's current fixtures and
are checked against Stripe's OpenAPI schemas by tests/sandbox/test_stripe_fake.py.

API: `POST /v1/checkout/sessions`, `GET /v1/checkout/sessions/{id}`,
`POST /v1/checkout/sessions/{id}/expire`, `GET /v1/payment_intents/{id}`, `GET /v1/charges/{id}`.
Demo controls (each emits a signed event and POSTs it to `webhook_url` if one is set):
`POST /_fake/sessions/{id}/{complete|complete_unpaid|async_succeeded|async_failed|expire|
refund|dispute}` (`refund?amount=N` for a partial refund), `POST /_fake/outage?status=500`
(empty status ends the outage) and a hosted payment page at `GET /pay/{id}`.

The account (objects and events) is `StripeState` in sandbox.stripe.state; this
module serves it over HTTP. The provider contract harness is in sandbox.stripe.harness.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.stripe.state import FakeStripeError, SignedEvent, StripeState

logger = logging.getLogger(__name__)

DEFAULT_API_KEY = "sk_test_fake_gateway"
DEFAULT_WEBHOOK_SECRET = "whsec_fake_gateway_secret"  # noqa: S105 (the fake's own test secret)


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


class FakeStripe(StripeState):
    """The fake's state (`StripeState`) served as a Starlette app (`.app`)."""

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
        super().__init__(
            api_key=api_key, webhook_secret=webhook_secret, public_url=public_url, clock=clock
        )
        self.webhook_url = webhook_url
        self.webhook_transport = webhook_transport
        self.requests: list[RecordedRequest] = []
        # Every API answer as (request, status, JSON body), for contract checks.
        self.exchanges: list[tuple[RecordedRequest, int, dict[str, Any]]] = []
        # Outage switches: answer API calls with `fail_status` (the next `fail_remaining`
        # ones, or all while it is None), or refuse connections altogether.
        self.fail_status: int | None = None
        self.fail_remaining: int | None = None
        self.unreachable = False
        self._idempotent: dict[str, tuple[str, bytes]] = {}
        self.app = Starlette(
            routes=[
                Route("/v1/checkout/sessions", self._create_session, methods=["POST"]),
                Route("/v1/checkout/sessions", self._list_sessions, methods=["GET"]),
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

    async def _list_sessions(self, request: Request) -> Response:
        # `checkout-gateway check-config` pings with `?limit=1`: a harmless authenticated read.
        raw = request.query_params.get("limit", "10")
        limit = int(raw) if raw.isdigit() else 10
        listed = list(reversed(self.sessions.values()))[: max(1, min(limit, 100))]

        def page(_: dict[str, Any]) -> dict[str, Any]:
            return {
                "object": "list",
                "data": listed,
                "has_more": len(self.sessions) > len(listed),
                "url": "/v1/checkout/sessions",
            }

        return await self._api(request, page)

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
