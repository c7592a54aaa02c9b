"""A local sandbox: fakes that speak BTCPay's and Stripe's real HTTP APIs and sign their
webhooks as the providers do, for sellers trying the gateway and for the test suite.

Kept out of `providers/` (which holds only the real integrations) in the way httpx ships
`MockTransport` beside, not inside, its real transports. Never imported by `config/` or
`providers/`, and it never imports `gateway/`.
"""
