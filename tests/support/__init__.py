"""Shared test fixtures and builders: processes, databases, issuers, licenses, Stripe."""
