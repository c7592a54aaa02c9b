"""Notice a webhook secret that no longer matches: every delivery refused for N minutes.

A rotated secret at the provider (or a typo in `.env`) makes every webhook fail its
signature check; the provider retries for days and nothing is delivered. One signature
failure is noise (anyone can POST), so the alarm waits until *every* delivery of that
provider has been refused for the whole window, then logs one error and raises a gauge.
A verified delivery clears it. State is per process; with several workers, the gauge is
the max over them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from config.settings import env_name
from gateway.ops import metrics

log = logging.getLogger(__name__)


class SignatureAlarm:
    def __init__(self, minutes: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = minutes * 60
        self.clock = clock
        self._failing_since: dict[str, float] = {}
        self._raised: set[str] = set()

    def verified(self, provider: str) -> None:
        self._failing_since.pop(provider, None)
        if provider in self._raised:
            self._raised.discard(provider)
            metrics.WEBHOOK_SIGNATURE_FAILING.labels(provider).set(0)
            log.info("%s webhooks verify again", provider, extra={"provider": provider})

    def refused(self, provider: str) -> None:
        now = self.clock()
        since = self._failing_since.setdefault(provider, now)
        if provider in self._raised or now - since < self.window:
            return
        self._raised.add(provider)
        metrics.WEBHOOK_SIGNATURE_FAILING.labels(provider).set(1)
        log.error(
            "every %s webhook for the last %d minutes failed its signature check: "
            "does %s match the secret configured at %s?",
            provider,
            round(self.window / 60),
            env_name(provider, "webhook_secret"),
            provider,
            extra={"provider": provider},
        )

    def is_raised(self, provider: str) -> bool:
        return provider in self._raised
