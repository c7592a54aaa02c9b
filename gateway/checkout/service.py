"""`GET /purchase-options/{product}` and `POST /checkout/{provider}/{product}`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from config.catalog import Catalog, Product
from config.settings import Settings
from gateway.db.models import Order, OrderStatus
from gateway.http import json_body as json_text
from gateway.http.errors import GatewayError, InvalidRequest, NotFound, ServiceUnavailable
from gateway.http.limits import client_ip
from gateway.http.origins import check_form_origin
from gateway.mail.addresses import InvalidEmail, Problem, normalize_email
from gateway.state import AppState
from providers.base import CheckoutRequest, PaymentProvider
from providers.errors import ProviderUnavailable
from providers.events import ProviderName

log = logging.getLogger(__name__)

_JSON_HEADERS = {"content-type": "application/json"}
_NOT_FOUND = json.dumps(
    {"error": "unknown_product", "detail": "no such product"}, separators=(",", ":")
).encode()


def _product_json(product: Product) -> dict[str, Any]:
    return {
        "id": product.id,
        "name": product.name,
        "description": product.description,
        "price": product.price,
        "currency": product.currency,
        "amount_minor": product.amount_minor,
        "tier": product.tier,
        "addons": list(product.addons),
        "seats": product.seats,
    }


def render_purchase_options(
    settings: Settings, catalog: Catalog, providers: dict[ProviderName, PaymentProvider]
) -> dict[str, bytes]:
    """Every product's purchase-options body, rendered once at startup."""
    sections = {ProviderName.BTCPAY: settings.btcpay, ProviderName.STRIPE: settings.stripe}
    bodies: dict[str, bytes] = {}
    for product in catalog:
        options = [
            {
                "provider": name.value,
                "label": sections[name].label,
                "fee_hint": sections[name].fee_hint,
                "speed_hint": sections[name].speed_hint,
                "checkout_url": f"{settings.public_url}/checkout/{name.value}/{product.id}",
                "method": "POST",
            }
            # Injected providers arrive in any order; the operator's `order` decides.
            for name in sorted(providers, key=lambda n: (sections[n].order, n.value))
        ]
        doc: dict[str, Any] = {"product": _product_json(product), "options": options}
        if not options:
            doc["detail"] = "no payment provider is enabled"
        bodies[product.id] = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return bodies


