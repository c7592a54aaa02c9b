"""The reconciler's schedule, kept on the orders themselves (`recheck_at`, `recheck_failures`):
which orders are due, claiming one, and when to ask about it again.

A claim is one conditional UPDATE (`recheck_at` pushed one lease ahead where it is NULL or
due): of several processes on one database exactly one wins the order, the others skip it,
and a crashed owner's lease simply runs out.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from tortoise.expressions import Q

from config.settings import ReconcileSettings
from gateway.db.models import Order, OrderStatus
from providers.events import ProviderName

OPEN = (OrderStatus.CREATED, OrderStatus.PENDING)
# Providers where money can arrive after the checkout failed (an expired BTCPay invoice
# still has its address); an expired Stripe session can no longer be paid.
_LATE_PAYMENTS = (ProviderName.BTCPAY.value,)


def _due(now: datetime) -> Q:
    return Q(recheck_at__isnull=True) | Q(recheck_at__lte=now)


class Schedule:
    def __init__(
        self,
        conf: ReconcileSettings,
        *,
        stuck_after_minutes: float,
        providers: Collection[ProviderName],
    ) -> None:
        self.conf = conf
        self.stuck_after = timedelta(minutes=stuck_after_minutes)
        self.providers = providers

    async def due(self, now: datetime) -> list[Order]:
        """The next batch of orders to ask their provider about, most overdue first."""
        horizon_start = now - timedelta(hours=self.conf.horizon_hours)
        open_and_old = Q(status__in=OPEN, created_at__lte=now - self.stuck_after)
        # Late crypto money (legacy BTCPay never notifies it; instant payments race PaidLate),
        # and orders waiting for a human, who may decide in BTCPay itself (marking the invoice
        # settled) with a webhook that can be lost like any other.
        failed_recently = Q(
            status__in=[OrderStatus.FAILED, OrderStatus.NEEDS_REVIEW],
            created_at__gte=horizon_start,
            provider__in=_LATE_PAYMENTS,
        )
        flagged = Q(status__in=[*OPEN, OrderStatus.FAILED], recheck_at__lte=now)
        return (
            await Order.filter(
                open_and_old | failed_recently | flagged,
                _due(now),
                provider_ref__isnull=False,
                provider__in=[p.value for p in self.providers],
            )
            .order_by("recheck_at", "created_at")
            .limit(self.conf.batch_size)
        )

    async def claim(self, order: Order, now: datetime) -> bool:
        """Take the order for one lease; False if another process has it."""
        lease = now + timedelta(seconds=self.conf.lease_seconds)
        won = await Order.filter(id=order.id).filter(_due(now)).update(recheck_at=lease)
        return won == 1

    async def again_later(self, order: Order, now: datetime) -> None:
        # Young orders are asked often, old ones rarely: a quarter of the order's age,
        # between one interval and the maximum back-off.
        age = (now - order.created_at).total_seconds()
        pause = min(self.conf.max_backoff_seconds, max(self.conf.interval_seconds, age / 4))
        await Order.filter(id=order.id).update(
            recheck_at=now + timedelta(seconds=pause), recheck_failures=0
        )

    async def back_off(self, order: Order, now: datetime) -> None:
        """The provider is down: wait exponentially longer for each failure in a row."""
        failures = order.recheck_failures + 1
        pause = min(self.conf.max_backoff_seconds, self.conf.interval_seconds * 2**failures)
        await Order.filter(id=order.id).update(
            recheck_at=now + timedelta(seconds=pause), recheck_failures=failures
        )

    async def done(self, order: Order) -> None:
        await Order.filter(id=order.id).update(recheck_at=None, recheck_failures=0)

    async def fail_without_checkout(self, now: datetime) -> list[str]:
        """Orders whose checkout was never created (the provider was down and the buyer did
        not retry) cannot have been paid: past the horizon they end failed, no poll needed."""
        horizon_start = now - timedelta(hours=self.conf.horizon_hours)
        stale = Order.filter(
            status=OrderStatus.CREATED,
            provider_ref__isnull=True,
            checkout_url__isnull=True,
            created_at__lt=horizon_start,
        )
        ids = [str(order.id) for order in await stale.only("id")]
        if ids:
            note = (
                f"failed: no checkout was created within the {self.conf.horizon_hours:g} h horizon"
            )
            await Order.filter(id__in=ids, status=OrderStatus.CREATED).update(
                status=OrderStatus.FAILED, notes=note
            )
        return ids


async def recheck_soon(
    provider: ProviderName, provider_ref: str | None, delay_seconds: float
) -> bool:
    """Bring the reconciler's next look at the order of `provider_ref` forward to
    `delay_seconds` from now (never later than it already was). True if an order matched."""
    if not provider_ref:
        return False
    when = datetime.now(UTC) + timedelta(seconds=delay_seconds)
    changed = (
        await Order.filter(provider=provider.value, provider_ref=provider_ref)
        .filter(Q(recheck_at__isnull=True) | Q(recheck_at__gt=when))
        .update(recheck_at=when, recheck_failures=0)
    )
    return changed > 0
