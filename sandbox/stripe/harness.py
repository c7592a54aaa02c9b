"""`StripeContractHarness`: a `StripeProvider` wired to a fresh `FakeStripe`, for the
provider contract suite (tests/providers/test_contract.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import SecretStr

from config.settings import StripeSettings
from providers.events import ProviderName
from providers.stripe.provider import StripeProvider
from sandbox.stripe.api import FakeStripe
from sandbox.stripe.objects import new_id


@dataclass
class StripeContractHarness:
    """Wires a `StripeProvider` to a fresh fake for the provider contract suite."""

    fake: FakeStripe = field(default_factory=FakeStripe)
    _providers: list[StripeProvider] = field(default_factory=list)

    name = ProviderName.STRIPE

    def settings(self) -> StripeSettings:
        return StripeSettings(
            enabled=True,
            secret_key=SecretStr(self.fake.api_key),
            webhook_secret=SecretStr(self.fake.webhook_secret),
            max_network_retries=0,
        )

    def build_provider(self) -> StripeProvider:
        provider = StripeProvider(self.settings(), transport=self.fake.transport())
        self._providers.append(provider)
        return provider

    def signed_settle_webhook(
        self, order_id: str, amount_minor: int, currency: str
    ) -> tuple[bytes, dict[str, str]]:
        """A signed, paid `checkout.session.completed` for our `order_id`."""
        session = self.fake.create_session(
            {
                "mode": "payment",
                "line_items": [
                    {
                        "price_data": {
                            "currency": currency.lower(),
                            "unit_amount": str(amount_minor),
                            "product_data": {"name": "License"},
                        },
                        "quantity": "1",
                    }
                ],
                "client_reference_id": order_id,
                "metadata": {"order_id": order_id},
                "payment_intent_data": {"metadata": {"order_id": order_id}},
                "success_url": "https://shop.example/ok",
                "cancel_url": "https://shop.example/cancel",
            }
        )
        signed = self.fake.complete_session(session["id"], paid=True)
        return signed.body, dict(signed.headers)

    def signed_unrelated_webhook(self) -> tuple[bytes, dict[str, str]]:
        """A signed event type the gateway does not act on (`customer.created`)."""
        customer = {"id": new_id("cus"), "object": "customer", "created": self.fake.clock()}
        signed = self.fake.emit("customer.created", customer)
        return signed.body, dict(signed.headers)

    async def aclose(self) -> None:
        for provider in self._providers:
            await provider.aclose()
