"""Build the enabled providers from settings (and only those)."""

from __future__ import annotations

import httpx

from config.settings import Settings
from providers.base import PaymentProvider
from providers.events import ProviderName


def build_providers(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> dict[ProviderName, PaymentProvider]:
    """The active providers in display order. `transport` lets tests route HTTP to fakes."""
    built: list[tuple[int, ProviderName, PaymentProvider]] = []
    if settings.is_active(ProviderName.BTCPAY):
        if settings.btcpay.mode == "legacy":
            from providers.btcpay_legacy import BTCPayLegacyProvider

            legacy = BTCPayLegacyProvider(settings.btcpay, data_dir=settings.data_dir)
            built.append((settings.btcpay.order, ProviderName.BTCPAY, legacy))
        else:
            from providers.btcpay_provider import BTCPayProvider

            btcpay = BTCPayProvider(settings.btcpay, transport=transport)
            built.append((settings.btcpay.order, ProviderName.BTCPAY, btcpay))
    if settings.is_active(ProviderName.STRIPE):
        from providers.stripe_provider import StripeProvider

        stripe_provider = StripeProvider(settings.stripe, transport=transport)
        built.append((settings.stripe.order, ProviderName.STRIPE, stripe_provider))
    built.sort(key=lambda item: (item[0], item[1].value))
    return {name: provider for _, name, provider in built}
