"""What the app builds once at startup and every request reads (never per request I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

from config.catalog import Catalog
from config.settings import Settings
from gateway.http.limits import RateLimiter
from gateway.licenses.signing import Signer
from gateway.payments.apply import Applier
from gateway.webhooks.alarm import SignatureAlarm
from providers.base import PaymentProvider
from providers.events import ProviderName


@dataclass(slots=True)
class AppState:
    settings: Settings
    catalog: Catalog
    providers: dict[ProviderName, PaymentProvider]
    applier: Applier
    limiter: RateLimiter
    # License token signing keys, read once (refusing unsafe key files).
    signer: Signer
    # Raises an alarm when a provider's webhook secret refuses every delivery for a while.
    webhook_alarm: SignatureAlarm
    # Pre-rendered /purchase-options bodies, one per product: the catalog and the provider
    # set are fixed for the life of the process, so the hot path only writes bytes.
    purchase_options: dict[str, bytes] = field(default_factory=dict)

    def provider(self, name: str) -> PaymentProvider | None:
        try:
            return self.providers.get(ProviderName(name))
        except ValueError:
            return None
