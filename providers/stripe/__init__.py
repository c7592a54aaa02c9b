"""Stripe: the Checkout Session provider, its client, money rules and payload checks."""
