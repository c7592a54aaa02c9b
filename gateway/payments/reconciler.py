"""The reconciler: asks each provider about orders its webhooks left unfinished.

A paid order whose webhook was lost (BTCPay's retry queue dies with a restart, Stripe gives
up after three days, a mis-pointed endpoint, legacy BTCPay never notifies a late payment)
would otherwise stay `created` forever. Each pass (the schedule lives in `schedule`):

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

from config.settings import Settings
from gateway.db.models import Order
from gateway.ops import metrics
from gateway.payments.apply import Applier, Result
from gateway.payments.schedule import OPEN, Schedule
from providers.base import PaymentProvider
from providers.errors import ProviderRejected, ProviderUnavailable
from providers.events import (
    ActionableEvent,
    Ignored,
    PaymentFailed,
    PaymentPending,
    ProviderName,
)

log = logging.getLogger(__name__)


async def _poll(order: Order, provider: PaymentProvider) -> ActionableEvent | None:
    """The provider's answer about the order, if it is one to apply to this order."""
    assert order.provider_ref is not None  # the schedule only has orders with one
    event = await provider.fetch_status(order.provider_ref)
    if event is None or isinstance(event, Ignored):
        return None
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
        return None
    return event


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
        self.schedule = Schedule(
            settings.reconcile,
            stuck_after_minutes=settings.reconcile_after_minutes,
            providers=providers,
        )

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
        for order in await self.schedule.due(now):
            if order.provider in down:
                continue
            provider = self._provider(order.provider)
            if provider is None or not await self.schedule.claim(order, now):
                continue
            try:
                await self._reconcile(order, provider, now, report)
            except ProviderUnavailable as exc:
                # One outage, one back-off: the rest of this provider's orders wait too.
                down.add(order.provider)
                report.unavailable.append(order.provider)
                await self.schedule.back_off(order, now)
                log.warning(
                    "reconciler: %s unavailable (%s); backing off",
                    order.provider,
                    exc,
                    extra={"provider": order.provider, "order_id": order.id},
                )
            except ProviderRejected as exc:
                report.errors += 1
                await self.schedule.again_later(order, now)
                log.warning(
                    "reconciler: %s refused the status of order %s: %s",
                    order.provider,
                    order.id,
                    exc,
                    extra={"provider": order.provider, "order_id": order.id},
                )
        report.expired += await self.schedule.fail_without_checkout(now)
        outcome = "error" if report.unavailable or report.errors else "ok"
        metrics.RECONCILER_PASSES.labels(outcome).inc()
        return report

    def _provider(self, name: str) -> PaymentProvider | None:
        try:
            return self.providers.get(ProviderName(name))
        except ValueError:
            return None

    async def _reconcile(
        self, order: Order, provider: PaymentProvider, now: datetime, report: PassReport
    ) -> None:
        report.polled += 1
        event = await _poll(order, provider)
        if event is not None:
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
            fresh.status in OPEN
            and not paying
            and order.created_at < now - timedelta(hours=self.conf.horizon_hours)
        ):
            await self._expire(fresh, report)
            return
        await self.schedule.again_later(fresh, now)

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
        await self.schedule.done(order)
