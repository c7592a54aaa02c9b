"""Payment providers: one `PaymentProvider` protocol, BTCPay and Stripe behind it.

Providers translate between a provider's HTTP API and our neutral types. They never touch
the database, licenses or email; they import from `config` only.
"""
