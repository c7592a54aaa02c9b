"""Fakes that speak the providers' real HTTP APIs, for tests and local demos.

Shipped beside the real implementations (as httpx ships `MockTransport`) so a developer can
run the whole flow on one machine without BTCPay or Stripe accounts.
"""
