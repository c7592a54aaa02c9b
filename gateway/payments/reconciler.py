"""The reconciler: asks each provider about orders its webhooks left unfinished.

A paid order whose webhook was lost (BTCPay's retry queue dies with a restart, Stripe gives
up after three days, a mis-pointed endpoint, legacy BTCPay never notifies a late payment)
would otherwise stay `created` forever. Each pass:

    candidates  created/pending orders older than `reconcile_after_minutes`, failed and
                needs_review BTCPay ones within the horizon (late crypto payments, a seller's
                decision in BTCPay), and any order whose `recheck_at`
                is due (flagged by a webhook the provider could not back yet)
    claim       one conditional UPDATE per order (`recheck_at` pushed one lease ahead where
                it is NULL or due): of several processes on one database exactly one wins
                the order, the others skip it; a crashed owner's lease simply runs out
    poll        `provider.fetch_status(provider_ref)`; its event goes through the same apply
                path as a webhook (keyed "reconcile:<ref>:<fact>", so the webhook for the
                same fact, if it comes after all, finds the order moved and changes nothing)
    reschedule  unchanged answers back off with the order's age; a provider outage stops
                that provider's pass and backs off exponentially
    horizon     created/pending orders older than the horizon end failed, with the reason,
                unless the provider's answer was "payment in progress"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from tortoise.expressions import Q

from config.settings import Settings
from gateway.db.models import Order, OrderStatus
from gateway.ops import metrics
from gateway.payments.apply import Applier, Result
from providers.base import PaymentProvider
from providers.errors import ProviderRejected, ProviderUnavailable
from providers.events import Ignored, PaymentFailed, PaymentPending, ProviderName

log = logging.getLogger(__name__)

_OPEN = (OrderStatus.CREATED, OrderStatus.PENDING)
# Providers where money can arrive after the checkout failed (an expired BTCPay invoice
# still has its address); an expired Stripe session can no longer be paid.
_LATE_PAYMENTS = (ProviderName.BTCPAY.value,)


@dataclass(slots=True)
class PassReport:
    """What one pass did, for the CLI and the logs."""

    polled: int = 0
    changed: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    errors: int = 0


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        providers: dict[ProviderName, PaymentProvider],
        applier: Applier,
    ) -> None:
        self.settings = settings
        self.conf = settings.reconcile
        self.providers = providers
        self.applier = applier

    async def run_forever(self, stop: asyncio.Event) -> None:
        """A pass every `interval_seconds` until `stop` is set; errors are logged, not fatal.

        The first pass comes one interval after start, when the app is serving.
        """
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.conf.interval_seconds)
            if stop.is_set():
                return
            try:
                report = await self.run_once()
            except Exception:
                # The loop must outlive a database blip; the next pass retries.
                log.exception("reconciler pass failed; retrying next interval")
                continue
            if report.polled or report.expired:
                log.info(
                    "reconciler: polled %d, changed %d, expired %d, provider down: %s",
                    report.polled,
                    len(report.changed),
                    len(report.expired),
                    ", ".join(report.unavailable) or "none",
                )

    async def run_once(self) -> PassReport:
        """One pass over every due order of every enabled provider."""
        report = PassReport()
        now = datetime.now(UTC)
        down: set[str] = set()
        for order in await self._candidates(now):
            if order.provider in down:
                continue
            provider = self._provider(order.provider)
            if provider is None or not await self._claim(order, now):
                continue
            try:
                await self._reconcile(order, provider, now, report)
            except ProviderUnavailable as exc:
                # One outage, one back-off: the rest of this provider's orders wait too.
                down.add(order.provider)
                report.unavailable.append(order.provider)
                await self._back_off(order, now)
                log.warning(
                    "reconciler: %s unavailable (%s); backing off",
                    order.provider,
                    exc,
                    extra={"provider": order.provider, "order_id": order.id},
                )
            except ProviderRejected as exc:
                report.errors += 1
                await self._reschedule(order, now)
                log.warning(
                    "reconciler: %s refused the status of order %s: %s",
                    order.provider,
                    order.id,
                    exc,
                    extra={"provider": order.provider, "order_id": order.id},
                )
        report.expired += await self._expire_without_checkout(now)
        outcome = "error" if report.unavailable or report.errors else "ok"
        metrics.RECONCILER_PASSES.labels(outcome).inc()
        return report

    async def _expire_without_checkout(self, now: datetime) -> list[str]:
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

    def _provider(self, name: str) -> PaymentProvider | None:
        try:
            return self.providers.get(ProviderName(name))
        except ValueError:
            return None

    async def _candidates(self, now: datetime) -> list[Order]:
        horizon_start = now - timedelta(hours=self.conf.horizon_hours)
        stuck_before = now - timedelta(minutes=self.settings.reconcile_after_minutes)
        due = Q(recheck_at__isnull=True) | Q(recheck_at__lte=now)
        open_and_old = Q(status__in=_OPEN, created_at__lte=stuck_before)
        # Late crypto money (legacy BTCPay never notifies it; instant payments race PaidLate),
        # and orders waiting for a human, who may decide in BTCPay itself (marking the invoice
        # settled) with a webhook that can be lost like any other.
        failed_recently = Q(
            status__in=[OrderStatus.FAILED, OrderStatus.NEEDS_REVIEW],
            created_at__gte=horizon_start,
            provider__in=_LATE_PAYMENTS,
        )
        flagged = Q(status__in=[*_OPEN, OrderStatus.FAILED], recheck_at__lte=now)
        return (
            await Order.filter(
                open_and_old | failed_recently | flagged,
                due,
                provider_ref__isnull=False,
                provider__in=[p.value for p in self.providers],
            )
            .order_by("recheck_at", "created_at")
            .limit(self.conf.batch_size)
        )

    async def _claim(self, order: Order, now: datetime) -> bool:
        lease = now + timedelta(seconds=self.conf.lease_seconds)
        won = (
            await Order.filter(id=order.id)
            .filter(Q(recheck_at__isnull=True) | Q(recheck_at__lte=now))
            .update(recheck_at=lease)
        )
        return won == 1

    async def _reconcile(
        self, order: Order, provider: PaymentProvider, now: datetime, report: PassReport
    ) -> None:
        assert order.provider_ref is not None  # filtered in _candidates
        report.polled += 1
        event = await provider.fetch_status(order.provider_ref)
        if event is not None and not isinstance(event, Ignored):
            if event.order_id is None:
                event = replace(event, order_id=order.id)
            if event.order_id != order.id:
                # The checkout names another order: never apply it to either.
                log.warning(
                    "reconciler: %s %s names order %r, not %s; skipped",
                    order.provider,
                    order.provider_ref,
                    event.order_id,
                    order.id,
                    extra={"provider": order.provider, "order_id": order.id},
                )
                event = None
        if event is not None and not isinstance(event, Ignored):
            raw = json.dumps(
                {"source": "reconciler", "provider_ref": order.provider_ref, "order": order.id}
            ).encode()
            result = await self.applier.apply(event, raw)
            if result.result is Result.APPLIED:
                report.changed.append(order.id)
                metrics.RECONCILER_REPAIRS.labels(order.provider, type(event).__name__).inc()
            if result.license_issued:
                metrics.LICENSES_ISSUED.labels("reconcile").inc()
        fresh = await Order.get(id=order.id)
        # The provider says money is on its way (an unconfirmed bitcoin payment, a bank debit
        # in flight): failing the order for its age would fail a paid order, so it is asked
        # again until the payment settles or fails.
        paying = isinstance(event, PaymentPending)
        if (
            fresh.status in _OPEN
            and not paying
            and order.created_at < now - timedelta(hours=self.conf.horizon_hours)
        ):
            await self._expire(fresh, report)
            return
        await self._reschedule(fresh, now)

    async def _expire(self, order: Order, report: PassReport) -> None:
        """Past the horizon with no final payment: failed, with the reason on the order."""
        assert order.provider_ref is not None
        hours = self.conf.horizon_hours
        event = PaymentFailed(
            provider=ProviderName(order.provider),
            provider_ref=order.provider_ref,
            order_id=order.id,
            dedupe_key=f"reconcile:{order.id}:horizon",
            occurred_at=datetime.now(UTC),
            reason=f"no final payment within the {hours:g} h reconcile horizon",
        )
        raw = json.dumps({"source": "reconciler", "horizon_hours": hours}).encode()
        result = await self.applier.apply(event, raw)
        if result.result is Result.APPLIED:
            report.expired.append(order.id)
        await Order.filter(id=order.id).update(recheck_at=None, recheck_failures=0)

    async def _reschedule(self, order: Order, now: datetime) -> None:
        # Young orders are asked often, old ones rarely: a quarter of the order's age,
        # between one interval and the maximum back-off.
        age = (now - order.created_at).total_seconds()
        pause = min(self.conf.max_backoff_seconds, max(self.conf.interval_seconds, age / 4))
        await Order.filter(id=order.id).update(
            recheck_at=now + timedelta(seconds=pause), recheck_failures=0
        )

    async def _back_off(self, order: Order, now: datetime) -> None:
        failures = order.recheck_failures + 1
        pause = min(self.conf.max_backoff_seconds, self.conf.interval_seconds * 2**failures)
        await Order.filter(id=order.id).update(
            recheck_at=now + timedelta(seconds=pause), recheck_failures=failures
        )


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
