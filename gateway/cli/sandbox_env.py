"""What `checkout-gateway sandbox` configures its gateway with, and `simulate --sandbox` falls
back to: the fakes' own secrets (they protect nothing) and the fake BTCPay's default port."""

from __future__ import annotations

DEFAULT_BTCPAY_PORT = 14142
SANDBOX_ENV = {
    "GATEWAY_STRIPE__ENABLED": "true",
    "GATEWAY_STRIPE__SECRET_KEY": "sk_test_fake_gateway",
    "GATEWAY_STRIPE__WEBHOOK_SECRET": "whsec_fake_gateway_secret",
    "GATEWAY_BTCPAY__ENABLED": "true",
    "GATEWAY_BTCPAY__MODE": "greenfield",
    "GATEWAY_BTCPAY__STORE_ID": "FakeStore1111111111111111111111111111111111",
    "GATEWAY_BTCPAY__API_KEY": "fake-btcpay-api-key",
    "GATEWAY_BTCPAY__WEBHOOK_SECRET": "fake-btcpay-webhook-secret",
}
