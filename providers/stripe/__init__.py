"""Stripe: the Checkout Session provider, its client, money rules, payload checks, webhook
signature and event decisions."""
