"""Build the enabled providers from settings (and only those)."""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from config.catalog import Catalog
from config.money import MoneyError
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
            from providers.btcpay.legacy import BTCPayLegacyProvider

            legacy = BTCPayLegacyProvider(settings.btcpay, data_dir=settings.data_dir)
            built.append((settings.btcpay.order, ProviderName.BTCPAY, legacy))
        else:
            from providers.btcpay.greenfield import BTCPayProvider

            btcpay = BTCPayProvider(settings.btcpay, transport=transport)
            built.append((settings.btcpay.order, ProviderName.BTCPAY, btcpay))
    if settings.is_active(ProviderName.STRIPE):
        from providers.stripe.provider import StripeProvider

        stripe_provider = StripeProvider(settings.stripe, transport=transport)
        built.append((settings.stripe.order, ProviderName.STRIPE, stripe_provider))
    built.sort(key=lambda item: (item[0], item[1].value))
    return {name: provider for _, name, provider in built}


def price_problems(providers: Iterable[ProviderName], catalog: Catalog) -> list[str]:
    """Catalog prices an enabled provider cannot charge exactly, one line each.

    Each provider has its own units (Stripe keeps ISK two-decimal and takes whole MGA;
    BTCPay takes the ISO decimal string, which every catalog price already is).
    """
    from providers.stripe.money import to_stripe

    problems: list[str] = []
    for name in providers:
        for product in catalog:
            if name is not ProviderName.STRIPE:
                continue
            try:
                to_stripe(product.amount_minor, product.currency)
            except MoneyError as exc:
                problems.append(
                    f"product {product.id!r} ({product.price} {product.currency}) cannot be "
                    f"charged through {name.value}: {exc}"
                )
    return problems
