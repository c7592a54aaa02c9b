"""The checks that stop an event from changing an order it does not belong to, or settling
one it does not pay for. A failed check parks the event (and, for money on the order's own
checkout, the order) for review; nothing is issued.
"""

from __future__ import annotations

from config.catalog import Catalog
from gateway.db.models import Order, OrderStatus
from providers.events import ActionableEvent, PaymentReinstated, PaymentReversed, PaymentSettled

# Events that name the payment (its payment_ref), not the checkout.
PAYMENT_EVENTS = (PaymentReversed, PaymentReinstated)


def binding_problem(order: Order, event: ActionableEvent, kind: str) -> str | None:
    """Why `event` (of `kind`) is not about this order's own checkout or payment, or None."""
    if order.provider != event.provider.value:
        return f"order was placed with {order.provider}, not {event.provider}"
    if isinstance(event, PAYMENT_EVENTS):
        return _payment_problem(order, event, kind)
    if order.provider_ref is not None and event.provider_ref != order.provider_ref:
        return f"event is for {event.provider_ref}, order's checkout is {order.provider_ref}"
    return None


def _payment_problem(
    order: Order, event: PaymentReversed | PaymentReinstated, kind: str
) -> str | None:
    """A reversal or reinstatement applies only to the payment that settled the order."""
    if order.payment_ref is None and order.status != OrderStatus.SETTLED:
        # A refund delivered before the settlement (Stripe does not order events):
        # accepted when the provider named this order from data only we set (Stripe
        # payment intent metadata), so the late settlement finds it reversed. Never a
        # reinstatement: that would settle an order that has no license.
        if isinstance(event, PaymentReversed) and event.order_id == order.id:
            return None
    elif event.payment_ref is not None and event.payment_ref == order.payment_ref:
        return None
    return (
        f"{kind} of payment {event.payment_ref}, but the order was "
        f"settled by {order.payment_ref or 'an unknown payment'}"
    )


def settlement_problem(catalog: Catalog, order: Order, event: PaymentSettled) -> str | None:
    """Why this money does not settle this order (currency, amount, product), or None.
    Overpayment still settles."""
    if event.currency.upper() != order.currency:
        return f"currency {event.currency} does not match order currency {order.currency}"
    if event.amount_minor < order.amount_minor:
        return (
            f"paid {event.amount_minor} {event.currency} minor units, order is {order.amount_minor}"
        )
    if catalog.get(order.product_id) is None:
        # Entitlements come from the catalog; without them a human decides what to issue.
        return f"product {order.product_id} is no longer in the catalog"
    return None
