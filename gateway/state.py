"""What the app builds once at startup and every request reads (never per request I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

from config.catalog import Catalog
from config.settings import Settings
from gateway.apply import Applier
from gateway.guards import RateLimiter
from providers.base import PaymentProvider
from providers.events import ProviderName


@dataclass(slots=True)
class AppState:
    settings: Settings
    catalog: Catalog
    providers: dict[ProviderName, PaymentProvider]
    applier: Applier
    limiter: RateLimiter
    # Pre-rendered /purchase-options bodies, one per product: the catalog and the provider
    # set are fixed for the life of the process, so the hot path only writes bytes.
    purchase_options: dict[str, bytes] = field(default_factory=dict)

    def provider(self, name: str) -> PaymentProvider | None:
        try:
            return self.providers.get(ProviderName(name))
        except ValueError:
            return None
