"""`GET /purchase-options/{product}` and `POST /checkout/{provider}/{product}`."""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from email_validator import EmailNotValidError, validate_email
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from config.catalog import Catalog, Product
from config.settings import Settings
from gateway.errors import InvalidRequest, NotFound, ServiceUnavailable
from gateway.guards import EMAIL_MAX_CHARS, check_form_origin, check_length, client_ip
from gateway.models import Order, OrderStatus
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
            data = json.loads(await request.body() or b"null")
        except ValueError as exc:
            raise InvalidRequest("body must be JSON or a form", field="body") from exc
        raw = data.get("email") if isinstance(data, dict) else None
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidRequest("email: a buyer email address is required", field="email")
    check_length(raw, "email", EMAIL_MAX_CHARS)
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidRequest(f"email: {exc}", field="email") from exc


def _wants_redirect(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


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

    order, created = await _order_for(state, provider.name, product, email, idem)
    if order.checkout_url is None:
        await _start_checkout(state, provider, product, order)
    status_url = f"{state.settings.public_url}/orders/{order.id}?token={order.status_token}"
    assert order.checkout_url is not None
    if _wants_redirect(request):
        return RedirectResponse(order.checkout_url, status_code=303)
    return JSONResponse(
        {"order_id": order.id, "checkout_url": order.checkout_url, "status_url": status_url},
        status_code=201 if created else 200,
    )


async def _order_for(
    state: AppState, provider: ProviderName, product: Product, email: str, idem: str | None
) -> tuple[Order, bool]:
    if idem is not None:
        existing = await Order.get_or_none(idempotency_key=idem)
        if existing is not None:
            if (existing.provider, existing.product_id, existing.buyer_email) != (
                provider.value,
                product.id,
                email,
            ):
                raise InvalidRequest(
                    "Idempotency-Key was already used for a different checkout",
                    field="Idempotency-Key",
                    code="idempotency_conflict",
                )
            return existing, False
    # The order is committed before the provider is asked, so a checkout the provider
    # creates can never be paid without an order behind it.
    order = await Order.create(
        id="ord_" + secrets.token_hex(10),
        product_id=product.id,
        amount_minor=product.amount_minor,
        currency=product.currency,
        provider=provider.value,
        buyer_email=email,
        status=OrderStatus.CREATED,
        status_token=secrets.token_urlsafe(24),
        idempotency_key=idem,
    )
    log.info("order created", extra={"order_id": order.id, "provider": provider.value})
    return order, True


async def _start_checkout(
    state: AppState, provider: PaymentProvider, product: Product, order: Order
) -> None:
    base = state.settings.public_url
    status_url = f"{base}/orders/{order.id}?token={order.status_token}"
    req = CheckoutRequest(
        order_id=order.id,
        product_id=product.id,
        product_name=product.name,
        description=product.description,
        amount_minor=order.amount_minor,
        currency=order.currency,
        buyer_email=order.buyer_email,
        success_url=status_url,
        cancel_url=status_url,
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
        log.warning("checkout creation failed: %s", exc, extra={"order_id": order.id})
        raise ServiceUnavailable(
            f"{provider.name.value} is unreachable, try again shortly",
            code="provider_unavailable",
        ) from exc
    order.provider_ref = session.provider_ref
    order.checkout_url = session.checkout_url
    await order.save(update_fields=["provider_ref", "checkout_url", "updated_at"])