async def purchase_options(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    body = state.purchase_options.get(request.path_params["product"])
    if body is None:
        return Response(_NOT_FOUND, status_code=404, headers=_JSON_HEADERS)
    return Response(body, headers=_JSON_HEADERS)


async def _read_email(request: Request) -> str:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw: Any
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        raw = form.get("email")
    else:
        try:
            data = json_text.loads(await request.body() or b"null")
        except ValueError as exc:
            raise InvalidRequest("body must be JSON or a form", field="body") from exc
        raw = data.get("email") if isinstance(data, dict) else None
    try:
        return normalize_email(raw)
    except InvalidEmail as exc:
        if exc.problem is Problem.MISSING:
            raise InvalidRequest("email: a buyer email address is required", field="email") from exc
        raise InvalidRequest(f"email: {exc}", field="email") from exc


def _wants_redirect(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


class CheckoutInProgress(GatewayError):
    """Another request holds this order's checkout claim and has not finished in time."""

    status_code = 409
    code = "checkout_in_progress"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "a checkout for this Idempotency-Key is being created; retry shortly",
            retry_after=retry_after,
        )
        self.headers = {"retry-after": str(retry_after)}


# How long one request may hold an order's checkout claim (longer than the slowest provider
# create with its retries); a crashed holder's claim simply runs out.
CLAIM_SECONDS = 90
# How long a request that lost the claim waits for the winner's checkout before answering
# 409 + Retry-After.
WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.05


async def checkout(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    check_form_origin(request, state.settings)
    await state.limiter.check("checkout_per_ip", client_ip(request))
    provider_name = request.path_params["provider"]
    provider = state.provider(provider_name)
    if provider is None:
        raise NotFound(
            f"payment provider {provider_name!r} is not enabled", code="unknown_provider"
        )
    product = state.catalog.get(request.path_params["product"])
    if product is None:
        raise NotFound("no such product", code="unknown_product")
    email = await _read_email(request)
    await state.limiter.check("checkout_per_email", email)
    idem = request.headers.get("idempotency-key")
    if idem is not None and not (0 < len(idem) <= 255):
        raise InvalidRequest("Idempotency-Key must be 1-255 characters", field="Idempotency-Key")
    scoped = scope_idempotency_key(idem, provider.name, product.id, email) if idem else None

    order, created = await _order_for(provider.name, product, email, scoped)
    if order.checkout_url is None:
        order = await _checkout_once(state, provider, product, order, claimed=created)
    assert order.checkout_url is not None
    if _wants_redirect(request):
        return RedirectResponse(order.checkout_url, status_code=303)
    if not created:
        # A replay proves nothing about who sent the first request (anyone who learns a key,
        # an email and a product can repeat them), so it never gets the status token: the
        # buyer who paid reaches the status page from the provider's redirect and the email.
        return JSONResponse(
            {
                "order_id": order.id,
                "checkout_url": order.checkout_url,
                "status_url": None,
                "replayed": True,
            }
        )
    status_url = order.status_url(state.settings.public_url)
    return JSONResponse(
        {"order_id": order.id, "checkout_url": order.checkout_url, "status_url": status_url},
        status_code=201,
    )


def scope_idempotency_key(key: str, provider: ProviderName, product: str, email: str) -> str:
    """What is stored for an Idempotency-Key: a hash of the key *and* the request it names.

    The same key with another email, product or provider is another checkout (its own
    order), so a key never reveals or reuses someone else's order; the raw key is not kept.
    """
    material = "\0".join((key, provider.value, product, email.lower()))
    return hashlib.sha256(material.encode()).hexdigest()


async def _order_for(
    provider: ProviderName, product: Product, email: str, scoped: str | None
) -> tuple[Order, bool]:
    if scoped is not None:
        existing = await Order.get_or_none(idempotency_key=scoped)
        if existing is not None:
            return existing, False
    # The order is committed before the provider is asked, so a checkout the provider
    # creates can never be paid without an order behind it. The insert carries the checkout
    # claim: whoever inserts the row is the one request that calls the provider.
    try:
        order = await Order.create(
            id="ord_" + secrets.token_hex(10),
            product_id=product.id,
            amount_minor=product.amount_minor,
            currency=product.currency,
            provider=provider.value,
            buyer_email=email,
            status=OrderStatus.CREATED,
            status_token=secrets.token_urlsafe(24),
            idempotency_key=scoped,
            checkout_lease_until=_lease(),
        )
    except IntegrityError:
        # A concurrent request with the same scoped key inserted first: it is the creator,
        # this one a replay (IntegrityError is an OperationalError, which would answer 503).
        existing = await Order.get_or_none(idempotency_key=scoped) if scoped else None
        if existing is None:
            raise
        return existing, False
    log.info("order created", extra={"order_id": order.id, "provider": provider.value})
    return order, True


def _lease() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=CLAIM_SECONDS)


async def _claim(order: Order) -> bool:
    """Take the order's checkout claim with one conditional update; True if this request won."""
    now = datetime.now(UTC)
    won = (
        await Order.filter(id=order.id, checkout_url__isnull=True)
        .filter(Q(checkout_lease_until__isnull=True) | Q(checkout_lease_until__lt=now))
        .update(checkout_lease_until=_lease())
    )
    return won == 1


async def _checkout_once(
    state: AppState, provider: PaymentProvider, product: Product, order: Order, *, claimed: bool
) -> Order:
    """The order with its checkout: created here by the claim holder, or waited for."""
    if claimed or await _claim(order):
        await _start_checkout(state, provider, product, order)
        return order
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        await asyncio.sleep(_POLL_SECONDS)
        fresh = await Order.get(id=order.id)
        if fresh.checkout_url is not None:
            return fresh
        lease = fresh.checkout_lease_until
        if (lease is None or lease < datetime.now(UTC)) and await _claim(fresh):
            # The holder failed (provider down) and let go, or died holding the claim: this
            # request tries again.
            await _start_checkout(state, provider, product, fresh)
            return fresh
    raise CheckoutInProgress(retry_after=max(1, int(WAIT_SECONDS)))


async def _start_checkout(
    state: AppState, provider: PaymentProvider, product: Product, order: Order
) -> None:
    base = state.settings.public_url
    status_url = order.status_url(base)
    req = CheckoutRequest(
        order_id=order.id,
        product_id=product.id,
        product_name=product.name,
        description=product.description,
        amount_minor=order.amount_minor,
        currency=order.currency,
        buyer_email=order.buyer_email,
        success_url=status_url,
        # The status page offers "payment cancelled, try again" instead of "waiting".
        cancel_url=f"{status_url}&cancelled=1",
        notification_url=f"{base}/webhooks/{provider.name.value}",
        idempotency_key=f"checkout:{order.id}",
        # Anything time-derived in the provider request (Stripe's expires_at) must come
        # from the order, or an idempotent retry sends a different body and is refused.
        created_at=order.created_at,
    )
    try:
        session = await provider.create_checkout(req)
    except ProviderUnavailable as exc:
        # Keep the order: if the provider did create the checkout before the failure, a
        # payment for it still finds its order; a retry with the same Idempotency-Key
        # reuses the order and the provider-side idempotency key.
        await _release(order)
        log.warning("checkout creation failed: %s", exc, extra={"order_id": order.id})
        raise ServiceUnavailable(
            f"{provider.name.value} is unreachable, try again shortly",
            code="provider_unavailable",
        ) from exc
    except BaseException:
        await _release(order)
        raise
    order.provider_ref = session.provider_ref
    order.checkout_url = session.checkout_url
    order.checkout_lease_until = None
    await order.save(
        update_fields=["provider_ref", "checkout_url", "checkout_lease_until", "updated_at"]
    )


async def _release(order: Order) -> None:
    await Order.filter(id=order.id, checkout_url__isnull=True).update(checkout_lease_until=None)
